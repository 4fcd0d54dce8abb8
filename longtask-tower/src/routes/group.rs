//! The routes of [`GroupService`](crate::GroupService): `GET /{group}` (JSON or the group
//! page), `GET /{group}/events`, `GET /{group}/result` and cancelling the whole group
//! (`DELETE /{group}`, `POST /{group}/cancel`).

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http::{header, request::Parts, HeaderValue, Method, Response, StatusCode};
use longtask_core::{Error, GroupStatus, TaskId, TaskStatus};

use super::{
    cache_control, event_stream_headers, header_value, html_page, no_more_events, not_modified,
    options, relative, respond, see_other, status_format, submit::refuse_cross_site, Answer, Route,
};
use crate::{
    accept::{negotiate, Format},
    body::ResponseBody,
    group::{self, GroupConfig, GroupPage, GroupView, GROUP_CSP},
    html,
    problem::{truncate, Problem},
    status::Links,
};

/// The Content-Security-Policy of results: documents that can do nothing.
const RESULT_CSP: &str = "default-src 'none'; sandbox";

impl GroupConfig {
    /// Answers a request: the route its path names, for its method.
    pub(crate) async fn route(self: &Arc<Self>, parts: &Parts) -> Answer {
        let method = &parts.method;
        let reads = method == Method::GET || method == Method::HEAD;
        let route = Route::parse(relative(&self.base, parts.uri.path()));
        let allow = match route {
            Route::Task(_) => Some("GET, HEAD, DELETE, OPTIONS"),
            Route::Events(_) | Route::Result(_) => Some("GET, HEAD, OPTIONS"),
            Route::Cancel(_) => Some("POST, OPTIONS"),
            Route::Mount | Route::Unknown => None,
        };
        if let (true, Some(allow)) = (method == Method::OPTIONS, allow) {
            return Ok(options(allow));
        }
        match route {
            Route::Task(id) if reads => self.status(parts, id).await,
            Route::Task(id) if method == Method::DELETE => self.cancel(parts, id, false).await,
            Route::Events(id) if reads => self.events(parts, id).await,
            Route::Result(id) if reads => self.result(parts, id).await,
            Route::Cancel(id) if method == Method::POST => self.cancel(parts, id, true).await,
            Route::Task(_) | Route::Events(_) | Route::Result(_) | Route::Cancel(_) => Err(
                Problem::method_not_allowed(method, allow.unwrap_or("GET")),
            ),
            Route::Mount | Route::Unknown => Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!(
                    "nothing at `{}`; groups are started by the application, and the routes are \
                     GET {base}/{{group}}, GET {base}/{{group}}/events, GET {base}/{{group}}/result, \
                     DELETE {base}/{{group}} and POST {base}/{{group}}/cancel",
                    truncate(parts.uri.path(), 100),
                    base = self.base,
                ),
            )),
        }
    }

    fn owned(&self) -> bool {
        self.owner.is_some()
    }

    /// The group, if it exists and belongs to the requester.
    async fn load(&self, parts: &Parts, id: &str) -> Result<GroupStatus, Problem> {
        let group_id: TaskId = id.parse().map_err(|_| Problem::group_not_found(id))?;
        let group = match self.client.group_status(group_id).await {
            Ok(group) => group,
            Err(Error::NotFound(_)) => return Err(Problem::group_not_found(id)),
            Err(err) => return Err(Problem::from_error(&err)),
        };
        let visible = match &self.owner {
            None => true,
            Some(owner) => group.root.owner == owner(parts),
        };
        if visible {
            Ok(group)
        } else {
            Err(Problem::group_not_found(id))
        }
    }

    fn links(&self, id: TaskId) -> Links {
        Links::new(&self.base, id)
    }

    async fn status(&self, parts: &Parts, id: &str) -> Answer {
        let format = status_format(parts)?;
        let group = match self.load(parts, id).await {
            Err(problem) if format == Format::Html && problem.is_unavailable() => {
                return Ok(html::unavailable(&self.title, id));
            }
            loaded => loaded?,
        };
        let now = Utc::now();
        let links = self.links(group.id());
        let view = GroupView::new(&group, self, &links, now);
        let eta = view.eta_seconds.unwrap_or(0);
        let tag = match format {
            // The page shows the time spent: it changes each second until the group is final.
            Format::Html => {
                let clock = if view.is_final {
                    0
                } else {
                    now.timestamp().unsigned_abs()
                };
                group::etag(&group, 1, &[eta, clock])
            }
            _ => group::etag(&group, 0, &[eta]),
        };
        let mut response = if let Some(r) = not_modified(parts, &tag) {
            r
        } else if format == Format::Html {
            let page = GroupPage {
                config: self,
                group: &group,
                view: &view,
                links: &links,
                now,
            };
            html_page(page.render(), GROUP_CSP.clone())
        } else {
            respond(StatusCode::OK, "application/json", view.to_json())
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, header_value(&tag)?);
        headers.insert(header::CACHE_CONTROL, cache_control(self.owned(), true));
        headers.insert(header::VARY, HeaderValue::from_static("accept"));
        if let Some(secs) = group::retry_after(&view) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        Ok(response)
    }

    async fn events(self: &Arc<Self>, parts: &Parts, id: &str) -> Answer {
        negotiate(&parts.headers, &[Format::EventStream])
            .ok_or_else(|| Problem::not_acceptable("text/event-stream"))?;
        let group = self.load(parts, id).await?;
        let reconnect = parts
            .headers
            .get("last-event-id")
            .is_some_and(|v| !v.is_empty());
        let is_final = group::GroupState::of(&group).is_final();
        if reconnect && is_final {
            return Ok(no_more_events());
        }
        let mut response = if parts.method == Method::HEAD {
            Response::new(ResponseBody::empty())
        } else {
            let permit = Arc::clone(&self.watchers)
                .try_acquire_owned()
                .map_err(|_| {
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "too many live updates are open on this server (at most {}); \
                             reload the group's page to see its status",
                            self.max_watchers
                        ),
                    )
                })?;
            let links = self.links(group.id());
            Response::new(ResponseBody::stream(group::events(
                Arc::clone(self),
                group,
                links,
                permit,
            )))
        };
        event_stream_headers(&mut response, cache_control(self.owned(), true));
        Ok(response)
    }

    async fn result(&self, parts: &Parts, id: &str) -> Answer {
        let group = self.load(parts, id).await?;
        if !group.has_completion() {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "this group has no completion job, so no result of its own; each task's result \
                 is at its own status URL (the `link` of each member in the group's status)",
            ));
        }
        let root = &group.root;
        match root.status {
            TaskStatus::Succeeded => {
                negotiate(&parts.headers, &[Format::Json])
                    .ok_or_else(|| Problem::not_acceptable("application/json"))?;
                let output = root.output.as_deref().unwrap_or("null");
                let mut response = respond(
                    StatusCode::OK,
                    "application/json",
                    Bytes::copy_from_slice(output.as_bytes()),
                );
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(RESULT_CSP),
                );
                headers.insert(header::CACHE_CONTROL, cache_control(self.owned(), false));
                Ok(response)
            }
            TaskStatus::Failed => Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "the group's completion job failed after {} of {} attempts ({}); there is no \
                     result: submit the group again to retry",
                    root.attempt,
                    root.max_attempts,
                    root.last_error
                        .as_ref()
                        .map_or("no error was recorded", |e| e.message.as_str())
                ),
            )),
            TaskStatus::Cancelled => Err(Problem::new(
                StatusCode::CONFLICT,
                "the group was cancelled; there is no result: submit it again to run it",
            )),
            _ => {
                let now = Utc::now();
                let links = self.links(group.id());
                let view = GroupView::new(&group, self, &links, now);
                let mut response =
                    respond(StatusCode::ACCEPTED, "application/json", view.to_json());
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_LOCATION, header_value(&links.this)?);
                headers.insert(header::CACHE_CONTROL, cache_control(self.owned(), true));
                if let Some(secs) = group::retry_after(&view) {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                Ok(response)
            }
        }
    }

    async fn cancel(&self, parts: &Parts, id: &str, form: bool) -> Answer {
        if form {
            refuse_cross_site(parts)?;
        }
        let group = self.load(parts, id).await?;
        let links = self.links(group.id());
        let state = group::GroupState::of(&group);
        let browser =
            form && negotiate(&parts.headers, &[Format::Json, Format::Html]) == Some(Format::Html);
        if state.is_final() || group.root.status == TaskStatus::Cancelled {
            if browser {
                return see_other(&links.this);
            }
            if state.is_final() && state != group::GroupState::Cancelled {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    format!(
                        "the group already {}; there is nothing to cancel",
                        state.as_str()
                    ),
                ));
            }
        }
        let done = self
            .client
            .cancel_group(group.id())
            .await
            .map_err(|e| match e {
                Error::NotFound(_) => Problem::group_not_found(id),
                other => Problem::from_error(&other),
            })?;
        if browser {
            return see_other(&links.this);
        }
        let code = if done.requested > 0 {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        let group = self.load(parts, id).await?;
        let view = GroupView::new(&group, self, &links, Utc::now());
        let mut response = respond(code, "application/json", view.to_json());
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }
}

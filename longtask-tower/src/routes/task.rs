//! The routes of one task: `GET /{id}` (status as JSON or the HTML page), `GET /{id}/events`,
//! `GET /{id}/result` and cancelling (`DELETE /{id}`, `POST /{id}/cancel`).

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http::{header, request::Parts, HeaderMap, HeaderValue, Method, Response, StatusCode};
use longtask_core::{CancelOutcome, Job, TaskRecord, TaskStatus};

use super::{
    event_stream_headers, header_value, html_page, no_more_events, not_modified, respond,
    see_other, set_retry_after, status_format, submit::refuse_cross_site, Answer,
};
use crate::{
    accept::{negotiate, Format},
    body::ResponseBody,
    html::{self, Page},
    problem::Problem,
    service::Config,
    sse,
    status::{self, Links, StatusView},
};

/// The Content-Security-Policy of results: documents that can do nothing.
const RESULT_CSP: &str = "default-src 'none'; sandbox";

impl<J: Job> Config<J> {
    pub(super) async fn status(&self, parts: &Parts, id: &str) -> Answer {
        let format = status_format(parts)?;
        let task = match self.load(parts, id).await {
            // A person waiting on the page: say what happened, and keep trying.
            Err(problem) if format == Format::Html && problem.is_unavailable() => {
                return Ok(html::unavailable(&self.title, id));
            }
            loaded => loaded?,
        };
        let now = Utc::now();
        let links = self.links(task.id);
        let tag = match format {
            Format::Html => status::etag(
                &task,
                1,
                &[
                    task.eta(now).map_or(0, status::ceil_secs),
                    if task.status.is_final() {
                        0
                    } else {
                        now.timestamp().unsigned_abs()
                    },
                ],
            ),
            _ => status::etag(
                &task,
                0,
                &[
                    task.eta(now).map_or(0, status::ceil_secs),
                    status::next_attempt_in(&task, now).unwrap_or(0),
                ],
            ),
        };
        let mut response = if let Some(r) = not_modified(parts, &tag) {
            r
        } else if format == Format::Html {
            let result_html = if task.status == TaskStatus::Succeeded {
                Some(self.result_html(&task, &links))
            } else {
                None
            };
            let page = Page {
                title: &self.title,
                task: &task,
                links: &links,
                now,
                result_html,
            };
            html_page(page.render(), html::CSP.clone())
        } else {
            respond(
                StatusCode::OK,
                "application/json",
                StatusView::new(&task, &links, now).to_json(),
            )
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, header_value(&tag)?);
        headers.insert(header::CACHE_CONTROL, self.cache_control(true));
        headers.insert(header::VARY, HeaderValue::from_static("accept"));
        set_retry_after(&mut response, &task, now);
        Ok(response)
    }

    /// The headers of a finished result, file or JSON: not sniffed, and (opened in the browser, as
    /// an HTML or SVG output may be) running nothing and reaching nothing on this origin; it no
    /// longer changes.
    fn result_headers(&self, headers: &mut HeaderMap) {
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(RESULT_CSP),
        );
        headers.insert(header::CACHE_CONTROL, self.cache_control(false));
    }

    /// The result as the status page shows it.
    fn result_html(&self, task: &TaskRecord, links: &Links) -> String {
        let output = task.output.as_deref().unwrap_or("null");
        if self.result_html.is_none() && self.result_file.is_none() {
            return html::json_result(output, &links.result);
        }
        let Ok(decoded) = serde_json::from_str::<J::Output>(output) else {
            return html::json_result(output, &links.result);
        };
        if let Some(render) = &self.result_html {
            return render(&decoded);
        }
        match self.result_file.as_ref().map(|render| render(&decoded)) {
            Some(file) => html::download_result(file.name().unwrap_or("the result"), &links.result),
            None => html::json_result(output, &links.result),
        }
    }

    pub(super) async fn events(&self, parts: &Parts, id: &str) -> Answer {
        negotiate(&parts.headers, &[Format::EventStream])
            .ok_or_else(|| Problem::not_acceptable("text/event-stream"))?;
        let task = self.load(parts, id).await?;
        let reconnect = parts
            .headers
            .get("last-event-id")
            .is_some_and(|v| !v.is_empty());
        if reconnect && task.status.is_final() {
            // The client saw the final event (the only one with an id): 204 tells an
            // EventSource to stop reconnecting.
            return Ok(no_more_events());
        }
        let mut response = if parts.method == Method::HEAD {
            // The headers only: no stream to watch and then throw away.
            Response::new(ResponseBody::empty())
        } else {
            let permit = Arc::clone(&self.watchers)
                .try_acquire_owned()
                .map_err(|_| {
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "too many live updates are open on this server (at most {}); \
                             reload the task's page to see its status",
                            self.max_watchers
                        ),
                    )
                })?;
            let updates = self
                .client
                .watch(task.id)
                .await
                .map_err(|e| Problem::from_error(&e))?;
            Response::new(ResponseBody::stream(sse::events(
                updates,
                self.links(task.id),
                permit,
            )))
        };
        event_stream_headers(&mut response, self.cache_control(true));
        Ok(response)
    }

    pub(super) async fn result(&self, parts: &Parts, id: &str) -> Answer {
        let task = self.load(parts, id).await?;
        let links = self.links(task.id);
        match task.status {
            TaskStatus::Succeeded => {
                let output = task.output.as_deref().unwrap_or("null");
                if let Some(render) = &self.result_file {
                    let decoded = serde_json::from_str::<J::Output>(output).map_err(|e| {
                        tracing::warn!(error = %e, task = %task.id, "stored output does not decode");
                        Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "the stored output does not decode as this job's output ({e}); \
                                 was the job's Output type changed?"
                            ),
                        )
                    })?;
                    let file = render(&decoded);
                    let disposition = file.disposition();
                    let mut response = Response::new(ResponseBody::full(file.body));
                    let headers = response.headers_mut();
                    headers.insert(header::CONTENT_TYPE, file.content_type);
                    if let Some(d) = disposition {
                        headers.insert(header::CONTENT_DISPOSITION, d);
                    }
                    self.result_headers(headers);
                    return Ok(response);
                }
                negotiate(&parts.headers, &[Format::Json])
                    .ok_or_else(|| Problem::not_acceptable("application/json"))?;
                let mut response = respond(
                    StatusCode::OK,
                    "application/json",
                    Bytes::copy_from_slice(output.as_bytes()),
                );
                self.result_headers(response.headers_mut());
                Ok(response)
            }
            TaskStatus::Failed => Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "the task failed after {} of {} attempts ({}); there is no result: submit it again to retry",
                    task.attempt,
                    task.max_attempts,
                    task.last_error.as_ref().map_or("no error was recorded", |e| e.message.as_str())
                ),
            )),
            TaskStatus::Cancelled => Err(Problem::new(
                StatusCode::CONFLICT,
                "the task was cancelled; there is no result: submit it again to run it",
            )),
            _ => {
                let now = Utc::now();
                let mut response = respond(
                    StatusCode::ACCEPTED,
                    "application/json",
                    StatusView::new(&task, &links, now).to_json(),
                );
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_LOCATION, header_value(&links.this)?);
                headers.insert(header::CACHE_CONTROL, self.cache_control(true));
                set_retry_after(&mut response, &task, now);
                Ok(response)
            }
        }
    }

    pub(super) async fn cancel(&self, parts: &Parts, id: &str, form: bool) -> Answer {
        if form {
            refuse_cross_site(parts)?;
        }
        let task = self.load(parts, id).await?;
        let outcome = self
            .client
            .cancel(task.id)
            .await
            .map_err(|e| Problem::from_error(&e))?;
        let links = self.links(task.id);
        if form && negotiate(&parts.headers, &[Format::Json, Format::Html]) == Some(Format::Html) {
            return see_other(&links.this);
        }
        let code = match outcome {
            CancelOutcome::Cancelled | CancelOutcome::AlreadyFinished(TaskStatus::Cancelled) => {
                StatusCode::OK
            }
            CancelOutcome::Requested => StatusCode::ACCEPTED,
            CancelOutcome::AlreadyFinished(status) => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    format!("the task already {status}; there is nothing to cancel"),
                ))
            }
        };
        let task = self.load(parts, id).await?;
        Ok(respond(
            code,
            "application/json",
            StatusView::new(&task, &links, Utc::now()).to_json(),
        ))
    }
}

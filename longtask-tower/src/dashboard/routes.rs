//! Answering a dashboard request: authorization first, then the route its path names, for its
//! method; actions check where they come from and their CSRF token before anything changes.

use std::sync::Arc;

use http::{header, request::Parts, HeaderValue, Method, Response, StatusCode};
use http_body::Body;
use longtask_core::{
    BoxError, CancelOutcome, DeleteOutcome, Error, RetryOutcome, TaskId, TaskRecord,
};
use serde::Serialize;

use super::{
    csrf,
    events::{self, OverviewJson},
    pages::{self, Overview, TaskDetail, TaskList, CSP},
    query::{self, ActionForm, ListQuery, Notice, PageQuery},
    DashboardConfig,
};
use crate::{
    accept::{negotiate, Format},
    body::ResponseBody,
    problem::{truncate, Problem},
    routes::{
        event_stream_headers, html_page, options, relative, respond, see_other,
        submit::{read_body, refuse_cross_site},
        Answer,
    },
};

/// Tasks failed of one job retried per call to the backend.
const RETRY_BATCH: usize = 500;
/// Tasks purged per call to the backend, and calls per "purge now" at most.
const PURGE_BATCH: usize = 1000;
const PURGE_ROUNDS: usize = 100;

/// An action on one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Retry,
    Cancel,
    Delete,
}

/// A route, relative to the mount point.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Overview,
    Events,
    Tasks,
    Task(&'a str),
    Act(&'a str, Act),
    RetryFailed,
    Purge,
    Unknown,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Self {
        let path = path.trim_start_matches('/');
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut segments = path.split('/');
        let first = segments.next().unwrap_or("");
        let second = segments.next();
        let third = segments.next();
        if segments.next().is_some() {
            return Self::Unknown;
        }
        match (first, second, third) {
            ("", None, None) => Self::Overview,
            ("events", None, None) => Self::Events,
            ("tasks", None, None) => Self::Tasks,
            ("retry-failed", None, None) => Self::RetryFailed,
            ("purge", None, None) => Self::Purge,
            ("tasks", Some(id), None) if !id.is_empty() => Self::Task(id),
            ("tasks", Some(id), Some(act)) if !id.is_empty() => match act {
                "retry" => Self::Act(id, Act::Retry),
                "cancel" => Self::Act(id, Act::Cancel),
                "delete" => Self::Act(id, Act::Delete),
                _ => Self::Unknown,
            },
            _ => Self::Unknown,
        }
    }

    /// The methods the route answers (its `Allow` header), or `None` for no route.
    fn allow(&self) -> Option<&'static str> {
        match self {
            Self::Overview | Self::Events | Self::Tasks | Self::Task(_) => {
                Some("GET, HEAD, OPTIONS")
            }
            Self::Act(..) | Self::RetryFailed | Self::Purge => Some("POST, OPTIONS"),
            Self::Unknown => None,
        }
    }
}

/// A task id from the path: `400` naming it when malformed.
fn parse_id(id: &str) -> Result<TaskId, Problem> {
    id.parse().map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!(
                "`id`: `{}` is not a task id (a UUID such as 0193a5c4-…)",
                truncate(id, 60)
            ),
        )
    })
}

/// The browser's CSRF cookie value, and the `Set-Cookie` that gives it one when it has none.
fn browser_value(parts: &Parts, base: &str) -> (String, Option<HeaderValue>) {
    match csrf::cookie_value(parts) {
        Some(value) => (value.to_owned(), None),
        None => {
            let value = csrf::new_value();
            let set = csrf::set_cookie(&value, base);
            (value, set)
        }
    }
}

/// A page for people, with the dashboard's policy and (when new) the CSRF cookie.
fn page(html: String, cookie: Option<HeaderValue>) -> Response<ResponseBody> {
    let mut response = html_page(html, CSP.clone());
    if let Some(cookie) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn json(body: Vec<u8>) -> Response<ResponseBody> {
    respond(StatusCode::OK, "application/json", body)
}

#[derive(Serialize)]
struct TasksJson<'a> {
    tasks: &'a [TaskRecord],
    /// The next page's URL, if there is one.
    next: Option<&'a str>,
}

impl DashboardConfig {
    /// Whether the authorization hook admits the request.
    fn admits(&self, parts: &Parts) -> bool {
        self.authorize.as_ref().is_none_or(|check| check(parts))
    }

    /// `403` for a request the hook refused: a page for a browser, a problem otherwise.
    fn refuse(&self, parts: &Parts) -> Response<ResponseBody> {
        let browser =
            negotiate(&parts.headers, &[Format::Json, Format::Html]) == Some(Format::Html);
        if browser {
            let mut response = page(pages::forbidden(self), None);
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        } else {
            Problem::new(
                StatusCode::FORBIDDEN,
                "this dashboard is for operators, and this request was not admitted by its \
                 authorization hook; authenticate as an operator",
            )
            .into_response()
        }
    }

    /// Answers a request: refused unless admitted, then its route.
    pub(crate) async fn answer<B>(
        self: &Arc<Self>,
        parts: &Parts,
        body: B,
    ) -> Response<ResponseBody>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if !self.admits(parts) {
            return self.refuse(parts);
        }
        self.route(parts, body)
            .await
            .unwrap_or_else(Problem::into_response)
    }

    async fn route<B>(self: &Arc<Self>, parts: &Parts, body: B) -> Answer
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let method = &parts.method;
        let reads = method == Method::GET || method == Method::HEAD;
        let route = Route::parse(relative(&self.base, parts.uri.path()));
        if method == Method::OPTIONS {
            if let Some(allow) = route.allow() {
                return Ok(options(allow));
            }
        }
        match route {
            Route::Overview if reads => self.overview(parts).await,
            Route::Events if reads => self.events(parts),
            Route::Tasks if reads => self.tasks(parts).await,
            Route::Task(id) if reads => self.task(parts, id).await,
            Route::Act(id, act) if method == Method::POST => self.act(parts, body, id, act).await,
            Route::RetryFailed if method == Method::POST => self.retry_failed(parts, body).await,
            Route::Purge if method == Method::POST => self.purge(parts, body).await,
            Route::Unknown => Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!(
                    "nothing at `{}`; the dashboard's pages are GET {base}/, GET {base}/tasks and \
                     GET {base}/tasks/{{id}}",
                    truncate(parts.uri.path(), 100),
                    base = self.base,
                ),
            )),
            other => Err(Problem::method_not_allowed(
                method,
                other.allow().unwrap_or("GET"),
            )),
        }
    }

    async fn overview(&self, parts: &Parts) -> Answer {
        let query = PageQuery::parse(parts)?;
        let format = query.format(parts)?;
        let (stats, workers) = self.figures().await.map_err(|e| Problem::from_error(&e))?;
        if format == Format::Json {
            return Ok(json(OverviewJson::new(&stats, &workers).to_json()));
        }
        let (value, cookie) = browser_value(parts, &self.base);
        let html = Overview {
            config: self,
            stats: &stats,
            workers: &workers,
            notice: query.notice,
            token: &self.csrf.token(&value),
        }
        .render();
        Ok(page(html, cookie))
    }

    fn events(self: &Arc<Self>, parts: &Parts) -> Answer {
        negotiate(&parts.headers, &[Format::EventStream])
            .ok_or_else(|| Problem::not_acceptable("text/event-stream"))?;
        PageQuery::parse(parts)?;
        let mut response = if parts.method == Method::HEAD {
            Response::new(ResponseBody::empty())
        } else {
            let permit = Arc::clone(&self.watchers)
                .try_acquire_owned()
                .map_err(|_| {
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "too many live updates are open on this dashboard (at most {}); \
                             reload the page to see the figures",
                            self.max_watchers
                        ),
                    )
                })?;
            Response::new(ResponseBody::stream(events::events(
                Arc::clone(self),
                permit,
            )))
        };
        event_stream_headers(&mut response, HeaderValue::from_static("no-store"));
        Ok(response)
    }

    async fn tasks(&self, parts: &Parts) -> Answer {
        let query = ListQuery::parse(parts, self.page_size)?;
        let format = query.page.format(parts)?;
        let mut tasks = self
            .client
            .list(&query.task_query())
            .await
            .map_err(|e| Problem::from_error(&e))?;
        let next = if tasks.len() > query.limit {
            tasks.truncate(query.limit);
            tasks
                .last()
                .map(|last| query.link(&self.base, Some(last.id), self.page_size))
        } else {
            None
        };
        if format == Format::Json {
            let body = serde_json::to_vec(&TasksJson {
                tasks: &tasks,
                next: next.as_deref(),
            })
            .unwrap_or_default();
            return Ok(json(body));
        }
        // The job names to suggest; the list shows without them if they cannot be read.
        let jobs: Vec<String> = self
            .client
            .stats()
            .await
            .map(|stats| stats.jobs.into_iter().map(|j| j.job).collect())
            .unwrap_or_default();
        let html = TaskList {
            config: self,
            query: &query,
            tasks: &tasks,
            next,
            jobs: &jobs,
            now: chrono::Utc::now(),
        }
        .render();
        let (_, cookie) = browser_value(parts, &self.base);
        Ok(page(html, cookie))
    }

    async fn load(&self, id: TaskId) -> Result<TaskRecord, Problem> {
        self.client
            .status(id)
            .await
            .map_err(|e| Problem::from_error(&e))
    }

    async fn task(&self, parts: &Parts, id: &str) -> Answer {
        let id = parse_id(id)?;
        let query = PageQuery::parse(parts)?;
        let format = query.format(parts)?;
        let task = self.load(id).await?;
        if format == Format::Json {
            return Ok(json(serde_json::to_vec(&task).unwrap_or_default()));
        }
        let (value, cookie) = browser_value(parts, &self.base);
        let html = TaskDetail {
            config: self,
            task: &task,
            notice: query.notice,
            token: &self.csrf.token(&value),
            now: chrono::Utc::now(),
        }
        .render();
        Ok(page(html, cookie))
    }

    /// Reads an action's form, once it has shown that it comes from a page of this dashboard:
    /// not from another site, and with the browser's CSRF token.
    async fn action_form<B>(&self, parts: &Parts, body: B) -> Result<ActionForm, Problem>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        refuse_cross_site(parts)?;
        let form_type = match parts.headers.get(header::CONTENT_TYPE) {
            None => false,
            Some(value) => {
                let essence = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.split(';').next())
                    .map(|v| v.trim().to_ascii_lowercase());
                if essence.as_deref() != Some("application/x-www-form-urlencoded")
                    || parts.headers.get_all(header::CONTENT_TYPE).iter().count() > 1
                {
                    return Err(Problem::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "send an action as an HTML form (application/x-www-form-urlencoded)",
                    ));
                }
                true
            }
        };
        let bytes = read_body(parts, body, self.body_limit, self.body_timeout).await?;
        if !form_type && !bytes.is_empty() {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body has no Content-Type; send an action as an HTML form \
                 (application/x-www-form-urlencoded)",
            ));
        }
        let form = ActionForm::parse(parts, &bytes)?;
        self.csrf.check(parts, form.token.as_deref())?;
        Ok(form)
    }

    async fn act<B>(&self, parts: &Parts, body: B, id: &str, act: Act) -> Answer
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let id = parse_id(id)?;
        self.action_form(parts, body).await?;
        let notice = match act {
            Act::Retry => match self.client.retry(id).await {
                Ok(RetryOutcome::Retried) => Notice::Retried,
                Ok(RetryOutcome::NotRetryable(_)) => Notice::NotRetryable,
                Ok(RetryOutcome::InGroup) => Notice::InGroup,
                Ok(RetryOutcome::NotFound) => {
                    return Err(Problem::from_error(&Error::NotFound(id)))
                }
                Err(e) => return Err(Problem::from_error(&e)),
            },
            Act::Cancel => match self.client.cancel(id).await {
                Ok(CancelOutcome::Cancelled) => Notice::Cancelled,
                Ok(CancelOutcome::Requested) => Notice::CancelRequested,
                Ok(CancelOutcome::AlreadyFinished(_)) => Notice::AlreadyFinished,
                Err(e) => return Err(Problem::from_error(&e)),
            },
            Act::Delete => match self.client.delete(id).await {
                Ok(DeleteOutcome::Deleted) => Notice::Deleted,
                Ok(DeleteOutcome::NotFinished(_)) => Notice::NotFinished,
                Ok(DeleteOutcome::NotFound) => {
                    return Err(Problem::from_error(&Error::NotFound(id)))
                }
                Err(e) => return Err(Problem::from_error(&e)),
            },
        };
        let location = if notice == Notice::Deleted {
            format!("{}/tasks?{}", self.base, notice.query())
        } else {
            format!("{}/tasks/{id}?{}", self.base, notice.query())
        };
        see_other(&location)
    }

    async fn retry_failed<B>(&self, parts: &Parts, body: B) -> Answer
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let form = self.action_form(parts, body).await?;
        let Some(job) = form.job else {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "`job`: missing; name the job whose failed tasks to retry",
            ));
        };
        let job = query::name("job", &job)?;
        let retried = self
            .client
            .retry_failed(&job, RETRY_BATCH)
            .await
            .map_err(|e| Problem::from_error(&e))?;
        see_other(&format!(
            "{}/?{}",
            self.base,
            Notice::RetriedFailed(retried).query()
        ))
    }

    async fn purge<B>(&self, parts: &Parts, body: B) -> Answer
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.action_form(parts, body).await?;
        let store = self.client.backend().store();
        let mut purged = 0_u64;
        for _ in 0..PURGE_ROUNDS {
            let n = store
                .purge(PURGE_BATCH)
                .await
                .map_err(|e| Problem::from_error(&e))?;
            purged = purged.saturating_add(n);
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        see_other(&format!(
            "{}/?{}",
            self.base,
            Notice::Purged(purged).query()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(Route::parse(""), Route::Overview);
        assert_eq!(Route::parse("/"), Route::Overview);
        assert_eq!(Route::parse("/events"), Route::Events);
        assert_eq!(Route::parse("/tasks/"), Route::Tasks);
        assert_eq!(Route::parse("/tasks/abc"), Route::Task("abc"));
        assert_eq!(
            Route::parse("/tasks/abc/retry"),
            Route::Act("abc", Act::Retry)
        );
        assert_eq!(
            Route::parse("/tasks/abc/delete/"),
            Route::Act("abc", Act::Delete)
        );
        assert_eq!(Route::parse("/tasks//retry"), Route::Unknown);
        assert_eq!(Route::parse("/tasks/abc/x"), Route::Unknown);
        assert_eq!(Route::parse("/tasks/abc/retry/x"), Route::Unknown);
        assert_eq!(Route::parse("/purge"), Route::Purge);
        assert_eq!(Route::parse("/retry-failed"), Route::RetryFailed);
        assert_eq!(Route::parse("/nope"), Route::Unknown);
    }
}

//! Request handling: which route a request names, and the pieces every route's answer is built
//! from (loading a task the requester may see, links, caching headers).
//!
//! Submitting lives in [`submit`], the routes of one task (status, events, result, cancel) in
//! [`task`].

use bytes::Bytes;
use chrono::Utc;
use http::{header, request::Parts, HeaderValue, Method, Response, StatusCode};
use http_body::Body;
use longtask_core::{BoxError, Job, TaskId, TaskRecord};

use crate::{
    accept::{negotiate, Format},
    body::ResponseBody,
    problem::{truncate, Problem},
    service::Config,
    status::{self, Links},
};

pub(crate) mod group;
pub(crate) mod submit;
mod task;

/// A route, relative to the mount point.
enum Route<'a> {
    Mount,
    Task(&'a str),
    Events(&'a str),
    Result(&'a str),
    Cancel(&'a str),
    Unknown,
}

impl<'a> Route<'a> {
    /// The methods the route answers (its `Allow` header), or `None` for no route.
    fn allow(&self) -> Option<&'static str> {
        match self {
            Route::Mount | Route::Cancel(_) => Some("POST, OPTIONS"),
            Route::Task(_) => Some("GET, HEAD, DELETE, OPTIONS"),
            Route::Events(_) | Route::Result(_) => Some("GET, HEAD, OPTIONS"),
            Route::Unknown => None,
        }
    }

    fn parse(path: &'a str) -> Self {
        let path = path.trim_start_matches('/');
        let path = path.strip_suffix('/').unwrap_or(path);
        if path.is_empty() {
            return Self::Mount;
        }
        let mut segments = path.splitn(3, '/');
        let id = segments.next().unwrap_or("");
        match (segments.next(), segments.next()) {
            (None, _) => Self::Task(id),
            (Some("events"), None) => Self::Events(id),
            (Some("result"), None) => Self::Result(id),
            (Some("cancel"), None) => Self::Cancel(id),
            _ => Self::Unknown,
        }
    }
}

/// What a route answers: a response, or a problem document.
pub(crate) type Answer = Result<Response<ResponseBody>, Problem>;

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn see_other(location: &str) -> Answer {
    let mut response = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    response
        .headers_mut()
        .insert(header::LOCATION, header_value(location)?);
    Ok(response)
}

pub(crate) fn header_value(value: &str) -> Result<HeaderValue, Problem> {
    HeaderValue::from_str(value).map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "could not build a header for this answer; check the path given to `JobService::at`",
        )
    })
}

fn set_retry_after(
    response: &mut Response<ResponseBody>,
    task: &TaskRecord,
    now: chrono::DateTime<Utc>,
) {
    if let Some(secs) = status::retry_after(task, now) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

/// `path` relative to the mount point `base`, whether or not it was stripped already.
pub(crate) fn relative<'a>(base: &str, path: &'a str) -> &'a str {
    if base.is_empty() {
        return path;
    }
    match path.strip_prefix(base) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => path,
    }
}

/// `204 No Content` with the route's `Allow` header, for `OPTIONS`.
pub(crate) fn options(allow: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// An HTML page for people: its Content-Security-Policy, never sniffed, and sending no
/// `Referer` (its URL is a bookmark that may be private).
pub(crate) fn html_page(body: String, csp: HeaderValue) -> Response<ResponseBody> {
    let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `304 Not Modified` when the request's `If-None-Match` matches `tag`.
fn not_modified(parts: &Parts, tag: &str) -> Option<Response<ResponseBody>> {
    let matches = parts
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| status::none_match(v, tag));
    matches.then(|| {
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    })
}

/// The format a status route answers in: `?format=json` or `?format=html` (the page's "as
/// JSON" link) overrides the `Accept` header.
fn status_format(parts: &Parts) -> Result<Format, Problem> {
    let forced = parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| match pair {
            "format=json" => Some(Format::Json),
            "format=html" => Some(Format::Html),
            _ => None,
        })
    });
    forced
        .or_else(|| negotiate(&parts.headers, &[Format::Json, Format::Html]))
        .ok_or_else(|| Problem::not_acceptable("application/json or text/html"))
}

/// `Cache-Control` of an answer about a task or group: `private` whenever they have owners,
/// so that no shared cache keeps one person's task for another (`no-cache` too while it may
/// change: `changing`); `no-cache` otherwise.
fn cache_control(owned: bool, changing: bool) -> HeaderValue {
    HeaderValue::from_static(match (owned, changing) {
        (true, true) => "private, no-cache",
        (true, false) => "private",
        (false, _) => "no-cache",
    })
}

/// The answer to an event stream request reconnecting after the final event: `204`, which tells
/// an `EventSource` to stop reconnecting.
fn no_more_events() -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The headers of an event stream.
pub(crate) fn event_stream_headers(response: &mut Response<ResponseBody>, cache: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, cache);
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

impl<J: Job> Config<J> {
    /// The request's path relative to the mount point, whether or not it was stripped already.
    fn relative<'a>(&self, path: &'a str) -> &'a str {
        relative(&self.base, path)
    }

    /// Answers a request: the route its path names, for its method.
    pub(crate) async fn route<B>(&self, parts: &Parts, body: B) -> Answer
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let method = &parts.method;
        let reads = method == Method::GET || method == Method::HEAD;
        let route = Route::parse(self.relative(parts.uri.path()));
        if method == Method::OPTIONS {
            if let Some(allow) = route.allow() {
                return Ok(options(allow));
            }
        }
        match route {
            Route::Mount if method == Method::POST => self.submit(parts, body).await,
            Route::Task(id) if reads => self.status(parts, id).await,
            Route::Task(id) if method == Method::DELETE => self.cancel(parts, id, false).await,
            Route::Events(id) if reads => self.events(parts, id).await,
            Route::Result(id) if reads => self.result(parts, id).await,
            Route::Cancel(id) if method == Method::POST => self.cancel(parts, id, true).await,
            Route::Mount | Route::Task(_) | Route::Events(_) | Route::Result(_) | Route::Cancel(_) => {
                Err(Problem::method_not_allowed(method, route.allow().unwrap_or("GET")))
            }
            Route::Unknown => Err(Problem::new(
                StatusCode::NOT_FOUND,
                format!(
                    "nothing at `{}`; the routes are POST {base}/, GET {base}/{{id}}, GET {base}/{{id}}/events, \
                     GET {base}/{{id}}/result, DELETE {base}/{{id}} and POST {base}/{{id}}/cancel",
                    truncate(parts.uri.path(), 100),
                    base = self.base,
                ),
            )),
        }
    }

    /// `Cache-Control` of an answer about a task: `private` whenever tasks have owners, so that
    /// no shared cache keeps one person's task for another (`no-cache` too while it may change:
    /// `changing`); `no-cache` otherwise.
    fn cache_control(&self, changing: bool) -> HeaderValue {
        cache_control(self.owner.is_some(), changing)
    }

    fn owner(&self, parts: &Parts) -> Option<String> {
        self.owner.as_ref().and_then(|owner| owner(parts))
    }

    /// The task, if it exists, is of this job, and belongs to the requester.
    async fn load(&self, parts: &Parts, id: &str) -> Result<TaskRecord, Problem> {
        let task_id: TaskId = id.parse().map_err(|_| Problem::not_found(id))?;
        let task = self
            .client
            .status(task_id)
            .await
            .map_err(|e| Problem::from_error(&e))?;
        let visible =
            task.job == J::NAME && (self.owner.is_none() || task.owner == self.owner(parts));
        if visible {
            Ok(task)
        } else {
            Err(Problem::not_found(id))
        }
    }

    fn links(&self, id: TaskId) -> Links {
        Links::new(&self.base, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert!(matches!(Route::parse("/"), Route::Mount));
        assert!(matches!(Route::parse(""), Route::Mount));
        assert!(matches!(Route::parse("/abc"), Route::Task("abc")));
        assert!(matches!(Route::parse("/abc/"), Route::Task("abc")));
        assert!(matches!(Route::parse("/abc/events"), Route::Events("abc")));
        assert!(matches!(Route::parse("/abc/result"), Route::Result("abc")));
        assert!(matches!(Route::parse("/abc/cancel"), Route::Cancel("abc")));
        assert!(matches!(Route::parse("/abc/x"), Route::Unknown));
        assert!(matches!(Route::parse("/abc/events/x"), Route::Unknown));
    }
}

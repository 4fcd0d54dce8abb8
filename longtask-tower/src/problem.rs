//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Every error the endpoints answer with is a [`Problem`]: a status, its title, and a `detail`
//! saying what went wrong and what to do about it.

use http::{header, HeaderValue, Response, StatusCode};
use longtask_core::Error;
use serde::Serialize;

use crate::body::ResponseBody;

/// The `Retry-After` of every 503 (seconds), and how often the status page tries again while
/// the task store cannot be reached.
pub(crate) const RETRY_AFTER_SECS: u64 = 5;

/// One problem: status, detail and optional extra headers (`Allow` on 405).
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    detail: String,
    allow: Option<&'static str>,
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            allow: None,
        }
    }

    /// The status it answers with.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether it says the service cannot answer right now (503, sent with `Retry-After`).
    pub(crate) fn is_unavailable(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
    }

    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!(
                "no task `{}` here: check the link (tasks are kept for a while after they finish, then purged)",
                truncate(what, 80)
            ),
        )
    }

    pub(crate) fn group_not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!(
                "no group `{}` here: check the link (groups are kept for a while after they \
                 finish, then purged; a task that is not a group's has no group page)",
                truncate(what, 80)
            ),
        )
    }

    pub(crate) fn method_not_allowed(method: &http::Method, allow: &'static str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            detail: format!(
                "{} is not allowed here; use {}",
                truncate(method.as_str(), 20),
                allow.replace(", ", " or ")
            ),
            allow: Some(allow),
        }
    }

    pub(crate) fn not_acceptable(offered: &str) -> Self {
        Self::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("this resource is available as {offered}; send an Accept header that allows one of them"),
        )
    }

    /// The answer for an error from the backend or the client.
    pub(crate) fn from_error(err: &Error) -> Self {
        match err {
            Error::NotFound(id) => Self::not_found(&id.to_string()),
            Error::InvalidInput(msg) => Self::new(StatusCode::BAD_REQUEST, msg.clone()),
            Error::Codec {
                action,
                what,
                source,
            } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("could not {action} {what}: {source}"),
            ),
            // Whatever else failed (the store cannot be reached, timed out, refused the query),
            // the request may succeed later: 503 with Retry-After, never 500.
            other => {
                tracing::warn!(error = %other, "longtask backend failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the task store cannot be reached right now; tasks already submitted are \
                         safe; try again in {RETRY_AFTER_SECS} seconds"
                    ),
                )
            }
        }
    }

    pub(crate) fn into_response(self) -> Response<ResponseBody> {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = serde_json::to_vec(&ProblemJson {
            kind: "about:blank",
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
        })
        .unwrap_or_default();
        let mut response = Response::new(ResponseBody::full(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The detail may quote the request: never let a browser sniff it into HTML.
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// At most `max` characters of `s` (for echoing user input in a detail).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// `1 MiB`, `64 KiB`, `100 bytes`.
pub(crate) fn human_size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(64 << 10), "64 KiB");
        assert_eq!(human_size(100), "100 bytes");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}

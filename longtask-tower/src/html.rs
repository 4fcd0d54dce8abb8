//! The status page a waiting person sees.
//!
//! One self-contained HTML document: a `<progress>` bar (indeterminate while the total is
//! unknown), the job's message, the time left and the time spent, the result or the error, and a
//! cancel button. Without JavaScript it refreshes itself (a `<meta http-equiv="refresh">` inside
//! `<noscript>`) until the task is finished; with JavaScript it follows the task live over the
//! events route. While the task store cannot be reached, [`unavailable`] stands in for it: a
//! `503` page that says so and refreshes itself until the store is back. The inline style and script are allowed by their hashes in a strict
//! `Content-Security-Policy`, and every string that comes from a task is escaped with [`escape`].

use std::{fmt::Write as _, sync::LazyLock};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::{header, HeaderValue, Response, StatusCode};
use longtask_core::{TaskRecord, TaskStatus};
use sha2::{Digest, Sha256};

use crate::{
    body::ResponseBody,
    problem::{truncate, RETRY_AFTER_SECS},
    status::{ceil_secs, next_attempt_in, Links},
};

pub(crate) const CSS: &str = include_str!("assets/status.css");
const JS: &str = include_str!("assets/status.js");

pub(crate) fn csp_hash(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The Content-Security-Policy of the status page: nothing but its own inline style and script
/// (by hash), connections to its own origin (the events route) and forms posting back to it.
pub(crate) static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; style-src {}; script-src {}; connect-src 'self'; img-src 'self' data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        csp_hash(CSS),
        csp_hash(JS)
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
});

/// Escapes `text` for use in HTML text and in quoted attribute values.
///
/// Use it in a [result renderer](crate::JobService::with_result_html) for every string that
/// comes from a task.
///
/// ```
/// assert_eq!(
///     longtask_tower::escape("<script>alert('x') & \"y\"</script>"),
///     "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
/// );
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `12 s`, `3 min 4 s`, `2 h 5 min`.
pub(crate) fn human_duration(secs: u64) -> String {
    if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min {} s", secs / 60, secs % 60)
    } else {
        format!("{} h {} min", secs / 3600, (secs % 3600) / 60)
    }
}

/// Everything the page shows.
pub(crate) struct Page<'a> {
    pub(crate) title: &'a str,
    pub(crate) task: &'a TaskRecord,
    pub(crate) links: &'a Links,
    pub(crate) now: DateTime<Utc>,
    /// The result, as trusted HTML, once succeeded.
    pub(crate) result_html: Option<String>,
}

pub(crate) fn state_label(task: &TaskRecord) -> &'static str {
    match task.status {
        TaskStatus::Queued => "Waiting for a worker",
        TaskStatus::Scheduled => "Scheduled",
        TaskStatus::Running if task.cancel_requested => "Cancelling",
        TaskStatus::Running => "Running",
        TaskStatus::Retrying => "Retrying",
        TaskStatus::Succeeded => "Done",
        TaskStatus::Failed => "Failed",
        TaskStatus::Cancelled => "Cancelled",
    }
}

impl Page<'_> {
    /// The whole document.
    pub(crate) fn render(&self) -> String {
        let task = self.task;
        let title = escape(self.title);
        let is_final = task.status.is_final();
        let mut html = String::with_capacity(4096 + CSS.len() + JS.len());
        let label = state_label(task);
        let _ = write!(
            html,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · {label}</title>"
        );
        if !is_final {
            let every = crate::status::retry_after(task, self.now)
                .unwrap_or(2)
                .clamp(1, 5);
            let _ = write!(
                html,
                "<noscript><meta http-equiv=\"refresh\" content=\"{every}\"></noscript>"
            );
        }
        let _ = write!(html, "<style>{CSS}</style></head><body>");

        let eta = task.eta(self.now).map(ceil_secs);
        let _ = write!(
            html,
            "<main id=\"task\" data-events=\"{events}\" data-status=\"{status}\" data-final=\"{is_final}\" \
             data-cancelling=\"{cancelling}\" data-created=\"{created}\" data-eta=\"{eta}\">\
             <h1>{title}</h1><p class=\"state {status}\" id=\"state\">{label}</p>",
            events = escape(&self.links.events),
            status = task.status.as_str(),
            cancelling = task.cancel_requested,
            created = task.created_at.timestamp_millis(),
            eta = eta.map(|e| e.to_string()).unwrap_or_default(),
        );

        self.progress(&mut html, eta);
        self.outcome(&mut html);

        if !is_final {
            html.push_str(
                "<p class=\"hint\">You may bookmark this page and leave: the task goes on without it, \
                 and this address shows its progress and result when you come back.</p>",
            );
            if !task.cancel_requested {
                let _ = write!(
                    html,
                    "<form method=\"post\" action=\"{}\"><button type=\"submit\">Cancel</button></form>",
                    escape(&self.links.cancel)
                );
            }
        }
        let _ = writeln!(
            html,
            "<p class=\"links\">Task <code>{id}</code> · <a href=\"{json}?format=json\">as JSON</a></p>\
             </main><script>{JS}</script></body></html>",
            id = task.id,
            json = escape(&self.links.this),
        );
        html
    }

    fn progress(&self, html: &mut String, eta: Option<u64>) {
        let task = self.task;
        let percent = task
            .progress
            .as_ref()
            .and_then(longtask_core::Progress::percent);
        let percent = match task.status {
            TaskStatus::Succeeded => Some(100.0),
            TaskStatus::Failed | TaskStatus::Cancelled => Some(percent.unwrap_or(0.0)),
            _ => percent,
        };
        match percent {
            Some(p) => {
                let _ = write!(
                    html,
                    "<progress id=\"bar\" max=\"100\" value=\"{p:.1}\">{p:.0}%</progress>"
                );
            }
            None => html.push_str("<progress id=\"bar\" max=\"100\">working…</progress>"),
        }
        let message = task
            .progress
            .as_ref()
            .and_then(|p| p.message.as_deref())
            .unwrap_or("");
        let _ = write!(
            html,
            "<p class=\"message\" id=\"message\">{}</p>",
            escape(message)
        );
        let percent_text = match (percent, task.progress.as_ref()) {
            (Some(p), _) => format!("{}%", p.floor()),
            (None, Some(p)) => format!("step {}", p.step),
            (None, None) => String::new(),
        };
        let eta_text = eta.map_or(String::new(), |s| {
            format!("about {} left", human_duration(s.max(1)))
        });
        let end = task.finished_at.unwrap_or(self.now);
        let spent = human_duration((end - task.created_at).num_seconds().max(0).unsigned_abs());
        let elapsed = if task.status.is_final() {
            format!("took {spent}")
        } else {
            format!("{spent} elapsed")
        };
        let _ = write!(
            html,
            "<p class=\"meta\"><span id=\"percent\">{percent_text}</span><span id=\"eta\">{eta_text}</span>\
             <span id=\"elapsed\">{elapsed}</span></p>"
        );
    }

    /// Where the task's last checkpoint had got to, and whether the running attempt carried on
    /// from it (or the next one will).
    fn checkpoint(&self, html: &mut String) {
        let task = self.task;
        let Some(checkpoint) = &task.checkpoint else {
            return;
        };
        let place = match &checkpoint.progress {
            Some(p) => match (&p.message, p.percent()) {
                (Some(message), _) => format!("“{}”", escape(message)),
                (None, Some(percent)) => format!("{}%", percent.floor()),
                (None, None) => format!("step {}", p.step),
            },
            None => "its last checkpoint".to_owned(),
        };
        match task.status {
            TaskStatus::Running if task.resumed_from().is_some() => {
                let _ = write!(
                    html,
                    "<p class=\"resumed\" id=\"resumed\">Resumed after an interruption, from {place}.</p>"
                );
            }
            TaskStatus::Queued | TaskStatus::Retrying => {
                let _ = write!(
                    html,
                    "<p class=\"resumed\" id=\"resumed\">The next attempt carries on from {place}.</p>"
                );
            }
            _ => {}
        }
    }

    fn outcome(&self, html: &mut String) {
        let task = self.task;
        self.checkpoint(html);
        match task.status {
            TaskStatus::Retrying => {
                if let Some(err) = &task.last_error {
                    let wait = next_attempt_in(task, self.now).unwrap_or(0);
                    let _ = write!(
                        html,
                        "<div class=\"error retry\"><p>Attempt {} of {} failed: {}</p>\
                         <p id=\"retry\" data-at=\"{at}\" data-prefix=\"{prefix}\">{prefix}{wait}.</p></div>",
                        err.attempt,
                        task.max_attempts,
                        escape(&err.message),
                        at = task.run_at.timestamp_millis(),
                        prefix = format_args!("Retry {} of {} in ", task.attempt.saturating_add(1), task.max_attempts),
                        wait = human_duration(wait),
                    );
                }
            }
            TaskStatus::Running | TaskStatus::Queued | TaskStatus::Scheduled => {
                if let Some(err) = &task.last_error {
                    let _ = write!(
                        html,
                        "<div class=\"error retry\"><p>Attempt {} of {} failed: {}</p>\
                         <p>Now on attempt {} of {}.</p></div>",
                        err.attempt,
                        task.max_attempts,
                        escape(&err.message),
                        task.attempt.max(err.attempt.saturating_add(1)),
                        task.max_attempts,
                    );
                }
            }
            TaskStatus::Failed => {
                let message = task
                    .last_error
                    .as_ref()
                    .map_or("no error was recorded", |e| e.message.as_str());
                let _ = write!(
                    html,
                    "<div class=\"error\"><p>The task failed after {} of {} attempts: {}</p></div>",
                    task.attempt,
                    task.max_attempts,
                    escape(message)
                );
            }
            TaskStatus::Cancelled => {
                html.push_str("<div class=\"error retry\"><p>The task was cancelled.</p></div>");
            }
            TaskStatus::Succeeded => {
                html.push_str("<section class=\"result\" id=\"result\">");
                match &self.result_html {
                    Some(result) => html.push_str(result),
                    None => {
                        let _ = write!(
                            html,
                            "<a href=\"{}\">The result</a>",
                            escape(&self.links.result)
                        );
                    }
                }
                html.push_str("</section>");
            }
        }
    }
}

/// The status page while the task store cannot be reached (`503`, with `Retry-After`): it says
/// so, says that the task is safe, and refreshes itself (without JavaScript) until the store
/// answers again and the usual page comes back. `id` is the task id of the request (escaped).
pub(crate) fn unavailable(title: &str, id: &str) -> Response<ResponseBody> {
    let every = RETRY_AFTER_SECS;
    let title = escape(title);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Temporarily unavailable</title>\
         <meta http-equiv=\"refresh\" content=\"{every}\"><style>{CSS}</style></head><body>\
         <main id=\"task\" data-final=\"false\"><h1>{title}</h1>\
         <p class=\"state retrying\" id=\"state\">Temporarily unavailable</p>\
         <div class=\"error retry\"><p>The task store cannot be reached right now.</p>\
         <p>Your task is safe: nothing submitted is lost, and work goes on once the store is back. \
         This page tries again every {every} seconds.</p></div>\
         <p class=\"links\">Task <code>{id}</code></p></main></body></html>\n",
        id = escape(&truncate(id, 80)),
    );
    let mut response = Response::new(ResponseBody::full(html));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from(every));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
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

/// The default result view: the output JSON, pretty-printed and escaped.
pub(crate) fn json_result(output: &str, result_link: &str) -> String {
    let pretty = serde_json::from_str::<serde_json::Value>(output)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| output.to_owned());
    format!(
        "<pre>{}</pre><p class=\"links\"><a href=\"{}\">Download the result</a></p>",
        escape(&pretty),
        escape(result_link)
    )
}

/// The default view of a result served as a file: a download link.
pub(crate) fn download_result(name: &str, result_link: &str) -> String {
    format!(
        "<a class=\"download\" href=\"{}\" download>Download {}</a>",
        escape(result_link),
        escape(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(5), "5 s");
        assert_eq!(human_duration(65), "1 min 5 s");
        assert_eq!(human_duration(7300), "2 h 1 min");
    }

    #[tokio::test]
    async fn the_unavailable_page_refreshes_itself_and_escapes_the_title() {
        use http_body_util::BodyExt as _;

        let response = unavailable("<Reports>", "0193abc");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let page = String::from_utf8_lossy(&body).into_owned();
        assert!(
            page.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
            "{page}"
        );
        assert!(
            page.contains("&lt;Reports&gt;") && !page.contains("<Reports>"),
            "{page}"
        );
        assert!(!page.contains("<script"), "{page}");
    }

    #[test]
    fn csp_names_both_hashes() {
        let csp = CSP.to_str().unwrap();
        assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
        assert!(!csp.contains("unsafe-inline"));
    }
}

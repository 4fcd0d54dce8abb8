//! The group page a waiting person sees: one progress bar for the whole group, a summary
//! ("7 of 12 done, 1 running, 1 failed"), the time left, the list of its tasks with their
//! states (and links to their own pages), the completion job's result once done, and a cancel
//! button. Like the task page: self-contained, a strict Content-Security-Policy allowing its
//! inline style and script by hash, every string from a task escaped, a `<noscript>` refresh
//! without JavaScript and live updates over the events route with it.

use std::{fmt::Write as _, sync::LazyLock};

use chrono::{DateTime, Utc};
use http::HeaderValue;
use longtask_core::{GroupStatus, Progress, TaskStatus};

use super::{view::retry_after, GroupConfig, GroupView};
use crate::{
    html::{csp_hash, escape, human_duration, json_result, state_label},
    status::Links,
};

/// The task page's style, and the group page's additions.
const CSS: &str = concat!(
    include_str!("../assets/status.css"),
    include_str!("../assets/group.css")
);
const JS: &str = include_str!("../assets/group.js");

/// The most members the page lists (the JSON has them all).
pub(crate) const MAX_LISTED: usize = 500;

/// The group page's Content-Security-Policy: as the task page's, with its own style and script.
pub(crate) static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; style-src {}; script-src {}; connect-src 'self'; img-src 'self' data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        csp_hash(CSS),
        csp_hash(JS)
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
});

/// Everything the page shows.
pub(crate) struct GroupPage<'a> {
    pub(crate) config: &'a GroupConfig,
    pub(crate) group: &'a GroupStatus,
    pub(crate) view: &'a GroupView<'a>,
    pub(crate) links: &'a Links,
    pub(crate) now: DateTime<Utc>,
}

fn percent_text(progress: Option<&Progress>) -> String {
    match progress {
        Some(p) => match p.percent() {
            Some(percent) => format!("{}%", percent.floor()),
            None => format!("step {}", p.step),
        },
        None => String::new(),
    }
}

impl GroupPage<'_> {
    /// The whole document.
    pub(crate) fn render(&self) -> String {
        let view = self.view;
        let title = escape(&self.config.title);
        let label = view.state.label();
        let mut html = String::with_capacity(8192 + CSS.len() + JS.len());
        let _ = write!(
            html,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · {label}</title>"
        );
        if let Some(every) = retry_after(view) {
            let _ = write!(
                html,
                "<noscript><meta http-equiv=\"refresh\" content=\"{}\"></noscript>",
                every.clamp(1, 5)
            );
        }
        let _ = write!(html, "<style>{CSS}</style></head><body>");
        let _ = write!(
            html,
            "<main id=\"group\" data-events=\"{events}\" data-state=\"{state}\" data-final=\"{is_final}\" \
             data-members=\"{members}\" data-created=\"{created}\" data-eta=\"{eta}\">\
             <h1>{title}</h1><p class=\"state {state}\" id=\"state\">{label}</p>",
            events = escape(&self.links.events),
            state = view.state.as_str(),
            is_final = view.is_final,
            members = self.group.members.len(),
            created = self.group.root.created_at.timestamp_millis(),
            eta = view.eta_seconds.map(|e| e.to_string()).unwrap_or_default(),
        );
        self.progress(&mut html);
        self.completion(&mut html);
        self.members(&mut html);
        if !view.is_final {
            html.push_str(
                "<p class=\"hint\">You may bookmark this page and leave: the tasks go on without \
                 it, and this address shows their progress and result when you come back.</p>",
            );
            if self.group.root.status != TaskStatus::Cancelled {
                let _ = write!(
                    html,
                    "<form method=\"post\" action=\"{}\"><button type=\"submit\">Cancel all</button></form>",
                    escape(&self.links.cancel)
                );
            }
        }
        let _ = writeln!(
            html,
            "<p class=\"links\">Group <code>{id}</code> · <a href=\"{json}?format=json\">as JSON</a></p>\
             </main><script>{JS}</script></body></html>",
            id = self.group.root.id,
            json = escape(&self.links.this),
        );
        html
    }

    fn progress(&self, html: &mut String) {
        let view = self.view;
        let p = view.percent;
        let _ = write!(
            html,
            "<progress id=\"bar\" max=\"100\" value=\"{p:.1}\" aria-labelledby=\"summary\">{p:.0}%</progress>\
             <p class=\"message\" id=\"summary\" role=\"status\">{}</p>",
            escape(&view.summary)
        );
        let eta_text = view.eta_seconds.map_or(String::new(), |s| {
            format!("about {} left", human_duration(s.max(1)))
        });
        let root = &self.group.root;
        let end = if view.is_final {
            self.group
                .members
                .iter()
                .filter_map(|m| m.finished_at)
                .chain(root.finished_at)
                .max()
                .unwrap_or(self.now)
        } else {
            self.now
        };
        let spent = human_duration((end - root.created_at).num_seconds().max(0).unsigned_abs());
        let elapsed = if view.is_final {
            format!("took {spent}")
        } else {
            format!("{spent} elapsed")
        };
        let _ = write!(
            html,
            "<p class=\"meta\"><span id=\"percent\">{}%</span><span id=\"eta\">{eta_text}</span>\
             <span id=\"elapsed\">{elapsed}</span></p>",
            p.floor()
        );
    }

    /// The completion job: what happens once every task ends, then its result or its error.
    fn completion(&self, html: &mut String) {
        let root = &self.group.root;
        if !self.group.has_completion() {
            return;
        }
        let job = escape(&root.job);
        match root.status {
            TaskStatus::Succeeded => {
                let output = root.output.as_deref().unwrap_or("null");
                let result = self
                    .config
                    .result_html
                    .as_ref()
                    .and_then(|render| render(root))
                    .unwrap_or_else(|| json_result(output, &self.links.result));
                let _ = write!(
                    html,
                    "<section class=\"result\" id=\"result\"><h2>Result</h2>{result}</section>"
                );
            }
            TaskStatus::Failed => {
                let message = root
                    .last_error
                    .as_ref()
                    .map_or("no error was recorded", |e| e.message.as_str());
                let _ = write!(
                    html,
                    "<div class=\"error\" id=\"completion\"><p>The final step ({job}) failed after {} of {} \
                     attempts: {}</p></div>",
                    root.attempt,
                    root.max_attempts,
                    escape(message)
                );
            }
            TaskStatus::Cancelled => {}
            _ => {
                let _ = if self.view.state == super::GroupState::Completing {
                    write!(
                        html,
                        "<p class=\"then\" id=\"completion\">Every task has finished; the final step, \
                         <strong>{job}</strong>, is {}.</p>",
                        state_label(root).to_lowercase()
                    )
                } else {
                    write!(
                        html,
                        "<p class=\"then\" id=\"completion\">When every task has finished, the final \
                         step runs: <strong>{job}</strong>.</p>"
                    )
                };
            }
        }
    }

    fn members(&self, html: &mut String) {
        let members = &self.group.members;
        let _ = write!(
            html,
            "<h2 id=\"tasks\">Tasks ({})</h2><ol class=\"members\" id=\"members\" aria-labelledby=\"tasks\">",
            members.len()
        );
        for (view, task) in self.view.members.iter().zip(members).take(MAX_LISTED) {
            let name = escape(&view.label);
            let name = match &view.link {
                Some(link) => format!("<a href=\"{}\">{name}</a>", escape(link)),
                None => name,
            };
            let message = task
                .progress
                .as_ref()
                .and_then(|p| p.message.as_deref())
                .unwrap_or("");
            let error = match (&task.last_error, task.status) {
                (Some(e), status) if status != TaskStatus::Succeeded => e.message.as_str(),
                _ => "",
            };
            let _ = write!(
                html,
                "<li id=\"m-{id}\"><span class=\"name\">{name}</span> \
                 <span class=\"state {status}\">{label}</span> <span class=\"pct\">{pct}</span> \
                 <span class=\"msg\">{message}</span><span class=\"err\">{error}</span></li>",
                id = task.id,
                status = task.status.as_str(),
                label = state_label(task),
                pct = percent_text(task.progress.as_ref()),
                message = escape(message),
                error = escape(error),
            );
        }
        html.push_str("</ol>");
        if members.len() > MAX_LISTED {
            let _ = write!(
                html,
                "<p class=\"hint\">and {} more: see them all <a href=\"{}?format=json\">as JSON</a>.</p>",
                members.len() - MAX_LISTED,
                escape(&self.links.this)
            );
        }
    }
}

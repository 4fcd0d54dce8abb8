//! The dashboard's pages: the overview, the task list, a task's details, and the refusal.
//!
//! Each is one self-contained document, as the status page: its style and script inline,
//! allowed by their hashes in a strict Content-Security-Policy; every string from a task, a
//! worker or the request escaped with [`escape`]; every action a `POST` form carrying the CSRF
//! token. The overview reloads itself without JavaScript (`<noscript>` refresh) and follows
//! `GET /events` with it; the throughput sparklines are SVG drawn here, so they show without it.

use std::{fmt::Write as _, sync::LazyLock};

use chrono::{DateTime, SecondsFormat, Utc};
use http::HeaderValue;
use longtask_core::{AttemptOutcome, JobStats, Stats, TaskRecord, TaskStatus, WorkerInfo};

use super::{
    query::{ListQuery, Notice},
    DashboardConfig,
};
use crate::html::{csp_hash, escape, human_duration};

const CSS: &str = include_str!("../assets/dashboard.css");
const JS: &str = include_str!("../assets/dashboard.js");

/// How often the overview reloads itself without JavaScript, in seconds.
pub(crate) const REFRESH_SECS: u64 = 5;

/// The Content-Security-Policy of every dashboard page: its own inline style and script (by
/// hash), connections to its own origin (the events route), forms posting back to it, no
/// frames, no base.
pub(crate) static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; style-src {}; script-src {}; connect-src 'self'; img-src 'self' data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        csp_hash(CSS),
        csp_hash(JS)
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
});

/// The statuses in the order the pages show them.
const STATUSES: [TaskStatus; 7] = TaskStatus::ALL;

fn label(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Queued => "Queued",
        TaskStatus::Scheduled => "Scheduled",
        TaskStatus::Running => "Running",
        TaskStatus::Retrying => "Retrying",
        TaskStatus::Succeeded => "Succeeded",
        TaskStatus::Failed => "Failed",
        TaskStatus::Cancelled => "Cancelled",
    }
}

/// `2026-10-12 08:30:00 UTC`, in a `<time>` element, with how long ago.
fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let ago = (now - at).num_seconds();
    let relative = if ago >= 0 {
        format!("{} ago", human_duration(ago.unsigned_abs()))
    } else {
        format!("in {}", human_duration(ago.unsigned_abs()))
    };
    format!(
        "<time datetime=\"{}\">{}</time> <span class=\"ago\">({relative})</span>",
        at.to_rfc3339_opts(SecondsFormat::Secs, true),
        at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

fn optional_time(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    at.map_or_else(|| "—".to_owned(), |at| time(at, now))
}

/// A URL query value.
fn q(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The document around a page's `main`.
fn document(
    config: &DashboardConfig,
    heading: &str,
    refresh: bool,
    main_attrs: &str,
    body: &str,
) -> String {
    let title = escape(&config.title);
    let base = escape(&config.base);
    let mut html = String::with_capacity(body.len() + CSS.len() + JS.len() + 1024);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{heading} · {title}</title>"
    );
    if refresh {
        let _ = write!(
            html,
            "<noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"></noscript>"
        );
    }
    let _ = write!(
        html,
        "<style>{CSS}</style></head><body><header class=\"top\"><a class=\"brand\" href=\"{base}/\">{title}</a>\
         <nav><a href=\"{base}/\">Overview</a><a href=\"{base}/tasks\">Tasks</a></nav></header>\
         <main {main_attrs}>{body}</main><script>{JS}</script></body></html>"
    );
    html.push('\n');
    html
}

fn notice(html: &mut String, notice: Option<Notice>) {
    if let Some(notice) = notice {
        let class = if notice.is_success() { "ok" } else { "warn" };
        let _ = write!(
            html,
            "<p class=\"notice {class}\" id=\"notice\" role=\"status\">{}</p>",
            escape(&notice.message())
        );
    }
}

/// A `POST` form of one button, carrying the CSRF token (and extra hidden fields).
fn action(action: &str, token: &str, fields: &[(&str, &str)], button: &str, class: &str) -> String {
    let mut html = format!(
        "<form method=\"post\" action=\"{}\" class=\"action\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(action),
        escape(token)
    );
    for (name, value) in fields {
        let _ = write!(
            html,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    let _ = write!(
        html,
        "<button type=\"submit\" class=\"{class}\">{}</button></form>",
        escape(button)
    );
    html
}

/// The SVG sparkline of a job's last hour: a bar per minute, its failed and cancelled part
/// in red, scaled to the busiest minute.
pub(crate) fn sparkline(job: &JobStats) -> String {
    let max = job
        .finished
        .iter()
        .map(longtask_core::FinishedMinute::total)
        .max()
        .unwrap_or(0);
    let total: u64 = job
        .finished
        .iter()
        .map(longtask_core::FinishedMinute::total)
        .sum();
    let mut svg = format!(
        "<svg class=\"spark\" viewBox=\"0 0 120 24\" width=\"120\" height=\"24\" role=\"img\" \
         aria-label=\"{total} finished in the last hour\"><title>{total} finished in the last hour \
         (busiest minute: {max})</title><line class=\"base\" x1=\"0\" y1=\"23.5\" x2=\"120\" y2=\"23.5\"></line>"
    );
    if max > 0 {
        #[allow(clippy::cast_precision_loss)]
        let scale = |n: u64| (n as f64 / max as f64 * 22.0).max(if n > 0 { 1.0 } else { 0.0 });
        for (i, minute) in job.finished.iter().enumerate() {
            let all = minute.total();
            if all == 0 {
                continue;
            }
            let x = i * 2;
            let h = scale(all);
            let _ = write!(
                svg,
                "<rect class=\"ok\" x=\"{x}\" y=\"{y:.1}\" width=\"1.6\" height=\"{h:.1}\"></rect>",
                y = 23.0 - h
            );
            let bad = minute.failed.saturating_add(minute.cancelled);
            if bad > 0 {
                let hb = scale(bad);
                let _ = write!(
                    svg,
                    "<rect class=\"bad\" x=\"{x}\" y=\"{y:.1}\" width=\"1.6\" height=\"{hb:.1}\"></rect>",
                    y = 23.0 - hb
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

fn wait_text(wait: Option<std::time::Duration>) -> String {
    wait.map_or_else(|| "—".to_owned(), |w| human_duration(w.as_secs()))
}

/// The overview.
pub(crate) struct Overview<'a> {
    pub(crate) config: &'a DashboardConfig,
    pub(crate) stats: &'a Stats,
    pub(crate) workers: &'a [WorkerInfo],
    pub(crate) notice: Option<Notice>,
    pub(crate) token: &'a str,
}

impl Overview<'_> {
    pub(crate) fn render(&self) -> String {
        let base = &self.config.base;
        let stats = self.stats;
        let now = stats.at;
        let totals = stats.totals();
        let mut html = String::with_capacity(8192);
        let _ = write!(html, "<h1>Overview</h1>");
        notice(&mut html, self.notice);
        html.push_str("<section class=\"totals\" id=\"totals\" aria-label=\"All jobs\">");
        for status in STATUSES {
            let _ = write!(
                html,
                "<a class=\"total {s}\" href=\"{}\"><span class=\"n\" data-total=\"{s}\">{n}</span>\
                 <span class=\"what\">{label}</span></a>",
                escape(&format!("{base}/tasks?status={}", status.as_str())),
                s = status.as_str(),
                n = totals.get(status),
                label = label(status),
            );
        }
        let _ = write!(
            html,
            "<p class=\"total wait\"><span class=\"n\" id=\"oldest-wait\">{}</span>\
             <span class=\"what\">Oldest wait</span></p></section>",
            wait_text(stats.oldest_wait())
        );

        let _ = write!(html, "<h2>Jobs</h2>");
        if stats.jobs.is_empty() {
            html.push_str("<p class=\"empty\" id=\"no-jobs\">No tasks yet.</p>");
        } else {
            html.push_str(
                "<div class=\"scroll\"><table class=\"jobs\" id=\"jobs\"><thead><tr><th scope=\"col\">Job</th>",
            );
            for status in STATUSES {
                let _ = write!(
                    html,
                    "<th scope=\"col\" class=\"num\">{}</th>",
                    label(status)
                );
            }
            html.push_str(
                "<th scope=\"col\">Oldest wait</th><th scope=\"col\">Finished, last hour</th>\
                 <th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>",
            );
            for job in &stats.jobs {
                self.job_row(&mut html, job, now);
            }
            html.push_str("</tbody></table></div>");
        }

        let _ = write!(
            html,
            "<h2>Workers <span class=\"count\" id=\"worker-count\">{}</span></h2>",
            self.workers.len()
        );
        if self.workers.is_empty() {
            html.push_str(
                "<p class=\"empty\" id=\"no-workers\">No live workers: no process runs a \
                 <code>Worker</code> on this backend right now.</p>",
            );
        } else {
            html.push_str(
                "<div class=\"scroll\"><table class=\"workers\" id=\"workers\"><thead><tr>\
                 <th scope=\"col\">Worker</th><th scope=\"col\">Host · pid</th><th scope=\"col\">Jobs</th>\
                 <th scope=\"col\">Busy</th><th scope=\"col\">Started</th><th scope=\"col\">Last seen</th>\
                 </tr></thead><tbody>",
            );
            for worker in self.workers {
                let _ = write!(
                    html,
                    "<tr data-worker=\"{id}\"><td><code>{id}</code></td><td>{host} · {pid}</td><td>{jobs}</td>\
                     <td><meter min=\"0\" max=\"{c}\" value=\"{b}\"></meter> <span class=\"busy\">{b} of {c}</span></td>\
                     <td>{started}</td><td class=\"seen\" data-at=\"{seen_ms}\">{seen}</td></tr>",
                    id = escape(&worker.id),
                    host = escape(&worker.host),
                    pid = worker.pid,
                    jobs = escape(&worker.jobs.join(", ")),
                    c = worker.concurrency,
                    b = worker.busy,
                    started = time(worker.started_at, now),
                    seen_ms = worker.last_seen.timestamp_millis(),
                    seen = time(worker.last_seen, now),
                );
            }
            html.push_str("</tbody></table></div>");
        }

        html.push_str("<h2>Maintenance</h2><div class=\"maintenance\">");
        html.push_str(&action(
            &format!("{base}/purge"),
            self.token,
            &[],
            "Purge finished tasks past their retention now",
            "danger",
        ));
        let _ = write!(
            html,
            "<p class=\"hint\">The workers' sweeper does this by itself; this does it now.</p></div>\
             <p class=\"links\"><a href=\"{}/?format=json\">as JSON</a> · \
             <span id=\"live\">Reloads every {REFRESH_SECS} s</span></p>",
            escape(base)
        );
        let attrs = format!(
            "id=\"overview\" data-events=\"{}\" data-refresh=\"{REFRESH_SECS}\"",
            escape(&format!("{base}/events"))
        );
        document(self.config, "Overview", true, &attrs, &html)
    }

    fn job_row(&self, html: &mut String, job: &JobStats, now: DateTime<Utc>) {
        let base = &self.config.base;
        let name = escape(&job.job);
        let job_link = escape(&format!("{base}/tasks?job={}", q(&job.job)));
        let _ = write!(
            html,
            "<tr data-job=\"{name}\"><th scope=\"row\"><a href=\"{job_link}\">{name}</a></th>"
        );
        for status in STATUSES {
            let n = job.counts.get(status);
            let link = escape(&format!(
                "{base}/tasks?job={}&status={}",
                q(&job.job),
                status.as_str()
            ));
            let _ = write!(
                html,
                "<td class=\"num {s}{some}\" data-status=\"{s}\"><a href=\"{link}\">{n}</a></td>",
                s = status.as_str(),
                some = if n > 0 { " some" } else { "" },
            );
        }
        let due = job
            .oldest_due
            .map_or(String::new(), |d| d.timestamp_millis().to_string());
        let _ = write!(
            html,
            "<td class=\"wait\" data-due=\"{due}\">{}</td><td class=\"spark-cell\">{}</td><td>",
            wait_text(job.oldest_wait(now)),
            sparkline(job)
        );
        if job.counts.failed > 0 {
            html.push_str(&action(
                &format!("{base}/retry-failed"),
                self.token,
                &[("job", &job.job)],
                "Retry failed",
                "retry-failed",
            ));
        }
        html.push_str("</td></tr>");
    }
}

/// The task list.
pub(crate) struct TaskList<'a> {
    pub(crate) config: &'a DashboardConfig,
    pub(crate) query: &'a ListQuery,
    pub(crate) tasks: &'a [TaskRecord],
    /// The link to the next page, if there is one.
    pub(crate) next: Option<String>,
    /// The jobs to suggest in the filter.
    pub(crate) jobs: &'a [String],
    pub(crate) now: DateTime<Utc>,
}

impl TaskList<'_> {
    pub(crate) fn render(&self) -> String {
        let base = &self.config.base;
        let query = self.query;
        let mut html = String::with_capacity(8192);
        html.push_str("<h1>Tasks</h1>");
        notice(&mut html, query.page.notice);
        let _ = write!(
            html,
            "<form method=\"get\" action=\"{}\" class=\"filters\" id=\"filters\">\
             <label>Job <input name=\"job\" list=\"job-names\" value=\"{}\"></label><datalist id=\"job-names\">",
            escape(&format!("{base}/tasks")),
            escape(query.job.as_deref().unwrap_or(""))
        );
        for job in self.jobs {
            let _ = write!(html, "<option value=\"{}\"></option>", escape(job));
        }
        html.push_str(
            "</datalist><label>Status <select name=\"status\"><option value=\"\">any</option>",
        );
        let selected_all: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        if query.statuses.len() > 1 {
            let joined = selected_all.join(",");
            let _ = write!(
                html,
                "<option value=\"{}\" selected>{}</option>",
                escape(&joined),
                escape(&selected_all.join(" or "))
            );
        }
        for status in STATUSES {
            let selected = if query.statuses == [status] {
                " selected"
            } else {
                ""
            };
            let _ = write!(
                html,
                "<option value=\"{s}\"{selected}>{}</option>",
                label(status),
                s = status.as_str()
            );
        }
        let _ = write!(
            html,
            "</select></label><label>Owner <input name=\"owner\" value=\"{}\"></label>\
             <button type=\"submit\">Filter</button> <a href=\"{}\">Clear</a></form>",
            escape(query.owner.as_deref().unwrap_or("")),
            escape(&format!("{base}/tasks"))
        );
        if self.tasks.is_empty() {
            html.push_str("<p class=\"empty\" id=\"no-tasks\">No tasks match.</p>");
        } else {
            html.push_str(
                "<div class=\"scroll\"><table class=\"tasks\" id=\"tasks\"><thead><tr><th scope=\"col\">Task</th>\
                 <th scope=\"col\">Job</th><th scope=\"col\">Status</th><th scope=\"col\" class=\"num\">Attempt</th>\
                 <th scope=\"col\">Submitted</th><th scope=\"col\">Finished</th><th scope=\"col\">Last error</th>\
                 </tr></thead><tbody>",
            );
            for task in self.tasks {
                let error = task
                    .last_error
                    .as_ref()
                    .map(|e| crate::problem::truncate(&e.message, 120))
                    .unwrap_or_default();
                let _ = write!(
                    html,
                    "<tr data-task=\"{id}\"><td><a href=\"{link}\"><code>{id}</code></a></td><td>{job}</td>\
                     <td><span class=\"state {s}\">{state}</span></td><td class=\"num\">{a} of {m}</td>\
                     <td>{created}</td><td>{finished}</td><td class=\"err\">{error}</td></tr>",
                    id = task.id,
                    link = escape(&format!("{base}/tasks/{}", task.id)),
                    job = escape(&task.job),
                    s = task.status.as_str(),
                    state = label(task.status),
                    a = task.attempt,
                    m = task.max_attempts,
                    created = time(task.created_at, self.now),
                    finished = optional_time(task.finished_at, self.now),
                    error = escape(&error),
                );
            }
            html.push_str("</tbody></table></div>");
        }
        html.push_str("<nav class=\"pager\">");
        if query.after.is_some() {
            let _ = write!(
                html,
                "<a href=\"{}\" id=\"first\">First page</a>",
                escape(&query.link(base, None, self.config.page_size))
            );
        }
        if let Some(next) = &self.next {
            let _ = write!(
                html,
                "<a href=\"{}\" rel=\"next\" id=\"next\">Next page</a>",
                escape(next)
            );
        }
        let _ = write!(
            html,
            "</nav><p class=\"links\"><a href=\"{}\">as JSON</a></p>",
            escape(&format!(
                "{}{}format=json",
                query.link(base, query.after, self.config.page_size),
                if query
                    .link(base, query.after, self.config.page_size)
                    .contains('?')
                {
                    "&"
                } else {
                    "?"
                }
            ))
        );
        document(self.config, "Tasks", false, "id=\"list\"", &html)
    }
}

/// One task's details.
pub(crate) struct TaskDetail<'a> {
    pub(crate) config: &'a DashboardConfig,
    pub(crate) task: &'a TaskRecord,
    pub(crate) notice: Option<Notice>,
    pub(crate) token: &'a str,
    pub(crate) now: DateTime<Utc>,
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json.to_owned())
}

impl TaskDetail<'_> {
    pub(crate) fn render(&self) -> String {
        let task = self.task;
        let now = self.now;
        let base = &self.config.base;
        let this = format!("{base}/tasks/{}", task.id);
        let mut html = String::with_capacity(8192);
        let state = if task.status == TaskStatus::Running && task.cancel_requested {
            "Cancelling"
        } else {
            label(task.status)
        };
        let _ = write!(
            html,
            "<h1>Task <code>{id}</code></h1><p class=\"state {s}\" id=\"state\">{state}</p>",
            id = task.id,
            s = task.status.as_str(),
        );
        notice(&mut html, self.notice);

        html.push_str("<div class=\"actions\" id=\"actions\">");
        if matches!(task.status, TaskStatus::Failed | TaskStatus::Cancelled) {
            html.push_str(&action(
                &format!("{this}/retry"),
                self.token,
                &[],
                "Retry",
                "retry",
            ));
        }
        if !task.status.is_final() && !task.cancel_requested {
            html.push_str(&action(
                &format!("{this}/cancel"),
                self.token,
                &[],
                "Cancel",
                "cancel",
            ));
        }
        if task.status.is_final() {
            html.push_str(&action(
                &format!("{this}/delete"),
                self.token,
                &[],
                "Delete",
                "danger delete",
            ));
        }
        html.push_str("</div><dl class=\"fields\">");
        let mut field = |name: &str, value: String| {
            let _ = write!(html, "<dt>{name}</dt><dd>{value}</dd>");
        };
        let job = escape(&task.job);
        field(
            "Job",
            format!(
                "<a href=\"{}\">{job}</a>",
                escape(&format!("{base}/tasks?job={}", q(&task.job)))
            ),
        );
        field(
            "Attempt",
            format!("{} of {}", task.attempt, task.max_attempts),
        );
        field("Priority", task.priority.to_string());
        let text = |v: Option<&str>| v.map_or_else(|| "—".to_owned(), escape);
        field("Owner", text(task.owner.as_deref()));
        field("Idempotency key", text(task.idempotency_key.as_deref()));
        if let Some(key) = &task.concurrency_key {
            field("Concurrency key", escape(key));
        }
        if let Some(group) = task.group {
            field(
                "Group",
                format!(
                    "<a href=\"{}\"><code>{group}</code></a>",
                    escape(&format!("{base}/tasks/{group}"))
                ),
            );
        }
        if let Some(open) = task.open_members {
            field("Open members", open.to_string());
        }
        field(
            "Lease owner",
            format!(
                "<span id=\"lease-owner\">{}</span>",
                text(task.lease_owner.as_deref())
            ),
        );
        if task.lease_owner.is_some() {
            field("Lease expires", optional_time(task.lease_expires_at, now));
        }
        field("Submitted", time(task.created_at, now));
        field("Due", time(task.run_at, now));
        field("Started", optional_time(task.started_at, now));
        field("Finished", optional_time(task.finished_at, now));
        if let Some(expires) = task.expires_at() {
            field("Purged after", time(expires, now));
        }
        html.push_str("</dl>");

        html.push_str("<h2>Progress</h2>");
        match &task.progress {
            Some(p) => {
                match p.percent() {
                    Some(percent) => {
                        let _ = write!(
                            html,
                            "<progress id=\"bar\" max=\"100\" value=\"{percent:.1}\">{percent:.0}%</progress>"
                        );
                    }
                    None => html.push_str("<progress id=\"bar\" max=\"100\"></progress>"),
                }
                let steps = p.total.map_or_else(
                    || format!("step {}", p.step),
                    |t| format!("step {} of {t}", p.step),
                );
                let _ = write!(
                    html,
                    "<p class=\"message\" id=\"message\">{}</p><p class=\"meta\">{steps} · reported {}</p>",
                    escape(p.message.as_deref().unwrap_or("")),
                    time(p.updated_at, now)
                );
            }
            None => html.push_str("<p class=\"empty\">No progress reported.</p>"),
        }
        if let Some(err) = &task.last_error {
            let _ = write!(
                html,
                "<h2>Last error</h2><div class=\"error\" id=\"last-error\"><p>Attempt {} failed {}:</p><pre>{}</pre></div>",
                err.attempt,
                time(err.at, now),
                escape(&err.message)
            );
        }
        attempt_history(&mut html, task, now);
        let _ = write!(
            html,
            "<h2>Parameters</h2><pre id=\"params\">{}</pre>",
            escape(&pretty(&task.params))
        );
        if let Some(output) = &task.output {
            let _ = write!(
                html,
                "<h2>Output</h2><pre id=\"output\">{}</pre>",
                escape(&pretty(output))
            );
        }
        if let Some(checkpoint) = &task.checkpoint {
            let _ = write!(
                html,
                "<h2>Checkpoint</h2><p>Saved by attempt {} {}.</p>",
                checkpoint.attempt,
                time(checkpoint.at, now)
            );
        }
        html.push_str("<p class=\"links\">");
        if let Some(link) = self.config.status_link.as_ref().and_then(|l| l(task)) {
            let _ = write!(
                html,
                "<a href=\"{}\" id=\"status-page\">Status page</a> · ",
                escape(&link)
            );
        }
        let _ = write!(
            html,
            "<a href=\"{}?format=json\">as JSON</a></p>",
            escape(&this)
        );
        let refresh = !task.status.is_final();
        document(self.config, "Task", refresh, "id=\"task\"", &html)
    }
}

/// The attempts that ended without success, oldest first (the last
/// [`MAX_ATTEMPT_HISTORY`](longtask_core::MAX_ATTEMPT_HISTORY) a backend keeps), with each one's
/// worker, start, end, outcome and error: why attempts 1 and 2 failed, not only the last one.
fn attempt_history(html: &mut String, task: &TaskRecord, now: DateTime<Utc>) {
    if task.attempts.is_empty() {
        return;
    }
    let _ = write!(
        html,
        "<h2>Attempt history <span class=\"count\">{}</span></h2>\
         <div class=\"scroll\"><table class=\"attempts\" id=\"attempts\"><thead><tr>\
         <th scope=\"col\">Attempt</th><th scope=\"col\">Worker</th><th scope=\"col\">Started</th>\
         <th scope=\"col\">Ended</th><th scope=\"col\">Outcome</th><th scope=\"col\">Error</th>\
         </tr></thead><tbody>",
        task.attempts.len()
    );
    for attempt in &task.attempts {
        let outcome = match attempt.outcome {
            AttemptOutcome::Failed => "Failed",
            AttemptOutcome::Lost => "Lost",
            AttemptOutcome::Cancelled => "Cancelled",
        };
        let _ = write!(
            html,
            "<tr data-attempt=\"{n}\"><td>{n}</td><td>{worker}</td><td>{started}</td>\
             <td>{ended}</td><td class=\"outcome {o}\">{outcome}</td><td><pre>{error}</pre></td></tr>",
            n = attempt.attempt,
            worker = attempt
                .worker
                .as_deref()
                .map_or_else(|| "—".to_owned(), |w| format!("<code>{}</code>", escape(w))),
            started = time(attempt.started_at, now),
            ended = time(attempt.ended_at, now),
            o = attempt.outcome.as_str(),
            error = escape(attempt.error.as_deref().unwrap_or("")),
        );
    }
    html.push_str("</tbody></table></div>");
}

/// The page a browser gets when the authorization hook refuses it.
pub(crate) fn forbidden(config: &DashboardConfig) -> String {
    document(
        config,
        "Not allowed",
        false,
        "id=\"forbidden\"",
        "<h1>Not allowed</h1><p>This dashboard is for the operators of this service, and this \
         request was not admitted. Sign in as an operator, or ask one for access.</p>",
    )
}

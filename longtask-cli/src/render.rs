//! How tasks are shown: as JSON for scripts, as tables and lines for people.
//!
//! Text that came from jobs or submitters (messages, errors, parameters) is shown with its
//! control characters escaped, so that a task can never move the cursor or recolour the
//! terminal of the person looking at it.

use std::{io::IsTerminal, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use longtask::{CheckpointInfo, Progress, TaskError, TaskId, TaskRecord, TaskStatus};
use serde::Serialize;
use serde_json::Value;

/// A task as the JSON output shows it: the stored record, with parameters and output as JSON
/// values (not strings), and what is derived from it (percent, ETA, resumed checkpoint, expiry).
#[derive(Debug, Serialize)]
pub(crate) struct TaskJson<'a> {
    id: TaskId,
    job: &'a str,
    status: TaskStatus,
    cancel_requested: bool,
    attempt: u32,
    max_attempts: u32,
    priority: i32,
    params: Value,
    output: Option<Value>,
    progress: Option<ProgressJson<'a>>,
    eta_seconds: Option<f64>,
    last_error: Option<&'a TaskError>,
    checkpoint: Option<&'a CheckpointInfo>,
    resumed_from: Option<&'a CheckpointInfo>,
    run_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    retention_seconds: u64,
    lease_owner: Option<&'a str>,
    lease_expires_at: Option<DateTime<Utc>>,
    owner: Option<&'a str>,
    idempotency_key: Option<&'a str>,
}

/// Progress with its percentage.
#[derive(Debug, Serialize)]
struct ProgressJson<'a> {
    step: u64,
    total: Option<u64>,
    percent: Option<f64>,
    message: Option<&'a str>,
    rate: Option<f64>,
    updated_at: DateTime<Utc>,
}

/// Stored JSON as a value; text that is not JSON stays a string.
fn json_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

impl<'a> TaskJson<'a> {
    pub(crate) fn new(task: &'a TaskRecord, now: DateTime<Utc>) -> Self {
        Self {
            id: task.id,
            job: &task.job,
            status: task.status,
            cancel_requested: task.cancel_requested,
            attempt: task.attempt,
            max_attempts: task.max_attempts,
            priority: task.priority,
            params: json_value(&task.params),
            output: task.output.as_deref().map(json_value),
            progress: task.progress.as_ref().map(|p| ProgressJson {
                step: p.step,
                total: p.total,
                percent: p.percent(),
                message: p.message.as_deref(),
                rate: p.rate,
                updated_at: p.updated_at,
            }),
            eta_seconds: task.eta(now).map(|eta| eta.as_secs_f64()),
            last_error: task.last_error.as_ref(),
            checkpoint: task.checkpoint.as_ref(),
            resumed_from: task.resumed_from(),
            run_at: task.run_at,
            created_at: task.created_at,
            started_at: task.started_at,
            finished_at: task.finished_at,
            expires_at: task.expires_at(),
            retention_seconds: task.retention.as_secs(),
            lease_owner: task.lease_owner.as_deref(),
            lease_expires_at: task.lease_expires_at,
            owner: task.owner.as_deref(),
            idempotency_key: task.idempotency_key.as_deref(),
        }
    }
}

/// Prints one JSON document on stdout.
pub(crate) fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        // Every value printed is plain data; this cannot happen, but say so if it does.
        Err(err) => eprintln!("error: could not encode the output as JSON: {err}"),
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`), safe to print on a terminal.
pub(crate) fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A table without borders, like `ps` or `kubectl get`; fitted to the terminal's width when
/// stdout is one.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    if std::io::stdout().is_terminal() {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    if !header.is_empty() {
        table.set_header(header.iter().copied());
    }
    table
}

/// Prints a table made by [`table`], without the padding at the ends of its lines.
pub(crate) fn print_table(table: &Table) {
    for line in table.lines() {
        let line = line.trim_end();
        println!("{}", line.strip_prefix(' ').unwrap_or(line));
    }
}

/// `d` for a person: `42 s`, `7 min`, `3 h 5 min`, `2 d 4 h`.
pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => match (secs % 3600) / 60 {
            0 => format!("{} h", secs / 3600),
            min => format!("{} h {min} min", secs / 3600),
        },
        _ => match (secs % 86_400) / 3600 {
            0 => format!("{} d", secs / 86_400),
            h => format!("{} d {h} h", secs / 86_400),
        },
    }
}

/// `at` in UTC to the second, and how long ago (or how far ahead) it is.
pub(crate) fn time(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let stamp = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    match (now - at).to_std() {
        Ok(ago) if ago.as_secs() == 0 => format!("{stamp} (now)"),
        Ok(ago) => format!("{stamp} ({} ago)", duration(ago)),
        Err(_) => match (at - now).to_std() {
            Ok(ahead) => format!("{stamp} (in {})", duration(ahead)),
            Err(_) => stamp,
        },
    }
}

/// An optional time, or `-`.
pub(crate) fn maybe_time(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    at.map_or_else(|| "-".to_owned(), |at| time(at, now))
}

/// Progress as `45% (9/20)` or `9 steps`.
pub(crate) fn progress(progress: &Progress) -> String {
    match (progress.percent(), progress.total) {
        (Some(percent), Some(total)) => {
            format!("{}% ({}/{total})", percent.floor(), progress.step)
        }
        _ => format!("{} steps", progress.step),
    }
}

/// Progress with its message: `45% (9/20): Handling day 9`.
pub(crate) fn progress_with_message(p: &Progress) -> String {
    match p.message.as_deref() {
        Some(message) => format!("{}: {}", progress(p), clean(message)),
        None => progress(p),
    }
}

/// The status, with what a person waiting needs to know about it.
pub(crate) fn status(task: &TaskRecord, now: DateTime<Utc>) -> String {
    match task.status {
        TaskStatus::Running if task.cancel_requested => "running (cancel requested)".to_owned(),
        TaskStatus::Retrying | TaskStatus::Scheduled => {
            let when = (task.run_at - now)
                .to_std()
                .map_or_else(|_| "now".to_owned(), |d| format!("in {}", duration(d)));
            if task.status == TaskStatus::Retrying {
                format!(
                    "retrying (attempt {} of {} {when})",
                    task.attempt + 1,
                    task.max_attempts
                )
            } else {
                format!("scheduled (runs {when})")
            }
        }
        other => other.to_string(),
    }
}

/// `about 12 s left`, while the task runs and the time left can be estimated.
pub(crate) fn eta(task: &TaskRecord, now: DateTime<Utc>) -> Option<String> {
    task.eta(now).map(|left| match left.as_secs() {
        0 => "almost done".to_owned(),
        _ => format!("about {} left", duration(left)),
    })
}

/// A checkpoint for a person: who saved it, when, and at which progress.
pub(crate) fn checkpoint(info: &CheckpointInfo, now: DateTime<Utc>) -> String {
    let at = info
        .progress
        .as_ref()
        .map(|p| format!(" at {}", progress(p)))
        .unwrap_or_default();
    format!(
        "saved by attempt {}{at}, {}",
        info.attempt,
        time(info.at, now)
    )
}

/// A stored JSON text on one line (it may be long: no truncation, for copying).
pub(crate) fn json_text(text: &str) -> String {
    clean(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("a\u{1b}[31mred\nline"), "a\\u{1b}[31mred\\nline");
        assert_eq!(clean("plain é"), "plain é");
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        let d = Duration::from_secs;
        assert_eq!(duration(d(5)), "5 s");
        assert_eq!(duration(d(125)), "2 min");
        assert_eq!(duration(d(3600)), "1 h");
        assert_eq!(duration(d(3900)), "1 h 5 min");
        assert_eq!(duration(d(90_000)), "1 d 1 h");
    }
}

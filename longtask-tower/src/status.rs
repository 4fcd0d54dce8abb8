//! The JSON status document of a task, its links, its ETag and its `Retry-After`.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, Utc};
use longtask_core::{Progress, TaskId, TaskRecord, TaskStatus};
use serde::Serialize;

/// The URLs of one task's routes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Links {
    #[serde(rename = "self")]
    pub(crate) this: String,
    pub(crate) events: String,
    pub(crate) result: String,
    pub(crate) cancel: String,
}

impl Links {
    pub(crate) fn new(base: &str, id: TaskId) -> Self {
        let this = format!("{base}/{id}");
        Self {
            events: format!("{this}/events"),
            result: format!("{this}/result"),
            cancel: format!("{this}/cancel"),
            this,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ProgressView<'a> {
    step: u64,
    total: Option<u64>,
    percent: Option<f64>,
    message: Option<&'a str>,
    updated_at: String,
}

impl<'a> ProgressView<'a> {
    pub(crate) fn new(p: &'a Progress) -> Self {
        Self {
            step: p.step,
            total: p.total,
            percent: p.percent().map(|v| (v * 10.0).round() / 10.0),
            message: p.message.as_deref(),
            updated_at: time(p.updated_at),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ErrorView<'a> {
    message: &'a str,
    attempt: u32,
    at: String,
}

impl<'a> ErrorView<'a> {
    pub(crate) fn new(e: &'a longtask_core::TaskError) -> Self {
        Self {
            message: &e.message,
            attempt: e.attempt,
            at: time(e.at),
        }
    }
}

/// The checkpoint the running attempt resumed from.
#[derive(Serialize)]
pub(crate) struct ResumedView<'a> {
    /// The attempt that saved it.
    attempt: u32,
    at: String,
    progress: Option<ProgressView<'a>>,
}

/// What `GET /{id}` answers with as JSON (and each Server-Sent Event carries).
#[derive(Serialize)]
pub(crate) struct StatusView<'a> {
    id: TaskId,
    job: &'a str,
    status: TaskStatus,
    attempt: u32,
    max_attempts: u32,
    cancel_requested: bool,
    progress: Option<ProgressView<'a>>,
    eta_seconds: Option<u64>,
    /// Seconds until the next attempt, while retrying or scheduled.
    next_attempt_in_seconds: Option<u64>,
    created_at: String,
    run_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    last_error: Option<ErrorView<'a>>,
    /// Set when the latest attempt carried on from a checkpoint an earlier attempt saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    resumed_from: Option<ResumedView<'a>>,
    links: &'a Links,
}

pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Whole seconds, rounded up (so "about 1 s left" never reads "0 s" before the end).
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Seconds until the next attempt may start, for waiting tasks.
pub(crate) fn next_attempt_in(task: &TaskRecord, now: DateTime<Utc>) -> Option<u64> {
    if !matches!(task.status, TaskStatus::Retrying | TaskStatus::Scheduled) {
        return None;
    }
    Some(ceil_secs((task.run_at - now).to_std().unwrap_or_default()))
}

impl<'a> StatusView<'a> {
    pub(crate) fn new(task: &'a TaskRecord, links: &'a Links, now: DateTime<Utc>) -> Self {
        Self {
            id: task.id,
            job: &task.job,
            status: task.status,
            attempt: task.attempt,
            max_attempts: task.max_attempts,
            cancel_requested: task.cancel_requested,
            progress: task.progress.as_ref().map(ProgressView::new),
            eta_seconds: task.eta(now).map(ceil_secs),
            next_attempt_in_seconds: next_attempt_in(task, now),
            created_at: time(task.created_at),
            run_at: time(task.run_at),
            started_at: task.started_at.map(time),
            finished_at: task.finished_at.map(time),
            last_error: task.last_error.as_ref().map(ErrorView::new),
            resumed_from: task.resumed_from().map(|c| ResumedView {
                attempt: c.attempt,
                at: time(c.at),
                progress: c.progress.as_ref().map(ProgressView::new),
            }),
            links,
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A weak validator over everything a status representation shows: `kind` tells the
/// representations apart, `dynamic` holds the time-dependent numbers it shows (seconds left...).
pub(crate) fn etag(task: &TaskRecord, kind: u8, dynamic: &[u64]) -> String {
    let mut h = DefaultHasher::new();
    kind.hash(&mut h);
    dynamic.hash(&mut h);
    task.id.hash(&mut h);
    task.status.hash(&mut h);
    task.attempt.hash(&mut h);
    task.cancel_requested.hash(&mut h);
    task.run_at.timestamp_millis().hash(&mut h);
    task.finished_at.map(|t| t.timestamp_millis()).hash(&mut h);
    if let Some(p) = &task.progress {
        p.step.hash(&mut h);
        p.total.hash(&mut h);
        p.message.hash(&mut h);
        p.updated_at.timestamp_millis().hash(&mut h);
    }
    if let Some(e) = &task.last_error {
        e.message.hash(&mut h);
        e.attempt.hash(&mut h);
    }
    format!("W/\"{:016x}\"", h.finish())
}

/// Whether an `If-None-Match` header value matches `tag` (weak comparison).
pub(crate) fn none_match(header: &str, tag: &str) -> bool {
    let bare = tag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == bare)
}

/// How long a client polling the status should wait before asking again.
pub(crate) fn retry_after(task: &TaskRecord, now: DateTime<Utc>) -> Option<u64> {
    match task.status {
        TaskStatus::Running => Some(task.eta(now).map_or(2, |eta| ceil_secs(eta).clamp(1, 30))),
        TaskStatus::Queued => Some(1),
        TaskStatus::Retrying | TaskStatus::Scheduled => {
            Some(next_attempt_in(task, now).unwrap_or(1).clamp(1, 60))
        }
        TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(none_match("W/\"abc\"", "W/\"abc\""));
        assert!(none_match("\"x\", \"abc\"", "W/\"abc\""));
        assert!(none_match("*", "W/\"abc\""));
        assert!(!none_match("\"abd\"", "W/\"abc\""));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
    }
}

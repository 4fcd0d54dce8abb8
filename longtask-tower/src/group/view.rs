//! The JSON status document of a group (what `GET /{group}` answers and each event carries):
//! where the group stands, what its members add up to, and each member.

use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, Utc};
use longtask_core::{GroupStatus, TaskId, TaskRecord, TaskStatus};
use serde::Serialize;

use super::GroupConfig;
use crate::status::{ceil_secs, time, ErrorView, Links, ProgressView};

/// Where a group stands, from its root and its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GroupState {
    /// No member has started yet.
    Queued,
    /// Members are running or waiting their turn.
    Running,
    /// Every member has finished; the completion job has yet to.
    Completing,
    /// The group was cancelled; running members are stopping.
    Cancelling,
    /// Every member finished, and the completion job (if any) succeeded.
    Succeeded,
    /// The completion job failed.
    Failed,
    /// The group was cancelled.
    Cancelled,
}

impl GroupState {
    pub(crate) fn of(group: &GroupStatus) -> Self {
        let members_done = group.members.iter().all(|m| m.status.is_final());
        match (group.root.status, members_done) {
            (TaskStatus::Cancelled, true) => Self::Cancelled,
            (TaskStatus::Cancelled, false) => Self::Cancelling,
            (TaskStatus::Succeeded, true) => Self::Succeeded,
            (TaskStatus::Failed, true) => Self::Failed,
            (_, true) => Self::Completing,
            (_, false) => {
                let started = group.members.iter().any(|m| {
                    m.started_at.is_some()
                        || !matches!(m.status, TaskStatus::Queued | TaskStatus::Scheduled)
                });
                if started {
                    Self::Running
                } else {
                    Self::Queued
                }
            }
        }
    }

    /// Whether nothing about the group changes any more: the root and every member final.
    pub(crate) fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completing => "completing",
            Self::Cancelling => "cancelling",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The page's words for it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Queued => "Waiting for a worker",
            Self::Running => "Running",
            Self::Completing => "Finishing up",
            Self::Cancelling => "Cancelling",
            Self::Succeeded => "Done",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }
}

/// "7 of 12 done, 1 running, 1 failed".
pub(crate) fn summary(group: &GroupStatus) -> String {
    let n = group.members.len();
    let mut text = format!("{} of {n} done", group.count(TaskStatus::Succeeded));
    let waiting = group.count(TaskStatus::Queued) + group.count(TaskStatus::Scheduled);
    for (count, what) in [
        (group.count(TaskStatus::Running), "running"),
        (group.count(TaskStatus::Retrying), "retrying"),
        (waiting, "waiting"),
        (group.count(TaskStatus::Failed), "failed"),
        (group.count(TaskStatus::Cancelled), "cancelled"),
    ] {
        if count > 0 {
            text.push_str(&format!(", {count} {what}"));
        }
    }
    text
}

/// How many members are in each status (every status named, zeros too).
#[derive(Serialize)]
struct Counts {
    queued: usize,
    scheduled: usize,
    running: usize,
    retrying: usize,
    succeeded: usize,
    failed: usize,
    cancelled: usize,
}

#[derive(Serialize)]
struct Steps {
    done: u64,
    total: u64,
}

#[derive(Serialize)]
pub(crate) struct MemberView<'a> {
    pub(crate) id: TaskId,
    pub(crate) job: &'a str,
    pub(crate) label: String,
    pub(crate) status: TaskStatus,
    pub(crate) cancel_requested: bool,
    pub(crate) progress: Option<ProgressView<'a>>,
    pub(crate) last_error: Option<ErrorView<'a>>,
    /// The member's own status page, where the application said (`None` otherwise).
    pub(crate) link: Option<String>,
}

#[derive(Serialize)]
struct CompletionView<'a> {
    job: &'a str,
    status: TaskStatus,
    last_error: Option<ErrorView<'a>>,
    /// The completion job's own status page, where the application said.
    link: Option<String>,
    result: &'a str,
}

/// What `GET /{group}` answers with as JSON (and each event carries).
#[derive(Serialize)]
pub(crate) struct GroupView<'a> {
    id: TaskId,
    pub(crate) state: GroupState,
    pub(crate) is_final: bool,
    /// "7 of 12 done, 1 running, 1 failed".
    pub(crate) summary: String,
    counts: Counts,
    steps: Steps,
    /// The share of the members' steps done, 0 to 100.
    pub(crate) percent: f64,
    pub(crate) eta_seconds: Option<u64>,
    created_at: String,
    finished_at: Option<String>,
    completion: Option<CompletionView<'a>>,
    pub(crate) members: Vec<MemberView<'a>>,
    links: &'a Links,
}

impl<'a> GroupView<'a> {
    pub(crate) fn new(
        group: &'a GroupStatus,
        config: &GroupConfig,
        links: &'a Links,
        now: DateTime<Utc>,
    ) -> Self {
        let state = GroupState::of(group);
        let (done, total) = group.steps();
        let is_final = state.is_final();
        let root = &group.root;
        let finished_at = if is_final {
            group
                .members
                .iter()
                .filter_map(|m| m.finished_at)
                .chain(root.finished_at)
                .max()
                .map(time)
        } else {
            None
        };
        Self {
            id: root.id,
            state,
            is_final,
            summary: summary(group),
            counts: Counts {
                queued: group.count(TaskStatus::Queued),
                scheduled: group.count(TaskStatus::Scheduled),
                running: group.count(TaskStatus::Running),
                retrying: group.count(TaskStatus::Retrying),
                succeeded: group.count(TaskStatus::Succeeded),
                failed: group.count(TaskStatus::Failed),
                cancelled: group.count(TaskStatus::Cancelled),
            },
            steps: Steps { done, total },
            percent: (group.percent() * 10.0).round() / 10.0,
            eta_seconds: if is_final {
                None
            } else {
                group.eta(now).map(ceil_secs)
            },
            created_at: time(root.created_at),
            finished_at,
            completion: group.has_completion().then(|| CompletionView {
                job: &root.job,
                status: root.status,
                last_error: root.last_error.as_ref().map(ErrorView::new),
                link: config.member_link(root),
                result: &links.result,
            }),
            members: group
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| MemberView::new(m, i, config))
                .collect(),
            links,
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl<'a> MemberView<'a> {
    fn new(task: &'a TaskRecord, index: usize, config: &GroupConfig) -> Self {
        Self {
            id: task.id,
            job: &task.job,
            label: config.member_label(task, index),
            status: task.status,
            cancel_requested: task.cancel_requested,
            progress: task.progress.as_ref().map(ProgressView::new),
            last_error: task.last_error.as_ref().map(ErrorView::new),
            link: config.member_link(task),
        }
    }
}

/// What an event stream compares between two reads of a group: everything shown, but not
/// what only time moves (the time left), so that a stream sends nothing while nothing happens.
pub(crate) fn fingerprint(group: &GroupStatus) -> u64 {
    let mut h = DefaultHasher::new();
    for task in std::iter::once(&group.root).chain(&group.members) {
        task.id.hash(&mut h);
        task.status.hash(&mut h);
        task.attempt.hash(&mut h);
        task.cancel_requested.hash(&mut h);
        if let Some(p) = &task.progress {
            p.step.hash(&mut h);
            p.total.hash(&mut h);
            p.message.hash(&mut h);
        }
        if let Some(e) = &task.last_error {
            e.message.hash(&mut h);
            e.attempt.hash(&mut h);
        }
    }
    h.finish()
}

/// A weak validator of one representation (`kind`) of a group: over everything it shows, and
/// the time-dependent numbers (`dynamic`: seconds left, the clock for a page that shows the time
/// spent).
pub(crate) fn etag(group: &GroupStatus, kind: u8, dynamic: &[u64]) -> String {
    let mut h = DefaultHasher::new();
    kind.hash(&mut h);
    dynamic.hash(&mut h);
    fingerprint(group).hash(&mut h);
    for task in std::iter::once(&group.root).chain(&group.members) {
        task.finished_at.map(|t| t.timestamp_millis()).hash(&mut h);
        task.progress
            .as_ref()
            .map(|p| p.updated_at.timestamp_millis())
            .hash(&mut h);
    }
    format!("W/\"{:016x}\"", h.finish())
}

/// How long a client polling the group should wait before asking again.
pub(crate) fn retry_after(view: &GroupView<'_>) -> Option<u64> {
    if view.is_final {
        return None;
    }
    Some(match view.state {
        GroupState::Queued => 1,
        _ => view.eta_seconds.map_or(2, |eta| eta.clamp(1, 30)),
    })
}

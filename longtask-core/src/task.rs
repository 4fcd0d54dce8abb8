//! Tasks: one submitted run of a job, and everything a backend stores about it.
//!
//! A [`TaskRecord`] is the whole stored state of a task: its parameters, [`TaskStatus`], attempts,
//! lease, latest [`Progress`], last error and output. Backends store and return it; the
//! [`Client`](crate::Client) hands it to applications, which render it (the status page in
//! `longtask-tower` does).
//!
//! ```
//! use longtask_core::{TaskId, TaskStatus};
//!
//! let id = TaskId::new();
//! let parsed: TaskId = id.to_string().parse().unwrap();
//! assert_eq!(id, parsed);
//! assert!(TaskStatus::Succeeded.is_final());
//! assert_eq!("retrying".parse::<TaskStatus>().unwrap(), TaskStatus::Retrying);
//! ```

use std::{
    fmt,
    str::FromStr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{queue::CheckpointInfo, AttemptRecord};

/// A task's id: a UUIDv7, so ids sort by submission time (good index locality) while carrying 74
/// random bits (unguessable, safe to put in a URL).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(Uuid);

impl TaskId {
    /// A new, time-ordered, random id.
    ///
    /// ```
    /// let (a, b) = (longtask_core::TaskId::new(), longtask_core::TaskId::new());
    /// assert!(a < b);
    /// ```
    ///
    /// Layout (RFC 9562 UUIDv7): 48 bits of Unix milliseconds, then a 12-bit per-process sequence
    /// that keeps ids from one process strictly increasing (so tasks submitted together are run
    /// in submission order), then 62 random bits, so that an id cannot be guessed from another.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        // (milliseconds << 12) | sequence of the last id handed out by this process.
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX >> 16)
        });
        let floor = now_ms << 12;
        let mut prev = LAST.load(Ordering::Relaxed);
        let next = loop {
            let next = floor.max(prev + 1);
            match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break next,
                Err(actual) => prev = actual,
            }
        };
        let sequence = next & 0xfff;
        let mut bytes = [0_u8; 10];
        bytes[0] = (sequence >> 8) as u8; // the low nibble; the high one becomes the version
        bytes[1] = sequence as u8;
        bytes[2..].copy_from_slice(&rand::random::<u64>().to_le_bytes());
        Self(uuid::Builder::from_unix_timestamp_millis(next >> 12, &bytes).into_uuid())
    }

    /// Wraps an existing UUID (as read back from storage).
    ///
    /// ```
    /// let id = longtask_core::TaskId::new();
    /// assert_eq!(longtask_core::TaskId::from_uuid(id.as_uuid()), id);
    /// ```
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside.
    pub const fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0.hyphenated())
    }
}

/// The text was not a task id.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{input}` is not a task id (expected a UUID such as 0193f0d4-7c2a-7b1e-9d1c-5e2f3a4b5c6d)"
)]
pub struct ParseTaskIdError {
    input: String,
}

impl FromStr for TaskId {
    type Err = ParseTaskIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(Self).map_err(|_| ParseTaskIdError {
            input: s.chars().take(64).collect(),
        })
    }
}

/// Where a task stands.
///
/// ```text
///             submit                 claim                 Ok
///  (new) ──► queued ──(run_at)──► running ───────────────► succeeded
///              ▲  scheduled          │  Err / panic / timeout / lease lost
///              │                     ▼
///              └──── backoff ──── retrying ──(attempts used up or permanent)──► failed
///  cancel: queued/scheduled/retrying ─► cancelled at once; running ─► cancel requested
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting to be claimed; due now.
    Queued,
    /// Waiting for its `run_at` time.
    Scheduled,
    /// Claimed by a worker and running.
    Running,
    /// An attempt failed; the next one waits for its backoff.
    Retrying,
    /// Finished with an output.
    Succeeded,
    /// Finished with an error, after its last attempt or a permanent error.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 7] = [
        Self::Queued,
        Self::Scheduled,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Whether the task is finished: succeeded, failed or cancelled. A final status never changes.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// Whether the task waits to be claimed (queued, scheduled or retrying).
    pub const fn is_waiting(self) -> bool {
        matches!(self, Self::Queued | Self::Scheduled | Self::Retrying)
    }

    /// The lower-case name used in storage, JSON and URLs (`"running"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a task status.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a task status (expected one of queued, scheduled, running, retrying, succeeded, failed, cancelled)")]
pub struct ParseStatusError(String);

impl FromStr for TaskStatus {
    type Err = ParseStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseStatusError(s.chars().take(64).collect()))
    }
}

/// How far a task has come, as its job last reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Steps done.
    pub step: u64,
    /// Steps in all, when known; `None` makes the progress bar indeterminate.
    pub total: Option<u64>,
    /// What the job is doing now, for a person to read ("Handling 2026-10-12: 120 invoices so far").
    pub message: Option<String>,
    /// The smoothed rate in steps per second, when it can be estimated (see [`EtaEstimator`](crate::EtaEstimator)).
    pub rate: Option<f64>,
    /// When the job reported this.
    pub updated_at: DateTime<Utc>,
}

impl Progress {
    /// Progress at `step` of `total`, reported now.
    ///
    /// ```
    /// let p = longtask_core::Progress::new(3, Some(4));
    /// assert_eq!(p.percent(), Some(75.0));
    /// ```
    pub fn new(step: u64, total: Option<u64>) -> Self {
        Self {
            step,
            total,
            message: None,
            rate: None,
            updated_at: Utc::now(),
        }
    }

    /// Sets the message.
    ///
    /// ```
    /// let p = longtask_core::Progress::new(1, None).with_message("warming up");
    /// assert_eq!(p.message.as_deref(), Some("warming up"));
    /// ```
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Percent done (0 to 100), when the total is known.
    pub fn percent(&self) -> Option<f64> {
        match self.total {
            Some(0) => Some(100.0),
            #[allow(clippy::cast_precision_loss)]
            Some(total) => Some((self.step.min(total) as f64 / total as f64) * 100.0),
            None => None,
        }
    }

    /// The time left at `now`: the remaining steps at the smoothed rate, less the time since this
    /// report. `None` while the total or the rate is unknown.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut p = longtask_core::Progress::new(10, Some(30));
    /// p.rate = Some(2.0); // steps per second
    /// assert_eq!(p.eta(p.updated_at), Some(Duration::from_secs(10)));
    /// ```
    pub fn eta(&self, now: DateTime<Utc>) -> Option<Duration> {
        let total = self.total?;
        let rate = self.rate.filter(|r| r.is_finite() && *r > 0.0)?;
        #[allow(clippy::cast_precision_loss)]
        let remaining = total.saturating_sub(self.step) as f64 / rate;
        let since = (now - self.updated_at).to_std().unwrap_or_default();
        Some(Duration::from_secs_f64(remaining.min(1e9)).saturating_sub(since))
    }
}

/// The last error a task's attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    /// The job's message (a panic's message, or a timeout's).
    pub message: String,
    /// Which attempt failed (1-based).
    pub attempt: u32,
    /// When it failed.
    pub at: DateTime<Utc>,
}

/// Everything stored about one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's id.
    pub id: TaskId,
    /// The job's stable [`NAME`](crate::Job::NAME).
    pub job: String,
    /// The parameters, encoded as JSON.
    pub params: String,
    /// Where the task stands.
    pub status: TaskStatus,
    /// Higher runs first.
    pub priority: i32,
    /// When the task may next be claimed.
    pub run_at: DateTime<Utc>,
    /// Attempts started so far (the running one included).
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// The worker holding the lease, while running.
    pub lease_owner: Option<String>,
    /// When the lease ends unless extended, while running.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Whether cancellation was asked for while the task was running.
    pub cancel_requested: bool,
    /// The last failed attempt's error.
    pub last_error: Option<TaskError>,
    /// The latest progress reported.
    pub progress: Option<Progress>,
    /// The output, encoded as JSON, once succeeded.
    pub output: Option<String>,
    /// When the task was submitted.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the task reached its final status.
    pub finished_at: Option<DateTime<Utc>>,
    /// How long the task is kept after it finishes.
    pub retention: Duration,
    /// Who the task belongs to, for authorization (set by the submitter).
    pub owner: Option<String>,
    /// The idempotency key it was submitted with.
    pub idempotency_key: Option<String>,
    /// The concurrency key it was submitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// For a member of a group, the group's id (its root's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<TaskId>,
    /// For a group's root, how many of its members have not reached a final status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_members: Option<u32>,
    /// The task's last checkpoint, if a job saved one ([`TaskContext::checkpoint`]).
    ///
    /// [`TaskContext::checkpoint`]: crate::TaskContext::checkpoint
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointInfo>,
    /// The attempts that ended without success, oldest first: the last
    /// [`MAX_ATTEMPT_HISTORY`](crate::MAX_ATTEMPT_HISTORY) of them (see [`AttemptRecord`]).
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
}

impl TaskRecord {
    /// The checkpoint the latest attempt resumed from: the last checkpoint, when an earlier
    /// attempt saved it (the latest attempt started after it was saved). A status page says
    /// "resumed after an interruption at …" with its progress.
    pub fn resumed_from(&self) -> Option<&CheckpointInfo> {
        let started = self.started_at?;
        self.checkpoint.as_ref().filter(|c| c.at < started)
    }

    /// The time left, estimated from the progress reports, while the task runs.
    pub fn eta(&self, now: DateTime<Utc>) -> Option<Duration> {
        if self.status != TaskStatus::Running {
            return None;
        }
        self.progress.as_ref()?.eta(now)
    }

    /// When the task will be purged, once finished.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.finished_at
            .map(|at| crate::clock::saturating_add(at, self.retention))
    }

    /// The task's record as a new submission would create it: `queued` (or `scheduled` when
    /// `run_at` is after `now`), no attempts, no lease. Backends use this so that every one
    /// starts from the same state.
    pub fn new(task: NewTask, now: DateTime<Utc>) -> Self {
        let run_at = task.run_at.resolve(now);
        Self {
            id: task.id,
            job: task.job,
            params: task.params,
            status: if run_at > now {
                TaskStatus::Scheduled
            } else {
                TaskStatus::Queued
            },
            priority: task.priority,
            run_at,
            attempt: 0,
            max_attempts: task.max_attempts,
            lease_owner: None,
            lease_expires_at: None,
            cancel_requested: false,
            last_error: None,
            progress: None,
            output: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            retention: task.retention,
            owner: task.owner,
            idempotency_key: task.idempotency_key,
            concurrency_key: task.concurrency_key,
            group: match task.group {
                Some(GroupRole::Member(root)) => Some(root),
                _ => None,
            },
            open_members: matches!(task.group, Some(GroupRole::Root)).then_some(0),
            checkpoint: None,
            attempts: Vec::new(),
        }
    }
}

/// When a new task may first run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunAt {
    /// As soon as a worker is free.
    #[default]
    Now,
    /// At this time (earlier times mean now).
    At(DateTime<Utc>),
    /// After this delay, measured on the backend's clock.
    After(Duration),
}

impl RunAt {
    /// The time this stands for, given the current time.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Now => now,
            Self::At(at) => at.max(now),
            Self::After(delay) => crate::clock::saturating_add(now, delay),
        }
    }
}

/// A task to insert: what [`Client`](crate::Client) hands to [`TaskStore::insert`](crate::TaskStore::insert).
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// The id to give the task (ignored when the idempotency key matches an existing task).
    pub id: TaskId,
    /// The job's name.
    pub job: String,
    /// The parameters, encoded as JSON.
    pub params: String,
    /// Higher runs first.
    pub priority: i32,
    /// When it may first run.
    pub run_at: RunAt,
    /// Attempts allowed in all (at least 1).
    pub max_attempts: u32,
    /// How long to keep it after it finishes.
    pub retention: Duration,
    /// Who it belongs to.
    pub owner: Option<String>,
    /// A key unique per job: submitting again with it returns the first task's id.
    pub idempotency_key: Option<String>,
    /// The concurrency key: tasks of a job with the same key are limited together by
    /// [`JobOptions::max_running_per_key`](crate::JobOptions::max_running_per_key).
    pub concurrency_key: Option<String>,
    /// The task's place in a [group](crate::Client::group), if any.
    pub group: Option<GroupRole>,
}

/// A task's place in a group of tasks ([`Client::group`](crate::Client::group)).
///
/// A group is a root task and its members. The root is inserted `scheduled` at
/// [`group_root_run_at`] (it is never claimed while it waits) and counts its members that have
/// not reached a final status ([`TaskRecord::open_members`]). Inserting a member counts it;
/// a member reaching a final status (by any path: an outcome, a recovery, a cancellation)
/// discounts it, atomically with that change. When the count falls to zero, the root is
/// *fired*, exactly once: a root of job [`GROUP_JOB`] succeeds at once; any other root (the
/// group's completion job) becomes due and runs like any task. Members can be added only while
/// the root waits (by a member's job, fanning out); afterwards an insert naming the group is
/// refused whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    /// The group's root: its id is the group's id.
    Root,
    /// A member of the group whose root has this id.
    Member(TaskId),
}

/// The job of a group root without a completion job: it succeeds when its last member ends,
/// and no worker runs it.
pub const GROUP_JOB: &str = "longtask.group";

/// When a group root is due while its group has members that have not finished: never (the
/// largest time every backend stores).
pub fn group_root_run_at() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(GROUP_ROOT_RUN_AT_MS).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// [`group_root_run_at`] in milliseconds since the epoch: the year 9999.
pub const GROUP_ROOT_RUN_AT_MS: i64 = 253_402_300_799_000;

impl NewTask {
    /// A task of `job` with JSON `params` and default options (priority 0, now, 5 attempts,
    /// kept 7 days, no owner, no idempotency key).
    ///
    /// ```
    /// let task = longtask_core::NewTask::new("report", "{\"month\":\"2026-10\"}");
    /// assert_eq!(task.max_attempts, 5);
    /// ```
    pub fn new(job: impl Into<String>, params: impl Into<String>) -> Self {
        let defaults = crate::JobOptions::default();
        Self {
            id: TaskId::new(),
            job: job.into(),
            params: params.into(),
            priority: defaults.priority,
            run_at: RunAt::Now,
            max_attempts: defaults.max_attempts,
            retention: defaults.retention,
            owner: None,
            idempotency_key: None,
            concurrency_key: None,
            group: None,
        }
    }
}

/// Separates the owner from the key in an owner-scoped idempotency key as stored. A control
/// character, which [`NewTask::validate`] refuses in keys and owners, so a scoped key can never
/// equal another owner's key, or a key without an owner.
const SCOPE: char = '\u{1f}';

impl NewTask {
    /// Checks the task against the rules every backend applies to every caller: a job name, at
    /// least one attempt, and an idempotency key and owner (when set) of 1 to
    /// [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes without control characters.
    ///
    /// ```
    /// let mut task = longtask_core::NewTask::new("report", "{}");
    /// assert!(task.validate().is_ok());
    /// task.idempotency_key = Some("line\nbreak".into());
    /// assert!(task.validate().is_err());
    /// ```
    pub fn validate(&self) -> crate::Result<()> {
        fn check(what: &str, value: Option<&str>) -> crate::Result<()> {
            let max = crate::MAX_KEY_LEN;
            match value {
                Some("") => Err(crate::Error::InvalidInput(format!("the {what} is empty"))),
                Some(v) if v.len() > max => Err(crate::Error::InvalidInput(format!(
                    "the {what} is {} bytes long; at most {max} are allowed",
                    v.len()
                ))),
                Some(v) if v.chars().any(char::is_control) => Err(crate::Error::InvalidInput(
                    format!("the {what} contains a control character; use printable text"),
                )),
                _ => Ok(()),
            }
        }
        if self.job.is_empty() {
            return Err(crate::Error::InvalidInput(
                "the job name is empty".to_owned(),
            ));
        }
        check("idempotency key", self.idempotency_key.as_deref())?;
        check("owner", self.owner.as_deref())?;
        check("concurrency key", self.concurrency_key.as_deref())?;
        if self.group == Some(GroupRole::Root) && self.run_at != RunAt::At(group_root_run_at()) {
            return Err(crate::Error::InvalidInput(
                "a group's root waits until its members end: insert it with \
                 run_at = RunAt::At(group_root_run_at()) (Client::group does)"
                    .to_owned(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(crate::Error::InvalidInput(
                "max_attempts is 0; a task needs at least one attempt".to_owned(),
            ));
        }
        Ok(())
    }

    /// The task as a backend stores it: [validated](Self::validate), with its idempotency key
    /// scoped by its owner, so that a key is unique per job *and owner*: two owners submitting
    /// the same key get two tasks, and one never receives the other's. Backends match keys in
    /// this form and give records back with [`TaskRecord::from_stored`]. (Backends built with
    /// [`cancel_safe_backend!`](crate::cancel_safe_backend) do both in their `insert`, `get`
    /// and `list`.)
    ///
    /// ```
    /// let mut task = longtask_core::NewTask::new("report", "{}");
    /// task.owner = Some("u1".into());
    /// task.idempotency_key = Some("k".into());
    /// let stored = task.into_stored().unwrap();
    /// assert_ne!(stored.idempotency_key.as_deref(), Some("k"));
    /// ```
    pub fn into_stored(mut self) -> crate::Result<Self> {
        self.validate()?;
        if let (Some(owner), Some(key)) = (&self.owner, &self.idempotency_key) {
            self.idempotency_key = Some(format!("{SCOPE}{owner}{SCOPE}{key}"));
        }
        Ok(self)
    }
}

impl TaskRecord {
    /// The record as callers see it: its idempotency key as it was given, without the owner
    /// scope that [`NewTask::into_stored`] added for storage.
    ///
    /// ```
    /// use longtask_core::{NewTask, TaskRecord};
    /// let mut task = NewTask::new("report", "{}");
    /// task.owner = Some("u1".into());
    /// task.idempotency_key = Some("k".into());
    /// let stored = TaskRecord::new(task.into_stored().unwrap(), chrono::Utc::now());
    /// assert_eq!(stored.from_stored().idempotency_key.as_deref(), Some("k"));
    /// ```
    #[must_use]
    pub fn from_stored(mut self) -> Self {
        if let (Some(owner), Some(key)) = (&self.owner, &self.idempotency_key) {
            let given = key
                .strip_prefix(SCOPE)
                .and_then(|rest| rest.strip_prefix(owner.as_str()))
                .and_then(|rest| rest.strip_prefix(SCOPE));
            if let Some(given) = given {
                self.idempotency_key = Some(given.to_owned());
            }
        }
        self
    }
}

/// What [`TaskStore::insert`](crate::TaskStore::insert) did with one [`NewTask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// The task's id: the new one, or the existing task's for a repeated idempotency key.
    pub id: TaskId,
    /// `false` when an existing task with the same idempotency key was returned instead.
    pub created: bool,
}

/// A filter for [`TaskStore::list`](crate::TaskStore::list); results come in submission order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskQuery {
    /// Only tasks of this job.
    pub job: Option<String>,
    /// Only tasks in one of these statuses (empty: any).
    pub statuses: Vec<TaskStatus>,
    /// Only tasks of this owner.
    pub owner: Option<String>,
    /// Only tasks submitted after this one (for paging).
    pub after: Option<TaskId>,
    /// At most this many (0 means 100).
    pub limit: usize,
    /// Only the members of this group.
    pub group: Option<TaskId>,
}

impl TaskQuery {
    /// The effective limit (100 when unset, at most 10,000).
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(10_000),
        }
    }

    /// Whether `task` passes the filter (the `after` and `limit` parts aside).
    pub fn matches(&self, task: &TaskRecord) -> bool {
        self.job.as_deref().is_none_or(|job| job == task.job)
            && (self.statuses.is_empty() || self.statuses.contains(&task.status))
            && self
                .owner
                .as_deref()
                .is_none_or(|owner| task.owner.as_deref() == Some(owner))
            && self.group.is_none_or(|group| task.group == Some(group))
    }
}

//! [`Queue`]: how workers take tasks, hold them, and hand back their outcomes.
//!
//! A worker [claims](Queue::claim) a batch of due tasks, each under a [`Lease`] that it extends with
//! [heartbeats](Queue::heartbeat) and gives back with [`finish`](Queue::finish) or
//! [`release`](Queue::release). Every lease carries a fencing token: an outcome reported under a
//! lease that has since expired and been claimed again changes nothing, and says so
//! ([`Ack::Stale`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use std::time::Duration;
//! use longtask_core::{Ack, ClaimRequest, Completion, MemoryBackend, NewTask, Outcome, Queue, TaskStore};
//!
//! let backend = MemoryBackend::new();
//! backend.insert(vec![NewTask::new("report", "{}")]).await?;
//! let jobs = ["report".to_owned()];
//! let claimed = backend
//!     .claim(ClaimRequest {
//!         jobs: &jobs,
//!         worker: "w1",
//!         limit: 10,
//!         lease: Duration::from_secs(30),
//!         limits: &[],
//!     })
//!     .await?;
//! let done = Completion::new(claimed[0].lease, Outcome::Succeeded { output: "42".into() });
//! assert_eq!(backend.finish(vec![done]).await?, vec![Ack::Applied]);
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    error::Result,
    task::{Progress, TaskId},
};

/// A worker's hold on one attempt of a task. The token fences it: it changes with every claim,
/// so an outcome reported under an older lease is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The task held.
    pub task: TaskId,
    /// The fencing token: unique per claim of this task.
    pub token: u64,
}

/// What [`Queue::claim`] is asked for.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// Claim only tasks of these jobs.
    pub jobs: &'a [String],
    /// Who claims (stored as the lease owner, for operators).
    pub worker: &'a str,
    /// At most this many tasks.
    pub limit: usize,
    /// How long the lease lasts unless extended.
    pub lease: Duration,
    /// Concurrency limits of some of the jobs (none: `&[]`), which the claim enforces across
    /// every worker: it never takes a task that would make more tasks run at once than a limit
    /// allows.
    pub limits: &'a [JobLimits],
}

/// A job's concurrency limits ([`JobOptions::max_running`](crate::JobOptions::max_running),
/// [`JobOptions::max_running_per_key`](crate::JobOptions::max_running_per_key)), as a claim
/// enforces them.
///
/// Tasks count as running from their claim until their attempt ends (finished, failed, given
/// back, or recovered after its lease expired). A claim skips tasks over a limit and takes the
/// next ones in claim order that are not: the tasks of a busy concurrency key wait while tasks of
/// other keys run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLimits {
    /// The job limited.
    pub job: String,
    /// At most this many tasks of the job run at once.
    pub max_running: Option<u32>,
    /// At most this many tasks of the job with the same
    /// [concurrency key](crate::SubmitOptions::concurrency_key) run at once (tasks without a
    /// key are not limited by it).
    pub max_running_per_key: Option<u32>,
}

impl JobLimits {
    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_running.is_some() || self.max_running_per_key.is_some()
    }
}

/// One claimed task: what a worker needs to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTask {
    /// The lease to report under.
    pub lease: Lease,
    /// The job's name.
    pub job: String,
    /// The parameters, encoded as JSON.
    pub params: String,
    /// This attempt's number (1-based).
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// When the task became due (its `run_at` when it was claimed: submitted for, retried at,
    /// released at): how long it waited for a worker is the claim's time minus this.
    pub due_at: DateTime<Utc>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The job returned an output (encoded as JSON): the task succeeds.
    Succeeded {
        /// The output, encoded as JSON.
        output: String,
    },
    /// The attempt failed. With `retry_after`, the task is retried after that delay if attempts
    /// remain and no cancellation was requested; otherwise it fails (or is cancelled, if
    /// cancellation was requested).
    Failed {
        /// What went wrong, for a person to read.
        error: String,
        /// The backoff before the next attempt; `None` for a permanent failure.
        retry_after: Option<Duration>,
    },
    /// The job stopped because cancellation was requested: the task is cancelled.
    Cancelled {
        /// Why, for a person to read.
        reason: String,
    },
}

/// One attempt's outcome, reported under its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The lease the attempt ran under.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
    /// The job's latest progress not yet written, stored with the outcome.
    pub progress: Option<Progress>,
}

impl Completion {
    /// A completion without pending progress.
    pub fn new(lease: Lease, outcome: Outcome) -> Self {
        Self {
            lease,
            outcome,
            progress: None,
        }
    }
}

/// A job's saved state, written under its lease with [`Queue::save_checkpoint`]: what a later
/// attempt resumes from after a crash, a timeout, a retry or a graceful release.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The lease of the attempt saving it: a stale lease's checkpoint changes nothing.
    pub lease: Lease,
    /// The attempt saving it (1-based), recorded in [`CheckpointInfo::attempt`].
    pub attempt: u32,
    /// The state, encoded as JSON.
    pub state: String,
    /// The job's progress as of this state, written in the same change as the state (and so
    /// shown by the status page exactly when the state is committed), when there is one.
    pub progress: Option<Progress>,
}

/// What a task's record shows of its last checkpoint ([`TaskRecord::checkpoint`]); the state
/// itself is given only to the job ([`Queue::load_checkpoint`]).
///
/// [`TaskRecord::checkpoint`]: crate::TaskRecord::checkpoint
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The attempt that saved it.
    pub attempt: u32,
    /// When it was saved (the backend's clock).
    pub at: DateTime<Utc>,
    /// The progress saved with it: where a resumed attempt starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

impl CheckpointInfo {
    /// The record a backend stores for `checkpoint`, saved at `at`.
    pub fn new(checkpoint: &Checkpoint, at: DateTime<Utc>) -> Self {
        Self {
            attempt: checkpoint.attempt,
            at,
            progress: checkpoint.progress.clone(),
        }
    }

    /// As JSON, for backends that store it as text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From JSON stored by [`to_json`](Self::to_json).
    ///
    /// # Errors
    /// [`Error::Codec`](crate::Error::Codec) if `json` is not a stored checkpoint record.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|err| crate::Error::codec("decode", "a stored checkpoint record", err))
    }
}

/// A running [`Worker`](crate::Worker) as the backend's registry shows it to operators
/// ([`Queue::workers`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's id (unique per worker, stored as the lease owner of its tasks).
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The jobs it runs.
    pub jobs: Vec<String>,
    /// Tasks it runs at once at most.
    pub concurrency: u32,
    /// Tasks it was running at its last report.
    pub busy: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last reported (the backend's clock).
    pub last_seen: DateTime<Utc>,
}

/// Whether a lease-fenced change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Done.
    Applied,
    /// Nothing changed: the lease had expired and the task was claimed again, finished, or
    /// purged.
    Stale,
}

/// What a heartbeat learned about one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The lease was extended. `cancel_requested` says whether the task should stop.
    Held {
        /// Whether cancellation was requested.
        cancel_requested: bool,
    },
    /// The lease is gone (expired and recovered, or the task finished or was purged): stop work
    /// on it; its outcome will be refused.
    Lost,
}

/// A wake-up signal for idle workers: it changes whenever work may have become available.
///
/// Backends keep a [`watch::Sender`] and bump it after inserting due tasks, scheduling retries,
/// releasing or recovering tasks (Postgres forwards NOTIFY to it, Redis a pub/sub message).
#[derive(Debug, Clone)]
pub struct WorkSignal(watch::Receiver<()>);

impl WorkSignal {
    /// A signal that follows `receiver`.
    pub fn new(receiver: watch::Receiver<()>) -> Self {
        Self(receiver)
    }

    /// Waits for the next change after the last one seen. If the sender is gone, waits forever
    /// (workers then fall back to their poll interval).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Hands tasks to workers. Object-safe: workers hold an `Arc<dyn Queue>`.
///
/// Every method takes and returns batches, so that a worker can claim, extend, and complete many
/// tasks per round trip.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Claims up to `limit` due tasks of the given jobs: higher priority first, then earlier
    /// `run_at`, then earlier submission. Each becomes `running` under a new lease with its
    /// attempt counted. Concurrent claimers never receive the same task while its lease lives.
    /// Tasks that would exceed one of the request's [`limits`](ClaimRequest::limits) are
    /// skipped, atomically with respect to every other claim.
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedTask>>;

    /// Extends live leases by `extend` from now; reports, per lease in order, whether it is still
    /// held and whether cancellation was requested.
    async fn heartbeat(&self, leases: &[Lease], extend: Duration) -> Result<Vec<LeaseState>>;

    /// Records attempts' outcomes; one [`Ack`] per completion, in order.
    async fn finish(&self, completions: Vec<Completion>) -> Result<Vec<Ack>>;

    /// Gives tasks back unrun (a worker shutting down): each returns to `queued`, due now, and the
    /// attempt is not counted.
    async fn release(&self, leases: &[Lease]) -> Result<Vec<Ack>>;

    /// Recovers up to `limit` running tasks whose lease has expired (their worker died or
    /// stalled): each is retried at once if attempts remain (its error says the worker was lost),
    /// cancelled if cancellation was requested, and failed otherwise. Returns how many.
    async fn recover_expired(&self, limit: usize) -> Result<u64>;

    /// Saves a running attempt's state under its lease, replacing the task's previous checkpoint
    /// (and, when the checkpoint carries progress, the task's progress, in the same change, with
    /// the progress event watchers see). When this returns `Applied`, the state is committed: a
    /// later attempt of the task ([`load_checkpoint`](Self::load_checkpoint)) gets it, whatever
    /// happens to this one. Under a stale lease nothing changes and the answer is
    /// [`Ack::Stale`]. The checkpoint lives as long as the task and is purged with it.
    async fn save_checkpoint(&self, checkpoint: Checkpoint) -> Result<Ack>;

    /// The state of the task's last committed checkpoint (JSON), if any.
    async fn load_checkpoint(&self, task: TaskId) -> Result<Option<String>>;

    /// Registers a worker, or refreshes its entry: `info` replaces what was stored, its
    /// `last_seen` set to the backend's now; the entry lives for `ttl` unless refreshed again.
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<()>;

    /// Removes a worker's entry (a worker stopping).
    async fn unregister_worker(&self, id: &str) -> Result<()>;

    /// The workers whose entries live, by id; entries past their `ttl` (a worker that died) are
    /// never listed, and are removed.
    async fn workers(&self) -> Result<Vec<WorkerInfo>>;

    /// A signal that changes when work may have become available.
    fn work_signal(&self) -> WorkSignal;
}

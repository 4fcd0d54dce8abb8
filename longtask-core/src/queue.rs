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
//!     .claim(ClaimRequest { jobs: &jobs, worker: "w1", limit: 10, lease: Duration::from_secs(30) })
//!     .await?;
//! let done = Completion::new(claimed[0].lease, Outcome::Succeeded { output: "42".into() });
//! assert_eq!(backend.finish(vec![done]).await?, vec![Ack::Applied]);
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
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

    /// A signal that changes when work may have become available.
    fn work_signal(&self) -> WorkSignal;
}

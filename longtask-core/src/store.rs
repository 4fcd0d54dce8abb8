//! [`TaskStore`]: where tasks are kept.
//!
//! The store inserts tasks (one or many, honouring idempotency keys), reads them back, lists them,
//! cancels them and purges finished tasks past their retention. Applications rarely call it
//! directly: [`Client`](crate::Client) does.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use longtask_core::{MemoryBackend, NewTask, TaskStatus, TaskStore};
//!
//! let store = MemoryBackend::new();
//! let inserted = store.insert(vec![NewTask::new("report", "{}")]).await?;
//! let task = store.get(inserted[0].id).await?.unwrap();
//! assert_eq!(task.status, TaskStatus::Queued);
//! # Ok(()) }
//! ```

use async_trait::async_trait;

use crate::{
    error::Result,
    stats::Stats,
    task::{Inserted, NewTask, TaskId, TaskQuery, TaskRecord, TaskStatus},
};

/// What [`TaskStore::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task was waiting (queued, scheduled or retrying) and is now cancelled.
    Cancelled,
    /// The task is running: cancellation was requested; its worker sees it at the next heartbeat
    /// and the job stops by itself or after its grace period.
    Requested,
    /// The task had already finished with this status; nothing changed.
    AlreadyFinished(TaskStatus),
}

/// What [`TaskStore::retry`] did with one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The task was failed or cancelled and is queued again, due now, with a fresh attempt
    /// budget (its attempts count from zero; its last error is kept until the next attempt ends).
    Retried,
    /// The task is waiting, running or succeeded: there is nothing to retry.
    NotRetryable(TaskStatus),
    /// The task is a member of a group (or a group's root): a group's count of open members is
    /// not reopened by an operator, so such a task is not retried.
    InGroup,
    /// No task has this id.
    NotFound,
}

/// What [`TaskStore::delete`] did with one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The finished task is gone (with its output, progress and checkpoint; its idempotency key
    /// is free again), as if its retention had ended.
    Deleted,
    /// The task has not finished: cancel it first.
    NotFinished(TaskStatus),
    /// No task has this id.
    NotFound,
}

/// Stores tasks. Object-safe: applications and workers hold an `Arc<dyn TaskStore>`.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Inserts tasks atomically (all or none), in order, and returns one [`Inserted`] per task, in
    /// the same order. A task whose `(job, idempotency_key)` matches an existing task, or an
    /// earlier task in the same call, is not inserted: its entry carries the existing id with
    /// `created: false`.
    async fn insert(&self, tasks: Vec<NewTask>) -> Result<Vec<Inserted>>;

    /// The task's record, or `None` when there is no such task.
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>>;

    /// Tasks matching the query, in submission (id) order.
    async fn list(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>>;

    /// Cancels a waiting task at once, or requests cancellation of a running one.
    /// Fails with [`Error::NotFound`](crate::Error::NotFound) for an unknown id.
    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome>;

    /// Deletes up to `limit` finished tasks whose retention has ended (finished_at + retention
    /// ≤ now), with their outputs and progress; returns how many were deleted. Nothing else is
    /// touched.
    async fn purge(&self, limit: usize) -> Result<u64>;

    /// An operator's retry: each failed or cancelled task among `ids` goes back to `queued`, due
    /// now, with a fresh attempt budget; one [`RetryOutcome`] per id, in order. A lease from an
    /// earlier attempt stays stale: the next claim issues a new one.
    async fn retry(&self, ids: &[TaskId]) -> Result<Vec<RetryOutcome>>;

    /// An operator's delete: each finished task among `ids` is removed now, as purge would
    /// after its retention; one [`DeleteOutcome`] per id, in order.
    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<DeleteOutcome>>;

    /// Every job's [`Stats`]: tasks per status, the oldest due waiting task, and tasks finished
    /// per minute over the last hour. Exact, and cheap at millions of tasks: backends keep
    /// counts of finished tasks as they change rather than counting rows.
    async fn stats(&self) -> Result<Stats>;
}

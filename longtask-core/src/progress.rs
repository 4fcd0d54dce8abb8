//! [`ProgressSink`]: where running tasks' progress goes, and how watchers follow it.
//!
//! Workers coalesce a job's progress reports and write the latest value at most once per
//! interval per task, batched across tasks. Readers get the latest value, or [watch](ProgressSink::watch)
//! a live stream of [`TaskEvent`]s that ends after the task's final status.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use std::time::Duration;
//! use longtask_core::{ClaimRequest, MemoryBackend, NewTask, Progress, ProgressSink, Queue, TaskStore};
//!
//! let backend = MemoryBackend::new();
//! let id = backend.insert(vec![NewTask::new("report", "{}")]).await?[0].id;
//! let jobs = ["report".to_owned()];
//! let claimed = backend
//!     .claim(ClaimRequest { jobs: &jobs, worker: "w1", limit: 1, lease: Duration::from_secs(30), limits: &[] })
//!     .await?;
//! backend.report(&[(claimed[0].lease, Progress::new(3, Some(10)))]).await?;
//! assert_eq!(backend.latest(id).await?.unwrap().step, 3);
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{
    error::Result,
    queue::Lease,
    task::{Progress, TaskId, TaskStatus},
};

/// A change to a watched task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskEvent {
    /// New progress.
    Progress(Progress),
    /// A new status. After a final status the stream ends.
    Status {
        /// The status.
        status: TaskStatus,
    },
}

/// Stores and streams progress. Object-safe.
#[async_trait]
pub trait ProgressSink: Send + Sync {
    /// Stores the latest progress of each running task (a batch, one entry per task), under the
    /// lease of the attempt that reports it, and sends it to the task's watchers.
    ///
    /// Progress is fenced like every other write of a worker: a report under a lease that is no
    /// longer live (it expired and the task was recovered or claimed again, or the task
    /// finished or was purged) changes nothing, so a worker that lost its task can never move a
    /// newer attempt's progress (and the status page) backwards. Such reports, and reports for
    /// unknown tasks, are ignored without an error.
    async fn report(&self, updates: &[(Lease, Progress)]) -> Result<()>;

    /// The latest progress stored for a task.
    async fn latest(&self, id: TaskId) -> Result<Option<Progress>>;

    /// A live stream of the task's changes: progress reports and status changes, ending after a
    /// final status (at once, with that status, if the task has already finished).
    /// Fails with [`Error::NotFound`](crate::Error::NotFound) for an unknown id.
    async fn watch(&self, id: TaskId) -> Result<BoxStream<'static, TaskEvent>>;
}

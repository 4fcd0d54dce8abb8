//! [`ProgressSink`]: where running tasks' progress goes, and how watchers follow it.
//!
//! Workers coalesce a job's progress reports and write the latest value at most once per
//! interval per task, batched across tasks. Readers get the latest value, or [watch](ProgressSink::watch)
//! a live stream of [`TaskEvent`]s that ends after the task's final status.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use longtask_core::{MemoryBackend, NewTask, Progress, ProgressSink, TaskStore};
//!
//! let backend = MemoryBackend::new();
//! let id = backend.insert(vec![NewTask::new("report", "{}")]).await?[0].id;
//! backend.report(&[(id, Progress::new(3, Some(10)))]).await?;
//! assert_eq!(backend.latest(id).await?.unwrap().step, 3);
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{
    error::Result,
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
    /// Stores the latest progress of each task (a batch, one entry per task), and sends it to
    /// the task's watchers. Reports for unknown or finished tasks are ignored.
    async fn report(&self, updates: &[(TaskId, Progress)]) -> Result<()>;

    /// The latest progress stored for a task.
    async fn latest(&self, id: TaskId) -> Result<Option<Progress>>;

    /// A live stream of the task's changes: progress reports and status changes, ending after a
    /// final status (at once, with that status, if the task has already finished).
    /// Fails with [`Error::NotFound`](crate::Error::NotFound) for an unknown id.
    async fn watch(&self, id: TaskId) -> Result<BoxStream<'static, TaskEvent>>;
}

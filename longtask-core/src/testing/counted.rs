//! [`CountedReads`]: a backend that counts the task reads and watch subscriptions made through it.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{
    Backend, CancelOutcome, DeleteOutcome, Inserted, Lease, NewTask, Progress, ProgressSink,
    RetryOutcome, TaskEvent, TaskId, TaskQuery, TaskRecord, TaskStore,
};

/// Wraps a backend's store and progress sink, counting the task reads (`get`) and the watch
/// subscriptions a client makes through them: for tests and benchmarks of what watching costs.
///
/// ```
/// use longtask_core::{testing::CountedReads, Backend, Client, MemoryBackend, TaskId};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let counted = CountedReads::new(Backend::new(MemoryBackend::new()));
/// let client = Client::new(counted.backend());
/// let _ = client.status(TaskId::new()).await;
/// assert_eq!(counted.gets(), 1);
/// # }
/// ```
#[derive(Debug)]
pub struct CountedReads {
    inner: Backend,
    gets: AtomicU64,
    watches: AtomicU64,
}

impl CountedReads {
    /// Counts what goes through `inner`'s store and progress sink.
    pub fn new(inner: Backend) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gets: AtomicU64::new(0),
            watches: AtomicU64::new(0),
        })
    }

    /// A backend whose store and progress sink are counted (its queue is the inner one's).
    pub fn backend(self: &Arc<Self>) -> Backend {
        Backend::from_parts(self.clone(), self.inner.queue().clone(), self.clone())
    }

    /// Task reads so far.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }

    /// Watch subscriptions so far.
    pub fn watches(&self) -> u64 {
        self.watches.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl TaskStore for CountedReads {
    async fn insert(&self, tasks: Vec<NewTask>) -> crate::Result<Vec<Inserted>> {
        self.inner.store().insert(tasks).await
    }

    async fn get(&self, id: TaskId) -> crate::Result<Option<TaskRecord>> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.store().get(id).await
    }

    async fn list(&self, query: &TaskQuery) -> crate::Result<Vec<TaskRecord>> {
        self.inner.store().list(query).await
    }

    async fn cancel(&self, id: TaskId) -> crate::Result<CancelOutcome> {
        self.inner.store().cancel(id).await
    }

    async fn purge(&self, limit: usize) -> crate::Result<u64> {
        self.inner.store().purge(limit).await
    }

    async fn retry(&self, ids: &[TaskId]) -> crate::Result<Vec<RetryOutcome>> {
        self.inner.store().retry(ids).await
    }

    async fn delete(&self, ids: &[TaskId]) -> crate::Result<Vec<DeleteOutcome>> {
        self.inner.store().delete(ids).await
    }

    async fn stats(&self) -> crate::Result<crate::Stats> {
        self.inner.store().stats().await
    }
}

#[async_trait]
impl ProgressSink for CountedReads {
    async fn report(&self, updates: &[(Lease, Progress)]) -> crate::Result<()> {
        self.inner.progress().report(updates).await
    }

    async fn latest(&self, id: TaskId) -> crate::Result<Option<Progress>> {
        self.inner.progress().latest(id).await
    }

    async fn watch(&self, id: TaskId) -> crate::Result<BoxStream<'static, TaskEvent>> {
        self.watches.fetch_add(1, Ordering::Relaxed);
        self.inner.progress().watch(id).await
    }
}

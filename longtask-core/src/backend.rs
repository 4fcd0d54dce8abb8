//! [`Backend`]: the three backend traits bundled for a [`Client`](crate::Client) or
//! [`Worker`](crate::Worker).
//!
//! Every backend type implements [`TaskStore`], [`Queue`] and [`ProgressSink`] over one storage,
//! so `Backend::new(backend)` (or `.into()`) is all most code needs. Progress may come from
//! elsewhere: [`Backend::with_progress`] swaps in another sink (Postgres tasks, Redis progress).
//!
//! ```
//! use longtask_core::{Backend, Client, MemoryBackend};
//!
//! let backend = Backend::new(MemoryBackend::new());
//! let client = Client::new(backend.clone());
//! ```

use std::{fmt, sync::Arc};

use crate::{progress::ProgressSink, queue::Queue, store::TaskStore};

/// The three halves of a backend, shared (`Arc<dyn _>`) and cheap to clone.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn TaskStore>,
    queue: Arc<dyn Queue>,
    progress: Arc<dyn ProgressSink>,
}

impl Backend {
    /// Uses one backend for tasks, queue and progress.
    ///
    /// ```
    /// let backend = longtask_core::Backend::new(longtask_core::MemoryBackend::new());
    /// ```
    pub fn new<B>(backend: B) -> Self
    where
        B: TaskStore + Queue + ProgressSink + 'static,
    {
        let backend = Arc::new(backend);
        Self {
            store: backend.clone(),
            queue: backend.clone(),
            progress: backend,
        }
    }

    /// Builds a backend from separate parts.
    pub fn from_parts(
        store: Arc<dyn TaskStore>,
        queue: Arc<dyn Queue>,
        progress: Arc<dyn ProgressSink>,
    ) -> Self {
        Self {
            store,
            queue,
            progress,
        }
    }

    /// Sends progress to `sink` instead.
    ///
    /// ```
    /// use longtask_core::{Backend, MemoryBackend};
    /// use std::sync::Arc;
    /// let backend = Backend::new(MemoryBackend::new()).with_progress(Arc::new(MemoryBackend::new()));
    /// ```
    #[must_use]
    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = sink;
        self
    }

    /// The task store.
    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.store
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// The progress sink.
    pub fn progress(&self) -> &Arc<dyn ProgressSink> {
        &self.progress
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

impl<B> From<B> for Backend
where
    B: TaskStore + Queue + ProgressSink + 'static,
{
    fn from(backend: B) -> Self {
        Self::new(backend)
    }
}

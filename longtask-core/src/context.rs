//! [`TaskContext`]: what a running job sees of its task.
//!
//! Through it a job reports progress, learns its task id and attempt, and notices cancellation.
//! Progress reports are cheap: they update a value in memory, and the worker writes the latest
//! value at most once per interval (batched across tasks), and always before the task's outcome.
//! A job may report a million times a second without a million writes.
//!
//! ```
//! use longtask_core::{JobError, TaskContext};
//!
//! async fn count(cx: TaskContext) -> Result<u64, JobError> {
//!     for day in 1..=31 {
//!         cx.progress(day, Some(31), format!("Handling day {day}"))?; // Err once cancelled
//!     }
//!     Ok(31)
//! }
//! ```

use std::{
    fmt,
    pin::pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use chrono::Utc;
use tokio::sync::Notify;

use crate::{
    eta::EtaEstimator,
    job::JobError,
    task::{Progress, TaskId},
};

/// A running task's view of itself: progress, identity, cancellation. Cheap to clone.
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<ContextInner>,
}

pub(crate) struct ContextInner {
    pub(crate) id: TaskId,
    pub(crate) job: &'static str,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) cancel: Cancel,
    progress: Mutex<ProgressState>,
}

#[derive(Default)]
struct ProgressState {
    latest: Option<Progress>,
    dirty: bool,
    eta: EtaEstimator,
}

impl TaskContext {
    pub(crate) fn new(id: TaskId, job: &'static str, attempt: u32, max_attempts: u32) -> Self {
        Self {
            inner: Arc::new(ContextInner {
                id,
                job,
                attempt,
                max_attempts,
                cancel: Cancel::default(),
                progress: Mutex::new(ProgressState::default()),
            }),
        }
    }

    /// A context for running a job outside a worker (in tests of the job itself): task id new,
    /// attempt 1 of 1, never cancelled unless [`cancel`](Self::cancel) is called.
    ///
    /// ```
    /// let cx = longtask_core::TaskContext::detached();
    /// assert_eq!(cx.attempt(), 1);
    /// cx.progress(1, Some(2), "half way").unwrap();
    /// assert_eq!(cx.latest_progress().unwrap().step, 1);
    /// ```
    pub fn detached() -> Self {
        Self::new(TaskId::new(), "detached", 1, 1)
    }

    pub(crate) fn inner(&self) -> &Arc<ContextInner> {
        &self.inner
    }

    /// Reports progress: `step` of `total` (unknown total: `None`, for an indeterminate bar), with
    /// a message for the person waiting. Returns `Err(JobError::cancelled())` once cancellation
    /// was requested, so that `?` stops the job.
    pub fn progress(
        &self,
        step: u64,
        total: impl Into<Option<u64>>,
        message: impl Into<String>,
    ) -> Result<(), JobError> {
        let message = message.into();
        let progress = Progress {
            step,
            total: total.into(),
            message: (!message.is_empty()).then_some(message),
            rate: None,
            updated_at: Utc::now(),
        };
        self.set_progress(progress)
    }

    /// Reports a prepared [`Progress`] (its `rate` is recomputed from the samples so far).
    pub fn set_progress(&self, mut progress: Progress) -> Result<(), JobError> {
        {
            let mut state = self
                .inner
                .progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.eta.observe(progress.step, progress.updated_at);
            progress.rate = state.eta.rate();
            state.latest = Some(progress);
            state.dirty = true;
        }
        if self.is_cancelled() {
            return Err(JobError::cancelled());
        }
        Ok(())
    }

    /// The latest progress reported in this attempt.
    pub fn latest_progress(&self) -> Option<Progress> {
        self.inner
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest
            .clone()
    }

    /// The task's id.
    pub fn task_id(&self) -> TaskId {
        self.inner.id
    }

    /// The job's name.
    pub fn job(&self) -> &'static str {
        self.inner.job
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Attempts allowed in all.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// Whether cancellation was requested (or the worker is stopping the task).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when cancellation is requested: for `tokio::select!` around long awaits.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await;
    }

    /// Requests cancellation of this attempt (what the worker does when the task is cancelled;
    /// useful in tests of a job).
    pub fn cancel(&self) {
        self.inner.cancel.cancel();
    }
}

/// A cancellation flag with a way to await it; one allocation less per attempt than a
/// `CancellationToken`, which matters at hundreds of thousands of tasks a second.
#[derive(Default)]
pub(crate) struct Cancel {
    flag: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub(crate) fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    async fn cancelled(&self) {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

impl ContextInner {
    /// Takes the latest progress if it changed since the last take.
    pub(crate) fn take_dirty(&self) -> Option<Progress> {
        let mut state = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        if state.dirty {
            state.dirty = false;
            state.latest.clone()
        } else {
            None
        }
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("task_id", &self.inner.id)
            .field("job", &self.inner.job)
            .field("attempt", &self.inner.attempt)
            .field("max_attempts", &self.inner.max_attempts)
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

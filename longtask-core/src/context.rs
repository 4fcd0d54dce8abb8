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
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::Notify;

use crate::{
    backend::Backend,
    client::{Client, SubmitOptions},
    eta::EtaEstimator,
    job::Job,
    job::JobError,
    queue::{Ack, Checkpoint, Lease},
    task::{GroupRole, TaskRecord},
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
    checkpoints: Checkpoints,
}

/// Where a context saves its checkpoints.
pub(crate) enum Checkpoints {
    /// In the backend, under the attempt's lease.
    Backend {
        backend: Backend,
        lease: Lease,
        /// The largest state accepted, in bytes of JSON.
        limit: usize,
    },
    /// In the context itself (a detached context, for tests of a job).
    Local(Mutex<Option<String>>),
}

#[derive(Default)]
struct ProgressState {
    latest: Option<Progress>,
    dirty: bool,
    eta: EtaEstimator,
}

impl TaskContext {
    pub(crate) fn new(
        id: TaskId,
        job: &'static str,
        attempt: u32,
        max_attempts: u32,
        checkpoints: Checkpoints,
    ) -> Self {
        Self {
            inner: Arc::new(ContextInner {
                id,
                job,
                attempt,
                max_attempts,
                cancel: Cancel::default(),
                progress: Mutex::new(ProgressState::default()),
                checkpoints,
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
        Self::new(
            TaskId::new(),
            "detached",
            1,
            1,
            Checkpoints::Local(Mutex::new(None)),
        )
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

    /// Saves `state` as the task's checkpoint, with the latest progress reported, in one write
    /// under this attempt's lease. When it returns `Ok`, the state is committed: if this attempt
    /// ends without finishing (the worker crashes or is killed, the attempt times out, fails and
    /// is retried, or is given back at shutdown), the next attempt gets it from
    /// [`resume`](Self::resume) and carries on from there, and the status page says it resumed
    /// and from where. Each checkpoint replaces the previous one; it is purged with the task.
    ///
    /// The state is stored as JSON, at most [`JobOptions::max_checkpoint_size`] bytes (1 MiB
    /// unless the job says otherwise). Save it where redoing the work since the last checkpoint
    /// would cost more than a write (after each day of a month, each file of a batch); a
    /// checkpoint costs one backend write (see the README for each backend's cost).
    ///
    /// # Errors
    /// - a [fatal](JobError::fatal) error if the state cannot be encoded as JSON or is larger
    ///   than the limit: a retry would not help;
    /// - a retryable error if this attempt's lease was lost (the worker was cut off for longer
    ///   than the lease, and another attempt may be running: stop, with `?`), or if the backend
    ///   failed (the attempt fails and the next one resumes from the previous checkpoint).
    ///
    /// ```
    /// use longtask_core::{JobError, TaskContext};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, Default)]
    /// struct Done { days: u32, total: u64 }
    ///
    /// async fn month(cx: TaskContext) -> Result<u64, JobError> {
    ///     let mut done: Done = cx.resume().await?.unwrap_or_default();
    ///     for day in done.days + 1..=31 {
    ///         done.total += u64::from(day); // the day's work
    ///         done.days = day;
    ///         cx.progress(day.into(), Some(31), format!("Day {day}"))?;
    ///         cx.checkpoint(&done).await?;
    ///     }
    ///     Ok(done.total)
    /// }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cx = TaskContext::detached();
    /// assert_eq!(month(cx.clone()).await.unwrap(), 496);
    /// // A detached context keeps its checkpoint itself: a rerun resumes after day 31.
    /// assert_eq!(month(cx).await.unwrap(), 496);
    /// # });
    /// ```
    ///
    /// [`JobOptions::max_checkpoint_size`]: crate::JobOptions::max_checkpoint_size
    pub async fn checkpoint<S: Serialize + ?Sized>(&self, state: &S) -> Result<(), JobError> {
        let job = self.inner.job;
        let state = serde_json::to_string(state).map_err(|err| {
            JobError::fatal(format!(
                "the checkpoint of job `{job}` could not be encoded as JSON: {err}"
            ))
        })?;
        let (queue, lease, limit) = match &self.inner.checkpoints {
            Checkpoints::Backend {
                backend,
                lease,
                limit,
            } => (backend.queue(), *lease, *limit),
            Checkpoints::Local(saved) => {
                *saved.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
                return Ok(());
            }
        };
        if state.len() > limit {
            return Err(JobError::fatal(format!(
                "the checkpoint of job `{job}` is {} bytes of JSON, more than its limit of {limit} \
                 bytes (JobOptions::max_checkpoint_size); save less state, or raise the limit",
                state.len()
            )));
        }
        // The progress rides along, so that the page and the checkpoint never disagree; the
        // worker need not write it again unless it changes.
        let progress = {
            let mut progress = self
                .inner
                .progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            progress.dirty = false;
            progress.latest.clone()
        };
        let checkpoint = Checkpoint {
            lease,
            attempt: self.inner.attempt,
            state,
            progress,
        };
        let outcome = queue.save_checkpoint(checkpoint).await;
        if !matches!(outcome, Ok(Ack::Applied)) {
            // Not written: the worker writes the progress as usual.
            self.inner
                .progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .dirty = true;
        }
        match outcome {
            Ok(Ack::Applied) => Ok(()),
            Ok(Ack::Stale) => Err(JobError::retryable(format!(
                "the checkpoint of task {} was refused: this attempt lost its lease (the worker \
                 was cut off for longer than the lease), so another attempt may be running; \
                 this one stops",
                self.inner.id
            ))),
            Err(err) => Err(JobError::retryable(format!(
                "the checkpoint of task {} could not be saved: {err}",
                self.inner.id
            ))),
        }
    }

    /// The state of the task's last committed [checkpoint](Self::checkpoint), decoded: what an
    /// attempt carries on from after an earlier one was interrupted. `None` when no checkpoint
    /// was saved (a first run).
    ///
    /// # Errors
    /// - a [fatal](JobError::fatal) error if the saved state does not decode as `S` (its type
    ///   changed since it was saved: decode an older shape yourself, or start over with
    ///   `.unwrap_or(None)`);
    /// - a retryable error if the backend failed.
    pub async fn resume<S: DeserializeOwned>(&self) -> Result<Option<S>, JobError> {
        let saved = match &self.inner.checkpoints {
            Checkpoints::Backend { backend, .. } => backend
                .queue()
                .load_checkpoint(self.inner.id)
                .await
                .map_err(|err| {
                    JobError::retryable(format!(
                        "the checkpoint of task {} could not be loaded: {err}",
                        self.inner.id
                    ))
                })?,
            Checkpoints::Local(saved) => {
                saved.lock().unwrap_or_else(PoisonError::into_inner).clone()
            }
        };
        saved
            .map(|json| {
                serde_json::from_str(&json).map_err(|err| {
                    JobError::fatal(format!(
                        "the checkpoint of job `{}` does not decode as {}: {err}",
                        self.inner.job,
                        std::any::type_name::<S>()
                    ))
                })
            })
            .transpose()
    }

    /// The group this task is a member of, if any (read from the backend).
    ///
    /// # Errors
    /// A retryable error if the backend failed.
    pub async fn group(&self) -> Result<Option<TaskId>, JobError> {
        let Checkpoints::Backend { backend, .. } = &self.inner.checkpoints else {
            return Ok(None);
        };
        let record =
            backend.store().get(self.inner.id).await.map_err(|err| {
                JobError::retryable(format!("reading task {}: {err}", self.inner.id))
            })?;
        Ok(record.and_then(|r| r.group))
    }

    /// Adds a task of job `J` to this task's group (fan-out found at run time): the group's
    /// total grows, and its completion job waits for the new member too. The group is still
    /// open, since this task (a member) has not finished.
    ///
    /// # Errors
    /// A fatal error if this task is not a member of a group or the parameters cannot be
    /// encoded; a retryable one if the backend failed.
    pub async fn submit_to_group<J: Job>(&self, params: &J::Params) -> Result<TaskId, JobError> {
        self.submit_to_group_with::<J>(params, SubmitOptions::new())
            .await
    }

    /// [`submit_to_group`](Self::submit_to_group) with options.
    ///
    /// # Errors
    /// As [`submit_to_group`](Self::submit_to_group).
    pub async fn submit_to_group_with<J: Job>(
        &self,
        params: &J::Params,
        options: SubmitOptions,
    ) -> Result<TaskId, JobError> {
        let Some(group) = self.group().await? else {
            return Err(JobError::fatal(format!(
                "task {} is not a member of a group: it cannot add members to one",
                self.inner.id
            )));
        };
        let Checkpoints::Backend { backend, .. } = &self.inner.checkpoints else {
            return Err(JobError::fatal("a detached context has no backend"));
        };
        let mut task = options
            .into_task::<J>(params)
            .map_err(|err| JobError::fatal(err.to_string()))?;
        task.group = Some(GroupRole::Member(group));
        let id = task.id;
        Client::new(backend.clone())
            .submit_raw(vec![task])
            .await
            .map_err(|err| JobError::retryable(format!("adding a task to group {group}: {err}")))?;
        Ok(id)
    }

    /// The members of the group whose root this task is, with their outcomes: what a group's
    /// completion job (see [`NewGroup::on_complete`](crate::NewGroup::on_complete)) reads.
    /// Empty for a task that is not a group's root.
    ///
    /// # Errors
    /// A retryable error if the backend failed.
    pub async fn group_members(&self) -> Result<Vec<TaskRecord>, JobError> {
        let Checkpoints::Backend { backend, .. } = &self.inner.checkpoints else {
            return Ok(Vec::new());
        };
        Client::new(backend.clone())
            .group_members(self.inner.id)
            .await
            .map_err(|err| {
                JobError::retryable(format!(
                    "reading the members of group {}: {err}",
                    self.inner.id
                ))
            })
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

//! Slots: the long-lived tasks that run claimed tasks one after another.

use std::{
    collections::VecDeque,
    fmt,
    panic::AssertUnwindSafe,
    pin::pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use futures::FutureExt;
use tokio::{sync::Notify, time::Instant};
use tracing::Instrument;

use crate::{
    backend::Backend,
    context::{Checkpoints, ContextInner, TaskContext},
    job::ErrorKind,
    metrics::{Ended, Instruments, WorkerMetrics},
    queue::{ClaimedTask, Completion, Lease, Outcome},
    registry::{ErasedJob, Registry},
};

/// How one attempt ended.
pub(super) enum AttemptEnd {
    Output(String),
    Error { kind: ErrorKind, message: String },
}

/// Why the coordinator stops a running attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kill {
    /// Cancellation was requested and the grace period is over: record the task cancelled.
    Cancel,
    /// Shutdown deadline: drop the attempt; the coordinator gives the task back.
    Release,
    /// The lease is gone: drop the attempt; its outcome would be refused anyway.
    Lost,
}

/// A claimed task that has not started, with the time until which its lease is known to be held.
pub(super) struct Buffered {
    pub(super) task: ClaimedTask,
    /// When the claim or the last heartbeat that confirmed this lease was *sent*, plus the lease:
    /// the backend cannot have let the lease expire before then.
    pub(super) valid_until: Instant,
}

/// An attempt's outcome waiting to be written, with the time until which its lease is known to
/// be held.
pub(super) struct Finished {
    pub(super) completion: Completion,
    pub(super) valid_until: Instant,
}

/// The attempt a slot is running, as the coordinator sees it.
pub(super) struct Current {
    pub(super) lease: Lease,
    /// Until when the lease is known to be held; heartbeats move it on.
    pub(super) valid_until: Instant,
    pub(super) cx: Arc<ContextInner>,
    pub(super) grace: Duration,
    pub(super) force_at: Option<Instant>,
    pub(super) kill: Option<Kill>,
}

/// One unit of concurrency: a long-lived tokio task that runs claimed tasks one after another.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) current: Mutex<Option<Current>>,
    pub(super) kill: Notify,
}

/// What the coordinator and its slots share.
pub(super) struct Shared {
    pub(super) registry: Registry,
    /// The backend, for what jobs do through their context (checkpoints, group members).
    pub(super) backend: Backend,
    /// Claimed tasks waiting for a free slot.
    pub(super) queue: Mutex<VecDeque<Buffered>>,
    /// Buffered tasks a slot would have started, but whose leases may have expired (the worker
    /// was frozen or cut off from the backend): the coordinator confirms them with a heartbeat
    /// and puts back those still held.
    pub(super) unconfirmed: Mutex<Vec<Buffered>>,
    /// A buffered task starts only if its lease is known to be held for at least this long
    /// still (a third of the lease): long enough for the next heartbeat to extend it.
    pub(super) margin: Duration,
    /// Wakes idle slots when tasks are queued (or when stopping).
    pub(super) work: Notify,
    /// Wakes the coordinator: outcomes to write, or slots running low on work.
    pub(super) coordinator: Notify,
    pub(super) coordinator_woken: AtomicBool,
    pub(super) outcomes: Mutex<Vec<Finished>>,
    /// Slots running an attempt.
    pub(super) busy: AtomicUsize,
    /// No more tasks will be queued: idle slots exit.
    pub(super) stopping: AtomicBool,
    /// Slots wake the coordinator when the queue falls to this length.
    pub(super) low_water: usize,
    pub(super) metrics: WorkerMetrics,
    /// The worker's handles in the `metrics` facade's recorder.
    pub(super) instruments: Instruments,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn wake_coordinator(&self) {
        if !self.coordinator_woken.swap(true, Ordering::AcqRel) {
            self.coordinator.notify_one();
        }
    }

    pub(super) fn push_outcome(&self, completion: Completion, valid_until: Instant) {
        lock(&self.outcomes).push(Finished {
            completion,
            valid_until,
        });
        self.wake_coordinator();
    }

    /// The next queued task whose lease is known to be held for a while yet, waiting for one;
    /// `None` once the worker stops and the queue is empty.
    ///
    /// A task whose lease may have expired meanwhile (the worker was frozen, or cut off from the
    /// backend, past its lease) is not started: another worker may have recovered it and run it
    /// already. It goes to the coordinator, which confirms its lease with a heartbeat first. The
    /// check is a clock reading, not a round trip.
    async fn next_task(&self) -> Option<Buffered> {
        loop {
            let notified = self.work.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            let (next, left, stale) = self.pop_fresh();
            if stale > 0 {
                tracing::warn!(
                    count = stale,
                    "buffered tasks outlived the last confirmation of their leases (was the worker frozen or cut off?); confirming them before they start"
                );
            }
            if let Some(buffered) = next {
                if stale > 0 || left <= self.low_water {
                    self.wake_coordinator();
                }
                return Some(buffered);
            }
            if self.stopping.load(Ordering::Acquire) {
                return None;
            }
            self.wake_coordinator();
            notified.await;
        }
    }

    /// Pops the first buffered task whose lease is known to be held for longer than the margin,
    /// moving those before it that are not to `unconfirmed`. Returns it, how many stay
    /// buffered, and how many were moved.
    fn pop_fresh(&self) -> (Option<Buffered>, usize, usize) {
        let start_before = Instant::now() + self.margin;
        let mut stale = 0;
        let mut queue = lock(&self.queue);
        while let Some(buffered) = queue.pop_front() {
            if buffered.valid_until > start_before {
                return (Some(buffered), queue.len(), stale);
            }
            lock(&self.unconfirmed).push(buffered);
            stale += 1;
        }
        (None, 0, stale)
    }
}

/// A slot's life: take a task, run it, report its outcome, repeat.
pub(super) async fn run_slot(shared: Arc<Shared>, slot: Arc<Slot>) {
    while let Some(buffered) = shared.next_task().await {
        let instruments = shared.instruments.job(&buffered.task.job);
        let busy = shared.instruments.busy();
        shared.busy.fetch_add(1, Ordering::AcqRel);
        shared.metrics.started();
        let started = Instant::now();
        let ended = run_task(&shared, &slot, buffered).await;
        let took = started.elapsed();
        shared.metrics.ended(ended, took);
        if let (Some(ended), Some(instruments)) = (ended, instruments) {
            instruments.ended(ended, took);
        }
        shared.busy.fetch_sub(1, Ordering::AcqRel);
        drop(busy);
        // Back-to-back instant tasks never wait on anything: give other tasks their turn.
        tokio::task::consume_budget().await;
    }
}

pub(super) async fn run_task(shared: &Shared, slot: &Slot, buffered: Buffered) -> Option<Ended> {
    let Buffered { task, valid_until } = buffered;
    let lease = task.lease;
    let Some((name, job)) = shared.registry.get(&task.job) else {
        // Only registered jobs are claimed; a backend that returns another is answered with a
        // permanent failure rather than a task stuck in `running`.
        let error = format!("no job named `{}` is registered on this worker", task.job);
        shared.push_outcome(
            Completion::new(
                lease,
                Outcome::Failed {
                    error,
                    retry_after: None,
                },
            ),
            valid_until,
        );
        return Some(Ended::Failed);
    };
    let options = job.options();
    let checkpoints = Checkpoints::Backend {
        backend: shared.backend.clone(),
        lease,
        limit: options.max_checkpoint_size,
    };
    let cx = TaskContext::new(
        lease.task,
        name,
        task.attempt,
        task.max_attempts,
        checkpoints,
    );
    let inner = Arc::clone(cx.inner());
    *lock(&slot.current) = Some(Current {
        lease,
        valid_until,
        cx: Arc::clone(&inner),
        grace: options.cancel_grace,
        force_at: None,
        kill: None,
    });
    let span = tracing::info_span!(
        "longtask.attempt",
        job = name,
        task_id = %lease.task,
        attempt = task.attempt,
        max_attempts = task.max_attempts,
    );
    let attempt = run_attempt(&**job, &task.params, cx, options.timeout).instrument(span);
    let mut attempt = pin!(attempt);
    let end = loop {
        tokio::select! {
            biased;
            end = &mut attempt => break Some(end),
            () = slot.kill.notified() => {
                if lock(&slot.current).as_ref().is_some_and(|c| c.kill.is_some()) {
                    break None;
                }
            }
        }
    };
    let current = lock(&slot.current).take();
    let valid_until = current.as_ref().map_or(valid_until, |c| c.valid_until);
    let progress = inner.take_dirty();
    let outcome = match end {
        Some(AttemptEnd::Output(output)) => {
            tracing::debug!(task_id = %lease.task, "task succeeded");
            Outcome::Succeeded { output }
        }
        Some(AttemptEnd::Error { kind, message })
            if kind == ErrorKind::Cancelled || inner.cancel.is_cancelled() =>
        {
            tracing::info!(task_id = %lease.task, "task cancelled");
            Outcome::Cancelled { reason: message }
        }
        Some(AttemptEnd::Error { kind, message }) => {
            let retry_after = (kind == ErrorKind::Retryable && task.attempt < task.max_attempts)
                .then(|| options.backoff.delay(task.attempt));
            tracing::warn!(
                task_id = %lease.task,
                attempt = task.attempt,
                max_attempts = task.max_attempts,
                retry_in = ?retry_after,
                error = %message,
                "task attempt failed"
            );
            Outcome::Failed {
                error: message,
                retry_after,
            }
        }
        None => match current.and_then(|c| c.kill) {
            Some(Kill::Cancel) => {
                let grace = options.cancel_grace;
                tracing::warn!(task_id = %lease.task, ?grace, "task ignored cancellation; stopped");
                Outcome::Cancelled {
                    reason: format!(
                        "cancelled; the job did not stop within its {grace:?} grace period and was stopped"
                    ),
                }
            }
            // Given back or lost: the coordinator has dealt with the lease.
            _ => return None,
        },
    };
    let ended = match &outcome {
        Outcome::Succeeded { .. } => Ended::Succeeded,
        Outcome::Failed {
            retry_after: Some(_),
            ..
        } => Ended::Retried,
        Outcome::Failed { .. } => Ended::Failed,
        Outcome::Cancelled { .. } => Ended::Cancelled,
    };
    shared.push_outcome(
        Completion {
            lease,
            outcome,
            progress,
        },
        valid_until,
    );
    Some(ended)
}

/// Runs one attempt: decode the parameters, run the job (catching panics, enforcing the
/// timeout), encode the output.
pub(super) async fn run_attempt(
    job: &dyn ErasedJob,
    params: &str,
    cx: TaskContext,
    timeout: Option<Duration>,
) -> AttemptEnd {
    let name = cx.job();
    let future = {
        let mut json = serde_json::Deserializer::from_str(params);
        let started = job.start(
            &mut <dyn erased_serde::Deserializer<'_>>::erase(&mut json),
            cx,
        );
        match started.map(|f| (f, json.end())) {
            Ok((future, Ok(()))) => future,
            Ok((_, Err(err))) => return invalid_params(name, &err),
            Err(err) => return invalid_params(name, &err),
        }
    };
    let guarded = AssertUnwindSafe(future).catch_unwind();
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, guarded).await {
            Ok(result) => result,
            Err(_) => {
                return AttemptEnd::Error {
                    kind: ErrorKind::Retryable,
                    message: format!("timed out after {limit:?}"),
                }
            }
        },
        None => guarded.await,
    };
    match result {
        Ok(Ok(output)) => match serde_json::to_string(&output) {
            Ok(json) => AttemptEnd::Output(json),
            Err(err) => AttemptEnd::Error {
                kind: ErrorKind::Fatal,
                message: format!("the output of job `{name}` could not be encoded as JSON: {err}"),
            },
        },
        Ok(Err(err)) => AttemptEnd::Error {
            kind: err.kind(),
            message: err.message().to_owned(),
        },
        Err(panic) => AttemptEnd::Error {
            kind: ErrorKind::Retryable,
            message: format!("panicked: {}", panic_message(&*panic)),
        },
    }
}

fn invalid_params(job: &str, err: &dyn fmt::Display) -> AttemptEnd {
    AttemptEnd::Error {
        kind: ErrorKind::Fatal,
        message: format!("invalid parameters for job `{job}`: {err}"),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic with a non-string payload)")
}

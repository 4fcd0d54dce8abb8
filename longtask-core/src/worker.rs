//! [`Worker`]: runs registered jobs from a backend's queue.
//!
//! A worker claims due tasks in batches (keeping a small prefetch buffer so that a free slot never
//! waits for a round trip) and runs up to `concurrency` of them at once. Each unit of concurrency
//! is a long-lived tokio task (a *slot*) that takes tasks from the buffer one after another, so
//! running a task costs no spawn and no cross-thread wake-up; a coordinator task claims, extends
//! leases with heartbeats, writes coalesced progress, and writes outcomes in batches (whatever
//! finished since the last write). Failed attempts are retried with exponential backoff and jitter; panics and timeouts
//! count as failed attempts with their message. Cancellation is cooperative, then forced after the
//! job's grace period. On shutdown it stops claiming, gives back prefetched tasks, lets running
//! tasks finish until a deadline and gives back the rest. A sweeper recovers tasks whose worker
//! died (expired leases) and purges finished tasks past their retention. Idle workers wait on the
//! backend's wake-up signal, falling back to a slow poll.
//!
//! ```
//! use std::time::Duration;
//! use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext, TaskStatus, Worker};
//!
//! struct Add;
//! impl Job for Add {
//!     const NAME: &'static str = "add";
//!     type Params = (i64, i64);
//!     type Output = i64;
//!     async fn run(&self, (a, b): (i64, i64), _cx: TaskContext) -> Result<i64, JobError> {
//!         Ok(a + b)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! let backend = MemoryBackend::new();
//! let worker = Worker::builder(backend.clone()).register(Add).concurrency(8).build()?.spawn();
//! let client = Client::new(backend);
//! let id = client.submit::<Add>((2, 3)).await?;
//! let task = client.wait(id, Duration::from_secs(5)).await?;
//! assert_eq!(task.status, TaskStatus::Succeeded);
//! assert_eq!(client.output::<Add>(id).await?, Some(5));
//! worker.shutdown().await?;
//! # Ok(()) }
//! ```

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    pin::pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use futures::FutureExt;
use tokio::{
    sync::Notify,
    task::{JoinHandle, JoinSet},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    backend::Backend,
    context::{ContextInner, TaskContext},
    error::{Error, Result},
    job::{ErrorKind, Job},
    metrics::{Ended, WorkerMetrics},
    queue::{Ack, ClaimRequest, ClaimedTask, Completion, Lease, LeaseState, Outcome},
    registry::{ErasedJob, Registry},
};

/// Settings of a [`Worker`]; see the setters on [`WorkerBuilder`] for each default.
#[derive(Debug, Clone)]
struct Config {
    id: String,
    concurrency: usize,
    prefetch: usize,
    lease: Duration,
    heartbeat: Option<Duration>,
    poll_interval: Duration,
    progress_interval: Duration,
    shutdown_timeout: Duration,
    sweep_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            id: default_worker_id(),
            concurrency: 16,
            prefetch: 16,
            lease: Duration::from_secs(30),
            heartbeat: None,
            poll_interval: Duration::from_secs(1),
            progress_interval: Duration::from_millis(250),
            shutdown_timeout: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(15),
        }
    }
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Builds a [`Worker`]: register jobs, adjust settings, then [`build`](Self::build).
#[derive(Debug)]
#[must_use]
pub struct WorkerBuilder {
    backend: Backend,
    registry: Registry,
    duplicate: Option<&'static str>,
    config: Config,
}

impl WorkerBuilder {
    /// Registers a job: tasks submitted under its [`NAME`](Job::NAME) run here.
    pub fn register<J: Job>(mut self, job: J) -> Self {
        if !self.registry.insert(job) {
            self.duplicate = Some(J::NAME);
        }
        self
    }

    /// How many tasks run at once (default 16; at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// How many claimed tasks may wait in the worker's buffer beyond those running, so that a
    /// finished task's slot is refilled without a round trip (default 16). Buffered tasks hold
    /// leases; set 0 for long tasks on many workers, so that none sits behind a busy worker.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.config.prefetch = n;
        self
    }

    /// How long a claim lasts without a heartbeat (default 30 s). A task whose worker dies is
    /// retried this long after the worker's last heartbeat.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// How often leases are extended and cancellation is checked (default: a third of the lease).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = Some(every.max(Duration::from_millis(1)));
        self
    }

    /// How often an idle worker looks for due work when no wake-up signal came (default 1 s):
    /// scheduled tasks and retries become due without a signal.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// At most one progress write per task per this interval (default 250 ms).
    pub fn progress_interval(mut self, every: Duration) -> Self {
        self.config.progress_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How long running tasks may take to finish after shutdown begins before they are stopped
    /// and given back to the queue (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// How often expired leases are recovered and finished tasks past retention purged
    /// (default 15 s).
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.config.sweep_interval = every.max(Duration::from_millis(1));
        self
    }

    /// This worker's name, stored as the lease owner (default: host, pid and a random suffix).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.config.id = id.into();
        self
    }

    /// Builds the worker. Fails when no job is registered or two share a name.
    pub fn build(self) -> Result<Worker> {
        if let Some(name) = self.duplicate {
            return Err(Error::Config(format!(
                "two jobs are registered under the name `{name}`; job names must be unique"
            )));
        }
        if self.registry.is_empty() {
            return Err(Error::Config(
                "no job registered: call `.register(job)` before `.build()`".to_owned(),
            ));
        }
        let mut jobs: Vec<String> = self.registry.names().map(str::to_owned).collect();
        jobs.sort();
        Ok(Worker {
            backend: self.backend,
            registry: self.registry,
            jobs,
            config: self.config,
            metrics: WorkerMetrics::default(),
        })
    }
}

/// Runs registered jobs from a backend's queue.
///
/// It claims due tasks in batches with a small prefetch buffer, runs up to `concurrency` at once
/// on long-lived slots, extends leases with heartbeats, writes coalesced progress and batched
/// outcomes, retries failures with backoff, stops timed-out and cancelled attempts, recovers the
/// tasks of dead workers and purges finished tasks past their retention. Build one with
/// [`Worker::builder`], then [`run`](Worker::run) it until a shutdown signal, or
/// [`spawn`](Worker::spawn) it.
#[derive(Debug)]
pub struct Worker {
    backend: Backend,
    registry: Registry,
    jobs: Vec<String>,
    config: Config,
    metrics: WorkerMetrics,
}

impl Worker {
    /// Starts building a worker over `backend`.
    ///
    /// ```
    /// # use longtask_core::{Job, JobError, TaskContext};
    /// # struct Noop;
    /// # impl Job for Noop { const NAME: &'static str = "noop"; type Params = (); type Output = ();
    /// #   async fn run(&self, _: (), _: TaskContext) -> Result<(), JobError> { Ok(()) } }
    /// let worker = longtask_core::Worker::builder(longtask_core::MemoryBackend::new())
    ///     .register(Noop)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn builder(backend: impl Into<Backend>) -> WorkerBuilder {
        WorkerBuilder {
            backend: backend.into(),
            registry: Registry::default(),
            duplicate: None,
            config: Config::default(),
        }
    }

    /// This worker's id (the lease owner it stores).
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// A live view of this worker's counters and timings (see [`WorkerMetrics`]).
    pub fn metrics(&self) -> WorkerMetrics {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes, then shuts down gracefully: stops claiming, gives back
    /// prefetched tasks, waits for running tasks up to the shutdown timeout, and gives back those
    /// still running. Backend errors are logged and retried, never fatal.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        Coordinator::new(self).run(shutdown).await
    }

    /// Runs the worker on a tokio task; the handle shuts it down.
    pub fn spawn(self) -> WorkerHandle {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let metrics = self.metrics.clone();
        let join = tokio::spawn(async move { self.run(token.cancelled_owned()).await });
        WorkerHandle {
            stop,
            join,
            metrics,
        }
    }
}

/// A worker running on its own tokio task (from [`Worker::spawn`]).
#[derive(Debug)]
pub struct WorkerHandle {
    stop: CancellationToken,
    join: JoinHandle<Result<()>>,
    metrics: WorkerMetrics,
}

impl WorkerHandle {
    /// The worker's live metrics.
    pub fn metrics(&self) -> WorkerMetrics {
        self.metrics.clone()
    }

    /// Shuts the worker down gracefully and waits until it has.
    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        match self.join.await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Ok(()),
        }
    }

    /// Stops the worker at once, as a crash would: running tasks are dropped, nothing is given
    /// back, and their leases expire. For tests of recovery.
    pub fn abort(self) {
        self.join.abort();
    }
}

/// How one attempt ended.
enum AttemptEnd {
    Output(String),
    Error { kind: ErrorKind, message: String },
}

/// Why the coordinator stops a running attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Cancellation was requested and the grace period is over: record the task cancelled.
    Cancel,
    /// Shutdown deadline: drop the attempt; the coordinator gives the task back.
    Release,
    /// The lease is gone: drop the attempt; its outcome would be refused anyway.
    Lost,
}

/// The attempt a slot is running, as the coordinator sees it.
struct Current {
    lease: Lease,
    cx: Arc<ContextInner>,
    grace: Duration,
    force_at: Option<Instant>,
    kill: Option<Kill>,
}

/// One unit of concurrency: a long-lived tokio task that runs claimed tasks one after another.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Current>>,
    kill: Notify,
}

/// What the coordinator and its slots share.
struct Shared {
    registry: Registry,
    /// Claimed tasks waiting for a free slot.
    queue: Mutex<VecDeque<ClaimedTask>>,
    /// Wakes idle slots when tasks are queued (or when stopping).
    work: Notify,
    /// Wakes the coordinator: outcomes to write, or slots running low on work.
    coordinator: Notify,
    coordinator_woken: AtomicBool,
    outcomes: Mutex<Vec<Completion>>,
    /// Slots running an attempt.
    busy: AtomicUsize,
    /// No more tasks will be queued: idle slots exit.
    stopping: AtomicBool,
    /// Slots wake the coordinator when the queue falls to this length.
    low_water: usize,
    metrics: WorkerMetrics,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn wake_coordinator(&self) {
        if !self.coordinator_woken.swap(true, Ordering::AcqRel) {
            self.coordinator.notify_one();
        }
    }

    fn push_outcome(&self, completion: Completion) {
        lock(&self.outcomes).push(completion);
        self.wake_coordinator();
    }

    /// The next queued task, waiting for one; `None` once the worker stops and the queue is empty.
    async fn next_task(&self) -> Option<ClaimedTask> {
        loop {
            let notified = self.work.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            {
                let mut queue = lock(&self.queue);
                if let Some(task) = queue.pop_front() {
                    let left = queue.len();
                    drop(queue);
                    if left <= self.low_water {
                        self.wake_coordinator();
                    }
                    return Some(task);
                }
            }
            if self.stopping.load(Ordering::Acquire) {
                return None;
            }
            self.wake_coordinator();
            notified.await;
        }
    }
}

/// A slot's life: take a task, run it, report its outcome, repeat.
async fn run_slot(shared: Arc<Shared>, slot: Arc<Slot>) {
    while let Some(task) = shared.next_task().await {
        shared.busy.fetch_add(1, Ordering::AcqRel);
        shared.metrics.started();
        let started = Instant::now();
        let ended = run_task(&shared, &slot, task).await;
        shared.metrics.ended(ended, started.elapsed());
        shared.busy.fetch_sub(1, Ordering::AcqRel);
        // Back-to-back instant tasks never wait on anything: give other tasks their turn.
        tokio::task::consume_budget().await;
    }
}

async fn run_task(shared: &Shared, slot: &Slot, task: ClaimedTask) -> Option<Ended> {
    let lease = task.lease;
    let Some((name, job)) = shared.registry.get(&task.job) else {
        // Only registered jobs are claimed; a backend that returns another is answered with a
        // permanent failure rather than a task stuck in `running`.
        let error = format!("no job named `{}` is registered on this worker", task.job);
        shared.push_outcome(Completion::new(
            lease,
            Outcome::Failed {
                error,
                retry_after: None,
            },
        ));
        return Some(Ended::Failed);
    };
    let options = job.options();
    let cx = TaskContext::new(lease.task, name, task.attempt, task.max_attempts);
    let inner = Arc::clone(cx.inner());
    *lock(&slot.current) = Some(Current {
        lease,
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
    shared.push_outcome(Completion {
        lease,
        outcome,
        progress,
    });
    Some(ended)
}

struct Coordinator {
    backend: Backend,
    shared: Arc<Shared>,
    slots: Vec<Arc<Slot>>,
    jobs: Vec<String>,
    config: Config,
    heartbeat_every: Duration,
    /// The last claim found less than it asked for: wait for a signal or the poll interval.
    exhausted: bool,
    stopping: Option<Instant>,
    next_heartbeat: Instant,
    next_sweep: Instant,
    next_poll: Instant,
}

impl Coordinator {
    fn new(worker: Worker) -> Self {
        let heartbeat_every = worker
            .config
            .heartbeat
            .unwrap_or(worker.config.lease / 3)
            .max(Duration::from_millis(1));
        let now = Instant::now();
        let shared = Arc::new(Shared {
            registry: worker.registry,
            queue: Mutex::new(VecDeque::new()),
            work: Notify::new(),
            coordinator: Notify::new(),
            coordinator_woken: AtomicBool::new(false),
            outcomes: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            low_water: worker.config.prefetch / 2,
            metrics: worker.metrics,
        });
        Self {
            backend: worker.backend,
            shared,
            slots: (0..worker.config.concurrency)
                .map(|_| Arc::new(Slot::default()))
                .collect(),
            jobs: worker.jobs,
            heartbeat_every,
            next_heartbeat: now + heartbeat_every,
            next_sweep: now + Duration::from_millis(100).min(worker.config.sweep_interval),
            next_poll: now + worker.config.poll_interval,
            config: worker.config,
            exhausted: false,
            stopping: None,
        }
    }

    async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        tracing::info!(worker = %self.config.id, jobs = ?self.jobs, "worker started");
        let mut shutdown = pin!(shutdown.fuse());
        let mut signal = self.backend.queue().work_signal();
        let tick_every = self
            .config
            .progress_interval
            .min(self.heartbeat_every)
            .min(self.config.poll_interval);
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut slots = JoinSet::new();
        for slot in &self.slots {
            slots.spawn(run_slot(Arc::clone(&self.shared), Arc::clone(slot)));
        }

        loop {
            self.shared
                .coordinator_woken
                .store(false, Ordering::Release);
            if self.should_claim() {
                // Claim the next batch and write the finished ones at once: on a network
                // backend the two round trips overlap instead of adding up.
                self.claim_and_flush().await;
                continue;
            }
            self.flush_outcomes().await;
            if self.stopping.is_some() && slots.is_empty() {
                self.flush_outcomes().await;
                break;
            }
            tokio::select! {
                biased;
                () = self.shared.coordinator.notified() => {}
                Some(joined) = slots.join_next(), if !slots.is_empty() => {
                    if let Err(err) = joined {
                        if err.is_panic() {
                            tracing::error!("a worker slot panicked; the worker goes on with one slot fewer");
                        }
                    }
                }
                () = signal.changed(), if self.exhausted && self.stopping.is_none() => {
                    self.exhausted = false;
                }
                () = &mut shutdown, if self.stopping.is_none() => {
                    self.begin_shutdown().await;
                }
                _ = tick.tick() => {
                    self.on_tick().await;
                }
            }
        }
        tracing::info!(worker = %self.config.id, "worker stopped");
        Ok(())
    }

    fn capacity(&self) -> usize {
        let queued = lock(&self.shared.queue).len();
        let busy = self.shared.busy.load(Ordering::Acquire);
        if queued > self.shared.low_water {
            return 0;
        }
        (self.config.concurrency + self.config.prefetch).saturating_sub(busy + queued)
    }

    fn should_claim(&self) -> bool {
        self.stopping.is_none() && !self.exhausted && self.capacity() > 0
    }

    async fn claim_and_flush(&mut self) {
        let limit = self.capacity();
        let outcomes = std::mem::take(&mut *lock(&self.shared.outcomes));
        let queue = self.backend.queue();
        let request = ClaimRequest {
            jobs: &self.jobs,
            worker: &self.config.id,
            limit,
            lease: self.config.lease,
        };
        let count = outcomes.len();
        let finish = async {
            if outcomes.is_empty() {
                None
            } else {
                Some(queue.finish(outcomes).await)
            }
        };
        let (claimed, finished) = tokio::join!(queue.claim(request), finish);
        if let Some(finished) = finished {
            Self::check_acks(finished, count);
        }
        match claimed {
            Ok(claimed) => {
                self.exhausted = claimed.len() < limit;
                if !claimed.is_empty() {
                    self.shared.metrics.claimed(claimed.len());
                    lock(&self.shared.queue).extend(claimed);
                    self.shared.work.notify_waiters();
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "claiming tasks failed; retrying at the next poll");
                self.exhausted = true;
            }
        }
        if self.exhausted {
            self.next_poll = Instant::now() + self.config.poll_interval;
        }
    }

    async fn flush_outcomes(&mut self) {
        let batch = std::mem::take(&mut *lock(&self.shared.outcomes));
        if batch.is_empty() {
            return;
        }
        let count = batch.len();
        Self::check_acks(self.backend.queue().finish(batch).await, count);
    }

    fn check_acks(result: Result<Vec<Ack>>, count: usize) {
        match result {
            Ok(acks) => {
                let stale = acks.iter().filter(|ack| **ack == Ack::Stale).count();
                if stale > 0 {
                    tracing::warn!(
                        stale,
                        "outcomes refused: their leases had expired and the tasks were claimed again"
                    );
                }
            }
            Err(err) => {
                // The leases stay unfinished: they expire and the tasks run again (at least once).
                tracing::error!(error = %err, count, "recording task outcomes failed; the tasks will be retried after their leases expire");
            }
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        self.shared
            .metrics
            .set_prefetched(lock(&self.shared.queue).len());
        self.flush_progress().await;
        self.enforce_kills(now);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.heartbeat_every;
            self.heartbeat().await;
        }
        if self.exhausted && now >= self.next_poll {
            self.exhausted = false;
        }
        if now >= self.next_sweep && self.stopping.is_none() {
            self.next_sweep = now + self.config.sweep_interval;
            self.sweep().await;
        }
        if let Some(deadline) = self.stopping {
            if now >= deadline {
                self.stop_running().await;
            }
        }
    }

    async fn flush_progress(&self) {
        let updates: Vec<_> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let current = lock(&slot.current);
                let current = current.as_ref()?;
                Some((current.lease.task, current.cx.take_dirty()?))
            })
            .collect();
        if updates.is_empty() {
            return;
        }
        if let Err(err) = self.backend.progress().report(&updates).await {
            tracing::warn!(error = %err, "writing progress failed; the next report will carry it");
        }
    }

    /// Stops attempts past their cancellation grace, and re-sends pending kills.
    fn enforce_kills(&self, now: Instant) {
        for slot in &self.slots {
            let mut current = lock(&slot.current);
            let Some(current) = current.as_mut() else {
                continue;
            };
            if current.kill.is_none() && current.force_at.is_some_and(|at| now >= at) {
                current.kill = Some(Kill::Cancel);
            }
            if current.kill.is_some() {
                slot.kill.notify_waiters();
            }
        }
    }

    fn kill(slot: &Slot, lease: Lease, kill: Kill) -> bool {
        let mut current = lock(&slot.current);
        match current.as_mut() {
            Some(c) if c.lease == lease => {
                c.kill = Some(kill);
                slot.kill.notify_waiters();
                true
            }
            _ => false,
        }
    }

    async fn heartbeat(&mut self) {
        let mut leases: Vec<Lease> = self
            .slots
            .iter()
            .filter_map(|slot| lock(&slot.current).as_ref().map(|c| c.lease))
            .collect();
        let running = leases.len();
        leases.extend(lock(&self.shared.queue).iter().map(|t| t.lease));
        if leases.is_empty() {
            return;
        }
        let states = match self
            .backend
            .queue()
            .heartbeat(&leases, self.config.lease)
            .await
        {
            Ok(states) => states,
            Err(err) => {
                tracing::error!(error = %err, "extending leases failed; retrying at the next heartbeat");
                return;
            }
        };
        let now = Instant::now();
        for (i, (lease, state)) in leases.into_iter().zip(states).enumerate() {
            let is_running = i < running;
            match state {
                LeaseState::Held {
                    cancel_requested: false,
                } => {}
                LeaseState::Held {
                    cancel_requested: true,
                } if is_running => {
                    for slot in &self.slots {
                        let mut current = lock(&slot.current);
                        if let Some(c) = current.as_mut().filter(|c| c.lease == lease) {
                            if c.force_at.is_none() {
                                c.cx.cancel.cancel();
                                c.force_at = Some(now + c.grace);
                            }
                        }
                    }
                }
                LeaseState::Held {
                    cancel_requested: true,
                } => {
                    if Self::take_queued(&self.shared, lease) {
                        self.shared.push_outcome(Completion::new(
                            lease,
                            Outcome::Cancelled {
                                reason: "cancelled before it started".to_owned(),
                            },
                        ));
                    }
                }
                LeaseState::Lost if is_running => {
                    self.shared.metrics.lease_lost();
                    tracing::warn!(task_id = %lease.task, "lease lost; stopping the attempt");
                    for slot in &self.slots {
                        Self::kill(slot, lease, Kill::Lost);
                    }
                }
                LeaseState::Lost => {
                    Self::take_queued(&self.shared, lease);
                }
            }
        }
    }

    fn take_queued(shared: &Shared, lease: Lease) -> bool {
        let mut queue = lock(&shared.queue);
        let before = queue.len();
        queue.retain(|t| t.lease != lease);
        queue.len() < before
    }

    async fn sweep(&self) {
        const LIMIT: usize = 1_000;
        match self.backend.queue().recover_expired(LIMIT).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(recovered = n, "recovered tasks whose worker was lost"),
            Err(err) => tracing::error!(error = %err, "recovering expired leases failed"),
        }
        match self.backend.store().purge(LIMIT).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "purged finished tasks past retention"),
            Err(err) => tracing::error!(error = %err, "purging finished tasks failed"),
        }
    }

    async fn begin_shutdown(&mut self) {
        let queued: Vec<Lease> = lock(&self.shared.queue)
            .drain(..)
            .map(|t| t.lease)
            .collect();
        tracing::info!(
            running = self.shared.busy.load(Ordering::Acquire),
            prefetched = queued.len(),
            "worker shutting down"
        );
        self.stopping = Some(Instant::now() + self.config.shutdown_timeout);
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.work.notify_waiters();
        self.release(&queued).await;
        if self.config.shutdown_timeout.is_zero() {
            self.stop_running().await;
        }
    }

    /// Stops the attempts still running at the shutdown deadline and gives their tasks back.
    async fn stop_running(&mut self) {
        let mut leases = Vec::new();
        for slot in &self.slots {
            let lease = lock(&slot.current).as_ref().map(|c| c.lease);
            if let Some(lease) = lease {
                if Self::kill(slot, lease, Kill::Release) {
                    leases.push(lease);
                }
            }
        }
        if !leases.is_empty() {
            tracing::warn!(
                count = leases.len(),
                "shutdown timeout reached; giving running tasks back to the queue"
            );
            // Outcomes that raced the deadline are written first, so they win over the release.
            self.flush_outcomes().await;
            self.release(&leases).await;
        }
    }

    async fn release(&self, leases: &[Lease]) {
        if leases.is_empty() {
            return;
        }
        self.shared.metrics.released(leases.len());
        if let Err(err) = self.backend.queue().release(leases).await {
            tracing::error!(error = %err, "giving tasks back failed; they run again when their leases expire");
        }
    }
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

/// Runs one attempt: decode the parameters, run the job (catching panics, enforcing the
/// timeout), encode the output.
async fn run_attempt(
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

//! [`Worker`]: runs registered jobs from a backend's queue.
//!
//! A worker claims due tasks in batches (keeping a small prefetch buffer so that a free slot never
//! waits for a round trip), runs up to `concurrency` of them at once, each on its own tokio task,
//! extends their leases with heartbeats, writes coalesced progress, and reports outcomes in
//! batches. Failed attempts are retried with exponential backoff and jitter; panics and timeouts
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
    collections::{HashMap, VecDeque},
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    pin::pin,
    sync::Arc,
    time::Duration,
};

use futures::FutureExt;
use tokio::{
    sync::mpsc,
    task::{AbortHandle, JoinHandle},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    backend::Backend,
    context::{ContextInner, TaskContext},
    error::{Error, Result},
    job::{ErrorKind, Job},
    queue::{Ack, ClaimRequest, ClaimedTask, Completion, Lease, LeaseState, Outcome},
    registry::{ErasedJob, Registry},
    task::TaskId,
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
    completion_batch: usize,
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
            completion_batch: 512,
        }
    }
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
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
        })
    }
}

/// Runs registered jobs; see the [module docs](self).
#[derive(Debug)]
pub struct Worker {
    backend: Backend,
    registry: Registry,
    jobs: Vec<String>,
    config: Config,
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
        let join = tokio::spawn(async move { self.run(token.cancelled_owned()).await });
        WorkerHandle { stop, join }
    }
}

/// A worker running on its own tokio task (from [`Worker::spawn`]).
#[derive(Debug)]
pub struct WorkerHandle {
    stop: CancellationToken,
    join: JoinHandle<Result<()>>,
}

impl WorkerHandle {
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

/// How one attempt ended, as the attempt's own tokio task saw it.
enum AttemptEnd {
    Output(String),
    Error { kind: ErrorKind, message: String },
}

struct Done {
    id: TaskId,
    token: u64,
    end: AttemptEnd,
}

struct InFlight {
    lease: Lease,
    attempt: u32,
    max_attempts: u32,
    job: Arc<dyn ErasedJob>,
    cx: Arc<ContextInner>,
    abort: AbortHandle,
    /// When cancellation was requested: the time after which the task is stopped.
    force_at: Option<Instant>,
}

struct Coordinator {
    backend: Backend,
    registry: Registry,
    jobs: Vec<String>,
    config: Config,
    heartbeat_every: Duration,
    buffer: VecDeque<ClaimedTask>,
    in_flight: HashMap<TaskId, InFlight>,
    pending: Vec<Completion>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    /// The last claim found less than it asked for: wait for a signal or the poll interval.
    exhausted: bool,
    stopping: Option<Instant>,
    next_heartbeat: Instant,
    next_sweep: Instant,
    next_poll: Instant,
}

impl Coordinator {
    fn new(worker: Worker) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let heartbeat_every = worker
            .config
            .heartbeat
            .unwrap_or(worker.config.lease / 3)
            .max(Duration::from_millis(1));
        let now = Instant::now();
        Self {
            backend: worker.backend,
            registry: worker.registry,
            jobs: worker.jobs,
            heartbeat_every,
            next_heartbeat: now + heartbeat_every,
            next_sweep: now + Duration::from_millis(100).min(worker.config.sweep_interval),
            next_poll: now + worker.config.poll_interval,
            config: worker.config,
            buffer: VecDeque::new(),
            in_flight: HashMap::new(),
            pending: Vec::new(),
            done_tx,
            done_rx,
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

        loop {
            self.dispatch();
            if self.should_claim() {
                self.claim().await;
                continue;
            }
            if !self.pending.is_empty()
                && (self.done_rx.is_empty() || self.pending.len() >= self.config.completion_batch)
            {
                self.flush_completions().await;
            }
            if self.stopping.is_some() && self.in_flight.is_empty() && self.pending.is_empty() {
                break;
            }

            tokio::select! {
                biased;
                Some(done) = self.done_rx.recv() => {
                    self.on_done(done);
                    while self.pending.len() < self.config.completion_batch {
                        match self.done_rx.try_recv() {
                            Ok(done) => self.on_done(done),
                            Err(_) => break,
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
        (self.config.concurrency + self.config.prefetch)
            .saturating_sub(self.in_flight.len() + self.buffer.len())
    }

    fn should_claim(&self) -> bool {
        self.stopping.is_none()
            && !self.exhausted
            && self.capacity() > 0
            && self.buffer.len() <= self.config.prefetch / 2
    }

    async fn claim(&mut self) {
        let limit = self.capacity();
        let request = ClaimRequest {
            jobs: &self.jobs,
            worker: &self.config.id,
            limit,
            lease: self.config.lease,
        };
        match self.backend.queue().claim(request).await {
            Ok(claimed) => {
                self.exhausted = claimed.len() < limit;
                self.buffer.extend(claimed);
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

    fn dispatch(&mut self) {
        while self.in_flight.len() < self.config.concurrency {
            let Some(task) = self.buffer.pop_front() else {
                break;
            };
            self.start(task);
        }
    }

    fn start(&mut self, task: ClaimedTask) {
        let Some((name, job)) = self.registry.get(&task.job) else {
            // Only registered jobs are claimed; a backend that returns another is answered with a
            // permanent failure rather than a task stuck in `running`.
            let error = format!("no job named `{}` is registered on this worker", task.job);
            self.pending.push(Completion::new(
                task.lease,
                Outcome::Failed {
                    error,
                    retry_after: None,
                },
            ));
            return;
        };
        let job = Arc::clone(job);
        let cx = TaskContext::new(task.lease.task, name, task.attempt, task.max_attempts);
        let inner = Arc::clone(cx.inner());
        let span = tracing::info_span!(
            "longtask.attempt",
            job = name,
            task_id = %task.lease.task,
            attempt = task.attempt,
            max_attempts = task.max_attempts,
        );
        let done = self.done_tx.clone();
        let lease = task.lease;
        let timeout = job.options().timeout;
        let runner = Arc::clone(&job);
        let handle = tokio::spawn(
            async move {
                let end = run_attempt(&*runner, &task.params, cx, timeout).await;
                // The coordinator is gone only when the worker was dropped mid-run; the lease
                // then expires and the task is retried, so there is nothing to do here.
                let _ = done.send(Done {
                    id: lease.task,
                    token: lease.token,
                    end,
                });
            }
            .instrument(span),
        );
        self.in_flight.insert(
            lease.task,
            InFlight {
                lease,
                attempt: task.attempt,
                max_attempts: task.max_attempts,
                job,
                cx: inner,
                abort: handle.abort_handle(),
                force_at: None,
            },
        );
    }

    fn on_done(&mut self, done: Done) {
        let Some(flight) = self.in_flight.remove(&done.id) else {
            return; // stopped by force or lost its lease meanwhile
        };
        if flight.lease.token != done.token {
            self.in_flight.insert(done.id, flight);
            return;
        }
        let outcome = match done.end {
            AttemptEnd::Output(output) => {
                tracing::debug!(task_id = %done.id, "task succeeded");
                Outcome::Succeeded { output }
            }
            AttemptEnd::Error { kind, message }
                if kind == ErrorKind::Cancelled || flight.cx.cancel.is_cancelled() =>
            {
                tracing::info!(task_id = %done.id, "task cancelled");
                Outcome::Cancelled { reason: message }
            }
            AttemptEnd::Error { kind, message } => {
                let retry_after = (kind == ErrorKind::Retryable
                    && flight.attempt < flight.max_attempts)
                    .then(|| flight.job.options().backoff.delay(flight.attempt));
                tracing::warn!(
                    task_id = %done.id,
                    attempt = flight.attempt,
                    max_attempts = flight.max_attempts,
                    retry_in = ?retry_after,
                    error = %message,
                    "task attempt failed"
                );
                Outcome::Failed {
                    error: message,
                    retry_after,
                }
            }
        };
        self.pending.push(Completion {
            lease: flight.lease,
            outcome,
            progress: flight.cx.take_dirty(),
        });
    }

    async fn flush_completions(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        let count = batch.len();
        match self.backend.queue().finish(batch).await {
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
        self.flush_progress().await;
        self.force_cancelled(now);
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
                self.stop_in_flight().await;
            }
        }
    }

    async fn flush_progress(&mut self) {
        let updates: Vec<_> = self
            .in_flight
            .values()
            .filter_map(|f| f.cx.take_dirty().map(|p| (f.lease.task, p)))
            .collect();
        if updates.is_empty() {
            return;
        }
        if let Err(err) = self.backend.progress().report(&updates).await {
            tracing::warn!(error = %err, "writing progress failed; the next report will carry it");
        }
    }

    fn force_cancelled(&mut self, now: Instant) {
        let overdue: Vec<TaskId> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.force_at.is_some_and(|at| now >= at))
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            if let Some(flight) = self.in_flight.remove(&id) {
                flight.abort.abort();
                let grace = flight.job.options().cancel_grace;
                tracing::warn!(task_id = %id, ?grace, "task ignored cancellation; stopped");
                self.pending.push(Completion {
                    lease: flight.lease,
                    outcome: Outcome::Cancelled {
                        reason: format!(
                            "cancelled; the job did not stop within its {grace:?} grace period and was stopped"
                        ),
                    },
                    progress: flight.cx.take_dirty(),
                });
            }
        }
    }

    async fn heartbeat(&mut self) {
        let leases: Vec<Lease> = self
            .in_flight
            .values()
            .map(|f| f.lease)
            .chain(self.buffer.iter().map(|t| t.lease))
            .collect();
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
        for (lease, state) in leases.into_iter().zip(states) {
            match state {
                LeaseState::Held {
                    cancel_requested: false,
                } => {}
                LeaseState::Held {
                    cancel_requested: true,
                } => {
                    if let Some(flight) = self.in_flight.get_mut(&lease.task) {
                        if flight.force_at.is_none() {
                            flight.cx.cancel.cancel();
                            flight.force_at = Some(now + flight.job.options().cancel_grace);
                        }
                    } else if let Some(pos) =
                        self.buffer.iter().position(|t| t.lease == lease)
                    {
                        self.buffer.remove(pos);
                        self.pending.push(Completion::new(
                            lease,
                            Outcome::Cancelled {
                                reason: "cancelled before it started".to_owned(),
                            },
                        ));
                    }
                }
                LeaseState::Lost => {
                    if let Some(flight) = self.in_flight.remove(&lease.task) {
                        tracing::warn!(task_id = %lease.task, "lease lost; stopping the attempt");
                        flight.abort.abort();
                    } else {
                        self.buffer.retain(|t| t.lease != lease);
                    }
                }
            }
        }
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
        tracing::info!(
            running = self.in_flight.len(),
            prefetched = self.buffer.len(),
            "worker shutting down"
        );
        self.stopping = Some(Instant::now() + self.config.shutdown_timeout);
        let leases: Vec<Lease> = self.buffer.drain(..).map(|t| t.lease).collect();
        self.release(&leases).await;
        if self.config.shutdown_timeout.is_zero() {
            self.stop_in_flight().await;
        }
    }

    /// Stops the tasks still running at the shutdown deadline and gives them back.
    async fn stop_in_flight(&mut self) {
        let leases: Vec<Lease> = self
            .in_flight
            .drain()
            .map(|(_, flight)| {
                flight.abort.abort();
                flight.lease
            })
            .collect();
        if !leases.is_empty() {
            tracing::warn!(
                count = leases.len(),
                "shutdown timeout reached; giving running tasks back to the queue"
            );
        }
        self.release(&leases).await;
    }

    async fn release(&self, leases: &[Lease]) {
        if leases.is_empty() {
            return;
        }
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
        let started = job.start(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut json), cx);
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

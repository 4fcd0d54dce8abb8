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
//! backend's wake-up signal, falling back to a slow poll. How leases are kept through a frozen
//! process and a backend outage is told in [`Worker`]'s docs.
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

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    backend::Backend,
    error::{Error, Result},
    job::Job,
    metrics::WorkerMetrics,
    registry::Registry,
    schedule::{Schedule, Scheduler, SchedulerBuilder},
};

mod coordinator;
mod slot;

use self::coordinator::Coordinator;

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
    schedules: Vec<Schedule>,
}

impl WorkerBuilder {
    /// Registers a job: tasks submitted under its [`NAME`](Job::NAME) run here.
    pub fn register<J: Job>(mut self, job: J) -> Self {
        if !self.registry.insert(job) {
            self.duplicate = Some(J::NAME);
        }
        self
    }

    /// Runs a [`Scheduler`] for `schedule` next to the worker, on the worker's backend: its ticks'
    /// tasks are submitted while the worker runs (by any worker of the job, as the job's name
    /// decides, not necessarily this one). Every worker may carry the same schedules: each tick
    /// is still submitted once. The scheduler reads the system clock, and stops when shutdown
    /// begins; run a [`Scheduler`] of your own for another clock.
    ///
    /// ```
    /// # use longtask_core::{Job, JobError, TaskContext};
    /// # struct Export;
    /// # impl Job for Export { const NAME: &'static str = "export"; type Params = (); type Output = ();
    /// #   async fn run(&self, _: (), _: TaskContext) -> Result<(), JobError> { Ok(()) } }
    /// use longtask_core::{MemoryBackend, Schedule, Worker};
    ///
    /// let worker = Worker::builder(MemoryBackend::new())
    ///     .register(Export)
    ///     .schedule(Schedule::cron("nightly-export", "0 3 * * *")?.job(Export, ()))
    ///     .build()?;
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedules.push(schedule);
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
    /// retried this long after the worker's last heartbeat. It also bounds how long the worker
    /// keeps trying to write an outcome during an outage, and a buffered task starts only while
    /// its lease is known to be held for more than a third of it (see
    /// [leases under faults](Worker#leases-under-faults)).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// How often leases are extended and cancellation is checked (default: a third of the lease).
    /// Keep it well under two thirds of the lease: a buffered task whose lease is known to be held
    /// for less than a third of a lease is confirmed with an extra heartbeat before it starts.
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
    /// and given back to the queue (default 30 s). Writes that fail meanwhile are tried again
    /// for up to a lease, which may make a shutdown during an outage last longer.
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

    /// Builds the worker. Fails when no job is registered or two share a name, or when a
    /// [schedule](Self::schedule) is refused (see [`SchedulerBuilder::build`](crate::SchedulerBuilder::build)).
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
        let scheduler = if self.schedules.is_empty() {
            None
        } else {
            let builder = Scheduler::builder(self.backend.clone());
            let builder = self
                .schedules
                .into_iter()
                .fold(builder, SchedulerBuilder::schedule);
            Some(builder.build()?)
        };
        Ok(Worker {
            backend: self.backend,
            registry: self.registry,
            jobs,
            config: self.config,
            metrics: WorkerMetrics::default(),
            scheduler,
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
///
/// # Leases under faults
///
/// For every lease it holds, the worker knows until when the lease is surely held: the time the
/// claim, or the last heartbeat that found the lease held, was *sent*, plus the lease. That is a
/// local clock reading (the monotonic clock), so it costs no round trip:
///
/// - **A buffered task starts only while its lease is known to be held for more than a third of
///   a lease still.** After the process was frozen (SIGSTOP, a long pause) or cut off from the
///   backend past its lease, another worker may have recovered and run the tasks waiting in its
///   buffer. Such a task is confirmed with a heartbeat before it starts, and dropped unrun if its
///   lease was lost (counted in
///   [`MetricsSnapshot::leases_lost`](crate::MetricsSnapshot::leases_lost)); while the backend
///   cannot be reached, it waits.
/// - **A write that fails is tried again, not dropped.** An outcome, or a task given back at
///   shutdown, whose write fails (a short outage, a failover) is written again with exponential
///   backoff and jitter while its lease is known to be held, and heartbeats go on extending that
///   lease meanwhile: an outage shorter than a lease makes no finished task run twice. The write
///   is given up, with an error in the log, once its lease may have expired (no heartbeat got
///   through in time) or after it kept failing for a whole lease (an error that will not pass must
///   not hold the task forever); the task is then recovered and runs again, as after a crash. A
///   shutdown waits for these writes, so during an outage it may last up to a lease longer than
///   the shutdown timeout.
#[derive(Debug)]
pub struct Worker {
    backend: Backend,
    registry: Registry,
    jobs: Vec<String>,
    config: Config,
    metrics: WorkerMetrics,
    /// Submits the ticks of the schedules given to the builder, while the worker runs.
    scheduler: Option<Scheduler>,
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
            schedules: Vec::new(),
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
    /// still running. Backend errors are logged and retried, never fatal. A
    /// [scheduler](WorkerBuilder::schedule) runs alongside until shutdown begins.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let Some(scheduler) = self.scheduler.take() else {
            return Coordinator::new(self).run(shutdown).await;
        };
        let stop = CancellationToken::new();
        let scheduling = scheduler.run(stop.clone().cancelled_owned());
        let working = async {
            let stopping = async {
                shutdown.await;
                stop.cancel();
            };
            let worked = Coordinator::new(self).run(stopping).await;
            stop.cancel(); // also when the worker ended by itself
            worked
        };
        let (worked, scheduled) = tokio::join!(working, scheduling);
        worked.and(scheduled)
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

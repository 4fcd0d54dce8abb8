//! Metrics: what workers and clients do, for any monitoring system.
//!
//! Two views of the same events:
//!
//! - **The [`metrics`] facade.** Workers and [`Client`]s record every metric in the table below
//!   through the [`metrics`](https://docs.rs/metrics) crate, so an application exports them with
//!   any recorder it installs (Prometheus, StatsD, OpenTelemetry, ...). `longtask-tower`'s
//!   `prometheus` feature installs a Prometheus recorder and serves its exposition at `/metrics`.
//!   Install the recorder before building clients and starting workers: a worker registers its
//!   handles (one set per job) when it starts, and handles taken while no recorder is installed
//!   stay no-ops. With no recorder, recording costs a branch per event.
//! - **[`WorkerMetrics`].** One worker's counters, read in process with a few atomic loads
//!   ([`Worker::metrics`]), whether a recorder is installed or not.
//!
//! | metric | type | labels | what it counts |
//! |---|---|---|---|
//! | `longtask_tasks_submitted_total` | counter | `job` | Tasks created through a [`Client`] (a repeated idempotency key creates none). |
//! | `longtask_attempts_total` | counter | `job`, `outcome` | Claimed tasks by how their attempt ended in this process: `succeeded`, `retried` (failed, another attempt follows), `failed` (failed for good), `cancelled`, `released` (given back to the queue at shutdown, run or not), `lost` (the lease was lost and another worker took the task over). Every claim ends in exactly one outcome. |
//! | `longtask_wait_seconds` | histogram | `job` | How long a task waited from being due (its `run_at`: submitted, scheduled time, or end of its backoff) until a worker claimed it, measured by the worker's clock at the claim. |
//! | `longtask_run_seconds` | histogram | `job` | How long attempts ran, from start to outcome (attempts stopped at shutdown or after losing their lease are not counted). |
//! | `longtask_worker_busy_slots` | gauge | | Attempts running now, over this process's workers. |
//! | `longtask_worker_slots` | gauge | | Slots (the `concurrency`) of this process's running workers. |
//! | `longtask_tasks` | gauge | `job`, `status` | Tasks per job and status in the backend (finished ones until purged), from [`Stats`]; set by [`StatsGauges`] / [`poll_stats`]. |
//! | `longtask_oldest_due_age_seconds` | gauge | `job` | How long the job's oldest due task has waited (0 when none waits), from [`Stats`]; set like `longtask_tasks`. |
//!
//! The first five are recorded where the event happens, in each process; the queue gauges
//! describe the backend, which every process shares: run [`poll_stats`] in one process (or
//! aggregate with `max` across processes), since each poller reports the same figures.
//!
//! Tasks cancelled while they wait never reach a worker: they appear in
//! `longtask_tasks{status="cancelled"}` (and [`JobStats::finished`]), not in
//! `longtask_attempts_total`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use longtask_core::{Job, JobError, MemoryBackend, TaskContext, Worker};
//! # struct Noop;
//! # impl Job for Noop { const NAME: &'static str = "noop"; type Params = (); type Output = ();
//! #   async fn run(&self, _: (), _: TaskContext) -> Result<(), JobError> { Ok(()) } }
//! let worker = Worker::builder(MemoryBackend::new()).register(Noop).build()?;
//! let metrics = worker.metrics();
//! let handle = worker.spawn();
//! // ... later, from anywhere:
//! let snapshot = metrics.snapshot();
//! println!("{} succeeded, {} running", snapshot.succeeded, snapshot.running);
//! handle.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! [`Client`]: crate::Client
//! [`Worker::metrics`]: crate::Worker::metrics
//! [`JobStats::finished`]: crate::JobStats::finished

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    pin::pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::{
    client::Client,
    stats::Stats,
    task::{Inserted, TaskStatus},
};

/// Tasks created through a [`Client`]: counter, label `job`.
pub const TASKS_SUBMITTED: &str = "longtask_tasks_submitted_total";
/// Claimed tasks by how their attempt ended: counter, labels `job` and `outcome`.
pub const ATTEMPTS: &str = "longtask_attempts_total";
/// Due until claimed: histogram in seconds, label `job`.
pub const WAIT_SECONDS: &str = "longtask_wait_seconds";
/// Attempts' run times: histogram in seconds, label `job`.
pub const RUN_SECONDS: &str = "longtask_run_seconds";
/// Attempts running now in this process: gauge.
pub const WORKER_BUSY_SLOTS: &str = "longtask_worker_busy_slots";
/// Slots of this process's running workers: gauge.
pub const WORKER_SLOTS: &str = "longtask_worker_slots";
/// Tasks per job and status in the backend: gauge, labels `job` and `status`.
pub const TASKS: &str = "longtask_tasks";
/// Age of each job's oldest due task: gauge in seconds, label `job`.
pub const OLDEST_DUE_AGE_SECONDS: &str = "longtask_oldest_due_age_seconds";

/// The values of the `outcome` label of [`ATTEMPTS`].
pub const OUTCOMES: [&str; 6] = [
    "succeeded",
    "retried",
    "failed",
    "cancelled",
    "released",
    "lost",
];

/// Histogram buckets (upper bounds, in seconds) that suit [`WAIT_SECONDS`] and [`RUN_SECONDS`]:
/// from a millisecond to an hour. Exporters that need buckets (Prometheus) take them from here.
pub const SECONDS_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// Gives every metric in the table above its description and unit, in the installed recorder
/// (exporters show them as help text). Workers call it when they start; call it yourself after
/// installing a recorder if you want the descriptions before any worker runs.
///
/// ```
/// longtask_core::metrics::describe();
/// ```
pub fn describe() {
    metrics::describe_counter!(
        TASKS_SUBMITTED,
        Unit::Count,
        "Tasks created through a longtask client, per job."
    );
    metrics::describe_counter!(
        ATTEMPTS,
        Unit::Count,
        "Claimed tasks by how their attempt ended: succeeded, retried, failed, cancelled, released (given back at shutdown) or lost (lease lost)."
    );
    metrics::describe_histogram!(
        WAIT_SECONDS,
        Unit::Seconds,
        "Time from a task being due until a worker claimed it."
    );
    metrics::describe_histogram!(RUN_SECONDS, Unit::Seconds, "Run time of finished attempts.");
    metrics::describe_gauge!(
        WORKER_BUSY_SLOTS,
        Unit::Count,
        "Attempts running now in this process's workers."
    );
    metrics::describe_gauge!(
        WORKER_SLOTS,
        Unit::Count,
        "Slots (concurrency) of this process's running workers."
    );
    metrics::describe_gauge!(
        TASKS,
        Unit::Count,
        "Tasks in the backend per job and status (finished ones until purged)."
    );
    metrics::describe_gauge!(
        OLDEST_DUE_AGE_SECONDS,
        Unit::Seconds,
        "How long the oldest due task of the job has waited (0 when none)."
    );
}

/// Upper bounds of the run-time histogram's buckets (the last bucket has no bound).
pub const RUN_TIME_BUCKETS: [Duration; 8] = [
    Duration::from_millis(1),
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// A worker's live metrics; cheap to clone (clones share the same counters).
#[derive(Debug, Clone, Default)]
pub struct WorkerMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    claimed: AtomicU64,
    succeeded: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    released: AtomicU64,
    leases_lost: AtomicU64,
    running: AtomicUsize,
    prefetched: AtomicUsize,
    run_time_buckets: [AtomicU64; RUN_TIME_BUCKETS.len() + 1],
    run_time_micros: AtomicU64,
}

/// The metrics at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Tasks claimed from the backend.
    pub claimed: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed and will be retried.
    pub retried: u64,
    /// Attempts that failed the task for good.
    pub failed: u64,
    /// Attempts that ended cancelled.
    pub cancelled: u64,
    /// Tasks given back unrun or unfinished at shutdown.
    pub released: u64,
    /// Leases found lost at a heartbeat (the task was recovered elsewhere).
    pub leases_lost: u64,
    /// Attempts running now.
    pub running: usize,
    /// Claimed tasks waiting for a free slot now.
    pub prefetched: usize,
    /// Attempts per run-time bucket: `run_time[i]` counts runs of at most
    /// [`RUN_TIME_BUCKETS`]`[i]` (and more than the bound before); the last entry counts longer runs.
    pub run_time: Vec<u64>,
    /// Total run time of all finished attempts.
    pub run_time_total: Duration,
}

/// How an attempt ended, for counting.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ended {
    Succeeded,
    Retried,
    Failed,
    Cancelled,
}

impl WorkerMetrics {
    /// Reads every metric.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let i = &self.inner;
        MetricsSnapshot {
            claimed: i.claimed.load(Ordering::Relaxed),
            succeeded: i.succeeded.load(Ordering::Relaxed),
            retried: i.retried.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
            cancelled: i.cancelled.load(Ordering::Relaxed),
            released: i.released.load(Ordering::Relaxed),
            leases_lost: i.leases_lost.load(Ordering::Relaxed),
            running: i.running.load(Ordering::Relaxed),
            prefetched: i.prefetched.load(Ordering::Relaxed),
            run_time: i
                .run_time_buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            run_time_total: Duration::from_micros(i.run_time_micros.load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn claimed(&self, n: usize) {
        self.inner.claimed.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn released(&self, n: usize) {
        self.inner.released.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn lease_lost(&self) {
        self.inner.leases_lost.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_prefetched(&self, n: usize) {
        self.inner.prefetched.store(n, Ordering::Relaxed);
    }

    pub(crate) fn started(&self) {
        self.inner.running.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ended(&self, ended: Option<Ended>, took: Duration) {
        let i = &self.inner;
        i.running.fetch_sub(1, Ordering::Relaxed);
        let counter = match ended {
            Some(Ended::Succeeded) => &i.succeeded,
            Some(Ended::Retried) => &i.retried,
            Some(Ended::Failed) => &i.failed,
            Some(Ended::Cancelled) => &i.cancelled,
            None => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let bucket = RUN_TIME_BUCKETS
            .iter()
            .position(|bound| took <= *bound)
            .unwrap_or(RUN_TIME_BUCKETS.len());
        i.run_time_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        i.run_time_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// One job's metric handles, registered once when a worker starts, so that recording an event
/// costs no lookup in the recorder.
#[derive(Debug)]
pub(crate) struct JobInstruments {
    succeeded: Counter,
    retried: Counter,
    failed: Counter,
    cancelled: Counter,
    released: Counter,
    lost: Counter,
    wait: Histogram,
    run: Histogram,
}

impl JobInstruments {
    fn new(job: &'static str) -> Self {
        let attempts =
            |outcome: &'static str| metrics::counter!(ATTEMPTS, "job" => job, "outcome" => outcome);
        Self {
            succeeded: attempts("succeeded"),
            retried: attempts("retried"),
            failed: attempts("failed"),
            cancelled: attempts("cancelled"),
            released: attempts("released"),
            lost: attempts("lost"),
            wait: metrics::histogram!(WAIT_SECONDS, "job" => job),
            run: metrics::histogram!(RUN_SECONDS, "job" => job),
        }
    }

    /// An attempt ended with `ended` after running for `took`.
    pub(crate) fn ended(&self, ended: Ended, took: Duration) {
        let counter = match ended {
            Ended::Succeeded => &self.succeeded,
            Ended::Retried => &self.retried,
            Ended::Failed => &self.failed,
            Ended::Cancelled => &self.cancelled,
        };
        counter.increment(1);
        self.run.record(took);
    }

    /// A claimed task ended without running, as `ended` (cancelled before it started).
    pub(crate) fn ended_unrun(&self, ended: Ended) {
        match ended {
            Ended::Succeeded => self.succeeded.increment(1),
            Ended::Retried => self.retried.increment(1),
            Ended::Failed => self.failed.increment(1),
            Ended::Cancelled => self.cancelled.increment(1),
        }
    }

    /// A claimed task was given back to the queue.
    pub(crate) fn released(&self) {
        self.released.increment(1);
    }

    /// A claimed task's lease was lost.
    pub(crate) fn lost(&self) {
        self.lost.increment(1);
    }

    /// A task was claimed `waited` after it became due.
    pub(crate) fn waited(&self, waited: Duration) {
        self.wait.record(waited);
    }
}

/// A worker's metric handles: per job, and its slot gauges.
#[derive(Debug)]
pub(crate) struct Instruments {
    jobs: HashMap<&'static str, JobInstruments>,
    busy: Gauge,
    slots: Gauge,
}

impl Instruments {
    /// Registers the handles of `jobs` in the installed recorder.
    pub(crate) fn new(jobs: impl IntoIterator<Item = &'static str>) -> Self {
        describe();
        Self {
            jobs: jobs
                .into_iter()
                .map(|job| (job, JobInstruments::new(job)))
                .collect(),
            busy: metrics::gauge!(WORKER_BUSY_SLOTS),
            slots: metrics::gauge!(WORKER_SLOTS),
        }
    }

    /// The handles of a registered job.
    pub(crate) fn job(&self, job: &str) -> Option<&JobInstruments> {
        self.jobs.get(job)
    }

    /// Counts `n` slots until the guard is dropped.
    pub(crate) fn slots(&self, n: usize) -> GaugeGuard {
        GaugeGuard::new(self.slots.clone(), n as f64)
    }

    /// Counts a busy slot until the guard is dropped.
    pub(crate) fn busy(&self) -> GaugeGuard {
        GaugeGuard::new(self.busy.clone(), 1.0)
    }
}

/// Adds to a gauge while it lives, so that a worker stopped in any way (even aborted) takes its
/// share back.
#[derive(Debug)]
pub(crate) struct GaugeGuard {
    gauge: Gauge,
    by: f64,
}

impl GaugeGuard {
    fn new(gauge: Gauge, by: f64) -> Self {
        gauge.increment(by);
        Self { gauge, by }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.gauge.decrement(self.by);
    }
}

/// Counts the tasks a client created, per job: `jobs` are the submitted tasks' job names in
/// order, `inserted` the backend's answer in the same order.
pub(crate) fn submitted<'a>(jobs: impl IntoIterator<Item = &'a str>, inserted: &[Inserted]) {
    let mut run: Option<(&str, u64)> = None;
    for (job, inserted) in jobs.into_iter().zip(inserted) {
        if !inserted.created {
            continue;
        }
        match &mut run {
            Some((current, n)) if *current == job => *n += 1,
            _ => {
                if let Some((current, n)) = run.replace((job, 1)) {
                    metrics::counter!(TASKS_SUBMITTED, "job" => current.to_owned()).increment(n);
                }
            }
        }
    }
    if let Some((job, n)) = run {
        metrics::counter!(TASKS_SUBMITTED, "job" => job.to_owned()).increment(n);
    }
}

/// Sets the queue gauges ([`TASKS`] and [`OLDEST_DUE_AGE_SECONDS`]) from [`Stats`], in the
/// installed recorder. It remembers the jobs it has seen, so that a job that drops out of the
/// figures (all its tasks purged) goes to zero instead of keeping its last values.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
/// use longtask_core::{metrics::StatsGauges, Client, MemoryBackend};
///
/// let client = Client::new(MemoryBackend::new());
/// let mut gauges = StatsGauges::new();
/// gauges.record(&client.stats().await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct StatsGauges {
    seen: BTreeSet<String>,
}

impl StatsGauges {
    /// Gauges that have seen no job yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets every gauge from `stats`.
    pub fn record(&mut self, stats: &Stats) {
        for job in &stats.jobs {
            for status in TaskStatus::ALL {
                metrics::gauge!(TASKS, "job" => job.job.clone(), "status" => status.as_str())
                    .set(job.counts.get(status) as f64);
            }
            let age = job.oldest_wait(stats.at).unwrap_or(Duration::ZERO);
            metrics::gauge!(OLDEST_DUE_AGE_SECONDS, "job" => job.job.clone()).set(age);
            if !self.seen.contains(&job.job) {
                self.seen.insert(job.job.clone());
            }
        }
        self.seen.retain(|seen| {
            if stats.job(seen).is_some() {
                return true;
            }
            for status in TaskStatus::ALL {
                metrics::gauge!(TASKS, "job" => seen.clone(), "status" => status.as_str()).set(0.0);
            }
            metrics::gauge!(OLDEST_DUE_AGE_SECONDS, "job" => seen.clone()).set(0.0);
            false
        });
    }
}

/// Sets the queue gauges once (see [`StatsGauges`], which also zeroes jobs that drop out of the
/// figures between calls).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
/// let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
/// longtask_core::metrics::record_stats(&client.stats().await?);
/// # Ok(()) }
/// ```
pub fn record_stats(stats: &Stats) {
    StatsGauges::new().record(stats);
}

/// Reads [`Client::stats`] every `every` (at least a second) and sets the queue gauges from it,
/// until `shutdown` completes. A failed read is logged and tried again at the next tick; the
/// gauges keep their last values meanwhile. Run it in one process of a deployment (every
/// process would report the same figures).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use longtask_core::{Client, MemoryBackend};
/// use tokio_util::sync::CancellationToken;
///
/// let client = Client::new(MemoryBackend::new());
/// let stop = CancellationToken::new();
/// let poller = tokio::spawn(longtask_core::metrics::poll_stats(
///     client,
///     Duration::from_secs(15),
///     stop.clone().cancelled_owned(),
/// ));
/// // ... at shutdown:
/// stop.cancel();
/// poller.await.unwrap();
/// # }
/// ```
pub async fn poll_stats(client: Client, every: Duration, shutdown: impl Future<Output = ()>) {
    let mut gauges = StatsGauges::new();
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = pin!(shutdown);
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        // Reading stats is cancel-safe: a shutdown does not wait for a slow backend.
        let read = tokio::select! {
            biased;
            () = &mut shutdown => return,
            read = client.stats() => read,
        };
        match read {
            Ok(stats) => {
                gauges.record(&stats);
                failing = false;
            }
            Err(err) if failing => {
                tracing::debug!(error = %err, "reading stats for the queue gauges failed again");
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading stats for the queue gauges failed; trying again at the next tick");
                failing = true;
            }
        }
    }
}

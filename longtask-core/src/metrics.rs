//! [`WorkerMetrics`]: what a worker has done, readable at any time.
//!
//! Counters (claimed, succeeded, retried, failed, cancelled, given back, leases lost), gauges
//! (attempts running, tasks prefetched) and a histogram of attempt run times. Reading them costs a
//! few atomic loads, so an application can export them to Prometheus, OpenTelemetry or its logs
//! on its own schedule.
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

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

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

//! The pieces of longtask's criterion benchmarks, shared by every backend.
//!
//! Each function takes a [`Backend`], so one harness measures them all: the backend comes from
//! `LONGTASK_BENCH_URL` ([`backend_from_env`]), among those compiled in with the crate's features.
//!
//! ```text
//! cargo bench -p longtask-benches                                    # memory://
//! LONGTASK_BENCH_URL=sqlite:///tmp/bench.db cargo bench -p longtask-benches --features sqlite
//! ```

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use longtask_core::{
    Backend, ClaimRequest, Client, Completion, Job, JobError, NewTask, Outcome, TaskContext, Worker,
};
use tokio::sync::Notify;

/// The backend named by `LONGTASK_BENCH_URL` (default `memory://`).
///
/// # Panics
/// When the URL names a backend that is not compiled in or cannot be reached: a benchmark has no
/// better way to report it.
pub async fn backend_from_env() -> (String, Backend) {
    let url = std::env::var("LONGTASK_BENCH_URL").unwrap_or_else(|_| "memory://".to_owned());
    let backend = longtask_examples::backend_from_url(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot open the benchmark backend {url}: {e}"));
    let scheme = url.split("://").next().unwrap_or("memory").to_owned();
    (scheme, backend)
}

/// A job that does nothing but count its runs, and wakes a waiter when a target is reached.
#[derive(Debug, Clone, Default)]
pub struct Noop {
    counter: Arc<Counter>,
}

#[derive(Debug, Default)]
struct Counter {
    done: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

impl Job for Noop {
    const NAME: &'static str = "bench-noop";
    type Params = ();
    type Output = ();

    async fn run(&self, (): (), _cx: TaskContext) -> Result<(), JobError> {
        let done = self.counter.done.fetch_add(1, Ordering::Relaxed) + 1;
        if done == self.counter.target.load(Ordering::Relaxed) {
            self.counter.reached.notify_one();
        }
        Ok(())
    }
}

impl Noop {
    /// Arms the counter: [`Self::wait`] returns after `n` more runs.
    fn expect(&self, n: u64) {
        let done = self.counter.done.load(Ordering::Relaxed);
        self.counter.target.store(done + n, Ordering::Relaxed);
    }

    async fn wait(&self) {
        loop {
            let notified = self.counter.reached.notified();
            if self.counter.done.load(Ordering::Relaxed)
                >= self.counter.target.load(Ordering::Relaxed)
            {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

/// A job no benchmark worker runs: the submit benchmarks submit it, so the tasks they leave
/// behind are not work for the benchmarks that follow (they stay queued, as another job's
/// backlog would in a real deployment).
#[derive(Debug, Clone, Copy, Default)]
pub struct Parked;

impl Job for Parked {
    const NAME: &'static str = "bench-parked";
    type Params = ();
    type Output = ();

    async fn run(&self, (): (), _cx: TaskContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// Submits `n` tasks of job `J` one request at a time; returns the time taken.
pub async fn enqueue_single<J: Job<Params = ()>>(client: &Client, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        client.submit::<J>(()).await.expect("submit failed");
    }
    start.elapsed()
}

/// Submits `n` tasks of job `J` in batches of `batch`; returns the time taken.
pub async fn enqueue_batch<J: Job<Params = ()>>(client: &Client, n: u64, batch: usize) -> Duration {
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let size = left.min(batch as u64);
        client
            .submit_many::<J>((0..size).map(|_| ()))
            .await
            .expect("batch submit failed");
        left -= size;
    }
    start.elapsed()
}

/// Submits `n` tasks (untimed), then claims and completes them in batches of `batch` straight
/// through the queue API, without a worker; returns the time the claims and completions took.
pub async fn claim_complete(backend: &Backend, n: u64, batch: usize) -> Duration {
    let client = Client::new(backend.clone());
    enqueue_batch::<Noop>(&client, n, 1000).await;
    claim_and_complete(backend, &[Noop::NAME], n, batch, &[], succeeded).await
}

/// [`claim_complete`] under concurrency limits that every claim must check but that never hold
/// a task back (the job's tasks spread over 100 concurrency keys; at most `batch` running in all
/// and 1,000 per key): what the limited claim path costs by itself. A job of its own
/// (`bench-limited`), so that the no-op job the other benchmarks use never runs under limits
/// (the Redis backend keeps counting a job's running tasks once a claim limited it).
pub async fn claim_complete_limited(backend: &Backend, n: u64, batch: usize) -> Duration {
    let client = Client::new(backend.clone());
    let mut left = n;
    let mut i = 0_u64;
    while left > 0 {
        let size = left.min(1000);
        let tasks = (0..size)
            .map(|_| {
                i += 1;
                NewTask {
                    concurrency_key: Some(format!("customer-{}", i % 100)),
                    ..NewTask::new(LIMITED_JOB, "null")
                }
            })
            .collect();
        client.submit_raw(tasks).await.expect("batch submit failed");
        left -= size;
    }
    let limits = [longtask_core::JobLimits {
        job: LIMITED_JOB.to_owned(),
        max_running: Some(u32::try_from(batch).unwrap_or(u32::MAX)),
        max_running_per_key: Some(1000),
    }];
    claim_and_complete(backend, &[LIMITED_JOB], n, batch, &limits, succeeded).await
}

/// The job of [`claim_complete_limited`]'s tasks (no worker runs it).
const LIMITED_JOB: &str = "bench-limited";

/// A success with a `null` output: what the no-op benchmarks' tasks end with.
fn succeeded(_: usize) -> Outcome {
    Outcome::Succeeded {
        output: "null".to_owned(),
    }
}

/// Claims `n` tasks of `jobs` in batches of `batch` and records each one's outcome (`outcome`
/// of its place in its batch) straight through the queue API; returns the time taken.
async fn claim_and_complete(
    backend: &Backend,
    jobs: &[&str],
    n: u64,
    batch: usize,
    limits: &[longtask_core::JobLimits],
    outcome: fn(usize) -> Outcome,
) -> Duration {
    let jobs: Vec<String> = jobs.iter().map(|&job| job.to_owned()).collect();
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let claimed = backend
            .queue()
            .claim(ClaimRequest {
                jobs: &jobs,
                worker: "bench",
                limit: batch.min(usize::try_from(left).unwrap_or(batch)),
                lease: Duration::from_secs(60),
                limits,
            })
            .await
            .expect("claim failed");
        assert!(!claimed.is_empty(), "ran out of tasks with {left} left");
        left = left.saturating_sub(claimed.len() as u64);
        let completions = claimed
            .into_iter()
            .enumerate()
            .map(|(i, c)| Completion::new(c.lease, outcome(i)))
            .collect();
        backend
            .queue()
            .finish(completions)
            .await
            .expect("finish failed");
    }
    start.elapsed()
}

/// Saves `n` checkpoints, one at a time as a job does (a state of about 200 bytes with its
/// progress), spread over 100 running tasks; returns the time the saves took.
pub async fn checkpoints(backend: &Backend, n: u64) -> Duration {
    let client = Client::new(backend.clone());
    enqueue_batch::<Noop>(&client, 100, 100).await;
    let jobs = [Noop::NAME.to_owned()];
    let claimed = backend
        .queue()
        .claim(ClaimRequest {
            jobs: &jobs,
            worker: "bench",
            limit: 100,
            lease: Duration::from_secs(600),
            limits: &[],
        })
        .await
        .expect("claim failed");
    assert_eq!(claimed.len(), 100, "claimed {} of 100 tasks", claimed.len());
    let rows: Vec<u64> = (0..20).map(|i| 1_000_000 + i * 7919).collect();
    let start = Instant::now();
    for i in 0..n {
        let task = &claimed[(i % 100) as usize];
        let state = format!(r#"{{"day":{i},"rows":{rows:?},"cursor":"2026-10-17T00:00:00Z"}}"#);
        let progress = longtask_core::Progress::new(i, Some(n)).with_message(format!("day {i}"));
        let ack = backend
            .queue()
            .save_checkpoint(longtask_core::Checkpoint {
                lease: task.lease,
                attempt: task.attempt,
                state,
                progress: Some(progress),
            })
            .await
            .expect("save_checkpoint failed");
        assert_eq!(ack, longtask_core::Ack::Applied);
    }
    let elapsed = start.elapsed();
    let completions = claimed
        .into_iter()
        .map(|c| {
            Completion::new(
                c.lease,
                Outcome::Succeeded {
                    output: "null".to_owned(),
                },
            )
        })
        .collect();
    backend
        .queue()
        .finish(completions)
        .await
        .expect("finish failed");
    elapsed
}

/// Settings of an end-to-end run.
#[derive(Debug, Clone, Copy)]
pub struct EndToEnd {
    /// Tasks per run.
    pub tasks: u64,
    /// Tasks per submit batch.
    pub batch: usize,
    /// Worker concurrency.
    pub concurrency: usize,
    /// Worker prefetch.
    pub prefetch: usize,
    /// Submit everything before starting the worker (drain a backlog) instead of while it runs.
    pub backlog: bool,
}

/// Submits `tasks` no-op tasks in batches and runs them with a real [`Worker`] until every
/// outcome is recorded (the worker's graceful shutdown flushes the last completions); returns
/// the time from the first submit (or, for a backlog, from the worker's start) to the end.
pub async fn end_to_end(backend: &Backend, settings: EndToEnd) -> Duration {
    let client = Client::new(backend.clone());
    let job = Noop::default();
    job.expect(settings.tasks);
    let build = || {
        Worker::builder(backend.clone())
            .register(job.clone())
            .concurrency(settings.concurrency)
            .prefetch(settings.prefetch)
            .build()
            .expect("worker builds")
    };
    let (start, worker) = if settings.backlog {
        enqueue_batch::<Noop>(&client, settings.tasks, settings.batch).await;
        (Instant::now(), build().spawn())
    } else {
        let worker = build().spawn();
        let start = Instant::now();
        enqueue_batch::<Noop>(&client, settings.tasks, settings.batch).await;
        (start, worker)
    };
    job.wait().await;
    worker.shutdown().await.expect("worker failed");
    start.elapsed()
}

/// Builds a multi-threaded runtime for the benchmarks (2 worker threads: the machine's cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A task of the no-op job, for callers that build [`NewTask`]s themselves.
pub fn noop_task() -> NewTask {
    NewTask::new(Noop::NAME, "null")
}

/// 90 % succeeded, 7 % failed, 3 % cancelled, by place in the batch.
fn mixed_outcome(i: usize) -> Outcome {
    match i % 100 {
        0..90 => succeeded(i),
        90..97 => Outcome::Failed {
            error: "the ledger is locked".to_owned(),
            retry_after: None,
        },
        _ => Outcome::Cancelled {
            reason: "asked to".to_owned(),
        },
    }
}

/// Jobs of the stats benchmark's tasks (no worker runs them).
const STATS_JOBS: [&str; 5] = [
    "bench-stats-0",
    "bench-stats-1",
    "bench-stats-2",
    "bench-stats-3",
    "bench-stats-4",
];

/// Fills the backend, through its API, until it holds at least `finished` finished tasks and
/// `waiting` waiting ones (over five jobs and four priorities; 90 % of the finished ones
/// succeeded, 7 % failed, 3 % were cancelled; all kept 30 days), as the stats benchmark
/// measures them. What is already there counts, so a second run on the same store adds
/// nothing. Returns the counts the store then holds.
///
/// # Panics
/// When the backend fails: a benchmark has no better way to report it.
pub async fn fill_for_stats(backend: &Backend, finished: u64, waiting: u64) -> (u64, u64) {
    let client = Client::new(backend.clone());
    let counts = |stats: &longtask_core::Stats| {
        let totals = stats.totals();
        (
            totals.succeeded + totals.failed + totals.cancelled,
            totals.queued + totals.scheduled + totals.retrying,
        )
    };
    let (mut have_finished, have_waiting) = counts(&client.stats().await.expect("stats failed"));
    let kept = Duration::from_secs(30 * 24 * 3600);
    let task = |i: u64| NewTask {
        priority: (i % 4) as i32,
        retention: kept,
        ..NewTask::new(STATS_JOBS[(i % 5) as usize], "null")
    };
    let mut i = 0_u64;
    while have_finished < finished {
        let size = (finished - have_finished).min(1000);
        let tasks: Vec<NewTask> = (0..size)
            .map(|_| {
                i += 1;
                task(i)
            })
            .collect();
        client.submit_raw(tasks).await.expect("batch submit failed");
        claim_and_complete(backend, &STATS_JOBS, size, 1000, &[], mixed_outcome).await;
        have_finished += size;
    }
    let mut left = waiting.saturating_sub(have_waiting);
    while left > 0 {
        let size = left.min(1000);
        let tasks: Vec<NewTask> = (0..size)
            .map(|_| {
                i += 1;
                task(i)
            })
            .collect();
        client.submit_raw(tasks).await.expect("batch submit failed");
        left -= size;
    }
    counts(&client.stats().await.expect("stats failed"))
}

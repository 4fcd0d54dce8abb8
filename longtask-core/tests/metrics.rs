//! What workers and clients record through the `metrics` facade, read back from a debugging
//! recorder: attempts per job and outcome, run times, busy and total slots, submissions, and the
//! queue gauges set from a backend's stats.
//!
//! Each test installs its recorder for its own thread only and runs on a current-thread runtime
//! (with tokio's paused clock, and the backend on the same clock), so the tests run in parallel
//! without seeing each other's figures, and timing holds however loaded the machine is.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use chrono::{DateTime, Utc};
use longtask_core::{
    metrics::{self as longtask_metrics, StatsGauges},
    saturating_add, Backoff, Client, Clock, Job, JobError, JobOptions, MemoryBackend, NewTask,
    Stats, SubmitOptions, TaskContext, TaskId, TaskStatus, Worker, WorkerBuilder,
};
use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};
use metrics_util::registry::{AtomicStorage, Registry};
use tokio::sync::{mpsc, Semaphore};

const WAIT: Duration = Duration::from_secs(60);

/// The backend's wall clock follows tokio's (paused) clock.
#[derive(Debug)]
struct TokioClock {
    wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        saturating_add(self.wall, self.start.elapsed())
    }
}

fn backend() -> MemoryBackend {
    MemoryBackend::new().with_clock(Arc::new(TokioClock {
        wall: Utc::now(),
        start: tokio::time::Instant::now(),
    }))
}

fn fast(builder: WorkerBuilder) -> WorkerBuilder {
    builder
        .poll_interval(Duration::from_millis(20))
        .progress_interval(Duration::from_millis(10))
        .sweep_interval(Duration::from_millis(20))
}

/// A recorder that keeps every value (the `metrics-util` debugging recorder resets values when
/// it is read).
#[derive(Debug)]
struct TestRecorder(Arc<Registry<Key, AtomicStorage>>);

impl TestRecorder {
    fn new() -> Self {
        Self(Arc::new(Registry::atomic()))
    }

    fn reader(&self) -> Reader {
        Reader(Arc::clone(&self.0))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// Reads what a [`TestRecorder`] holds.
struct Reader(Arc<Registry<Key, AtomicStorage>>);

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(k.to_string(), v.to_string()))
        .collect();
    Key::from_parts(name.to_owned(), labels)
}

impl Reader {
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .get_counter_handles()
            .get(&key(name, labels))
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .get_gauge_handles()
            .get(&key(name, labels))
            .map(|g| f64::from_bits(g.load(Ordering::SeqCst)))
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.0
            .get_histogram_handles()
            .get(&key(name, labels))
            .map(|h| h.data())
            .unwrap_or_default()
    }
}

/// Succeeds, fails for good, or fails once and then succeeds, as its parameter says.
struct Outcomes;
impl Job for Outcomes {
    const NAME: &'static str = "outcomes";
    type Params = String;
    type Output = ();
    async fn run(&self, what: String, cx: TaskContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match what.as_str() {
            "fatal" => Err(JobError::fatal("the customer does not exist")),
            "flaky" if cx.attempt() == 1 => Err(JobError::retryable("the mail server timed out")),
            _ => Ok(()),
        }
    }
    fn options() -> JobOptions {
        JobOptions::default()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(100)))
    }
}

#[tokio::test(start_paused = true)]
async fn a_worker_counts_attempts_by_job_and_outcome_and_times_them() {
    let recorder = TestRecorder::new();
    let seen = recorder.reader();
    let _local = metrics::set_default_local_recorder(&recorder);

    let backend = backend();
    let worker = fast(Worker::builder(backend.clone()).register(Outcomes))
        .concurrency(2)
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let mut ids = client
        .submit_many::<Outcomes>(["ok".into(), "ok".into(), "ok".into()])
        .await
        .unwrap();
    ids.push(client.submit::<Outcomes>("fatal".into()).await.unwrap());
    ids.push(client.submit::<Outcomes>("fatal".into()).await.unwrap());
    ids.push(client.submit::<Outcomes>("flaky".into()).await.unwrap());
    for id in &ids {
        client.wait(*id, WAIT).await.unwrap();
    }
    worker.shutdown().await.unwrap();

    let attempts = |outcome| {
        seen.counter(
            longtask_metrics::ATTEMPTS,
            &[("job", "outcomes"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        attempts("succeeded"),
        4,
        "3 ok, and the flaky one's 2nd attempt"
    );
    assert_eq!(attempts("failed"), 2);
    assert_eq!(attempts("retried"), 1);
    assert_eq!(attempts("cancelled"), 0);
    assert_eq!(attempts("released"), 0);
    assert_eq!(attempts("lost"), 0);
    let runs = seen.histogram(longtask_metrics::RUN_SECONDS, &[("job", "outcomes")]);
    assert_eq!(runs.len(), 7, "one run time per attempt: {runs:?}");
    let waits = seen.histogram(longtask_metrics::WAIT_SECONDS, &[("job", "outcomes")]);
    assert_eq!(waits.len(), 7, "one wait per claim: {waits:?}");
    assert!(
        waits.iter().all(|secs| secs.is_finite() && *secs >= 0.0),
        "{waits:?}"
    );
    assert!(
        runs.iter().all(|secs| (0.25..0.3).contains(secs)),
        "each attempt slept 250 ms (paused clock): {runs:?}"
    );
    assert_eq!(
        seen.counter(longtask_metrics::TASKS_SUBMITTED, &[("job", "outcomes")]),
        6
    );
    assert_eq!(
        seen.gauge(longtask_metrics::WORKER_BUSY_SLOTS, &[]),
        Some(0.0)
    );
    assert_eq!(seen.gauge(longtask_metrics::WORKER_SLOTS, &[]), Some(0.0));
}

/// Holds until the test lets it go, telling the test when it started.
struct Gated {
    started: mpsc::UnboundedSender<TaskId>,
    gate: Arc<Semaphore>,
}
impl Job for Gated {
    const NAME: &'static str = "gated";
    type Params = ();
    type Output = ();
    async fn run(&self, (): (), cx: TaskContext) -> Result<(), JobError> {
        let _ = self.started.send(cx.task_id());
        let _permit = self.gate.acquire().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn busy_and_total_slots_follow_the_running_workers() {
    let recorder = TestRecorder::new();
    let seen = recorder.reader();
    let _local = metrics::set_default_local_recorder(&recorder);

    let backend = backend();
    let (started, mut starts) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let job = Gated {
        started,
        gate: Arc::clone(&gate),
    };
    let worker = fast(Worker::builder(backend.clone()).register(job))
        .concurrency(4)
        .build()
        .unwrap()
        .spawn();
    let other = fast(Worker::builder(backend.clone()).register(Outcomes))
        .concurrency(3)
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let ids = client.submit_many::<Gated>([(), ()]).await.unwrap();
    starts.recv().await.unwrap();
    starts.recv().await.unwrap();

    assert_eq!(
        seen.gauge(longtask_metrics::WORKER_BUSY_SLOTS, &[]),
        Some(2.0)
    );
    assert_eq!(
        seen.gauge(longtask_metrics::WORKER_SLOTS, &[]),
        Some(7.0),
        "both workers' slots"
    );

    gate.add_permits(2);
    for id in ids {
        client.wait(id, WAIT).await.unwrap();
    }
    assert_eq!(
        seen.gauge(longtask_metrics::WORKER_BUSY_SLOTS, &[]),
        Some(0.0)
    );
    other.shutdown().await.unwrap();
    assert_eq!(seen.gauge(longtask_metrics::WORKER_SLOTS, &[]), Some(4.0));
    worker.shutdown().await.unwrap();
    assert_eq!(seen.gauge(longtask_metrics::WORKER_SLOTS, &[]), Some(0.0));
}

struct Long;
impl Job for Long {
    const NAME: &'static str = "long";
    type Params = ();
    type Output = ();
    async fn run(&self, (): (), _cx: TaskContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn tasks_given_back_at_shutdown_count_as_released() {
    let recorder = TestRecorder::new();
    let seen = recorder.reader();
    let _local = metrics::set_default_local_recorder(&recorder);

    let backend = backend();
    let client = Client::new(backend.clone());
    let ids = client.submit_many::<Long>([(), (), ()]).await.unwrap();
    let worker = fast(Worker::builder(backend.clone()).register(Long))
        .concurrency(1)
        .prefetch(2)
        .shutdown_timeout(Duration::from_millis(100))
        .build()
        .unwrap()
        .spawn();
    while client.status(ids[0]).await.unwrap().status != TaskStatus::Running {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await.unwrap();

    let attempts = |outcome| {
        seen.counter(
            longtask_metrics::ATTEMPTS,
            &[("job", "long"), ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("released"), 3, "one running, two prefetched");
    assert_eq!(attempts("succeeded"), 0);
    assert!(
        seen.histogram(longtask_metrics::RUN_SECONDS, &[("job", "long")])
            .is_empty(),
        "an attempt stopped at shutdown has no run time"
    );
}

#[tokio::test]
async fn submissions_count_created_tasks_per_job() {
    let recorder = TestRecorder::new();
    let seen = recorder.reader();
    let _local = metrics::set_default_local_recorder(&recorder);

    let client = Client::new(MemoryBackend::new());
    let once = SubmitOptions::new().idempotency_key("welcome-ada");
    client.submit_with::<Long>((), once.clone()).await.unwrap();
    let again = client.submit_with::<Long>((), once).await.unwrap();
    assert!(!again.created);
    client
        .submit_many::<Outcomes>(["ok".into(), "ok".into()])
        .await
        .unwrap();
    client.submit_many::<Outcomes>(Vec::new()).await.unwrap();
    client
        .submit_raw(vec![
            NewTask::new("export", "{}"),
            NewTask::new("report", "{}"),
            NewTask::new("export", "{}"),
        ])
        .await
        .unwrap();

    let submitted = |job| seen.counter(longtask_metrics::TASKS_SUBMITTED, &[("job", job)]);
    assert_eq!(
        submitted("long"),
        1,
        "a repeated idempotency key creates nothing"
    );
    assert_eq!(submitted("outcomes"), 2);
    assert_eq!(submitted("export"), 2);
    assert_eq!(submitted("report"), 1);
}

#[tokio::test]
async fn queue_gauges_come_from_stats_and_vanished_jobs_go_to_zero() {
    let recorder = TestRecorder::new();
    let seen = recorder.reader();
    let _local = metrics::set_default_local_recorder(&recorder);

    let now = Utc::now().timestamp_millis();
    let stats = Stats::assemble(
        now,
        [
            ("report".to_owned(), TaskStatus::Queued, 7),
            ("report".to_owned(), TaskStatus::Failed, 2),
            ("email".to_owned(), TaskStatus::Scheduled, 3),
        ],
        [("report".to_owned(), now - 90_000)],
        [],
    );
    let mut gauges = StatsGauges::new();
    gauges.record(&stats);
    let tasks = |seen: &Reader, job, status| {
        seen.gauge(longtask_metrics::TASKS, &[("job", job), ("status", status)])
    };
    assert_eq!(tasks(&seen, "report", "queued"), Some(7.0));
    assert_eq!(tasks(&seen, "report", "failed"), Some(2.0));
    assert_eq!(
        tasks(&seen, "report", "running"),
        Some(0.0),
        "every status is set"
    );
    assert_eq!(tasks(&seen, "email", "scheduled"), Some(3.0));
    let age =
        |seen: &Reader, job| seen.gauge(longtask_metrics::OLDEST_DUE_AGE_SECONDS, &[("job", job)]);
    assert_eq!(age(&seen, "report"), Some(90.0));
    assert_eq!(age(&seen, "email"), Some(0.0), "nothing of it is due");

    // Every email task was purged: the job drops out of the figures, and out of the gauges.
    let stats = Stats::assemble(now, [("report".to_owned(), TaskStatus::Queued, 1)], [], []);
    gauges.record(&stats);
    assert_eq!(tasks(&seen, "report", "queued"), Some(1.0));
    assert_eq!(tasks(&seen, "report", "failed"), Some(0.0));
    assert_eq!(age(&seen, "report"), Some(0.0));
    assert_eq!(tasks(&seen, "email", "scheduled"), Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn poll_stats_keeps_the_queue_gauges_current_until_shutdown() {
    let recorder = TestRecorder::new();
    let seen = recorder.reader();
    let _local = metrics::set_default_local_recorder(&recorder);

    let backend = backend();
    let client = Client::new(backend);
    client.submit_many::<Long>([(), ()]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let poller = tokio::spawn(longtask_metrics::poll_stats(
        client.clone(),
        Duration::from_secs(10),
        stop.clone().cancelled_owned(),
    ));
    let queued = || {
        seen.gauge(
            longtask_metrics::TASKS,
            &[("job", "long"), ("status", "queued")],
        )
    };
    // The first tick reads at once; the paused clock then moves only as the test sleeps.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(queued(), Some(2.0));
    assert_eq!(
        seen.gauge(longtask_metrics::OLDEST_DUE_AGE_SECONDS, &[("job", "long")]),
        Some(3.0),
        "read 3 s after they were submitted"
    );

    client.submit::<Long>(()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(queued(), Some(2.0), "not read again before the interval");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(queued(), Some(3.0));

    stop.cancel();
    client.submit::<Long>(()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(poller.is_finished(), "it returns once shutdown completes");
    assert_eq!(queued(), Some(3.0), "stopped");
    poller.await.unwrap();
}

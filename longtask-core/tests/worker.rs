//! Worker behaviour beyond the backend contract: panics, timeouts, cancellation, shutdown,
//! retries, crash recovery, progress coalescing, and faults (a worker frozen or cut off past its
//! lease, writes that fail during a short outage), on the in-memory backend.
//!
//! Tests that measure time run on tokio's paused clock, with the backend on the same clock
//! ([`TokioClock`]): timeouts, grace periods, leases and deadlines then hold to the millisecond
//! however loaded the machine is, and a lease of minutes costs no waiting.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{stream::BoxStream, StreamExt};
use longtask_core::{
    saturating_add, Ack, Backend, Backoff, CancelOutcome, ClaimRequest, ClaimedTask, Client, Clock,
    Completion, Error, Job, JobError, JobOptions, Lease, LeaseState, MemoryBackend, NewTask,
    Outcome, Progress, ProgressSink, Queue, TaskContext, TaskEvent, TaskId, TaskQuery, TaskRecord,
    TaskStatus, WorkSignal, Worker, WorkerBuilder,
};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

fn fast(builder: WorkerBuilder) -> WorkerBuilder {
    builder
        .poll_interval(Duration::from_millis(20))
        .progress_interval(Duration::from_millis(10))
        .sweep_interval(Duration::from_millis(20))
}

struct Panics;
impl Job for Panics {
    const NAME: &'static str = "panics";
    type Params = ();
    type Output = ();
    async fn run(&self, (): (), _cx: TaskContext) -> Result<(), JobError> {
        panic!("the report template is missing");
    }
    fn options() -> JobOptions {
        JobOptions::default()
            .max_attempts(2)
            .backoff(Backoff::constant(Duration::ZERO))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_is_a_failed_attempt_with_its_message() {
    let backend = MemoryBackend::new();
    let worker = fast(Worker::builder(backend.clone()).register(Panics))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let id = client.submit::<Panics>(()).await.unwrap();
    let task = client.wait(id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.attempt, 2, "a panic is retried like any failure");
    let error = task.last_error.unwrap();
    assert_eq!(error.message, "panicked: the report template is missing");
    assert_eq!(error.attempt, 2);
    // The worker survives its jobs' panics.
    let again = client.submit::<Panics>(()).await.unwrap();
    assert_eq!(
        client.wait(again, WAIT).await.unwrap().status,
        TaskStatus::Failed
    );
    worker.shutdown().await.unwrap();
}

struct Slow;
impl Job for Slow {
    const NAME: &'static str = "slow";
    type Params = u64; // milliseconds
    type Output = String;
    async fn run(&self, millis: u64, cx: TaskContext) -> Result<String, JobError> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(format!("slept {millis} ms in attempt {}", cx.attempt()))
    }
    fn options() -> JobOptions {
        JobOptions::default()
            .max_attempts(1)
            .timeout(Duration::from_millis(100))
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_timeout_is_stopped_and_failed() {
    let backend = paused_backend();
    let worker = fast(Worker::builder(backend.clone()).register(Slow))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let slow = client.submit::<Slow>(10_000).await.unwrap();
    let quick = client.submit::<Slow>(1).await.unwrap();
    let started = Instant::now();
    let task = client.wait(slow, WAIT).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(200),
        "stopped at its timeout: {took:?}"
    );
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.last_error.unwrap().message, "timed out after 100ms");
    assert_eq!(
        client.wait(quick, WAIT).await.unwrap().status,
        TaskStatus::Succeeded
    );
    worker.shutdown().await.unwrap();
}

struct Stubborn;
impl Job for Stubborn {
    const NAME: &'static str = "stubborn";
    type Params = ();
    type Output = ();
    async fn run(&self, (): (), cx: TaskContext) -> Result<(), JobError> {
        let _ = cx.progress(1, None, "ignoring cancellation");
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    }
    fn options() -> JobOptions {
        JobOptions::default().cancel_grace(Duration::from_millis(200))
    }
}

struct Polite;
impl Job for Polite {
    const NAME: &'static str = "polite";
    type Params = ();
    type Output = ();
    async fn run(&self, (): (), cx: TaskContext) -> Result<(), JobError> {
        for step in 0.. {
            tokio::select! {
                () = cx.cancelled() => return Err(JobError::cancelled()),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            cx.progress(step, None, "working")?;
        }
        Ok(())
    }
}

async fn wait_for(client: &Client, id: TaskId, status: TaskStatus) -> TaskRecord {
    let deadline = Instant::now() + WAIT;
    loop {
        let task = client.status(id).await.unwrap();
        if task.status == status {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task never reached {status}: {task:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn cancellation_is_cooperative_then_forced_after_the_grace_period() {
    let backend = paused_backend();
    let worker = fast(
        Worker::builder(backend.clone())
            .register(Stubborn)
            .register(Polite),
    )
    .lease(Duration::from_millis(300))
    .build()
    .unwrap()
    .spawn();
    let client = Client::new(backend);

    let polite = client.submit::<Polite>(()).await.unwrap();
    wait_for(&client, polite, TaskStatus::Running).await;
    let asked = Instant::now();
    assert_eq!(
        client.cancel(polite).await.unwrap(),
        CancelOutcome::Requested
    );
    let task = client.wait(polite, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Cancelled);
    let took = asked.elapsed();
    assert!(
        took <= Duration::from_millis(150),
        "within a heartbeat (100 ms) and a step: {took:?}"
    );

    let stubborn = client.submit::<Stubborn>(()).await.unwrap();
    wait_for(&client, stubborn, TaskStatus::Running).await;
    let asked = Instant::now();
    client.cancel(stubborn).await.unwrap();
    let task = client.wait(stubborn, WAIT).await.unwrap();
    let took = asked.elapsed();
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert!(
        took >= Duration::from_millis(200),
        "not before the grace period: {took:?}"
    );
    assert!(
        took <= Duration::from_millis(400),
        "stopped at the first heartbeat after it: {took:?}"
    );
    let message = task.last_error.unwrap().message;
    assert!(message.contains("grace period"), "{message}");
    worker.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_finishes_work_in_flight() {
    let backend = paused_backend();
    let worker = fast(Worker::builder(backend.clone()).register(Slow))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let id = client.submit::<Slow>(80).await.unwrap();
    wait_for(&client, id, TaskStatus::Running).await;
    worker.shutdown().await.unwrap();
    let task = client.status(id).await.unwrap();
    assert_eq!(
        task.status,
        TaskStatus::Succeeded,
        "finished before the worker stopped"
    );
    assert_eq!(
        client.output::<Slow>(id).await.unwrap().as_deref(),
        Some("slept 80 ms in attempt 1")
    );
}

struct Long;
impl Job for Long {
    const NAME: &'static str = "long";
    type Params = u64;
    type Output = String;
    async fn run(&self, millis: u64, cx: TaskContext) -> Result<String, JobError> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(format!("attempt {}", cx.attempt()))
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_deadline_gives_running_and_prefetched_tasks_back() {
    let backend = paused_backend();
    let client = Client::new(backend.clone());
    let ids = client
        .submit_many::<Long>([5_000, 5_000, 5_000])
        .await
        .unwrap();
    let worker = fast(Worker::builder(backend.clone()).register(Long))
        .concurrency(1)
        .prefetch(2)
        .shutdown_timeout(Duration::from_millis(100))
        .build()
        .unwrap()
        .spawn();
    wait_for(&client, ids[0], TaskStatus::Running).await;
    let metrics = worker.metrics();
    let started = Instant::now();
    worker.shutdown().await.unwrap();
    assert_eq!(metrics.snapshot().released, 3);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(200),
        "the deadline holds: {took:?}"
    );
    for id in &ids {
        let task = client.status(*id).await.unwrap();
        assert_eq!(task.status, TaskStatus::Queued, "given back: {task:?}");
        assert_eq!(task.attempt, 0, "a given-back attempt does not count");
        assert_eq!(task.lease_owner, None, "{task:?}");
    }
    // Another worker runs them at once (not a lease later), as their first attempt.
    let worker = fast(Worker::builder(backend).register(Long))
        .concurrency(3)
        .build()
        .unwrap()
        .spawn();
    let restarted = Instant::now();
    for id in &ids {
        let task = client.wait(*id, WAIT).await.unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
        assert_eq!(task.attempt, 1, "{task:?}");
        assert_eq!(task.last_error, None, "{task:?}");
        assert_eq!(
            client.output::<Long>(*id).await.unwrap().as_deref(),
            Some("attempt 1")
        );
    }
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_millis(5_100),
        "all three ran at once, side by side: {took:?}"
    );
    worker.shutdown().await.unwrap();
}

struct Flaky {
    runs: Arc<AtomicUsize>,
}
impl Job for Flaky {
    const NAME: &'static str = "flaky";
    type Params = ();
    type Output = String;
    async fn run(&self, (): (), cx: TaskContext) -> Result<String, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        cx.progress(
            u64::from(cx.attempt()),
            Some(3),
            format!("attempt {}", cx.attempt()),
        )?;
        if cx.attempt() <= 2 {
            return Err(JobError::retryable(format!(
                "mail server busy ({})",
                cx.attempt()
            )));
        }
        Ok("sent".to_owned())
    }
    fn options() -> JobOptions {
        JobOptions::default().backoff(Backoff::constant(Duration::from_millis(300)))
    }
}

// Paused time: a watcher held up longer than the 300 ms backoff on a loaded machine would see
// the task running again instead of retrying.
#[tokio::test(start_paused = true)]
async fn a_job_that_fails_twice_then_succeeds_shows_its_retries() {
    let backend = paused_backend();
    let runs = Arc::new(AtomicUsize::new(0));
    let worker = fast(Worker::builder(backend.clone()).register(Flaky { runs: runs.clone() }))
        .build()
        .unwrap()
        .spawn();
    let metrics = worker.metrics();
    let client = Client::new(backend);
    let id = client.submit::<Flaky>(()).await.unwrap();
    let mut updates = client.watch(id).await.unwrap();
    let mut seen = Vec::new();
    while let Some(update) = tokio::time::timeout(WAIT, updates.next()).await.unwrap() {
        seen.push(update.unwrap());
    }
    worker.shutdown().await.unwrap();
    // In between: "retrying, attempt 2 of 5", with the first error.
    let retrying = seen
        .iter()
        .find(|t| t.status == TaskStatus::Retrying && t.attempt == 1)
        .expect("a retrying state after the first failure");
    assert_eq!(retrying.max_attempts, 5);
    assert_eq!(
        retrying.last_error.as_ref().unwrap().message,
        "mail server busy (1)"
    );
    assert!(retrying.run_at > retrying.last_error.as_ref().unwrap().at);
    assert!(seen
        .iter()
        .any(|t| t.status == TaskStatus::Retrying && t.attempt == 2));
    let last = seen.last().unwrap();
    assert_eq!(last.status, TaskStatus::Succeeded);
    assert_eq!(last.attempt, 3);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let counted = metrics.snapshot();
    assert_eq!(
        (
            counted.claimed,
            counted.retried,
            counted.succeeded,
            counted.failed
        ),
        (3, 2, 1, 0)
    );
    assert_eq!(counted.run_time.iter().sum::<u64>(), 3);
    assert_eq!(counted.running, 0);
    assert_eq!(
        client.output::<Flaky>(id).await.unwrap().as_deref(),
        Some("sent")
    );
}

#[tokio::test(start_paused = true)]
async fn a_crashed_workers_task_is_recovered_by_another_worker() {
    let backend = paused_backend();
    let client = Client::new(backend.clone());
    let id = client.submit::<Long>(200).await.unwrap();
    let crashing = fast(Worker::builder(backend.clone()).register(Long))
        .lease(Duration::from_millis(300))
        .build()
        .unwrap()
        .spawn();
    wait_for(&client, id, TaskStatus::Running).await;
    crashing.abort(); // as if the process died: no release, no outcome
    let survivor = fast(Worker::builder(backend.clone()).register(Long))
        .lease(Duration::from_millis(300))
        .build()
        .unwrap()
        .spawn();
    let task = client.wait(id, WAIT).await.unwrap();
    survivor.shutdown().await.unwrap();
    assert_eq!(task.status, TaskStatus::Succeeded);
    assert_eq!(task.attempt, 2);
    assert!(task.last_error.unwrap().message.contains("lost"));
    assert_eq!(
        client.output::<Long>(id).await.unwrap().as_deref(),
        Some("attempt 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_that_do_not_decode_fail_the_task_at_once() {
    let backend = MemoryBackend::new();
    let worker = fast(Worker::builder(backend.clone()).register(Long))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let bad = client
        .submit_raw(vec![NewTask::new(Long::NAME, r#"{"not":"a number"}"#)])
        .await
        .unwrap()[0]
        .id;
    let task = client.wait(bad, WAIT).await.unwrap();
    worker.shutdown().await.unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.attempt, 1, "bad parameters are not retried");
    let message = task.last_error.unwrap().message;
    assert!(
        message.starts_with("invalid parameters for job `long`"),
        "{message}"
    );
}

/// Counts progress writes on their way to the memory backend.
struct CountingSink {
    inner: MemoryBackend,
    writes: AtomicUsize,
}

#[async_trait]
impl ProgressSink for CountingSink {
    async fn report(&self, updates: &[(Lease, Progress)]) -> longtask_core::Result<()> {
        self.writes.fetch_add(updates.len(), Ordering::SeqCst);
        self.inner.report(updates).await
    }
    async fn latest(&self, id: TaskId) -> longtask_core::Result<Option<Progress>> {
        self.inner.latest(id).await
    }
    async fn watch(&self, id: TaskId) -> longtask_core::Result<BoxStream<'static, TaskEvent>> {
        self.inner.watch(id).await
    }
}

struct Chatty;
impl Job for Chatty {
    const NAME: &'static str = "chatty";
    type Params = u64;
    type Output = ();
    async fn run(&self, reports: u64, cx: TaskContext) -> Result<(), JobError> {
        let started = Instant::now();
        for step in 1..=reports {
            cx.progress(step, Some(reports), "counting")?;
            if step % 10_000 == 0 {
                tokio::task::yield_now().await;
            }
        }
        while started.elapsed() < Duration::from_millis(300) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_writes_are_coalesced_and_the_last_one_is_kept() {
    let memory = MemoryBackend::new();
    let sink = Arc::new(CountingSink {
        inner: memory.clone(),
        writes: AtomicUsize::new(0),
    });
    let backend = Backend::new(memory).with_progress(sink.clone());
    let lifetime = std::time::Instant::now();
    let worker = Worker::builder(backend.clone())
        .register(Chatty)
        .progress_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let id = client.submit::<Chatty>(1_000_000).await.unwrap();
    let task = client.wait(id, WAIT).await.unwrap();
    worker.shutdown().await.unwrap();
    // At most one write per 50 ms interval (however long the loaded machine took), and the last
    // progress goes with the outcome.
    let bound = 2 + lifetime.elapsed().as_millis() / 50;
    let writes = sink.writes.load(Ordering::SeqCst);
    assert!(
        writes as u128 <= bound,
        "a million reports made {writes} writes (at most {bound})"
    );
    let progress = task.progress.expect("the last progress is stored");
    assert_eq!(
        (progress.step, progress.total),
        (1_000_000, Some(1_000_000))
    );
    assert!(progress.rate.is_some(), "a rate was estimated");
}

#[tokio::test]
async fn a_worker_needs_jobs_with_distinct_names() {
    let backend = MemoryBackend::new();
    let err = Worker::builder(backend.clone()).build().unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    assert!(err.to_string().contains("register"), "{err}");
    let err = Worker::builder(backend)
        .register(Slow)
        .register(Slow)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`slow`"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_worker_wakes_on_submit_and_stops_promptly() {
    let backend = paused_backend();
    // A long poll interval: only the wake-up signal can explain a prompt start.
    let worker = Worker::builder(backend.clone())
        .register(Long)
        .poll_interval(Duration::from_secs(30))
        .build()
        .unwrap()
        .spawn();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = Client::new(backend);
    let started = Instant::now();
    let id = client.submit::<Long>(0).await.unwrap();
    client.wait(id, WAIT).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(10), "{took:?}");
    let stopping = Instant::now();
    worker.shutdown().await.unwrap();
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(10), "{took:?}");
}

// ---------------------------------------------------------------------------------------------
// Faults: a frozen or cut-off worker, and writes that fail during a short outage.

/// Backend time that follows tokio's clock, so that under paused time the backend's leases
/// expire exactly as the worker's timers see time pass.
#[derive(Debug)]
struct TokioClock {
    wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            wall: Utc::now(),
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        saturating_add(self.wall, self.start.elapsed())
    }
}

/// An empty memory backend on tokio's clock.
fn paused_backend() -> MemoryBackend {
    MemoryBackend::new().with_clock(TokioClock::new())
}

/// Faults to inject between a worker and its (real, in-memory) queue.
#[derive(Debug, Default)]
struct Faults {
    /// Every queue call fails: the worker is cut off from the backend.
    down: AtomicBool,
    /// Heartbeats fail.
    heartbeats_down: AtomicBool,
    /// The next this many `finish` calls fail.
    failing_finishes: AtomicUsize,
    /// The next this many `release` calls fail.
    failing_releases: AtomicUsize,
    finishes: AtomicUsize,
    releases: AtomicUsize,
}

impl Faults {
    fn check(&self, what: &str, extra: Option<&AtomicUsize>) -> longtask_core::Result<()> {
        let injected = self.down.load(Ordering::SeqCst)
            || extra.is_some_and(|left| {
                left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            });
        if injected {
            return Err(Error::backend(
                what.to_owned(),
                std::io::Error::other("connection refused (injected fault)"),
            ));
        }
        Ok(())
    }
}

/// A fault injector: the memory backend's own queue, with errors injected in front of it.
struct FaultyQueue {
    inner: MemoryBackend,
    faults: Arc<Faults>,
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn claim(&self, request: ClaimRequest<'_>) -> longtask_core::Result<Vec<ClaimedTask>> {
        self.faults.check("claiming tasks", None)?;
        self.inner.claim(request).await
    }
    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> longtask_core::Result<Vec<LeaseState>> {
        self.faults.check("extending leases", None)?;
        if self.faults.heartbeats_down.load(Ordering::SeqCst) {
            return Err(Error::backend(
                "extending leases",
                std::io::Error::other("statement timeout (injected fault)"),
            ));
        }
        self.inner.heartbeat(leases, extend).await
    }
    async fn finish(&self, completions: Vec<Completion>) -> longtask_core::Result<Vec<Ack>> {
        self.faults.finishes.fetch_add(1, Ordering::SeqCst);
        self.faults
            .check("recording outcomes", Some(&self.faults.failing_finishes))?;
        self.inner.finish(completions).await
    }
    async fn release(&self, leases: &[Lease]) -> longtask_core::Result<Vec<Ack>> {
        self.faults.releases.fetch_add(1, Ordering::SeqCst);
        self.faults
            .check("giving tasks back", Some(&self.faults.failing_releases))?;
        self.inner.release(leases).await
    }
    async fn recover_expired(&self, limit: usize) -> longtask_core::Result<u64> {
        self.faults.check("recovering expired leases", None)?;
        self.inner.recover_expired(limit).await
    }
    async fn save_checkpoint(
        &self,
        checkpoint: longtask_core::Checkpoint,
    ) -> longtask_core::Result<Ack> {
        self.faults.check("saving a checkpoint", None)?;
        self.inner.save_checkpoint(checkpoint).await
    }
    async fn load_checkpoint(&self, task: TaskId) -> longtask_core::Result<Option<String>> {
        self.faults.check("loading a checkpoint", None)?;
        self.inner.load_checkpoint(task).await
    }
    fn work_signal(&self) -> WorkSignal {
        self.inner.work_signal()
    }
}

/// A memory backend on tokio's clock, and a worker's view of it through a fault injector.
fn faulty_backend() -> (MemoryBackend, Backend, Arc<Faults>) {
    let memory = paused_backend();
    let faults = Arc::new(Faults::default());
    let queue = Arc::new(FaultyQueue {
        inner: memory.clone(),
        faults: faults.clone(),
    });
    let backend = Backend::from_parts(Arc::new(memory.clone()), queue, Arc::new(memory.clone()));
    (memory, backend, faults)
}

/// A job with a side effect outside the queue: each run is logged before it sleeps.
struct Effect {
    runs: Arc<Mutex<Vec<(TaskId, u32)>>>,
}
impl Job for Effect {
    const NAME: &'static str = "effect";
    type Params = u64; // milliseconds
    type Output = String;
    async fn run(&self, millis: u64, cx: TaskContext) -> Result<String, JobError> {
        self.runs.lock().unwrap().push((cx.task_id(), cx.attempt()));
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(format!("ran attempt {}", cx.attempt()))
    }
}

type Runs = Arc<Mutex<Vec<(TaskId, u32)>>>;

fn runs_of(runs: &Runs, id: TaskId) -> Vec<u32> {
    runs.lock()
        .unwrap()
        .iter()
        .filter(|(task, _)| *task == id)
        .map(|(_, attempt)| *attempt)
        .collect()
}

/// Waits (in tokio time) until `done` holds, checking every 10 ms.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_buffered_task_whose_lease_lapsed_is_not_started() {
    let (memory, backend, faults) = faulty_backend();
    let client = Client::new(memory.clone());
    let runs: Runs = Arc::default();
    // The first task runs for 20 s; the other three wait in the worker's buffer behind it.
    let ids = client
        .submit_many::<Effect>([20_000, 0, 0, 0])
        .await
        .unwrap();
    let lease = Duration::from_secs(9);
    let worker = Worker::builder(backend)
        .register(Effect { runs: runs.clone() })
        .concurrency(1)
        .prefetch(3)
        .lease(lease)
        .build()
        .unwrap()
        .spawn();
    until("all four claimed, the first started", async || {
        runs.lock().unwrap().len() == 1
            && client
                .list(&TaskQuery::default())
                .await
                .unwrap()
                .iter()
                .all(|t| t.status == TaskStatus::Running)
    })
    .await;

    // The worker is cut off (or frozen) past its lease: its heartbeats do not arrive. Another
    // worker recovers the expired leases and finishes all four tasks.
    faults.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(lease + Duration::from_secs(1)).await;
    assert_eq!(memory.recover_expired(100).await.unwrap(), 4);
    let jobs = [Effect::NAME.to_owned()];
    let other = memory
        .claim(ClaimRequest {
            jobs: &jobs,
            worker: "another worker",
            limit: 10,
            lease: Duration::from_secs(60),
            limits: &[],
        })
        .await
        .unwrap();
    assert_eq!(other.len(), 4);
    let done = other
        .iter()
        .map(|t| {
            Completion::new(
                t.lease,
                Outcome::Succeeded {
                    output: r#""done by another worker""#.to_owned(),
                },
            )
        })
        .collect();
    assert!(memory
        .finish(done)
        .await
        .unwrap()
        .iter()
        .all(|a| *a == Ack::Applied));

    // The first job ends at 20 s and its slot turns to the buffer: those leases are long past
    // their last confirmation, and no heartbeat can confirm them while the worker is cut off.
    tokio::time::sleep(Duration::from_secs(15)).await;
    for id in &ids[1..] {
        assert_eq!(
            runs_of(&runs, *id),
            [0_u32; 0],
            "a buffered task started after its lease lapsed"
        );
    }
    // Back in touch, the worker learns the leases are lost and drops the tasks unrun.
    let metrics = worker.metrics();
    faults.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(lease).await;
    let seen = metrics.snapshot();
    assert_eq!((seen.leases_lost, seen.prefetched), (3, 0), "{seen:?}");
    worker.shutdown().await.unwrap();
    assert_eq!(runs_of(&runs, ids[0]), [1]);
    for id in &ids {
        let task = client.status(*id).await.unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
        assert_eq!(task.attempt, 2);
        assert_eq!(
            client.output::<Effect>(*id).await.unwrap().as_deref(),
            Some("done by another worker")
        );
    }
    for id in &ids[1..] {
        assert_eq!(
            runs_of(&runs, *id),
            [0_u32; 0],
            "a buffered task started after its lease lapsed"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn buffered_tasks_whose_leases_are_confirmed_after_a_stall_run_once() {
    let (memory, backend, faults) = faulty_backend();
    let client = Client::new(memory.clone());
    let runs: Runs = Arc::default();
    let ids = client
        .submit_many::<Effect>([20_000, 0, 0, 0])
        .await
        .unwrap();
    let lease = Duration::from_secs(9);
    let worker = Worker::builder(backend)
        .register(Effect { runs: runs.clone() })
        .concurrency(1)
        .prefetch(3)
        .lease(lease)
        .sweep_interval(Duration::from_secs(3600))
        .build()
        .unwrap()
        .spawn();
    until("the first started", async || {
        runs.lock().unwrap().len() == 1
    })
    .await;
    // Heartbeats fail for 25 s; nobody recovers the tasks meanwhile.
    faults.heartbeats_down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(
        runs.lock().unwrap().len(),
        1,
        "no buffered task started unconfirmed"
    );
    faults.heartbeats_down.store(false, Ordering::SeqCst);
    for id in &ids {
        let task = client.wait(*id, WAIT).await.unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
        assert_eq!(task.attempt, 1, "the leases held: {task:?}");
        assert_eq!(runs_of(&runs, *id), [1]);
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_outcome_that_fails_to_be_written_is_retried_not_run_again() {
    let (memory, backend, faults) = faulty_backend();
    let client = Client::new(memory);
    let runs: Runs = Arc::default();
    faults.failing_finishes.store(3, Ordering::SeqCst);
    let worker = Worker::builder(backend)
        .register(Effect { runs: runs.clone() })
        .lease(Duration::from_secs(30))
        .build()
        .unwrap()
        .spawn();
    let id = client.submit::<Effect>(100).await.unwrap();
    let task = client.wait(id, Duration::from_secs(600)).await.unwrap();
    worker.shutdown().await.unwrap();
    assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
    assert_eq!(task.attempt, 1, "{task:?}");
    assert_eq!(runs_of(&runs, id), [1], "the job ran exactly once");
    assert_eq!(
        client.output::<Effect>(id).await.unwrap().as_deref(),
        Some("ran attempt 1")
    );
    assert_eq!(
        faults.finishes.load(Ordering::SeqCst),
        4,
        "three failures, then written"
    );
}

#[tokio::test(start_paused = true)]
async fn tasks_are_given_back_at_shutdown_even_if_the_first_tries_fail() {
    let (memory, backend, faults) = faulty_backend();
    let client = Client::new(memory.clone());
    let runs: Runs = Arc::default();
    let ids = client
        .submit_many::<Effect>([60_000, 60_000, 60_000])
        .await
        .unwrap();
    let worker = Worker::builder(backend)
        .register(Effect { runs: runs.clone() })
        .concurrency(1)
        .prefetch(2)
        .shutdown_timeout(Duration::from_millis(100))
        .build()
        .unwrap()
        .spawn();
    until("the first started", async || {
        runs.lock().unwrap().len() == 1
    })
    .await;
    // The first give-back (of the prefetched tasks) and the first retry of it fail, as does the
    // first give-back of the running one.
    faults.failing_releases.store(3, Ordering::SeqCst);
    worker.shutdown().await.unwrap();
    for id in &ids {
        let task = client.status(*id).await.unwrap();
        assert_eq!(task.status, TaskStatus::Queued, "given back: {task:?}");
        assert_eq!(task.attempt, 0, "a given-back attempt does not count");
    }
    assert_eq!(
        faults.failing_releases.load(Ordering::SeqCst),
        0,
        "every fault was met"
    );
    assert!(faults.releases.load(Ordering::SeqCst) >= 4);
}

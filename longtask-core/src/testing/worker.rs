//! Cases: a real [`crate::Worker`] over the backend.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{Harness, WakeUps};
use crate::{
    Ack, Backend, Backoff, Checkpoint, ClaimRequest, ClaimedTask, Client, Completion, Job,
    JobError, JobOptions, Lease, LeaseState, Queue, TaskContext, TaskId, TaskQuery, TaskRecord,
    TaskStatus, WorkSignal, Worker,
};

/// Echoes its parameters, reporting progress on the way.
#[derive(Debug)]
pub struct Echo;

/// Parameters of [`Echo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EchoParams {
    /// Echoed back.
    pub n: u64,
    /// Echoed back.
    pub text: String,
}

impl Job for Echo {
    const NAME: &'static str = "conformance-echo";
    type Params = EchoParams;
    type Output = EchoParams;

    async fn run(&self, params: EchoParams, cx: TaskContext) -> Result<EchoParams, JobError> {
        cx.progress(1, Some(2), format!("echoing {}", params.n))?;
        tokio::task::yield_now().await;
        cx.progress(2, Some(2), "done")?;
        Ok(params)
    }
}

/// Fails its first two attempts, then succeeds with the attempt number.
#[derive(Debug)]
pub struct Flaky;

impl Job for Flaky {
    const NAME: &'static str = "conformance-flaky";
    type Params = ();
    type Output = u32;

    async fn run(&self, (): (), cx: TaskContext) -> Result<u32, JobError> {
        if cx.attempt() < 3 {
            return Err(JobError::retryable(format!("failure {}", cx.attempt())));
        }
        Ok(cx.attempt())
    }

    fn options() -> JobOptions {
        JobOptions::default().backoff(Backoff::constant(Duration::ZERO))
    }
}

fn worker(h: &Harness) -> crate::WorkerHandle {
    Worker::builder(h.backend.clone())
        .register(Echo)
        .register(Flaky)
        .concurrency(8)
        .poll_interval(Duration::from_millis(50))
        .progress_interval(Duration::from_millis(10))
        .build()
        .expect("worker builds")
        .spawn()
}

/// A worker runs submitted tasks to success and stores their outputs and final progress.
pub async fn worker_runs_tasks_end_to_end(h: Harness) {
    let client = Client::new(h.backend.clone());
    let params: Vec<EchoParams> = (0..200)
        .map(|n| EchoParams {
            n,
            text: format!("täsk {n} ✓"),
        })
        .collect();
    let ids = client.submit_many::<Echo>(params.clone()).await.unwrap();
    let worker = worker(&h);
    for (id, expected) in ids.iter().zip(&params) {
        let task = client.wait(*id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
        assert_eq!(
            client.output::<Echo>(*id).await.unwrap().as_ref(),
            Some(expected)
        );
        let progress = task.progress.expect("final progress is stored");
        assert_eq!((progress.step, progress.total), (2, Some(2)));
    }
    worker.shutdown().await.unwrap();
    let running = client
        .list(&TaskQuery {
            statuses: vec![TaskStatus::Running, TaskStatus::Queued],
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert!(running.is_empty());
}

/// A worker retries a failing task and records its success on the third attempt.
pub async fn worker_retries_then_succeeds(h: Harness) {
    let client = Client::new(h.backend.clone());
    let id = client.submit::<Flaky>(()).await.unwrap();
    let worker = worker(&h);
    let task = client.wait(id, Duration::from_secs(30)).await.unwrap();
    worker.shutdown().await.unwrap();
    assert_eq!(task.status, TaskStatus::Succeeded);
    assert_eq!(task.attempt, 3);
    assert_eq!(task.last_error.unwrap().message, "failure 2");
    assert_eq!(client.output::<Flaky>(id).await.unwrap(), Some(3));
}

/// The poll interval of the workers below: only a wake-up can start a task in time.
const SLOW_POLL: Duration = Duration::from_secs(60);
/// How long the idle worker is watched for claims.
const IDLE: Duration = Duration::from_secs(2);
/// How soon a task must start, or a cancel end it: far below [`SLOW_POLL`], generous for a
/// loaded machine.
const PROMPTLY: Duration = Duration::from_secs(10);

/// A queue that counts the claims made through it (everything else passes straight through).
struct CountingQueue {
    inner: Arc<dyn Queue>,
    claims: AtomicUsize,
    claimed: Notify,
}

impl CountingQueue {
    fn claims(&self) -> usize {
        self.claims.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` claims were made.
    async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.claimed.notified();
            if self.claims() >= n {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait::async_trait]
impl Queue for CountingQueue {
    async fn claim(&self, request: ClaimRequest<'_>) -> crate::Result<Vec<ClaimedTask>> {
        let claimed = self.inner.claim(request).await;
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.claimed.notify_waiters();
        claimed
    }

    async fn heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> crate::Result<Vec<LeaseState>> {
        self.inner.heartbeat(leases, extend).await
    }

    async fn finish(&self, completions: Vec<Completion>) -> crate::Result<Vec<Ack>> {
        self.inner.finish(completions).await
    }

    async fn release(&self, leases: &[Lease]) -> crate::Result<Vec<Ack>> {
        self.inner.release(leases).await
    }

    async fn recover_expired(&self, limit: usize) -> crate::Result<u64> {
        self.inner.recover_expired(limit).await
    }

    async fn save_checkpoint(&self, checkpoint: Checkpoint) -> crate::Result<Ack> {
        self.inner.save_checkpoint(checkpoint).await
    }

    async fn load_checkpoint(&self, task: TaskId) -> crate::Result<Option<String>> {
        self.inner.load_checkpoint(task).await
    }

    fn work_signal(&self) -> WorkSignal {
        self.inner.work_signal()
    }
}

/// `backend` with its claims counted.
fn counted(backend: &Backend) -> (Backend, Arc<CountingQueue>) {
    let queue = Arc::new(CountingQueue {
        inner: backend.queue().clone(),
        claims: AtomicUsize::new(0),
        claimed: Notify::new(),
    });
    let counted = Backend::from_parts(
        backend.store().clone(),
        queue.clone(),
        backend.progress().clone(),
    );
    (counted, queue)
}

/// Waits for a task to reach a final status, within [`PROMPTLY`].
async fn wait_final(client: &Client, id: TaskId, what: &str) -> (TaskRecord, Duration) {
    let started = Instant::now();
    let task = client
        .wait(id, PROMPTLY)
        .await
        .unwrap_or_else(|e| panic!("{what}: the task did not finish within {PROMPTLY:?}: {e}"));
    (task, started.elapsed())
}

/// An idle worker polling only once a minute does not poll busily, and starts a task that
/// another process submits within seconds: the backend wakes it.
///
/// [`WakeUps::Poll`] backends (SQLite) have no cross-process wake-up: there a task submitted
/// through the worker's own instance starts at once, and one submitted through another instance
/// starts at the worker's next poll (checked with a 1 s poll interval).
pub async fn worker_wakes_promptly_without_busy_polling(h: Harness) {
    let other = h.open_instance().await;
    let (backend, counter) = counted(&h.backend);
    let worker = Worker::builder(backend)
        .register(Echo)
        .poll_interval(SLOW_POLL)
        .build()
        .expect("worker builds")
        .spawn();
    // The worker's first claim finds nothing: it is idle from then on.
    tokio::time::timeout(PROMPTLY, counter.wait_for(1))
        .await
        .expect("the worker never claimed");
    let before = counter.claims();
    tokio::time::sleep(IDLE).await;
    let idle_claims = counter.claims() - before;
    assert!(
        idle_claims <= 2,
        "an idle worker with a {SLOW_POLL:?} poll interval claimed {idle_claims} times in {IDLE:?}"
    );

    let submitter = match h.wake_ups() {
        WakeUps::Push | WakeUps::Shared => Client::new(other.clone()),
        WakeUps::Poll => Client::new(h.backend.clone()),
    };
    for n in 1..=3 {
        let params = EchoParams {
            n,
            text: "wake up".to_owned(),
        };
        let id = submitter.submit::<Echo>(params).await.unwrap();
        let what = format!("task {n} submitted ({:?})", h.wake_ups());
        let (task, took) = wait_final(&submitter, id, &what).await;
        assert_eq!(task.status, TaskStatus::Succeeded, "{what}: {task:?}");
        assert!(took < PROMPTLY, "{what}: took {took:?}");
    }
    worker.shutdown().await.unwrap();

    if h.wake_ups() == WakeUps::Poll {
        // Across processes without push: found at the next poll, and only then.
        let (backend, counter) = counted(&h.backend);
        let worker = Worker::builder(backend)
            .register(Echo)
            .poll_interval(Duration::from_secs(1))
            .build()
            .expect("worker builds")
            .spawn();
        tokio::time::timeout(PROMPTLY, counter.wait_for(1))
            .await
            .expect("the worker never claimed");
        let client = Client::new(other);
        let params = EchoParams {
            n: 4,
            text: "polled".to_owned(),
        };
        let id = client.submit::<Echo>(params).await.unwrap();
        let (task, _) = wait_final(&client, id, "a task submitted through another instance").await;
        assert_eq!(task.status, TaskStatus::Succeeded);
        worker.shutdown().await.unwrap();
    }
}

/// Runs until cancelled, saying when it started.
#[derive(Debug)]
pub struct UntilCancelled {
    started: Arc<Notify>,
}

impl Job for UntilCancelled {
    const NAME: &'static str = "conformance-until-cancelled";
    type Params = ();
    type Output = ();

    async fn run(&self, (): (), cx: TaskContext) -> Result<(), JobError> {
        self.started.notify_one();
        cx.cancelled().await;
        Err(JobError::cancelled())
    }
}

/// Cancelling a running job from another process ends the task cancelled within a bounded
/// time (the worker learns of it at its next heartbeat, here every second, or sooner by push),
/// although the worker polls only once a minute.
pub async fn worker_cancels_running_job_promptly(h: Harness) {
    let other = h.open_instance().await;
    let started = Arc::new(Notify::new());
    let worker = Worker::builder(h.backend.clone())
        .register(UntilCancelled {
            started: started.clone(),
        })
        .poll_interval(SLOW_POLL)
        .heartbeat(Duration::from_secs(1))
        .build()
        .expect("worker builds")
        .spawn();
    let client = Client::new(h.backend.clone());
    let id = client.submit::<UntilCancelled>(()).await.unwrap();
    tokio::time::timeout(PROMPTLY, started.notified())
        .await
        .expect("the job did not start");
    assert_eq!(client.status(id).await.unwrap().status, TaskStatus::Running);

    let elsewhere = Client::new(other);
    assert_eq!(
        elsewhere.cancel(id).await.unwrap(),
        crate::CancelOutcome::Requested
    );
    let (task, took) = wait_final(&elsewhere, id, "a cancelled running task").await;
    assert_eq!(task.status, TaskStatus::Cancelled, "{task:?}");
    assert!(took < PROMPTLY, "cancelling took {took:?}");
    worker.shutdown().await.unwrap();
}

//! Cases: a real [`crate::Worker`] over the backend.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Harness;
use crate::{
    Backoff, Client, Job, JobError, JobOptions, TaskContext, TaskQuery, TaskStatus, Worker,
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

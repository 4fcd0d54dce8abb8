//! Jobs and helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use longtask_core::{
    Backoff, Client, Job, JobError, JobOptions, MemoryBackend, TaskContext, TaskId, Worker,
    WorkerHandle,
};
use longtask_tower::{JobService, ResultFile};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

/// The parameters of the test report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub days: u32,
    #[serde(default)]
    pub step_ms: u64,
    /// A message to report with each step (`{day}` is replaced).
    #[serde(default)]
    pub message: Option<String>,
    /// Fail every attempt with this error.
    #[serde(default)]
    pub fail: Option<String>,
    /// Report progress without a total (an indeterminate bar).
    #[serde(default)]
    pub no_total: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub days: u32,
    pub invoices: u64,
}

/// Walks through `days`, reporting progress; fails with `fail` when given.
pub struct Report;

impl Job for Report {
    const NAME: &'static str = "test-report";
    type Params = Params;
    type Output = Output;

    async fn run(&self, p: Params, cx: TaskContext) -> Result<Output, JobError> {
        let mut invoices = 0;
        for day in 1..=p.days {
            if p.step_ms > 0 {
                tokio::time::sleep(Duration::from_millis(p.step_ms)).await;
            }
            invoices += 40;
            let message = p
                .message
                .as_deref()
                .map(|m| m.replace("{day}", &day.to_string()))
                .unwrap_or_else(|| format!("Handling day {day}: {invoices} invoices so far"));
            let total = (!p.no_total).then_some(u64::from(p.days));
            cx.progress(u64::from(day), total, message)?;
        }
        if let Some(fail) = p.fail {
            return Err(JobError::retryable(fail));
        }
        Ok(Output {
            days: p.days,
            invoices,
        })
    }

    fn options() -> JobOptions {
        JobOptions::default()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_secs(30)))
    }
}

pub const MOUNT: &str = "/reports";

/// A memory backend, a running worker and the service mounted at `/reports`.
pub struct App {
    pub client: Client,
    pub service: JobService<Report>,
    pub worker: Option<WorkerHandle>,
}

impl App {
    pub fn new() -> Self {
        Self::build(true)
    }

    /// Without a worker: tasks stay queued.
    pub fn idle() -> Self {
        Self::build(false)
    }

    fn build(with_worker: bool) -> Self {
        let backend = MemoryBackend::new();
        let worker = with_worker.then(|| {
            Worker::builder(backend.clone())
                .register(Report)
                .poll_interval(Duration::from_millis(20))
                .progress_interval(Duration::from_millis(10))
                .heartbeat(Duration::from_millis(100))
                .build()
                .expect("worker")
                .spawn()
        });
        let client = Client::new(backend);
        let service = JobService::<Report>::new(client.clone())
            .at(MOUNT)
            .with_title("Monthly report")
            .with_result_file(|out: &Output| {
                ResultFile::new(
                    "text/csv; charset=utf-8",
                    format!("days,invoices\n{},{}\n", out.days, out.invoices),
                )
                .filename(format!("report-{}.csv", out.days))
            });
        Self {
            client,
            service,
            worker,
        }
    }

    pub async fn wait(&self, id: TaskId) -> longtask_core::TaskRecord {
        self.client
            .wait(id, Duration::from_secs(20))
            .await
            .expect("task finishes")
    }

    /// Waits until `check` holds for the task's record.
    pub async fn wait_until(
        &self,
        id: TaskId,
        check: impl Fn(&longtask_core::TaskRecord) -> bool,
    ) -> longtask_core::TaskRecord {
        for _ in 0..2000 {
            let task = self.client.status(id).await.expect("status");
            if check(&task) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {id} never reached the expected state");
    }
}

/// An answer, body collected.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .expect("ascii header")
    }

    /// Asserts a problem document with this status; returns its detail.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(self.header("content-type"), "application/problem+json");
        let json = self.json();
        assert_eq!(json["status"], status);
        json["detail"].as_str().expect("detail").to_owned()
    }
}

pub async fn send<S>(service: &S, request: Request<String>) -> Answer
where
    S: tower::Service<
            Request<String>,
            Response = http::Response<longtask_tower::ResponseBody>,
            Error = std::convert::Infallible,
        > + Clone,
{
    let response = service.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("infallible").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn get(path: &str) -> Request<String> {
    Request::get(path).body(String::new()).expect("request")
}

pub fn get_html(path: &str) -> Request<String> {
    Request::get(path)
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .body(String::new())
        .expect("request")
}

pub fn post_json(path: &str, body: &str) -> Request<String> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .expect("request")
}

pub fn id_of(answer: &Answer) -> TaskId {
    answer.json()["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("task id")
}

pub mod groups;

//! The dashboard tests' app: a memory backend, a worker running `chore` tasks that succeed,
//! fail for good or hold until released, and the dashboard at `/admin` admitting requests with
//! `x-admin: yes`. Included with `#[path]` by `tests/dashboard*.rs`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{sync::Arc, time::Duration};

use http::{header, Request};
use longtask_core::{
    Client, Job, JobError, JobOptions, MemoryBackend, SubmitOptions, TaskContext, TaskId,
    TaskRecord, TaskStatus, Worker, WorkerHandle,
};
use longtask_tower::Dashboard;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::common::{send, Answer};

pub const ADMIN: &str = "/admin";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeed,
    Fail,
    Hold,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chore {
    pub outcome: Outcome,
    pub note: String,
}

/// Succeeds, fails for good, or reports progress and holds until a permit is added to its
/// gate (or it is cancelled).
pub struct ChoreJob {
    pub gate: Arc<Semaphore>,
}

impl Job for ChoreJob {
    const NAME: &'static str = "chore";
    type Params = Chore;
    type Output = String;

    async fn run(&self, chore: Chore, cx: TaskContext) -> Result<String, JobError> {
        match chore.outcome {
            Outcome::Succeed => Ok(format!("done: {}", chore.note)),
            Outcome::Fail => Err(JobError::fatal(format!("failed: {}", chore.note))),
            Outcome::Hold => {
                cx.progress(1, Some(4), format!("holding {}", chore.note))?;
                tokio::select! {
                    permit = self.gate.acquire() => {
                        permit.map_err(|_| JobError::fatal("gate closed"))?.forget();
                        Ok(format!("released: {}", chore.note))
                    }
                    () = cx.cancelled() => Err(JobError::cancelled()),
                }
            }
        }
    }

    fn options() -> JobOptions {
        JobOptions::default()
            .max_attempts(2)
            .cancel_grace(Duration::from_secs(5))
    }
}

pub struct DashApp {
    pub backend: MemoryBackend,
    pub client: Client,
    pub dashboard: Dashboard,
    pub gate: Arc<Semaphore>,
    pub worker: Option<WorkerHandle>,
}

impl DashApp {
    /// With a running worker.
    pub fn new() -> Self {
        Self::build(true)
    }

    /// Without a worker: submitted tasks stay queued.
    pub fn idle() -> Self {
        Self::build(false)
    }

    fn build(with_worker: bool) -> Self {
        let backend = MemoryBackend::new();
        let gate = Arc::new(Semaphore::new(0));
        let client = Client::new(backend.clone());
        let dashboard = Dashboard::builder(client.clone())
            .at(ADMIN)
            .with_title("Test <queues>")
            .authorize(|parts| {
                parts
                    .headers
                    .get("x-admin")
                    .is_some_and(|v| v.as_bytes() == b"yes")
            })
            .build();
        let mut app = Self {
            backend,
            client,
            dashboard,
            gate,
            worker: None,
        };
        if with_worker {
            app.start_worker();
        }
        app
    }

    /// Starts a worker (its sweeper never runs during a test: purging is the dashboard's).
    pub fn start_worker(&mut self) {
        assert!(self.worker.is_none(), "a worker runs already");
        let worker = Worker::builder(self.backend.clone())
            .register(ChoreJob {
                gate: Arc::clone(&self.gate),
            })
            .concurrency(4)
            .poll_interval(Duration::from_millis(20))
            .heartbeat(Duration::from_millis(100))
            .progress_interval(Duration::from_millis(10))
            .sweep_interval(Duration::from_secs(3600))
            .build()
            .expect("worker")
            .spawn();
        self.worker = Some(worker);
    }

    pub async fn submit(&self, outcome: Outcome, note: &str) -> TaskId {
        self.submit_with(outcome, note, SubmitOptions::new()).await
    }

    pub async fn submit_with(
        &self,
        outcome: Outcome,
        note: &str,
        options: SubmitOptions,
    ) -> TaskId {
        self.client
            .submit_with::<ChoreJob>(
                Chore {
                    outcome,
                    note: note.to_owned(),
                },
                options,
            )
            .await
            .expect("submit")
            .id
    }

    /// Waits until `check` holds for the task's record (the worker moves it).
    pub async fn wait_until(&self, id: TaskId, check: impl Fn(&TaskRecord) -> bool) -> TaskRecord {
        for _ in 0..2000 {
            let task = self.client.status(id).await.expect("status");
            if check(&task) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {id} never reached the expected state");
    }

    pub async fn wait_status(&self, id: TaskId, status: TaskStatus) -> TaskRecord {
        self.wait_until(id, |t| t.status == status).await
    }

    /// A task that failed for good.
    pub async fn failed(&self, note: &str) -> TaskId {
        let id = self.submit(Outcome::Fail, note).await;
        self.wait_status(id, TaskStatus::Failed).await;
        id
    }

    /// A task that succeeded.
    pub async fn succeeded(&self, note: &str) -> TaskId {
        let id = self.submit(Outcome::Succeed, note).await;
        self.wait_status(id, TaskStatus::Succeeded).await;
        id
    }

    /// A task running (holding at step 1 of 4) until the gate opens.
    pub async fn running(&self, note: &str) -> TaskId {
        let id = self.submit(Outcome::Hold, note).await;
        self.wait_until(id, |t| {
            t.status == TaskStatus::Running && t.progress.is_some()
        })
        .await;
        id
    }

    /// Sends `request` as an admitted operator (`x-admin: yes`).
    pub async fn admin(&self, mut request: Request<String>) -> Answer {
        request
            .headers_mut()
            .insert("x-admin", http::HeaderValue::from_static("yes"));
        send(&self.dashboard, request).await
    }

    /// Loads the overview as a browser and returns its CSRF cookie (`name=value`) and the
    /// token its forms carry.
    pub async fn csrf(&self) -> (String, String) {
        let page = self.admin(browser_get(&format!("{ADMIN}/"))).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let cookie = page.header("set-cookie");
        let pair = cookie.split(';').next().expect("cookie pair").to_owned();
        (pair, form_token(&page.text()))
    }

    /// Posts an action as a browser of this site would: form body with the token, the cookie,
    /// `Sec-Fetch-Site: same-origin`.
    pub async fn act(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let (cookie, token) = self.csrf().await;
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.append_pair("csrf", &token);
        for (name, value) in fields {
            body.append_pair(name, value);
        }
        let request = Request::post(format!("{ADMIN}{path}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie)
            .header("sec-fetch-site", "same-origin")
            .header(header::ACCEPT, "text/html")
            .body(body.finish())
            .expect("request");
        self.admin(request).await
    }
}

pub fn browser_get(path: &str) -> Request<String> {
    Request::get(path)
        .header(
            header::ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .body(String::new())
        .expect("request")
}

/// The CSRF token of the first form of a page.
pub fn form_token(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("end of the token")].to_owned()
}

impl DashApp {
    /// Stops the worker (its running tasks go back to the queue): nothing moves tasks after.
    pub async fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.shutdown().await.expect("worker stops");
        }
    }

    /// Every task's id and status, to compare before and after a request.
    pub async fn snapshot(&self) -> Vec<(TaskId, TaskStatus, u32, bool)> {
        let query = longtask_core::TaskQuery {
            limit: 10_000,
            ..longtask_core::TaskQuery::default()
        };
        self.client
            .list(&query)
            .await
            .expect("list")
            .into_iter()
            .map(|t| (t.id, t.status, t.attempt, t.cancel_requested))
            .collect()
    }
}

impl DashApp {
    /// Waits until the worker's registry entry shows `busy` tasks (it reports at its heartbeat).
    pub async fn wait_busy(&self, busy: u32) {
        for _ in 0..2000 {
            let workers = self.client.workers().await.expect("workers");
            if workers.iter().any(|w| w.busy == busy) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no worker ever showed {busy} busy");
    }
}

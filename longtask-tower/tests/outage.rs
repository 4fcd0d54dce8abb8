//! Outages seen from HTTP: while the backend's server is down (Postgres stopped as by a crash,
//! redis-server killed or frozen), every route answers 503 problem+json with `Retry-After` within
//! a few seconds, the status page says so and keeps refreshing; once the server is back, the
//! same service and worker go on without a restart.

mod common;

use std::time::{Duration, Instant};

use common::{id_of, send, Answer, Report, MOUNT};
use futures::future::join_all;
use http::{Request, StatusCode};
use longtask_core::{Backend, Client, TaskId, TaskStatus, Worker, WorkerHandle};
use longtask_test_servers::{Postgres, Redis};
use longtask_tower::JobService;

/// How long any answer may take while the server is down. The backends give up after about
/// 5 s by default (before, Postgres waited 30 s for a connection, and a frozen Redis 120 s).
const ANSWER_BOUND: Duration = Duration::from_secs(12);
/// How long the service may take to answer normally once the server is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

struct App {
    client: Client,
    service: JobService<Report>,
    worker: Option<WorkerHandle>,
}

impl App {
    fn new(backend: Backend) -> Self {
        let worker = Worker::builder(backend.clone())
            .register(Report)
            .concurrency(4)
            .poll_interval(Duration::from_millis(200))
            .heartbeat(Duration::from_millis(500))
            .build()
            .expect("worker")
            .spawn();
        let client = Client::new(backend);
        let service = JobService::<Report>::new(client.clone())
            .at(MOUNT)
            .with_title("Monthly report");
        Self {
            client,
            service,
            worker: Some(worker),
        }
    }

    /// Tasks to aim the routes at: one finished (for its result), two waiting to be cancelled.
    async fn tasks(&self) -> Tasks {
        let done = self.submit_and_wait().await;
        // Long enough to be still running when the routes cancel them.
        let slow = r#"{"days": 600, "step_ms": 100}"#;
        let cancel = id_of(&send(&self.service, post_json(slow)).await);
        let delete = id_of(&send(&self.service, post_json(slow)).await);
        Tasks {
            done,
            cancel,
            delete,
        }
    }

    /// Submits a task over HTTP and waits for a worker to finish it.
    async fn submit_and_wait(&self) -> TaskId {
        let answer = send(&self.service, post_json(r#"{"days": 2}"#)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
        let id = id_of(&answer);
        let task = self
            .client
            .wait(id, RECOVERY_BOUND)
            .await
            .expect("a worker finishes the task");
        assert_eq!(task.status, TaskStatus::Succeeded);
        id
    }

    /// Sends every route's request at once; each must answer within [`ANSWER_BOUND`].
    async fn every_route(&self, tasks: &Tasks) -> Vec<(&'static str, Answer)> {
        let requests = vec![
            ("POST / (JSON)", post_json(r#"{"days": 1}"#)),
            ("POST / (form)", post_form(MOUNT, "days=1")),
            ("GET /{id} (JSON)", get(tasks.done, "", "application/json")),
            ("GET /{id} (HTML)", get(tasks.done, "", "text/html")),
            (
                "GET /{id}/events",
                get(tasks.cancel, "/events", "text/event-stream"),
            ),
            (
                "GET /{id}/result",
                get(tasks.done, "/result", "application/json"),
            ),
            (
                "DELETE /{id}",
                Request::delete(format!("{MOUNT}/{}", tasks.delete))
                    .body(String::new())
                    .expect("request"),
            ),
            (
                "POST /{id}/cancel",
                post_form(&format!("{MOUNT}/{}/cancel", tasks.cancel), ""),
            ),
        ];
        join_all(requests.into_iter().map(|(name, request)| async move {
            let started = Instant::now();
            let answer = tokio::time::timeout(ANSWER_BOUND, head_only(&self.service, request))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{name} did not answer within {ANSWER_BOUND:?} while the server was down"
                    )
                });
            eprintln!("{name}: {} after {:?}", answer.status, started.elapsed());
            (name, answer)
        }))
        .await
    }

    /// Asks every route while the server is down: 503, `Retry-After`, problem+json (the HTML
    /// status page: a page that says what happened and refreshes itself).
    async fn assert_unavailable(&self, tasks: &Tasks) {
        for (name, answer) in self.every_route(tasks).await {
            assert_eq!(
                answer.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{name}: {}",
                answer.text()
            );
            let retry_after: u64 = answer
                .header("retry-after")
                .parse()
                .unwrap_or_else(|_| panic!("{name}: Retry-After is not a number of seconds"));
            assert!((1..=30).contains(&retry_after), "{name}: {retry_after}");
            if name == "GET /{id} (HTML)" {
                assert_eq!(answer.header("content-type"), "text/html; charset=utf-8");
                let page = answer.text();
                assert!(page.contains("cannot be reached"), "{page}");
                assert!(page.contains("safe"), "{page}");
                assert!(
                    page.contains(&format!(
                        "<meta http-equiv=\"refresh\" content=\"{retry_after}\">"
                    )),
                    "the page must refresh itself without JavaScript: {page}"
                );
                assert!(page.contains(&tasks.done.to_string()), "{page}");
            } else {
                let detail = answer.problem(503);
                assert!(detail.contains("try again"), "{name}: {detail}");
            }
        }
    }

    /// Waits until every route answers normally again (each may take its own time: Redis'
    /// pub/sub connection, which the events route needs, comes back after its own backoff), then
    /// checks that a worker runs new tasks.
    async fn assert_recovered(&self, tasks: &Tasks) {
        let started = Instant::now();
        let expected = |name: &str| match name {
            "POST / (JSON)" => [StatusCode::ACCEPTED, StatusCode::ACCEPTED],
            "POST / (form)" | "POST /{id}/cancel" => [StatusCode::SEE_OTHER, StatusCode::SEE_OTHER],
            // A running task's cancel is requested (202), a waiting or cancelled one's is done.
            "DELETE /{id}" => [StatusCode::OK, StatusCode::ACCEPTED],
            _ => [StatusCode::OK, StatusCode::OK],
        };
        loop {
            let answers = self.every_route(tasks).await;
            let wrong: Vec<String> = answers
                .iter()
                .filter(|(name, answer)| !expected(name).contains(&answer.status))
                .map(|(name, answer)| format!("{name}: {} {}", answer.status, answer.text()))
                .collect();
            if wrong.is_empty() {
                break;
            }
            for (name, answer) in &answers {
                assert_ne!(
                    answer.status,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "{name}: {}",
                    answer.text()
                );
            }
            assert!(
                started.elapsed() < RECOVERY_BOUND,
                "the service did not recover within {RECOVERY_BOUND:?}: {wrong:#?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("every route recovered after {:?}", started.elapsed());
        self.submit_and_wait().await;
    }

    async fn shutdown(mut self) {
        if let Some(worker) = self.worker.take() {
            worker.abort();
        }
    }
}

struct Tasks {
    done: TaskId,
    cancel: TaskId,
    delete: TaskId,
}

fn post_json(body: &str) -> Request<String> {
    Request::post(MOUNT)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .expect("request")
}

/// A form posted from a page of this site, by a browser.
fn post_form(path: &str, body: &str) -> Request<String> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html,*/*;q=0.8")
        .header("sec-fetch-site", "same-origin")
        .body(body.to_owned())
        .expect("request")
}

fn get(id: TaskId, suffix: &str, accept: &str) -> Request<String> {
    Request::get(format!("{MOUNT}/{id}{suffix}"))
        .header("accept", accept)
        .body(String::new())
        .expect("request")
}

/// Sends a request; collects the body unless it is an event stream (which would not end).
async fn head_only(service: &JobService<Report>, request: Request<String>) -> Answer {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let response = service.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let streaming = parts
        .headers
        .get("content-type")
        .is_some_and(|v| v == "text/event-stream");
    let body = if streaming {
        bytes::Bytes::new()
    } else {
        body.collect().await.expect("infallible").to_bytes()
    };
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_again() {
    let server = Postgres::start();
    let backend = longtask_sqlx::PostgresBackend::connect(&server.url())
        .await
        .expect("connect");
    backend.migrate().await.expect("migrate");
    let app = App::new(Backend::new(backend));
    let tasks = app.tasks().await;

    server.stop();
    app.assert_unavailable(&tasks).await;
    // Still down: still answered within the bound, as often as people retry.
    app.assert_unavailable(&tasks).await;

    server.resume();
    app.assert_recovered(&tasks).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_started_again() {
    let mut server = Redis::start();
    let backend = longtask_redis::RedisBackend::connect(&server.url())
        .await
        .expect("connect");
    let app = App::new(Backend::new(backend));
    let tasks = app.tasks().await;

    server.kill();
    app.assert_unavailable(&tasks).await;
    app.assert_unavailable(&tasks).await;

    server.resume();
    app.assert_recovered(&tasks).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_and_thawed() {
    let server = Redis::start();
    let backend = longtask_redis::RedisBackend::connect(&server.url())
        .await
        .expect("connect");
    let app = App::new(Backend::new(backend));
    let tasks = app.tasks().await;

    server.freeze();
    app.assert_unavailable(&tasks).await;

    server.thaw();
    app.assert_recovered(&tasks).await;
    app.shutdown().await;
}

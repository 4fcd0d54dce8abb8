//! `kill -9` in the middle of a long task: the quickstart demo (the real binary, a separate
//! process) runs a 31-day report that saves a checkpoint after each day; the test SIGKILLs the
//! process past day 20, starts it again on the same backend, and follows the task's page: the
//! next attempt carries on after the last committed day (the bar never goes back), the page says
//! it resumed and from where, and the report holds each day once. On SQLite, Postgres and Redis.

#![allow(missing_docs)]

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use longtask_core::{Client, TaskId, TaskStatus};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Each day takes this long, so that the test sees each step of the report.
const MS_PER_DAY: u64 = 120;
/// The day after which the demo is killed.
const KILL_AFTER_DAY: u64 = 20;
/// Long enough for any step on a loaded machine.
const BOUND: Duration = Duration::from_secs(90);

/// The quickstart demo, built by cargo for this test.
fn demo_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quickstart"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

/// The demo process; killed (SIGKILL) when dropped.
struct Demo {
    child: Child,
    addr: SocketAddr,
}

impl Demo {
    async fn start(url: &str, port: u16) -> Self {
        let child = Command::new(demo_binary())
            .env("LONGTASK_URL", url)
            .env("PORT", port.to_string())
            .env("MS_PER_DAY", MS_PER_DAY.to_string())
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the quickstart demo");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                started.elapsed() < BOUND,
                "the demo did not listen on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, addr }
    }

    /// `kill -9`.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the demo");
        self.child.wait().expect("reaping the demo");
    }

    /// Sends one request (`Connection: close`) and returns the status and the body.
    async fn request(&self, method: &str, path: &str, accept: &str, body: &str) -> (u16, String) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: {accept}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            addr = self.addr,
        );
        let answer = tokio::time::timeout(BOUND, async {
            let mut stream = TcpStream::connect(self.addr).await.expect("connecting");
            stream.write_all(request.as_bytes()).await.expect("sending");
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.expect("reading");
            String::from_utf8(answer).expect("a UTF-8 answer")
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {path}"));
        let status = answer[9..12].parse().expect("an HTTP status");
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    async fn status(&self, id: &str) -> Value {
        let (status, body) = self
            .request("GET", &format!("/reports/{id}"), "application/json", "")
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("a JSON status")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn step(status: &Value) -> u64 {
    status["progress"]["step"].as_u64().unwrap_or(0)
}

async fn resumes_after_kill(url: &str) {
    let port = free_port();
    let demo = Demo::start(url, port).await;
    let body = format!(r#"{{"month":"2026-10","ms_per_day":{MS_PER_DAY}}}"#);
    let (status, answer) = demo
        .request("POST", "/reports", "application/json", &body)
        .await;
    assert_eq!(status, 202, "{answer}");
    let submitted: Value = serde_json::from_str(&answer).unwrap();
    let id = submitted["id"].as_str().expect("the task's id").to_owned();

    let started = Instant::now();
    loop {
        let now = demo.status(&id).await;
        if step(&now) > KILL_AFTER_DAY {
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "the report never passed day 20: {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    demo.kill();

    // What the backend committed before the kill: the last checkpoint, with its day.
    let client = Client::new(longtask_examples::backend_from_url(url).await.unwrap());
    let task_id: TaskId = id.parse().unwrap();
    let record = client.status(task_id).await.unwrap();
    assert_eq!(
        record.status,
        TaskStatus::Running,
        "the killed attempt still holds its lease"
    );
    let checkpoint = record.checkpoint.expect("the report saved checkpoints");
    let saved_day = checkpoint.progress.expect("with its progress").step;
    assert!(saved_day > KILL_AFTER_DAY, "saved up to day {saved_day}");

    let demo = Demo::start(url, port).await;
    let mut seen_resumed = false;
    let mut lowest_second_step = u64::MAX;
    let started = Instant::now();
    let last = loop {
        let now = demo.status(&id).await;
        if now["attempt"] == 2 && now["progress"].is_object() {
            lowest_second_step = lowest_second_step.min(step(&now));
        }
        if now["status"] == "running" && now["attempt"] == 2 && !seen_resumed {
            let resumed = &now["resumed_from"];
            assert_eq!(resumed["attempt"], 1, "{now}");
            assert_eq!(
                resumed["progress"]["step"].as_u64(),
                Some(saved_day),
                "{now}"
            );
            let (status, page) = demo
                .request("GET", &format!("/reports/{id}"), "text/html", "")
                .await;
            assert_eq!(status, 200);
            let said = format!("Resumed after an interruption, from “Day {saved_day} of 31");
            // The page may have been rendered as the attempt ended: then it is no longer running.
            if page.contains("data-status=\"running\"") {
                assert!(
                    page.contains(&said),
                    "the page says where it resumed: {page}"
                );
                seen_resumed = true;
            }
        }
        if now["status"] == "succeeded" || now["status"] == "failed" {
            break now;
        }
        assert!(
            started.elapsed() < BOUND,
            "the report did not finish after the restart: {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["attempt"], 2, "{last}");
    assert!(
        seen_resumed,
        "the page never showed the resumed attempt running"
    );
    assert!(
        lowest_second_step >= saved_day,
        "the second attempt showed day {lowest_second_step}, before the checkpoint at day {saved_day}: it started over"
    );

    let (status, csv) = demo
        .request("GET", &format!("/reports/{id}/result"), "text/csv", "")
        .await;
    assert_eq!(status, 200, "{csv}");
    let days: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with("total"))
        .map(|line| line.split(',').next().unwrap())
        .collect();
    let expected: Vec<String> = (1..=31).map(|d| format!("2026-10-{d:02}")).collect();
    assert_eq!(days, expected, "each day once, in order");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_demo_resumes_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    resumes_after_kill(&url).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread")]
async fn postgres_demo_resumes_after_kill_9() {
    let server = longtask_test_servers::Postgres::start();
    resumes_after_kill(&server.url()).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread")]
async fn redis_demo_resumes_after_kill_9() {
    let mut server = longtask_test_servers::Redis::start();
    resumes_after_kill(&server.url()).await;
    server.kill();
}

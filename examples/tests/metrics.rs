//! The quickstart demo (the real binary) serves Prometheus metrics at `/metrics`: after a report
//! runs there, a scrape counts it as submitted and succeeded, with its run time.

#![allow(missing_docs)]

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Long enough for any step on a loaded machine.
const BOUND: Duration = Duration::from_secs(90);

/// The demo process; killed when dropped.
struct Demo {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("finding a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_quickstart"))
            .env("LONGTASK_URL", "memory://")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the quickstart demo");
        let demo = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let started = Instant::now();
        while TcpStream::connect(demo.addr).await.is_err() {
            assert!(
                started.elapsed() < BOUND,
                "the demo did not listen on {}",
                demo.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        demo
    }

    /// One request (`Connection: close`): the status, the headers' text, and the body.
    async fn request(&self, method: &str, path: &str, body: &str) -> (u16, String, String) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Accept: application/json\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
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
        let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
        let status = head[9..12].parse().expect("an HTTP status");
        (status, head.to_ascii_lowercase(), body.to_owned())
    }
}

#[tokio::test]
async fn the_demo_serves_metrics_that_count_its_reports() {
    let demo = Demo::start().await;
    let (status, _, answer) = demo
        .request("POST", "/reports", r#"{"month":"2026-10","ms_per_day":1}"#)
        .await;
    assert_eq!(status, 202, "{answer}");
    let submitted: Value = serde_json::from_str(&answer).unwrap();
    let id = submitted["id"].as_str().expect("the task's id").to_owned();
    let started = Instant::now();
    loop {
        let (status, _, body) = demo.request("GET", &format!("/reports/{id}"), "").await;
        assert_eq!(status, 200, "{body}");
        let now: Value = serde_json::from_str(&body).unwrap();
        if now["status"] == "succeeded" {
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "the report did not finish: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, head, body) = demo.request("GET", "/metrics", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for sample in [
        r#"longtask_tasks_submitted_total{job="monthly-report"} 1"#,
        r#"longtask_attempts_total{job="monthly-report",outcome="succeeded"} 1"#,
        r#"longtask_run_seconds_count{job="monthly-report"} 1"#,
        "longtask_worker_busy_slots 0",
    ] {
        assert!(
            body.lines().any(|line| line == sample),
            "no `{sample}` in:\n{body}"
        );
    }
}

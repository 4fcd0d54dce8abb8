//! The Prometheus exposition (feature `prometheus`): a worker runs real tasks, the queue gauges
//! are read from the backend's stats, a scraper fetches `/metrics` over HTTP, and Prometheus's
//! own checker (`promtool check metrics`, Debian package `prometheus`) accepts what it got.
//!
//! One test per binary: the recorder is the process's global one.

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use axum::Router;
use http_body_util::BodyExt;
use longtask_core::{
    metrics::StatsGauges, Client, Job, JobError, JobOptions, MemoryBackend, TaskContext, Worker,
};
use longtask_tower::{metrics::CONTENT_TYPE, Prometheus};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(60);

struct Invoice;
impl Job for Invoice {
    const NAME: &'static str = "invoice";
    type Params = u32;
    type Output = String;
    async fn run(&self, customer: u32, _cx: TaskContext) -> Result<String, JobError> {
        if customer == 0 {
            return Err(JobError::fatal("customer 0 does not exist"));
        }
        Ok(format!("invoice for customer {customer}"))
    }
    fn options() -> JobOptions {
        JobOptions::default().max_attempts(1)
    }
}

/// One HTTP/1.1 request over a fresh connection: status line, headers (lower-case names), body.
async fn fetch(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> (String, BTreeMap<String, String>, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The samples of an exposition: `name{label="value",...}` (labels sorted) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let series = match series.split_once('{') {
                Some((name, labels)) => {
                    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                    labels.sort_unstable();
                    format!("{name}{{{}}}", labels.join(","))
                }
                None => series.to_owned(),
            };
            (series, value.parse().unwrap())
        })
        .collect()
}

/// Runs `promtool check metrics` on `text`; fails the test, saying how to get it, when promtool
/// is missing.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "`promtool` is not installed: it checks the exposition. Install Debian's `prometheus` \
             package (`apt-get install prometheus`; scripts/test.sh does it), or put promtool from \
             a Prometheus release on PATH"
        ),
        Err(err) => panic!("starting promtool failed: {err}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the exposition ({}):\n{}{}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_counts_real_tasks_and_promtool_accepts_it() {
    let prometheus = Prometheus::install().unwrap();
    assert!(
        Prometheus::install().is_err(),
        "a second recorder is refused, not silently ignored"
    );

    let backend = MemoryBackend::new();
    let worker = Worker::builder(backend.clone())
        .register(Invoice)
        .concurrency(2)
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let mut ids = client.submit_many::<Invoice>([1, 2, 3]).await.unwrap();
    ids.push(client.submit::<Invoice>(0).await.unwrap());
    for id in ids {
        client.wait(id, WAIT).await.unwrap();
    }
    StatsGauges::new().record(&client.stats().await.unwrap());

    let app = Router::new().route_service("/metrics", prometheus.service());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, headers, body) = fetch(addr, "GET", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(headers["content-type"], CONTENT_TYPE);
    promtool_check(&body);

    let seen = samples(&body);
    let value = |series: &str| {
        *seen
            .get(series)
            .unwrap_or_else(|| panic!("no sample {series} in:\n{body}"))
    };
    assert_eq!(
        value(r#"longtask_tasks_submitted_total{job="invoice"}"#),
        4.0
    );
    assert_eq!(
        value(r#"longtask_attempts_total{job="invoice",outcome="succeeded"}"#),
        3.0
    );
    assert_eq!(
        value(r#"longtask_attempts_total{job="invoice",outcome="failed"}"#),
        1.0
    );
    assert_eq!(
        value(r#"longtask_attempts_total{job="invoice",outcome="retried"}"#),
        0.0
    );
    assert_eq!(value(r#"longtask_run_seconds_count{job="invoice"}"#), 4.0);
    assert_eq!(
        value(r#"longtask_wait_seconds_count{job="invoice"}"#),
        4.0,
        "one wait per claim"
    );
    assert_eq!(
        value(r#"longtask_run_seconds_bucket{job="invoice",le="+Inf"}"#),
        4.0,
        "a histogram with buckets, not a summary"
    );
    assert!(value(r#"longtask_run_seconds_bucket{job="invoice",le="1"}"#) >= 4.0);
    assert_eq!(
        value(r#"longtask_tasks{job="invoice",status="succeeded"}"#),
        3.0
    );
    assert_eq!(
        value(r#"longtask_tasks{job="invoice",status="failed"}"#),
        1.0
    );
    assert_eq!(
        value(r#"longtask_tasks{job="invoice",status="queued"}"#),
        0.0
    );
    assert_eq!(
        value(r#"longtask_oldest_due_age_seconds{job="invoice"}"#),
        0.0
    );
    assert_eq!(value("longtask_worker_slots"), 2.0);
    assert_eq!(value("longtask_worker_busy_slots"), 0.0);
    for name in [
        "longtask_attempts_total",
        "longtask_run_seconds",
        "longtask_tasks",
    ] {
        assert!(
            body.contains(&format!("# HELP {name} ")),
            "{name} is described:\n{body}"
        );
    }

    let (status, headers, body) = fetch(addr, "HEAD", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(headers["content-type"], CONTENT_TYPE);
    assert!(body.is_empty());
    // Called directly (not every server drops a HEAD answer's body by itself).
    let head = prometheus
        .service()
        .oneshot(http::Request::head("/metrics").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(head.status(), http::StatusCode::OK);
    assert!(head
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
    let (status, headers, body) = fetch(addr, "POST", "/metrics").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["allow"], "GET, HEAD");
    assert!(body.contains("use GET or HEAD"), "{body}");

    worker.shutdown().await.unwrap();
    let (_, _, body) = fetch(addr, "GET", "/metrics").await;
    assert_eq!(samples(&body)["longtask_worker_slots"], 0.0);
    server.abort();
}

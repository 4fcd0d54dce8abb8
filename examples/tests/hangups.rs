//! Clients that hang up in the middle of a submit or a cancel, against the demo's own service
//! over a real SQLite file: every other client keeps being answered at once (no 503), and the
//! store stays consistent.
//!
//! Before the backends were made cancel-safe, a few such hang-ups left SQLite's single writer
//! connection inside a transaction of a dropped request: every later write failed with 503.

#[path = "../examples/shared/report.rs"]
#[allow(dead_code)]
mod report;

use std::{net::SocketAddr, time::Duration};

use longtask_core::{Client, TaskQuery, TaskStatus, Worker};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Hang-ups sent (half submits, half cancels), with normal requests between them.
const HANGUPS: usize = 400;
/// How long a normal request may take: a wedged store answers 503 after its pool's 30 s.
const PROMPT: Duration = Duration::from_secs(10);

const SUBMIT_BODY: &str = r#"{"month":"2026-10","ms_per_day":1}"#;

fn submit_request(addr: SocketAddr) -> String {
    format!(
        "POST /reports HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\n\r\n{SUBMIT_BODY}",
        SUBMIT_BODY.len()
    )
}

fn cancel_request(addr: SocketAddr, id: &str) -> String {
    format!("DELETE /reports/{id} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n")
}

/// Sends `request` and reads the whole answer (the server closes: `Connection: close`).
async fn exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let request = request.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    let answer = tokio::time::timeout(PROMPT, async {
        let mut stream = TcpStream::connect(addr).await.expect("connecting");
        stream.write_all(request.as_bytes()).await.expect("sending");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("reading");
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap_or_else(|_| panic!("no answer within {PROMPT:?} to {request}"));
    let status = answer
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    (status, answer)
}

/// The task id in a submit's JSON answer.
fn task_id(answer: &str) -> String {
    let body = &answer[answer.find("\r\n\r\n").expect("no body") + 4..];
    let json: serde_json::Value = serde_json::from_str(body).expect("answer is not JSON");
    json["id"].as_str().expect("answer has no id").to_owned()
}

/// Sends `request` and hangs up without reading the answer: after a random short pause,
/// by closing the socket, or by resetting it.
async fn hang_up(addr: SocketAddr, request: &str, round: usize) {
    let stream = TcpStream::connect(addr).await.expect("connecting");
    let mut stream = stream;
    stream.write_all(request.as_bytes()).await.expect("sending");
    match round % 4 {
        0 => {}
        1 => tokio::task::yield_now().await,
        2 => tokio::time::sleep(Duration::from_micros(200 * (round % 7) as u64)).await,
        _ => tokio::time::sleep(Duration::from_millis(1)).await,
    }
    if round.is_multiple_of(2) {
        // An abortive close: the server sees a reset. (A zero linger does not block on drop,
        // the reason tokio deprecates `set_linger`.)
        #[allow(deprecated)]
        let _ = stream.set_linger(Some(Duration::ZERO));
    }
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_submit_and_mid_cancel_do_not_break_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let backend = longtask_examples::backend_from_url(&url)
        .await
        .expect("opening the SQLite demo database");
    let worker = Worker::builder(backend.clone())
        .register(report::MonthlyReport {
            default_ms_per_day: 1,
        })
        .concurrency(4)
        .build()
        .expect("worker")
        .spawn();
    let client = Client::new(backend);
    let app = axum::Router::new().nest_service("/reports", report::service(client.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, answer) = exchange(addr, &submit_request(addr)).await;
    assert_eq!(status, 202, "{answer}");
    let mut ids = vec![task_id(&answer)];

    for round in 0..HANGUPS {
        if round.is_multiple_of(2) {
            hang_up(addr, &submit_request(addr), round).await;
        } else {
            let id = ids[round % ids.len()].clone();
            hang_up(addr, &cancel_request(addr, &id), round).await;
        }
        if round % 10 == 9 {
            // A normal client between the hang-ups is answered at once, never with 503.
            let (status, answer) = exchange(addr, &submit_request(addr)).await;
            assert_eq!(status, 202, "submit after {round} hang-ups: {answer}");
            ids.push(task_id(&answer));
            let id = ids[round % ids.len()].clone();
            let (status, answer) = exchange(addr, &cancel_request(addr, &id)).await;
            // Cancelled, requested, or already finished (409): never a 5xx.
            assert!(
                matches!(status, 200 | 202 | 409),
                "cancel after {round} hang-ups: {answer}"
            );
        }
    }

    // Every task a normal client submitted is there, and the store answers writes and reads.
    for id in &ids {
        let (status, answer) = exchange(
            addr,
            &format!(
                "GET /reports/{id} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let tasks = tokio::time::timeout(
        PROMPT,
        client.list(&TaskQuery {
            limit: 10_000,
            ..TaskQuery::default()
        }),
    )
    .await
    .expect("listing took too long")
    .expect("listing failed");
    assert!(tasks.len() > ids.len(), "no hung-up submit was stored");
    for task in &tasks {
        if task.status == TaskStatus::Running {
            assert!(
                task.lease_expires_at.is_some(),
                "running without a lease: {task:?}"
            );
        }
    }
    // The worker still works: the worker drains every task that was not cancelled.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let waiting = client
                .list(&TaskQuery {
                    statuses: vec![
                        TaskStatus::Queued,
                        TaskStatus::Running,
                        TaskStatus::Retrying,
                    ],
                    limit: 10_000,
                    ..TaskQuery::default()
                })
                .await
                .expect("listing failed");
            if waiting.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the worker did not drain the queue within 60 s");
    tokio::time::timeout(PROMPT, worker.shutdown())
        .await
        .expect("the worker did not stop")
        .expect("the worker failed");
    server.abort();
}

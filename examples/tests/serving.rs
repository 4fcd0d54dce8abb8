//! The demo served as the examples serve it (`longtask_examples::serve`), on a loopback port,
//! against clients that send slowly or not at all: each is closed within a bounded time, while
//! normal clients, over HTTP/1.1 and HTTP/2, and a long event stream are served.

#![allow(missing_docs, dead_code)]

#[path = "../examples/shared/demo.rs"]
mod demo;
#[path = "../examples/shared/report.rs"]
mod report;

use std::{net::SocketAddr, time::Duration};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use longtask_core::{Client, MemoryBackend};
use longtask_examples::Timeouts;
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
    time::Instant,
};

/// Every slow or silent client must be gone well within this (the timeouts are 1 to 2 s).
const BOUND: Duration = Duration::from_secs(15);

struct Server {
    addr: SocketAddr,
    client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// The demo (no worker: tasks stay queued), with a 1 s header timeout, a 2 s idle timeout
    /// and a 2 s body timeout.
    async fn start() -> Self {
        let client = Client::new(MemoryBackend::new());
        let app = demo::app(
            demo::HomeState {
                client: client.clone(),
                ms_per_day: 10,
                port: 0,
            },
            report::service(client.clone()).with_body_timeout(Duration::from_secs(2)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeouts = Timeouts {
            header_read: Duration::from_secs(1),
            idle: Duration::from_secs(2),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(longtask_examples::serve(listener, app, timeouts, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        tokio::time::timeout(BOUND, self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Opens a connection, sends `head`, then one byte of `drip` (if any) every 500 ms, and reads
/// until the server closes the connection. Returns what the server sent and when it closed, or
/// `None` if it was still open after [`BOUND`].
async fn hold(addr: SocketAddr, head: &[u8], drip: Option<u8>) -> Option<(String, Duration)> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    write.write_all(head).await.unwrap();
    let writer = async move {
        if let Some(byte) = drip {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.tick().await;
            loop {
                tick.tick().await;
                if write.write_all(&[byte]).await.is_err() {
                    break;
                }
            }
        }
        // Keep the write half (and so the connection) open.
        std::future::pending::<()>().await;
    };
    let reader = async move {
        let mut got = Vec::new();
        let _ = read.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).into_owned()
    };
    tokio::select! {
        got = reader => Some((got, started.elapsed())),
        () = writer => unreachable!(),
        () = tokio::time::sleep(BOUND) => None,
    }
}

/// A plain HTTP/1.1 GET over a fresh connection.
async fn get_h1(addr: SocketAddr, path: &str) -> http::Response<Bytes> {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get(path)
                .header("host", addr.to_string())
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_closed_while_others_are_served() {
    let server = Server::start().await;
    let addr = server.addr;
    const EACH: usize = 30;
    let mut held = Vec::new();
    for _ in 0..EACH {
        // Slowloris: a request head that never ends, a header byte every 500 ms.
        held.push((
            "slowloris",
            tokio::spawn(hold(
                addr,
                b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ",
                Some(b'a'),
            )),
        ));
        // A slow body: 1,000 bytes announced, one sent every 500 ms.
        held.push((
            "slow body",
            tokio::spawn(hold(
                addr,
                b"POST /reports HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                  content-length: 1000\r\n\r\n{",
                Some(b' '),
            )),
        ));
        // An idle keep-alive: one request answered, then nothing.
        held.push((
            "idle keep-alive",
            tokio::spawn(hold(addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", None)),
        ));
        // A connection that never sends a byte.
        held.push(("silent", tokio::spawn(hold(addr, b"", None))));
    }
    // Meanwhile normal clients are served.
    for _ in 0..5 {
        let home = get_h1(addr, "/").await;
        assert_eq!(home.status(), StatusCode::OK);
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let submitted = sender
            .send_request(
                Request::post("/reports")
                    .header("host", "x")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(br#"{"month":"2026-10"}"#)))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(submitted.status(), StatusCode::ACCEPTED);
    }
    let mut still_open = std::collections::BTreeMap::<&str, usize>::new();
    for (kind, client) in held {
        let Some((got, after)) = client.await.unwrap() else {
            *still_open.entry(kind).or_default() += 1;
            continue;
        };
        match kind {
            "slow body" => assert!(got.starts_with("HTTP/1.1 408"), "{kind}: {got}"),
            "idle keep-alive" => assert!(got.starts_with("HTTP/1.1 200"), "{kind}: {got}"),
            _ => assert!(!got.contains(" 200 "), "{kind}: {got}"),
        }
        assert!(after < BOUND, "{kind} closed after {after:?}");
    }
    assert!(
        still_open.is_empty(),
        "connections still open after {BOUND:?}: {still_open:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_outlives_the_idle_timeout_and_gets_its_final_event() {
    let server = Server::start().await;
    let task = server
        .client
        .submit::<report::MonthlyReport>(serde_json::from_str(r#"{"month":"2026-10"}"#).unwrap())
        .await
        .unwrap();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "GET /reports/{task}/events HTTP/1.1
host: x
accept: text/event-stream

"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    // Three times the idle timeout with no request but this one: the stream stays open.
    let quiet_until = Instant::now() + Duration::from_secs(6);
    loop {
        match tokio::time::timeout_at(quiet_until, stream.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0) | Err(_)) => {
                panic!("the stream was closed: {}", String::from_utf8_lossy(&got))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(String::from_utf8_lossy(&got).contains(r#""status":"queued""#));
    server.client.cancel(task).await.unwrap();
    let deadline = Instant::now() + BOUND;
    while !String::from_utf8_lossy(&got).contains(r#""status":"cancelled""#) {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => panic!("no final event: {}", String::from_utf8_lossy(&got)),
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_served_and_idle_http2_connections_are_closed() {
    let server = Server::start().await;
    let io = TokioIo::new(TcpStream::connect(server.addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get(format!("http://{}/", server.addr))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .expect("an HTTP/2 answer");
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    // The client keeps its side open (`sender` lives on); the server closes an idle one.
    let started = Instant::now();
    tokio::time::timeout(BOUND, conn)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .unwrap()
        .ok();
    assert!(started.elapsed() < BOUND);
    drop(sender);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_page_runs_under_a_strict_content_security_policy() {
    let server = Server::start().await;
    let home = get_h1(server.addr, "/").await;
    assert_eq!(home.status(), StatusCode::OK);
    let policy = home
        .headers()
        .get("content-security-policy")
        .expect("a Content-Security-Policy")
        .to_str()
        .unwrap()
        .to_owned();
    let page = String::from_utf8_lossy(home.body()).into_owned();
    let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
    assert!(directives.contains(&"default-src 'none'"), "{policy}");
    assert!(directives.contains(&"form-action 'self'"), "{policy}");
    assert!(directives.contains(&"base-uri 'none'"), "{policy}");
    assert!(directives.contains(&"frame-ancestors 'none'"), "{policy}");
    // The one inline style is allowed by its hash; there is no script at all.
    let style = page
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(style, _)| style)
        .expect("an inline style");
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style));
    assert!(
        directives.contains(&format!("style-src 'sha256-{hash}'").as_str()),
        "{policy}"
    );
    assert!(!page.contains("<script"), "{page}");
    assert!(
        !page.contains(" style="),
        "inline style attributes are blocked: {page}"
    );
    assert_eq!(home.headers()["x-content-type-options"], "nosniff");
    server.stop().await;
}

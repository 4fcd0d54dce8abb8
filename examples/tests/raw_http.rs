//! Raw, malformed HTTP/1.1 against the demo's service behind the examples' server (hyper with
//! its timeouts): damaged request lines and headers, lying or doubled lengths, broken chunked
//! bodies, smuggling attempts, and clients that hang up at random points. No answer is a 5xx,
//! every error with a body is a problem document, no request that was refused leaves a task
//! behind, and the server keeps serving.
//!
//! `RAW_FUZZ_CASES` sets the number of connections (2,000 by default); `RAW_FUZZ_SEED` replays a
//! run.

#[path = "../examples/shared/report.rs"]
#[allow(dead_code)]
mod report;

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use longtask_core::{Client, TaskQuery};
use longtask_examples::{serve, Timeouts};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

const AT_ONCE: usize = 32;

/// One connection's bytes, the marker its body carries, and whether to hang up early.
struct Case {
    bytes: Vec<u8>,
    marker: String,
    hang_up_after: Option<usize>,
}

fn base_request(rng: &mut StdRng, addr: SocketAddr, marker: &str) -> Vec<u8> {
    let json = format!(r#"{{"month":"2026-10","ms_per_day":1,"flaky":"{marker}"}}"#);
    let form = format!("month=2026-10&ms_per_day=1&flaky={marker}");
    let id = longtask_core::TaskId::new();
    let text = match rng.gen_range(0..8) {
        0..=2 => format!(
            "POST /reports HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        ),
        3 => format!(
            "POST /reports HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nAccept: text/html\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
        4 => format!(
            "POST /reports HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{json}\r\n0\r\n\r\n",
            json.len()
        ),
        5 => format!("GET /reports/{id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        6 => format!(
            "GET /reports/{id}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Connection: close\r\n\r\n"
        ),
        _ => format!("DELETE /reports/{id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    };
    text.into_bytes()
}

/// Damages a request the ways HTTP parsers and frameworks get wrong.
fn damage(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |p| p + 2);
    match rng.gen_range(0..16) {
        0 => {} // left whole: the control group
        1 => {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] ^= 1 << rng.gen_range(0..8);
        }
        2 => {
            let at = rng.gen_range(0..bytes.len());
            let len = rng.gen_range(1..20).min(bytes.len() - at);
            bytes.drain(at..at + len);
        }
        3 => {
            let at = rng.gen_range(0..bytes.len());
            let junk = [b'\r', b'\n', 0, 0xff, b' ', b':', b'\t', 0x7f];
            bytes.insert(at, *junk.choose(rng).unwrap());
        }
        4 => {
            // A second, different length.
            let line = format!("Content-Length: {}\r\n", rng.gen_range(0..200));
            bytes.splice(head_end..head_end, line.into_bytes());
        }
        5 => {
            // Smuggling: a chunked encoding beside the length.
            bytes.splice(
                head_end..head_end,
                b"Transfer-Encoding: chunked\r\n".iter().copied(),
            );
        }
        6 => {
            // A huge header.
            let line = format!("X-Big: {}\r\n", "a".repeat(rng.gen_range(1_000..200_000)));
            bytes.splice(head_end..head_end, line.into_bytes());
        }
        7 => {
            // Many headers.
            let lines: String = (0..rng.gen_range(50..500))
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect();
            bytes.splice(head_end..head_end, lines.into_bytes());
        }
        8 => {
            let version = [
                &b"HTTP/1.0"[..],
                b"HTTP/9.9",
                b"HTTP/1.1 ",
                b"HTTP/",
                b"http/1.1",
            ];
            if let Some(at) = bytes.windows(8).position(|w| w == b"HTTP/1.1") {
                bytes.splice(at..at + 8, version.choose(rng).unwrap().iter().copied());
            }
        }
        9 => {
            let methods = [
                &b"post"[..],
                b"P0ST",
                b"GET /x",
                b"",
                b"CONNECT",
                b"OPTIONS *",
            ];
            let space = bytes.iter().position(|b| *b == b' ').unwrap_or(0);
            bytes.splice(0..space, methods.choose(rng).unwrap().iter().copied());
        }
        10 => {
            // A lying length: longer than the body (the client then stops sending).
            if let Some(at) = find(bytes, b"Content-Length: ") {
                let end = at + find(&bytes[at..], b"\r\n").unwrap_or(0);
                let line = format!("Content-Length: {}", rng.gen_range(0..100_000));
                bytes.splice(at..end, line.into_bytes());
            }
        }
        11 => {
            // A broken chunk size.
            let chunks = [
                &b"zz\r\n"[..],
                b"-1\r\n",
                b"fffffffffffffffffff\r\n",
                b"5;ext=\"\r\n",
            ];
            bytes.splice(
                head_end + 2..head_end + 2,
                chunks.choose(rng).unwrap().iter().copied(),
            );
        }
        12 => {
            // A header without a colon, or with an empty name.
            let lines = [
                &b"NoColon\r\n"[..],
                b": empty\r\n",
                b" folded: x\r\n",
                b"Host: a\r\n",
            ];
            bytes.splice(
                head_end..head_end,
                lines.choose(rng).unwrap().iter().copied(),
            );
        }
        13 => {
            // An absolute-form or odd target.
            let targets = [
                &b"http://evil.example/reports"[..],
                b"/reports/../reports",
                b"*",
                b"/%00",
                b"//reports",
            ];
            if let Some(first) = bytes.iter().position(|b| *b == b' ') {
                let second = first
                    + 1
                    + bytes[first + 1..]
                        .iter()
                        .position(|b| *b == b' ')
                        .unwrap_or(0);
                bytes.splice(
                    first + 1..second,
                    targets.choose(rng).unwrap().iter().copied(),
                );
            }
        }
        14 => bytes.truncate(rng.gen_range(0..bytes.len())),
        _ => {
            let junk: Vec<u8> = (0..rng.gen_range(1..300)).map(|_| rng.gen()).collect();
            *bytes = junk;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn case(rng: &mut StdRng, addr: SocketAddr) -> Case {
    let marker = format!("m{:016x}", rng.gen::<u64>());
    let mut bytes = base_request(rng, addr, &marker);
    damage(rng, &mut bytes);
    let hang_up_after = rng.gen_bool(0.25).then(|| rng.gen_range(0..=bytes.len()));
    Case {
        bytes,
        marker,
        hang_up_after,
    }
}

/// What came back on one connection.
#[derive(Debug)]
struct Seen {
    status: Option<u16>,
    head: String,
    body: Vec<u8>,
}

/// Sends a case and reads the answer until the server closes, the head and its announced body
/// arrived (or an event stream's head), or 5 s passed.
async fn run(addr: SocketAddr, case: Case) -> (Case, Option<Seen>) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        panic!("the server stopped accepting connections");
    };
    if let Some(cut) = case.hang_up_after {
        let _ = stream.write_all(&case.bytes[..cut]).await;
        drop(stream);
        return (case, None);
    }
    let _ = stream.write_all(&case.bytes).await;
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 8192];
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = find(&answer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            if head.contains("content-type: text/event-stream") {
                break;
            }
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| answer.len() >= end + 4 + len) {
                break;
            }
        }
    }
    if answer.is_empty() {
        return (case, None);
    }
    let end = find(&answer, b"\r\n\r\n").unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok());
    let body = answer.get(end + 4..).unwrap_or_default().to_vec();
    (case, Some(Seen { status, head, body }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_gets_no_5xx_and_refused_requests_create_nothing() {
    let cases: usize = std::env::var("RAW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seed: u64 = std::env::var("RAW_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("sending {cases} raw requests with RAW_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let backend = longtask_examples::backend_from_url("memory://")
        .await
        .expect("memory backend");
    let client = Client::new(backend);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let addr = listener.local_addr().expect("address");
    let service = report::service(client.clone()).with_body_timeout(Duration::from_secs(2));
    let timeouts = Timeouts {
        header_read: Duration::from_secs(2),
        idle: Duration::from_secs(2),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, service, timeouts, async {
        let _ = stopped.await;
    }));

    let mut running = JoinSet::new();
    let mut failures = Vec::new();
    let mut refused: HashSet<String> = HashSet::new();
    let mut answered = 0;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut check = |case: Case, seen: Option<Seen>| {
        let Some(seen) = seen else { return };
        answered += 1;
        let Some(status) = seen.status else {
            failures.push(format!("not an HTTP answer: {:?}", seen.head));
            return;
        };
        *statuses.entry(status).or_default() += 1;
        if status >= 500 {
            failures.push(format!(
                "{status} for {:?}: {}",
                String::from_utf8_lossy(&case.bytes[..case.bytes.len().min(300)]),
                seen.head
            ));
        }
        if status >= 400 {
            refused.insert(case.marker);
            let head = seen.head.to_ascii_lowercase();
            // hyper answers what it cannot parse with an empty 400/431; every answer of the
            // service itself is a problem document.
            if !seen.body.is_empty() && !head.contains("content-type: application/problem+json") {
                failures.push(format!(
                    "{status} with a body that is not a problem: {}",
                    seen.head
                ));
            }
        }
    };
    for _ in 0..cases {
        while running.len() >= AT_ONCE {
            let (case, seen) = running.join_next().await.unwrap().expect("a case panicked");
            check(case, seen);
        }
        running.spawn(run(addr, case(&mut rng, addr)));
    }
    while let Some(done) = running.join_next().await {
        let (case, seen) = done.expect("a case panicked");
        check(case, seen);
    }

    // The server still serves, and no refused request left a task.
    let mut normal = TcpStream::connect(addr)
        .await
        .expect("connecting after the fuzzing");
    normal
        .write_all(
            format!(
                "GET /reports/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                longtask_core::TaskId::new()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), normal.read_to_string(&mut answer))
        .await
        .expect("the server stopped answering")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let mut tasks = Vec::new();
    loop {
        let page = client
            .list(&TaskQuery {
                after: tasks.last().map(|t: &longtask_core::TaskRecord| t.id),
                limit: 10_000,
                ..TaskQuery::default()
            })
            .await
            .expect("listing");
        if page.is_empty() {
            break;
        }
        tasks.extend(page);
    }
    for task in &tasks {
        let params: serde_json::Value = serde_json::from_str(&task.params).expect("params");
        if let Some(marker) = params["flaky"].as_str() {
            if refused.contains(marker) {
                failures.push(format!(
                    "a refused request left task {} (marker {marker})",
                    task.id
                ));
            }
        }
    }
    eprintln!(
        "{answered} answers by status: {statuses:?}; {} tasks",
        tasks.len()
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        failures.is_empty(),
        "RAW_FUZZ_SEED={seed}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        statuses.contains_key(&202) && statuses.keys().any(|s| *s >= 400),
        "the cases never reached both acceptance and refusal: {statuses:?}"
    );
}

//! Many live pages at once: thousands of event streams (`GET /{id}/events`) served over real TCP
//! by one `JobService`, on a SQLite file and on Postgres. Every stream gets its task's final
//! event, status GETs stay fast while the streams are open, and the database is read per task
//! that changes, not per stream that is open.
//!
//! The stream count is capped by the process's open-file limit (two sockets per stream); the
//! documented 10,000-stream run is `benches/examples/watchers.rs`.

#![cfg(any(feature = "sqlite", feature = "postgres"))]

#[cfg(feature = "postgres")]
#[path = "postgres/server.rs"]
mod server;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use longtask_core::{
    testing::CountedReads, Backend, Client, Job, JobError, TaskContext, TaskId, Worker,
};
use longtask_tower::JobService;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch, Semaphore},
};

/// Tasks watched by the streams.
const TASKS: u32 = 40;
/// Streams opened, unless the open-file limit allows fewer.
const STREAMS: usize = 1500;
/// Status GETs timed, idle and with the streams open.
const GETS: usize = 300;
/// How long the streams stay open with nothing changing, at least.
const QUIET: Duration = Duration::from_secs(2);
/// A generous bound on anything that should be quick (the machine may be loaded).
const PATIENCE: Duration = Duration::from_secs(90);

/// A job that reports its first step, waits until released, reports its last step and ends.
struct Held {
    release: watch::Receiver<bool>,
}

impl Job for Held {
    const NAME: &'static str = "held";
    type Params = u32;
    type Output = u32;

    async fn run(&self, n: u32, cx: TaskContext) -> Result<u32, JobError> {
        cx.progress(1, Some(2), "started")?;
        let mut release = self.release.clone();
        release
            .wait_for(|released| *released)
            .await
            .map_err(|_| JobError::retryable("the test ended"))?;
        cx.progress(2, Some(2), "finishing")?;
        Ok(n)
    }
}

/// How many streams this process can hold: two sockets each, within the open-file limit.
fn stream_budget() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .unwrap_or(1024);
    STREAMS.min(soft.saturating_sub(400) / 2).max(100)
}

/// Serves `service` over TCP on a free loopback port.
async fn serve(service: JobService<Held>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Times `count` status GETs (JSON) over one keep-alive connection, cycling through `ids`;
/// returns the latencies, sorted.
async fn time_status_gets(addr: SocketAddr, ids: &[TaskId], count: usize) -> Vec<Duration> {
    let mut conn = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let mut times = Vec::with_capacity(count);
    for n in 0..count {
        let id = ids[n % ids.len()];
        let started = Instant::now();
        let request =
            format!("GET /{id} HTTP/1.1\r\nhost: test\r\naccept: application/json\r\n\r\n");
        conn.get_mut().write_all(request.as_bytes()).await.unwrap();
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        assert!(
            line.starts_with("HTTP/1.1 200"),
            "status GET answered {line}"
        );
        let mut length = None;
        loop {
            line.clear();
            conn.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let mut body = vec![0; length.expect("a status answer with a content-length")];
        conn.read_exact(&mut body).await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

/// Opens an event stream of task `id`, says so on `opened` once the first event arrived, and
/// reads until the final event; `Err` says what came instead.
async fn follow(
    addr: SocketAddr,
    id: TaskId,
    opened: mpsc::UnboundedSender<()>,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let request =
        format!("GET /{id}/events HTTP/1.1\r\nhost: test\r\naccept: text/event-stream\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut seen = Vec::new();
    let mut chunk = [0; 4096];
    let mut announced = false;
    let mut answered = false;
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err(format!(
                "the stream closed before the final event: {}",
                String::from_utf8_lossy(&seen)
            ));
        }
        seen.extend_from_slice(&chunk[..n]);
        let has = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
        if !answered {
            if seen.len() < 12 {
                continue;
            }
            if !seen.starts_with(b"HTTP/1.1 200") {
                return Err(String::from_utf8_lossy(&seen).into_owned());
            }
            answered = true;
        }
        if has(b"event: error") {
            return Err(String::from_utf8_lossy(&seen).into_owned());
        }
        if !announced && has(b"event: status") {
            announced = true;
            let _ = opened.send(());
        }
        if has(b"id: succeeded") {
            return Ok(());
        }
        if seen.len() > 16 * 1024 {
            seen.drain(..seen.len() - 1024);
        }
    }
}

/// The reads the backend's own watch machinery made so far, where it reports them.
type InternalReads = Box<dyn Fn() -> u64 + Send + Sync>;

/// Opens the streams over `backend`, keeps them open with nothing changing, lets the tasks
/// finish, and checks every stream, the status GETs and the reads.
async fn many_streams(backend: Backend, internal_reads: Option<InternalReads>) {
    let internal = || internal_reads.as_ref().map_or(0, |reads| reads());
    let streams = stream_budget();
    let counting = CountedReads::new(backend.clone());
    let client = Client::new(counting.backend());
    let (release, released) = watch::channel(false);
    let worker = Worker::builder(backend.clone())
        .register(Held { release: released })
        .concurrency(TASKS as usize)
        .progress_interval(Duration::from_millis(20))
        .build()
        .unwrap()
        .spawn();
    let ids = client.submit_many::<Held>(0..TASKS).await.unwrap();
    for id in &ids {
        let mut updates = client.watch(*id).await.unwrap();
        let started = tokio::time::timeout(PATIENCE, async {
            while let Some(record) = updates.next().await {
                if record.unwrap().progress.is_some_and(|p| p.step == 1) {
                    return;
                }
            }
            panic!("task {id} ended before it started");
        });
        started.await.expect("every task starts");
    }
    let addr = serve(JobService::<Held>::new(client.clone())).await;
    let idle = time_status_gets(addr, &ids, GETS).await;

    // Open the streams, a few dozen connections at a time.
    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    let connecting = Arc::new(Semaphore::new(64));
    let mut followers = Vec::with_capacity(streams);
    for n in 0..streams {
        let id = ids[n % ids.len()];
        let opened_tx = opened_tx.clone();
        let permit = connecting.clone().acquire_owned().await.unwrap();
        let (first_tx, first) = mpsc::unbounded_channel();
        followers.push(tokio::spawn(follow(addr, id, first_tx)));
        tokio::spawn(async move {
            let mut first = first;
            let _ = first.recv().await;
            drop(permit);
            let _ = opened_tx.send(());
        });
    }
    drop(opened_tx);
    for _ in 0..streams {
        tokio::time::timeout(PATIENCE, opened.recv())
            .await
            .expect("every stream opens")
            .expect("a stream failed before its first event");
    }

    // Nothing changes for a while: the database should hardly be read at all.
    let (gets, watches) = (counting.gets(), counting.watches());
    let internal_before = internal();
    let quiet = Instant::now();
    let busy = time_status_gets(addr, &ids, GETS).await;
    if let Some(rest) = QUIET.checked_sub(quiet.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let quiet = quiet.elapsed();
    let (quiet_gets, quiet_watches) = (counting.gets(), counting.watches());
    let (quiet_gets, quiet_watches) = (quiet_gets - gets - GETS as u64, quiet_watches - watches);
    let quiet_internal = internal() - internal_before;

    // Every task makes two changes (its last progress and its final status).
    let gets = counting.gets();
    let internal_before = internal();
    release.send_replace(true);
    let mut failures = Vec::new();
    for follower in followers {
        match tokio::time::timeout(PATIENCE, follower).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => failures.push(err),
            Ok(Err(panic)) => failures.push(panic.to_string()),
            Err(_) => failures.push("no final event in time".to_owned()),
        }
    }
    let finish_gets = counting.gets() - gets;
    let finish_internal = internal() - internal_before;
    worker.shutdown().await.unwrap();

    let (idle_p50, idle_p99) = (percentile(&idle, 0.5), percentile(&idle, 0.99));
    let (busy_p50, busy_p99) = (percentile(&busy, 0.5), percentile(&busy, 0.99));
    eprintln!(
        "{streams} streams over {TASKS} tasks: status GET p50/p99 idle {idle_p50:?}/{idle_p99:?}, \
         with the streams open {busy_p50:?}/{busy_p99:?}; in {quiet:.1?} with nothing changing: \
         {quiet_gets} gets, {quiet_watches} backend watches, {quiet_internal} backend watch reads; \
         while the tasks finished: {finish_gets} gets, {finish_internal} backend watch reads"
    );
    assert!(
        failures.is_empty(),
        "{} of {streams} streams did not end with the final event; the first: {}",
        failures.len(),
        failures[0]
    );
    let tasks = u64::from(TASKS);
    assert!(
        quiet_gets + quiet_watches + quiet_internal <= tasks,
        "with nothing changing the open streams read the database {} times in {quiet:.1?}",
        quiet_gets + quiet_watches + quiet_internal
    );
    assert!(
        finish_gets + finish_internal <= 4 * tasks,
        "{TASKS} tasks making two changes each cost {} reads with {streams} streams open",
        finish_gets + finish_internal
    );
    assert!(
        busy_p99 <= (idle_p99 * 3).max(Duration::from_millis(250)),
        "status GET p99 went from {idle_p99:?} idle to {busy_p99:?} with {streams} streams open"
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use longtask_sqlx::SqliteBackend;

    use super::*;

    async fn open(dir: &std::path::Path) -> SqliteBackend {
        let url = format!("sqlite://{}", dir.join("longtask.db").display());
        let backend = SqliteBackend::connect(&url).await.unwrap();
        backend.migrate().await.unwrap();
        backend
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_streams_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let backend = open(dir.path()).await;
        let reads = backend.clone();
        many_streams(backend.into(), Some(Box::new(move || reads.watch_reads()))).await;
    }

    /// Changes made by another process (here: another backend instance on the same file, with
    /// its own connections) reach the watchers of this one, which reads the database once per
    /// watch interval, not once per watched task.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_processes_changes_are_read_once_per_interval() {
        const WATCHED: u32 = 300;
        const INTERVAL: Duration = Duration::from_millis(200);
        let dir = tempfile::tempdir().unwrap();
        let here = open(dir.path()).await.with_watch_interval(INTERVAL);
        let there = open(dir.path()).await;
        let (release, released) = watch::channel(false);
        let worker = Worker::builder(there.clone())
            .register(Held { release: released })
            .concurrency(WATCHED as usize)
            .progress_interval(Duration::from_millis(20))
            .build()
            .unwrap()
            .spawn();
        let client = Client::new(here.clone());
        let ids = client.submit_many::<Held>(0..WATCHED).await.unwrap();
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let mut watches = Vec::new();
        for id in ids {
            let client = client.clone();
            let started_tx = started_tx.clone();
            watches.push(tokio::spawn(async move {
                let mut updates = client.watch(id).await.unwrap();
                let mut last = None;
                while let Some(record) = updates.next().await {
                    let record = record.unwrap();
                    if last.is_none() && record.progress.as_ref().is_some_and(|p| p.step == 1) {
                        let _ = started_tx.send(());
                    } else if last.is_none() {
                        continue;
                    }
                    last = Some(record.status);
                }
                (id, last)
            }));
        }
        for _ in 0..WATCHED {
            tokio::time::timeout(PATIENCE, started.recv())
                .await
                .expect("every task starts")
                .expect("a watch ended before its task started");
        }

        let before = here.watch_reads();
        let quiet = Instant::now();
        tokio::time::sleep(QUIET).await;
        let quiet = quiet.elapsed();
        let quiet_reads = here.watch_reads() - before;

        release.send_replace(true);
        for watch in watches {
            let (id, last) = tokio::time::timeout(PATIENCE, watch)
                .await
                .expect("every watch ends")
                .unwrap();
            assert_eq!(
                last,
                Some(longtask_core::TaskStatus::Succeeded),
                "task {id}"
            );
        }
        worker.shutdown().await.unwrap();

        // Two statements per interval at most (a check, and a batched read when it found a
        // change), and some slack for a loaded machine.
        let intervals = quiet.as_millis() / INTERVAL.as_millis() + 1;
        eprintln!("{WATCHED} watched tasks: {quiet_reads} watch reads in {quiet:.1?}");
        assert!(
            u128::from(quiet_reads) <= 2 * intervals + 4,
            "{WATCHED} watched tasks cost {quiet_reads} reads in {quiet:.1?} ({intervals} intervals)"
        );
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use longtask_sqlx::PostgresBackend;

    use super::*;
    use crate::server::{database_url, fresh_schema};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_streams_on_postgres() {
        let backend = PostgresBackend::connect(database_url())
            .await
            .unwrap()
            .with_schema(&fresh_schema())
            .unwrap();
        backend.migrate().await.unwrap();
        many_streams(backend.into(), None).await;
    }
}

//! Thousands of live pages at once: opens `STREAMS` event streams (`GET /{id}/events`, real TCP,
//! hyper) over `TASKS` running tasks of one `JobService`, times status GETs idle and while the
//! streams are open, counts the task reads and backend subscriptions the streams cost while
//! nothing changes and while every task finishes, and checks that every stream got its final
//! event. The backend comes from `LONGTASK_BENCH_URL` (default `memory://`).
//!
//! The streams are opened by a second process running this program (`--streams`), so that
//! each side's sockets count against its own open-file limit.
//!
//! ```text
//! ulimit -n 20000
//! LONGTASK_BENCH_URL=sqlite:///tmp/watch.db cargo run --release -p longtask-benches \
//!     --features sqlite --example watchers -- 10000 100 10
//! ```
//!
//! Arguments: streams (10,000), tasks (100), seconds the streams stay open with nothing changing (10).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use longtask_benches::{backend_from_env, runtime};
use longtask_core::{testing::CountedReads, Client, Job, JobError, TaskContext, TaskId, Worker};
use longtask_tower::JobService;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch, Semaphore},
};

/// Reports its first step, waits until released, reports its last step and ends.
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
            .map_err(|_| JobError::retryable("the benchmark ended"))?;
        cx.progress(2, Some(2), "finishing")?;
        Ok(n)
    }
}

async fn serve(service: JobService<Held>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let addr = listener.local_addr().expect("an address");
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

/// One status GET (JSON) on a keep-alive connection; its latency.
async fn status_get(conn: &mut BufReader<TcpStream>, id: TaskId) -> Duration {
    let started = Instant::now();
    let request = format!("GET /{id} HTTP/1.1\r\nhost: bench\r\naccept: application/json\r\n\r\n");
    conn.get_mut()
        .write_all(request.as_bytes())
        .await
        .expect("sending a GET");
    let mut line = String::new();
    conn.read_line(&mut line).await.expect("reading an answer");
    assert!(
        line.starts_with("HTTP/1.1 200"),
        "status GET answered {line}"
    );
    let mut length = 0;
    loop {
        line.clear();
        conn.read_line(&mut line).await.expect("reading headers");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a content-length");
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await.expect("reading a body");
    started.elapsed()
}

/// Status GETs cycling through `ids` until `until` (at least `min` of them); sorted latencies.
async fn status_gets(
    addr: SocketAddr,
    ids: &[TaskId],
    min: usize,
    until: Instant,
) -> Vec<Duration> {
    let mut conn = BufReader::new(TcpStream::connect(addr).await.expect("connecting"));
    let mut times = Vec::new();
    while times.len() < min || Instant::now() < until {
        times.push(status_get(&mut conn, ids[times.len() % ids.len()]).await);
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

/// Follows one event stream to its final event.
async fn follow(
    addr: SocketAddr,
    id: TaskId,
    opened: mpsc::UnboundedSender<()>,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let request =
        format!("GET /{id}/events HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut seen = Vec::new();
    let mut chunk = [0; 4096];
    let mut announced = false;
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("closed before the final event".to_owned());
        }
        seen.extend_from_slice(&chunk[..n]);
        let has = |seen: &[u8], needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
        let refused = !announced && seen.len() >= 12 && !seen.starts_with(b"HTTP/1.1 200");
        if refused || has(&seen, b"event: error") {
            return Err(String::from_utf8_lossy(&seen).into_owned());
        }
        if !announced && has(&seen, b"event: status") {
            announced = true;
            let _ = opened.send(());
            seen.clear();
        }
        if has(&seen, b"id: succeeded") {
            return Ok(());
        }
        if seen.len() > 16 * 1024 {
            seen.drain(..seen.len() - 1024);
        }
    }
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The streams' side, in a process of its own (each process gets the whole open-file limit):
/// `watchers --streams ADDR STREAMS ID,ID,...`. Prints `opened` once every stream has its first
/// event, then `done FAILED FIRST-FAILURE` once every stream ended.
fn streams_process(addr: SocketAddr, streams: usize, ids: Vec<TaskId>) {
    runtime().block_on(async move {
        let (opened_tx, mut opened) = mpsc::unbounded_channel();
        let connecting = Arc::new(Semaphore::new(128));
        let mut followers = Vec::with_capacity(streams);
        for n in 0..streams {
            let permit = connecting.clone().acquire_owned().await.expect("a permit");
            let (first_tx, mut first) = mpsc::unbounded_channel();
            followers.push(tokio::spawn(follow(addr, ids[n % ids.len()], first_tx)));
            let opened_tx = opened_tx.clone();
            tokio::spawn(async move {
                let _ = first.recv().await;
                drop(permit);
                let _ = opened_tx.send(());
            });
        }
        drop(opened_tx);
        for _ in 0..streams {
            if opened.recv().await.is_none() {
                break;
            }
        }
        println!("opened");
        let mut failed = 0;
        let mut first_failure = String::new();
        for follower in followers {
            let result = follower.await.unwrap_or_else(|e| Err(e.to_string()));
            if let Err(err) = result {
                failed += 1;
                if first_failure.is_empty() {
                    first_failure = err.replace('\n', " ");
                }
            }
        }
        println!("done {failed} {first_failure}");
    });
}

#[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
fn main() {
    if std::env::args().nth(1).as_deref() == Some("--streams") {
        let args: Vec<String> = std::env::args().collect();
        let ids = args[4]
            .split(',')
            .map(|id| id.parse().expect("a task id"))
            .collect();
        streams_process(
            args[2].parse().expect("an address"),
            args[3].parse().expect("a stream count"),
            ids,
        );
        return;
    }
    let streams = usize::try_from(arg(1, 10_000)).expect("a stream count");
    let tasks = u32::try_from(arg(2, 100)).expect("a task count");
    let quiet = Duration::from_secs(arg(3, 10));
    let rt = runtime();
    rt.block_on(async move {
        let (scheme, backend) = backend_from_env().await;
        let counting = CountedReads::new(backend.clone());
        let client = Client::new(counting.backend());
        let (release, released) = watch::channel(false);
        let worker = Worker::builder(backend.clone())
            .register(Held { release: released })
            .concurrency(tasks as usize)
            .build()
            .expect("a worker")
            .spawn();
        let ids = client
            .submit_many::<Held>(0..tasks)
            .await
            .expect("submitting");
        for id in &ids {
            let mut updates = client.watch(*id).await.expect("watching");
            while let Some(record) = updates.next().await {
                if record.expect("a record").progress.is_some_and(|p| p.step == 1) {
                    break;
                }
            }
        }
        let service = JobService::<Held>::new(client.clone()).with_max_watchers(streams);
        let addr = serve(service).await;
        let idle = status_gets(addr, &ids, 2_000, Instant::now()).await;

        let opening = Instant::now();
        let ids_arg = ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let mut child = tokio::process::Command::new(std::env::current_exe().expect("this program"))
            .args(["--streams", &addr.to_string(), &streams.to_string(), &ids_arg])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the streams' process");
        let mut lines = BufReader::new(child.stdout.take().expect("its output")).lines();
        let line = lines.next_line().await.expect("its output");
        assert_eq!(line.as_deref(), Some("opened"), "the streams' process failed");
        let opening = opening.elapsed();

        let reads = counting.gets() + counting.watches();
        let started = Instant::now();
        let busy = status_gets(addr, &ids, 2_000, started + quiet).await;
        let quiet = started.elapsed();
        let quiet_reads = counting.gets() + counting.watches() - reads - busy.len() as u64;

        let reads = counting.gets() + counting.watches();
        let finishing = Instant::now();
        release.send_replace(true);
        let done = lines
            .next_line()
            .await
            .expect("its output")
            .expect("a last line");
        let mut done = done.splitn(3, ' ').skip(1);
        let failed: usize = done.next().and_then(|n| n.parse().ok()).expect("a count");
        let first_failure = done.next().filter(|e| !e.is_empty()).map(str::to_owned);
        let _ = child.wait().await;
        let finishing = finishing.elapsed();
        let finish_reads = counting.gets() + counting.watches() - reads;
        worker.shutdown().await.expect("worker shutdown");

        println!("{scheme}: {streams} streams over {tasks} tasks (opened in {opening:.1?})");
        println!(
            "  status GET idle:              p50 {:?}, p99 {:?} ({} GETs)",
            percentile(&idle, 0.5),
            percentile(&idle, 0.99),
            idle.len()
        );
        println!(
            "  status GET, streams open:     p50 {:?}, p99 {:?} ({} GETs in {quiet:.1?})",
            percentile(&busy, 0.5),
            percentile(&busy, 0.99),
            busy.len()
        );
        println!(
            "  reads by the streams, nothing changing: {quiet_reads} in {quiet:.1?} ({:.1}/s)",
            quiet_reads as f64 / quiet.as_secs_f64()
        );
        println!(
            "  reads by the streams, every task finishing ({} changes): {finish_reads}; all final events in {finishing:.1?}",
            2 * tasks
        );
        println!(
            "  streams that got their final event: {}/{streams}{}",
            streams - failed,
            first_failure.map_or_else(String::new, |e| format!(" (first failure: {e})"))
        );
    });
}

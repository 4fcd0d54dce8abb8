//! Redis servers for the tests: one throwaway `redis-server` per test process (or `REDIS_URL`),
//! and one throwaway three-node Redis Cluster (or `REDIS_CLUSTER_URLS`), each stopped by a
//! watchdog shell (which also removes its directory) once the test process exits.

#![allow(dead_code)] // each test binary uses a part

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

static SERVER: OnceLock<String> = OnceLock::new();
static CLUSTER: OnceLock<Vec<String>> = OnceLock::new();

/// The URL of the Redis to test against.
pub(crate) fn redis_url() -> String {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return url;
    }
    SERVER.get_or_init(start_server).clone()
}

/// The node URLs of the Redis Cluster to test against.
pub(crate) fn cluster_urls() -> Vec<String> {
    if let Ok(urls) = std::env::var("REDIS_CLUSTER_URLS") {
        return urls.split(',').map(|u| u.trim().to_owned()).collect();
    }
    CLUSTER.get_or_init(start_cluster).clone()
}

/// A key prefix no other test (or test run) uses.
pub(crate) fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "lt-test-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A free port whose cluster bus port (+10,000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Whether a Redis answers PING on `port`.
pub(crate) fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("+PONG")
}

fn require(program: &str) {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "{program} is not installed: `apt-get install redis-server` (Debian/Ubuntu; it brings \
             redis-cli too), or set REDIS_URL=redis://host:port/db (and REDIS_CLUSTER_URLS to a \
             cluster's comma-separated node URLs) to test against running servers"
        ),
    }
}

fn temp_dir() -> String {
    let dir = tempfile::Builder::new()
        .prefix("longtask-redis-test-")
        .tempdir()
        .expect("cannot create a temporary directory")
        .keep();
    dir.to_str().expect("temp dir path is not UTF-8").to_owned()
}

/// Runs `servers` (shell commands, each starting one server in the foreground) under a watchdog
/// shell that stops them and removes `dir` once this test process is gone, however it ended (or
/// once one of the servers has exited, say because its port was taken).
///
/// The watchdog is deliberately never waited for: it outlives this function.
#[allow(clippy::zombie_processes)]
fn watched(servers: &[String], dir: &str) -> std::process::Child {
    let starts: String = servers
        .iter()
        .map(|server| format!("{server} & pids=\"$pids $!\"; "))
        .collect();
    let script = format!(
        "pids=''; {starts}\
         while kill -0 $PPID 2>/dev/null && kill -0 $pids 2>/dev/null; do sleep 1; done; \
         kill $pids 2>/dev/null; wait; rm -rf '{dir}'"
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run sh to start redis-server")
}

fn redis_server(port: u16, dir: &str, extra: &str) -> String {
    format!(
        "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
         --dir '{dir}' --logfile '{dir}/redis-{port}.log' {extra}"
    )
}

fn log(dir: &str, port: u16) -> String {
    let mut log = String::new();
    let _ = std::fs::File::open(format!("{dir}/redis-{port}.log"))
        .map(|mut f| f.read_to_string(&mut log));
    log
}

/// Waits until every port answers PING; false if one did not within 10 s or the watchdog ended.
fn all_answer(ports: &[u16], watchdog: &mut std::process::Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ports.iter().all(|&port| answers_ping(port)) {
            return true;
        }
        if let Ok(Some(_)) = watchdog.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Starts a throwaway redis-server and returns its URL.
fn start_server() -> String {
    require("redis-server");
    let dir = temp_dir();
    let mut port = 0;
    for _ in 0..5 {
        port = free_port();
        let mut watchdog = watched(&[redis_server(port, &dir, "")], &dir);
        if all_answer(&[port], &mut watchdog) {
            return format!("redis://127.0.0.1:{port}/");
        }
        // The port was taken, or the server is slow: try another port (a slow server is left to
        // its watchdog, which stops it when this process exits).
    }
    panic!(
        "redis-server did not start on 127.0.0.1; its log:\n{}",
        log(&dir, port)
    );
}

/// Starts a throwaway Redis Cluster of three primaries (no replicas) and returns their URLs.
fn start_cluster() -> Vec<String> {
    require("redis-server");
    require("redis-cli");
    let dir = temp_dir();
    let ports: Vec<u16> = (0..3).map(|_| free_cluster_port()).collect();
    let servers: Vec<String> = ports
        .iter()
        .map(|&port| {
            redis_server(
                port,
                &dir,
                &format!(
                    "--cluster-enabled yes --cluster-config-file '{dir}/nodes-{port}.conf' \
                     --cluster-node-timeout 5000"
                ),
            )
        })
        .collect();
    let mut watchdog = watched(&servers, &dir);
    assert!(
        all_answer(&ports, &mut watchdog),
        "the Redis Cluster's nodes did not start on 127.0.0.1; their logs:\n{}",
        ports
            .iter()
            .map(|&p| log(&dir, p))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("cannot run redis-cli");
    assert!(
        created.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&created.stdout),
        String::from_utf8_lossy(&created.stderr)
    );
    // Every node must see every slot covered before commands are routed.
    let deadline = Instant::now() + Duration::from_secs(20);
    for &port in &ports {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "cluster", "info"])
                .output()
                .expect("cannot run redis-cli");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster on ports {ports:?} did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect()
}

//! Runs the built `longtask` binary against a real backend, and drives tasks through the
//! backend API from the test process (claim, report progress, checkpoint, finish), so that each
//! command is checked on what a real worker leaves behind.

#![allow(dead_code, unreachable_pub)]

pub mod scenarios;

use std::{process::Stdio, time::Duration};

use longtask::{
    Ack, Backend, Checkpoint, ClaimRequest, ClaimedTask, Client, Completion, NewTask, Outcome,
    Progress, TaskId,
};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines},
    net::TcpStream,
    process::{Child, ChildStderr, ChildStdout, Command},
};

/// Long enough for any step on a loaded machine; a hang fails the test instead.
pub const BOUND: Duration = Duration::from_secs(60);

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit status and that stderr is one line; returns that line.
    pub fn fails_with(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "exit status of {self:#?}");
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "stderr should be one line: {self:#?}"
        );
        assert!(self.stdout.is_empty(), "nothing on stdout: {self:#?}");
        self.stderr.trim_end()
    }

    /// Asserts success; returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:#?}");
        &self.stdout
    }

    /// Asserts success and parses stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_longtask"));
    command
        .args(args)
        .env_remove("LONGTASK_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `longtask <args>` to its end (within [`BOUND`]).
pub async fn longtask(args: &[&str]) -> Run {
    let run = command(args).output();
    let out = tokio::time::timeout(BOUND, run)
        .await
        .unwrap_or_else(|_| panic!("longtask {args:?} did not end within {BOUND:?}"))
        .expect("running the longtask binary");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

/// Runs `longtask --url <url> <args>`.
pub async fn at(url: &str, args: &[&str]) -> Run {
    let mut all = vec!["--url", url];
    all.extend_from_slice(args);
    longtask(&all).await
}

/// A running `longtask` whose output lines the test reads as they come.
pub struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: ChildStderr,
    pub seen: Vec<String>,
}

impl Running {
    pub fn start(url: &str, args: &[&str]) -> Self {
        let mut all = vec!["--url", url];
        all.extend_from_slice(args);
        let mut child = command(&all).spawn().expect("starting longtask");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
            stderr,
            seen: Vec::new(),
        }
    }

    /// Sends the process SIGINT, as Ctrl-C does.
    pub async fn interrupt(&self) {
        let pid = self.child.id().expect("the process is running");
        let status = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await
            .expect("running kill");
        assert!(status.success(), "kill -INT {pid}");
    }

    /// Waits for a line containing `text`; returns it.
    pub async fn line_with(&mut self, text: &str) -> String {
        let wait = async {
            loop {
                match self.lines.next_line().await.expect("reading stdout") {
                    Some(line) => {
                        self.seen.push(line.clone());
                        if line.contains(text) {
                            return line;
                        }
                    }
                    None => panic!("stdout ended before a line with {text:?}: {:#?}", self.seen),
                }
            }
        };
        match tokio::time::timeout(BOUND, wait).await {
            Ok(line) => line,
            Err(_) => panic!("no line with {text:?} within {BOUND:?}: {:#?}", self.seen),
        }
    }

    /// Waits for the process to end; returns its exit status and the rest of stdout.
    pub async fn end(self) -> (i32, Vec<String>) {
        let (code, lines, _) = self.end_with_stderr().await;
        (code, lines)
    }

    /// Waits for the process to end; returns its exit status, the rest of stdout, and all of
    /// stderr.
    pub async fn end_with_stderr(mut self) -> (i32, Vec<String>, String) {
        let mut stderr = String::new();
        let wait = async {
            while let Some(line) = self.lines.next_line().await.expect("reading stdout") {
                self.seen.push(line);
            }
            self.stderr
                .read_to_string(&mut stderr)
                .await
                .expect("reading stderr");
            self.child.wait().await.expect("waiting for longtask")
        };
        let status = tokio::time::timeout(BOUND, wait)
            .await
            .unwrap_or_else(|_| panic!("longtask did not end within {BOUND:?}: {:#?}", self.seen));
        (
            status.code().expect("exited, not killed"),
            self.seen,
            stderr,
        )
    }
}

/// What an HTTP server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header lines, names in lower case: `("set-cookie", "a=b; Path=/")`.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` (a whole HTTP/1.1 request; it should say `Connection: close`) to
/// 127.0.0.1:`port` over plain TCP, so that the test chooses every header (`Host` included),
/// and reads the answer to its end.
pub async fn http(port: u16, request: &str) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connecting to the dashboard");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("sending the request");
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .expect("reading the answer");
        String::from_utf8(raw).expect("a UTF-8 answer")
    };
    let raw = tokio::time::timeout(BOUND, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer within {BOUND:?} to {request}"));
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this helper reads whole bodies only: {head}"
    );
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `GET path` naming `host`, accepting `accept`, with `extra` header lines (each ending in
/// `\r\n`).
pub async fn get(port: u16, host: &str, path: &str, accept: &str, extra: &str) -> Answer {
    http(
        port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n{extra}Connection: close\r\n\r\n"
        ),
    )
    .await
}

/// Starts `longtask dashboard` with `args` on a free loopback port (port 0: the binary prints
/// the one it got); returns it and the port.
pub async fn dashboard(url: &str, args: &[&str]) -> (Running, u16) {
    let mut all = vec!["dashboard"];
    all.extend_from_slice(args);
    if !args.contains(&"--bind") {
        all.extend(["--bind", "127.0.0.1:0"]);
    }
    let mut running = Running::start(url, &all);
    let line = running.line_with("longtask dashboard: http://").await;
    let port = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("a URL with a port: {line}"));
    (running, port)
}

/// A job name of this test alone, so that tests sharing a backend do not see each other's
/// tasks.
pub fn job(name: &str) -> String {
    format!("{name}-{}", TaskId::new())
}

/// Submits a task of `job` with `params`; returns its id.
pub async fn submit(client: &Client, job: &str, params: &str) -> TaskId {
    submit_task(client, NewTask::new(job, params)).await
}

pub async fn submit_task(client: &Client, task: NewTask) -> TaskId {
    client.submit_raw(vec![task]).await.expect("submitting")[0].id
}

/// Claims the next task of `job` as a worker would.
pub async fn claim(backend: &Backend, job: &str) -> ClaimedTask {
    let jobs = [job.to_owned()];
    let mut claimed = backend
        .queue()
        .claim(ClaimRequest {
            jobs: &jobs,
            worker: "test-worker",
            limit: 1,
            lease: Duration::from_secs(300),
            limits: &[],
        })
        .await
        .expect("claiming");
    assert_eq!(claimed.len(), 1, "one task of {job} to claim");
    claimed.remove(0)
}

/// Progress at `step` of `total` with a message and a rate (so that an ETA shows).
pub fn progress(step: u64, total: u64, message: &str) -> Progress {
    let mut progress = Progress::new(step, Some(total)).with_message(message);
    progress.rate = Some(0.01);
    progress
}

pub async fn report_progress(backend: &Backend, task: &ClaimedTask, progress: Progress) {
    backend
        .progress()
        .report(&[(task.lease, progress)])
        .await
        .expect("reporting progress");
}

pub async fn checkpoint(backend: &Backend, task: &ClaimedTask, progress: Progress) {
    let ack = backend
        .queue()
        .save_checkpoint(Checkpoint {
            lease: task.lease,
            attempt: task.attempt,
            state: "{\"day\":8}".to_owned(),
            progress: Some(progress),
        })
        .await
        .expect("saving a checkpoint");
    assert_eq!(ack, Ack::Applied);
}

pub async fn finish(backend: &Backend, task: &ClaimedTask, outcome: Outcome) {
    let acks = backend
        .queue()
        .finish(vec![Completion::new(task.lease, outcome)])
        .await
        .expect("finishing");
    assert_eq!(acks, [Ack::Applied]);
}

pub fn succeeded(output: &str) -> Outcome {
    Outcome::Succeeded {
        output: output.to_owned(),
    }
}

pub fn failed(error: &str, retry: bool) -> Outcome {
    Outcome::Failed {
        error: error.to_owned(),
        retry_after: retry.then_some(Duration::ZERO),
    }
}

/// The ids in a `list --json` document.
pub fn ids(page: &Value) -> Vec<String> {
    page["tasks"]
        .as_array()
        .expect("a tasks array")
        .iter()
        .map(|task| task["id"].as_str().expect("an id").to_owned())
        .collect()
}

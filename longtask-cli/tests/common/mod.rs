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
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
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
    pub seen: Vec<String>,
}

impl Running {
    pub fn start(url: &str, args: &[&str]) -> Self {
        let mut all = vec!["--url", url];
        all.extend_from_slice(args);
        let mut child = command(&all).spawn().expect("starting longtask");
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
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
    pub async fn end(mut self) -> (i32, Vec<String>) {
        let wait = async {
            while let Some(line) = self.lines.next_line().await.expect("reading stdout") {
                self.seen.push(line);
            }
            self.child.wait().await.expect("waiting for longtask")
        };
        let status = tokio::time::timeout(BOUND, wait)
            .await
            .unwrap_or_else(|_| panic!("longtask did not end within {BOUND:?}"));
        (status.code().expect("exited, not killed"), self.seen)
    }
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

//! Each command checked against a backend: the same scenarios on SQLite and Postgres. Every
//! scenario uses job names of its own, so scenarios may share a backend.

use std::time::Duration;

use longtask::{Client, NewTask, Outcome};

use super::*;

/// `list`: every filter, paging, the table and the JSON.
pub async fn list(url: &str, client: &Client) {
    let backend = client.backend();
    let report = job("report");
    let email = job("email");
    let first = submit(client, &report, "{\"month\":1}").await;
    let mut owned = NewTask::new(&report, "{\"month\":2}");
    owned.owner = Some("ada".to_owned());
    let second = submit_task(client, owned).await;
    let third = submit(client, &report, "{\"month\":3}").await;
    let mail = submit(client, &email, "\"ada@example.com\"").await;
    let done = claim(backend, &report).await;
    assert_eq!(done.lease.task, first);
    report_progress_and_succeed(backend, &done).await;

    // The table: a header, one row per task, with status and attempts.
    let table = at(url, &["list", "--job", &report]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines.len(), 4, "{table:#?}");
    for header in ["ID", "JOB", "STATUS", "ATTEMPT", "PROGRESS", "CREATED"] {
        assert!(lines[0].contains(header), "{table:#?}");
    }
    assert!(lines[1].contains(&first.to_string()) && lines[1].contains("succeeded"));
    assert!(
        lines[1].contains("1/5") && lines[1].contains("100% (10/10)"),
        "{table:#?}"
    );
    assert!(lines[2].contains(&second.to_string()) && lines[2].contains("queued"));
    assert!(lines[3].contains(&third.to_string()));

    let json = |args: &'static [&'static str]| {
        let report = report.clone();
        async move {
            let mut all = vec!["list", "--json", "--job", report.as_str()];
            all.extend_from_slice(args);
            at(url, &all).await.json()
        }
    };
    let all = json(&[]).await;
    assert_eq!(ids(&all), [first, second, third].map(|id| id.to_string()));
    assert_eq!(all["next_after"], Value::Null);
    assert_eq!(all["tasks"][0]["params"]["month"], 1, "params are JSON");
    assert_eq!(all["tasks"][0]["output"]["rows"], 120, "output is JSON");

    let succeeded = json(&["--status", "succeeded"]).await;
    assert_eq!(ids(&succeeded), [first.to_string()]);
    let waiting = json(&["--status", "queued,running", "--status", "failed"]).await;
    assert_eq!(ids(&waiting), [second, third].map(|id| id.to_string()));
    let owned = json(&["--owner", "ada"]).await;
    assert_eq!(ids(&owned), [second.to_string()]);

    // Paging: a full page says where the next one starts.
    let page = json(&["--limit", "2"]).await;
    assert_eq!(ids(&page), [first, second].map(|id| id.to_string()));
    assert_eq!(page["next_after"], second.to_string());
    let next = at(
        url,
        &[
            "list",
            "--json",
            "--job",
            &report,
            "--after",
            &second.to_string(),
        ],
    )
    .await
    .json();
    assert_eq!(ids(&next), [third.to_string()]);
    let paged = at(url, &["list", "--job", &report, "--limit", "2"]).await;
    assert!(
        paged.stderr.contains(&format!("--after {second}")),
        "a full page says how to get the next: {paged:#?}"
    );

    // The other job's task, and no filter at all.
    let mail_page = at(url, &["list", "--json", "--job", &email]).await.json();
    assert_eq!(ids(&mail_page), [mail.to_string()]);
    let everything = at(url, &["list", "--json", "--limit", "10000"])
        .await
        .json();
    for id in [first, second, third, mail] {
        assert!(ids(&everything).contains(&id.to_string()));
    }
    let none = at(url, &["list", "--job", &job("nothing")]).await;
    assert_eq!(none.ok().trim(), "no tasks match");
}

async fn report_progress_and_succeed(backend: &longtask::Backend, task: &ClaimedTask) {
    report_progress(backend, task, progress(10, 10, "all done")).await;
    finish(backend, task, succeeded("{\"rows\":120}")).await;
}

/// `show`: every part of the record, as a table and as JSON, through a failed attempt, a
/// checkpoint and a resumed attempt.
pub async fn show(url: &str, client: &Client) {
    let backend = client.backend();
    let report = job("report");
    let mut task = NewTask::new(&report, "{\"month\":\"2026-10\"}");
    task.owner = Some("ada".to_owned());
    task.idempotency_key = Some("october".to_owned());
    task.priority = 7;
    let id = submit_task(client, task).await;

    // Attempt 1 gets to day 8 of 20, checkpoints, and fails.
    let first = claim(backend, &report).await;
    checkpoint(backend, &first, progress(8, 20, "Handling day 8")).await;
    finish(backend, &first, failed("the ledger was locked", true)).await;
    // Attempt 2 resumes and reports day 12 \x1b[31m (a hostile message).
    let second = claim(backend, &report).await;
    assert_eq!(second.attempt, 2);
    report_progress(
        backend,
        &second,
        progress(12, 20, "Handling day 12 \u{1b}[31mred"),
    )
    .await;

    let shown = at(url, &["show", &id.to_string()]).await;
    let text = shown.ok();
    for expected in [
        id.to_string().as_str(),
        report.as_str(),
        "running",
        "2 of 5",
        "60% (12/20): Handling day 12 \\u{1b}[31mred",
        "left",
        "saved by attempt 1 at 40% (8/20)",
        "attempt 2 resumed from the checkpoint of attempt 1",
        "attempt 1",
        "the ledger was locked",
        "test-worker until",
        "ada",
        "october",
        "{\"month\":\"2026-10\"}",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "no raw escape reaches the terminal"
    );

    let json = at(url, &["show", "--json", &id.to_string()]).await.json();
    assert_eq!(json["id"], id.to_string());
    assert_eq!(json["status"], "running");
    assert_eq!(json["attempt"], 2);
    assert_eq!(json["priority"], 7);
    assert_eq!(json["params"]["month"], "2026-10");
    assert_eq!(json["progress"]["step"], 12);
    assert_eq!(json["progress"]["percent"], 60.0);
    assert!(
        json["eta_seconds"].as_f64().is_some_and(|eta| eta > 0.0),
        "{json:#}"
    );
    assert_eq!(json["checkpoint"]["attempt"], 1);
    assert_eq!(json["checkpoint"]["progress"]["step"], 8);
    assert_eq!(json["resumed_from"]["attempt"], 1);
    assert_eq!(json["last_error"]["message"], "the ledger was locked");
    assert_eq!(json["last_error"]["attempt"], 1);
    assert_eq!(json["lease_owner"], "test-worker");
    assert_eq!(json["owner"], "ada");
    assert_eq!(json["idempotency_key"], "october");
    assert_eq!(json["output"], Value::Null);

    finish(backend, &second, succeeded("{\"invoices\":1200}")).await;
    let json = at(url, &["show", "--json", &id.to_string()]).await.json();
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["output"]["invoices"], 1200);
    assert!(json["finished_at"].is_string() && json["expires_at"].is_string());
    let text = at(url, &["show", &id.to_string()]).await;
    assert!(text.ok().contains("{\"invoices\":1200}"), "{text:#?}");
}

/// `cancel`: a waiting task, a running one, a finished one.
pub async fn cancel(url: &str, client: &Client) {
    let backend = client.backend();
    let report = job("report");
    let running = submit(client, &report, "1").await;
    let waiting = submit(client, &report, "2").await;
    let claimed = claim(backend, &report).await;
    assert_eq!(claimed.lease.task, running);
    let cancelled = at(url, &["cancel", &waiting.to_string()]).await;
    assert_eq!(cancelled.ok().trim(), format!("task {waiting} cancelled"));
    let again = at(url, &["cancel", "--json", &waiting.to_string()])
        .await
        .json();
    assert_eq!(again["outcome"], "already_finished");
    assert_eq!(again["status"], "cancelled");
    let requested = at(url, &["cancel", "--json", &running.to_string()])
        .await
        .json();
    assert_eq!(requested["outcome"], "requested");
    let text = at(url, &["show", &running.to_string()]).await;
    assert!(
        text.ok().contains("running (cancel requested)"),
        "{text:#?}"
    );
}

/// `purge`: deletes finished tasks past their retention, and nothing else.
pub async fn purge(url: &str, client: &Client) {
    let backend = client.backend();
    let report = job("report");
    let mut expired = NewTask::new(&report, "1");
    expired.retention = Duration::ZERO;
    let expired = submit_task(client, expired).await;
    let kept = submit(client, &report, "2").await;
    let claimed = claim(backend, &report).await;
    assert_eq!(claimed.lease.task, expired);
    finish(backend, &claimed, succeeded("1")).await;
    let purged = at(url, &["purge", "--json", "--limit", "18446744073709551615"])
        .await
        .json();
    assert!(
        purged["purged"].as_u64().is_some_and(|n| n >= 1),
        "{purged}"
    );
    at(url, &["show", &expired.to_string()]).await.fails_with(3);
    at(url, &["show", &kept.to_string()]).await.ok();
    let text = at(url, &["purge"]).await;
    assert!(text.ok().starts_with("purged "), "{text:#?}");
}

/// `watch`: follows a task, line by line, to its end; the exit status says how it ended.
pub async fn watch(url: &str, client: &Client) {
    let backend = client.backend();
    for (outcome, code, last) in [
        (succeeded("{\"rows\":3}"), 0, "succeeded: {\"rows\":3}"),
        (
            failed("out of paper", false),
            5,
            "failed after 1 attempt: out of paper",
        ),
        (
            Outcome::Cancelled {
                reason: "stopped".to_owned(),
            },
            6,
            "cancelled",
        ),
    ] {
        let report = job("report");
        let id = submit(client, &report, "{}").await;
        let mut watching = Running::start(url, &["watch", &id.to_string()]);
        watching.line_with("queued").await;
        let task = claim(backend, &report).await;
        watching.line_with("running").await;
        report_progress(backend, &task, progress(5, 10, "Handling day 5")).await;
        let line = watching.line_with("50% (5/10)").await;
        assert!(
            line.contains("Handling day 5") && line.contains("left)"),
            "{line}"
        );
        finish(backend, &task, outcome).await;
        let (status, lines) = watching.end().await;
        assert_eq!(status, code, "{lines:#?}");
        let summary = lines.last().expect("a summary line");
        assert_eq!(*summary, format!("task {id} {last}"), "{lines:#?}");
    }

    // --json: one document, the final record.
    let report = job("report");
    let id = submit(client, &report, "{}").await;
    let watching = Running::start(url, &["watch", "--json", &id.to_string()]);
    let task = claim(backend, &report).await;
    finish(backend, &task, succeeded("7")).await;
    let (status, lines) = watching.end().await;
    assert_eq!(status, 0);
    let json: Value = serde_json::from_str(&lines.join("\n")).expect("one JSON document");
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["output"], 7);

    // A task that has already ended: at once.
    let (status, lines) = Running::start(url, &["watch", &id.to_string()]).end().await;
    assert_eq!(status, 0, "{lines:#?}");
}

/// The errors a shell user meets on an open backend: one line, a distinct exit status.
pub async fn errors(url: &str) {
    let unknown = TaskId::new().to_string();
    for command in ["show", "watch", "cancel"] {
        let line = at(url, &[command, &unknown]).await.fails_with(3).to_owned();
        assert!(
            line.contains(&unknown) && line.contains("not found"),
            "{line}"
        );
        let line = at(url, &[command, "not-a-uuid"])
            .await
            .fails_with(2)
            .to_owned();
        assert!(line.contains("not a task id"), "{line}");
    }
    let line = at(url, &["show", "0193f0d4-7c2a-7b1e-9d1c-5e2f3a4b5c6dXX"])
        .await
        .fails_with(2)
        .to_owned();
    assert!(line.contains("not a task id"), "{line}");
    let line = at(url, &["list", "--after", "'; DROP TABLE tasks; --"])
        .await
        .fails_with(2)
        .to_owned();
    assert!(line.contains("not a task id"), "{line}");
    let line = at(url, &["list", "--status", "bogus"])
        .await
        .fails_with(2)
        .to_owned();
    assert!(line.contains("not a task status"), "{line}");
    for limit in ["0", "10001", "99999999999999999999999999", "-1", "lots"] {
        at(url, &["list", "--limit", limit]).await.fails_with(2);
    }
    at(url, &["purge", "--limit", "0"]).await.fails_with(2);
}

/// `retry`, `delete` and `workers`: the operator's actions, with what they did and their exit
/// statuses.
pub async fn admin(url: &str, client: &Client) {
    let backend = client.backend();
    let report = job("report");
    let broken = submit(client, &report, "1").await;
    let also_broken = submit(client, &report, "2").await;
    let fine = submit(client, &report, "3").await;
    for expected in [broken, also_broken] {
        let claimed = claim(backend, &report).await;
        assert_eq!(claimed.lease.task, expected);
        finish(backend, &claimed, failed("the ledger is locked", false)).await;
    }
    let claimed = claim(backend, &report).await;
    assert_eq!(claimed.lease.task, fine);
    let running = at(url, &["delete", &fine.to_string()]).await;
    assert_eq!(running.code, 1, "{running:#?}");
    assert!(
        running.stdout.contains("only finished tasks"),
        "{running:#?}"
    );
    finish(backend, &claimed, succeeded("3")).await;

    let retried = at(url, &["retry", &broken.to_string()]).await;
    assert!(retried.ok().contains("queued again"), "{retried:#?}");
    let shown = at(url, &["show", "--json", &broken.to_string()])
        .await
        .json();
    assert_eq!(shown["status"], "queued", "{shown}");
    let refused = at(url, &["retry", "--json", &fine.to_string()])
        .await
        .json();
    assert_eq!(refused["outcome"], "not_retryable");
    assert_eq!(refused["status"], "succeeded");
    let all = at(url, &["retry", "--json", "--failed", "--job", &report])
        .await
        .json();
    assert_eq!(all["retried"], 1, "only the one still failed: {all}");
    at(url, &["retry", &TaskId::new().to_string()])
        .await
        .fails_with(3);
    // Missing arguments get clap's usage hint (several lines), with the usage status.
    assert_eq!(at(url, &["retry"]).await.code, 2);
    assert_eq!(at(url, &["retry", "--failed"]).await.code, 2);

    let deleted = at(url, &["delete", &fine.to_string()]).await;
    assert_eq!(deleted.ok().trim(), format!("task {fine} deleted"));
    at(url, &["show", &fine.to_string()]).await.fails_with(3);
    at(url, &["delete", &fine.to_string()]).await.fails_with(3);

    let none = at(url, &["workers"]).await;
    assert_eq!(none.ok().trim(), "no live workers");
    let info = longtask::WorkerInfo {
        id: "worker-\u{1b}[31m-1".to_owned(),
        host: "box".to_owned(),
        pid: 42,
        jobs: vec![report.clone()],
        concurrency: 8,
        busy: 3,
        started_at: chrono::Utc::now(),
        last_seen: chrono::Utc::now(),
    };
    backend
        .queue()
        .register_worker(&info, Duration::from_secs(60))
        .await
        .expect("registering a worker");
    let table = at(url, &["workers"]).await;
    let text = table.ok();
    assert!(text.contains("3/8") && text.contains("box"), "{table:#?}");
    assert!(
        !text.contains('\u{1b}'),
        "control characters are escaped: {text:?}"
    );
    let listed = at(url, &["workers", "--json"]).await.json();
    assert_eq!(listed[0]["pid"], 42, "{listed}");
}

/// Seeds `job` with a different number of tasks in each status (see [`EVERY_STATUS`]), so
/// that a count shown in another status's place shows; returns the failed ones.
async fn every_status(client: &Client, job: &str) -> Vec<TaskId> {
    let backend = client.backend();
    let count = |status: &str| {
        EVERY_STATUS
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    };
    for _ in 0..count("running") {
        let id = submit(client, job, "\"running\"").await;
        assert_eq!(claim(backend, job).await.lease.task, id);
    }
    for _ in 0..count("succeeded") {
        submit(client, job, "\"succeeded\"").await;
        let task = claim(backend, job).await;
        finish(backend, &task, succeeded("1")).await;
    }
    let mut broken = Vec::new();
    for _ in 0..count("failed") {
        broken.push(submit(client, job, "\"failed\"").await);
        let task = claim(backend, job).await;
        finish(backend, &task, failed("out of paper", false)).await;
    }
    for _ in 0..count("retrying") {
        submit(client, job, "\"retrying\"").await;
        let task = claim(backend, job).await;
        let later = Outcome::Failed {
            error: "the ledger is locked".to_owned(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        finish(backend, &task, later).await;
    }
    for _ in 0..count("cancelled") {
        let id = submit(client, job, "\"cancelled\"").await;
        client.cancel(id).await.expect("cancelling");
    }
    for _ in 0..count("scheduled") {
        let mut scheduled = NewTask::new(job, "\"scheduled\"");
        scheduled.run_at = longtask::RunAt::After(Duration::from_secs(3600));
        submit_task(client, scheduled).await;
    }
    for _ in 0..count("queued") {
        submit(client, job, "\"queued\"").await;
    }
    broken
}

/// The counts [`every_status`] leaves, each different, in the table's order.
const EVERY_STATUS: [(&str, u64); 7] = [
    ("queued", 7),
    ("scheduled", 2),
    ("running", 3),
    ("retrying", 5),
    ("succeeded", 6),
    ("failed", 4),
    ("cancelled", 1),
];

/// Tasks [`every_status`] finishes (succeeded, failed, cancelled).
const FINISHED: u64 = 6 + 4 + 1;

/// A worker of `jobs` in the backend's registry, `busy` of 4 slots busy.
async fn register_worker(client: &Client, jobs: &[&str], busy: u32) {
    let info = longtask::WorkerInfo {
        id: format!("stats-worker-{}", TaskId::new()),
        host: "box".to_owned(),
        pid: 4242,
        jobs: jobs.iter().map(|job| (*job).to_owned()).collect(),
        concurrency: 4,
        busy,
        started_at: chrono::Utc::now(),
        last_seen: chrono::Utc::now(),
    };
    client
        .backend()
        .queue()
        .register_worker(&info, Duration::from_secs(300))
        .await
        .expect("registering a worker");
}

/// `stats`: exact counts per job and status in JSON, the table with its totals, sparklines
/// and workers, `--job` filtering, and an unknown job.
pub async fn stats(url: &str, client: &Client) {
    let report = job("report");
    let email = job("email");
    every_status(client, &report).await;
    submit(client, &email, "\"ada@example.com\"").await;
    register_worker(client, &[&report], 1).await;
    register_worker(client, &[&email], 3).await;

    // JSON, one job: every count exact, the hour's minutes, the worker.
    let json = at(url, &["stats", "--json", "--job", &report]).await.json();
    let jobs = json["jobs"].as_array().expect("a jobs array");
    assert_eq!(jobs.len(), 1, "{json:#}");
    let stats = &jobs[0];
    assert_eq!(stats["job"], report.as_str());
    for (status, n) in EVERY_STATUS {
        assert_eq!(stats["counts"][status], n, "{status}: {json:#}");
        assert_eq!(json["totals"][status], n, "total {status}: {json:#}");
    }
    let minutes = stats["finished"]
        .as_array()
        .expect("a finished array")
        .clone();
    assert_eq!(minutes.len(), 60, "one entry per minute of the hour");
    let sum = |outcome: &str| {
        minutes
            .iter()
            .map(|m| m[outcome].as_u64().expect("a count"))
            .sum::<u64>()
    };
    assert_eq!(
        (sum("succeeded"), sum("failed"), sum("cancelled")),
        (6, 4, 1),
        "{json:#}"
    );
    assert!(stats["oldest_due"].is_string(), "{json:#}");
    assert!(json["oldest_wait_seconds"].is_u64(), "{json:#}");
    assert!(json["at"].is_string(), "{json:#}");
    let workers = json["workers"].as_array().expect("a workers array");
    assert_eq!(workers.len(), 1, "only the worker of {report}: {json:#}");
    assert_eq!(workers[0]["jobs"][0], report.as_str());

    // JSON, every job: both jobs, each with its own counts.
    let all = at(url, &["stats", "--json"]).await.json();
    let of = |name: &str| {
        all["jobs"]
            .as_array()
            .expect("a jobs array")
            .iter()
            .find(|stats| stats["job"] == name)
            .unwrap_or_else(|| panic!("{name} in {all:#}"))
            .clone()
    };
    assert_eq!(of(&report)["counts"], stats["counts"]);
    assert_eq!(of(&email)["counts"]["queued"], 1);
    assert_eq!(of(&email)["counts"]["succeeded"], 0);
    assert!(
        all["totals"]["queued"].as_u64().is_some_and(|n| n >= 3),
        "{all:#}"
    );
    assert!(
        all["workers"].as_array().is_some_and(|w| w.len() >= 2),
        "{all:#}"
    );

    // The table, one job: the header, the job's row, the totals, the sparkline, the workers.
    let table = at(url, &["stats", "--job", &report]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "JOB",
            "QUEUED",
            "SCHEDULED",
            "RUNNING",
            "RETRYING",
            "SUCCEEDED",
            "FAILED",
            "CANCELLED",
            "OLDEST",
            "WAIT",
            "FINISHED",
            "1H"
        ],
        "{table:#?}"
    );
    let counts: Vec<String> = EVERY_STATUS.iter().map(|(_, n)| n.to_string()).collect();
    for (line, name) in [(lines[1], report.as_str()), (lines[2], "TOTAL")] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], name, "{table:#?}");
        assert_eq!(cells[1..8], counts, "{table:#?}");
        let wait = cells[8];
        assert!(
            wait.ends_with('s') && wait[..wait.len() - 1].parse::<u64>().is_ok(),
            "the oldest wait in seconds: {table:#?}"
        );
        assert_eq!(
            cells[9],
            FINISHED.to_string(),
            "finished in the last hour: {table:#?}"
        );
    }
    assert_eq!(lines[3], "", "{table:#?}");
    assert!(lines[4].starts_with("finished per minute"), "{table:#?}");
    let spark = lines[5]
        .strip_prefix(report.as_str())
        .and_then(|rest| rest.trim_start().strip_prefix('│'))
        .and_then(|rest| rest.split_once('│'))
        .unwrap_or_else(|| panic!("a sparkline: {table:#?}"));
    assert_eq!(
        spark.0.chars().count(),
        60,
        "one character per minute: {table:#?}"
    );
    assert!(
        spark.0.chars().last().is_some_and(|c| c != ' ')
            || spark.0.chars().nth(58).is_some_and(|c| c != ' '),
        "this minute (or the last, if it just turned) shows the finished tasks: {table:#?}"
    );
    assert!(
        spark
            .0
            .chars()
            .all(|c| c == ' ' || ('▁'..='█').contains(&c)),
        "{table:#?}"
    );
    // All finished within a few seconds: in one minute, or two if it turned meanwhile.
    let busiest = minutes
        .iter()
        .map(|m| {
            ["succeeded", "failed", "cancelled"]
                .map(|o| m[o].as_u64().unwrap_or(0))
                .iter()
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    assert!(
        (FINISHED.div_ceil(2)..=FINISHED).contains(&busiest),
        "{json:#}"
    );
    assert_eq!(
        spark.1.trim(),
        format!("busiest minute: {busiest}"),
        "{table:#?}"
    );
    assert_eq!(
        lines[6],
        format!("1 live worker run {report}, 1 of 4 slots busy"),
        "{table:#?}"
    );
    assert_eq!(lines.len(), 7, "{table:#?}");

    // Every job: a row for each.
    let table = at(url, &["stats"]).await;
    let text = table.ok();
    for name in [&report, &email] {
        assert!(
            text.lines().any(|line| line.starts_with(name.as_str())),
            "{name}: {table:#?}"
        );
    }

    // A job without tasks: an empty table, exit 0.
    let nothing = job("nothing");
    let empty = at(url, &["stats", "--job", &nothing]).await;
    let lines: Vec<&str> = empty.ok().lines().collect();
    assert_eq!(lines.len(), 3, "{empty:#?}");
    assert!(lines[0].starts_with("JOB"), "{empty:#?}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["TOTAL", "0", "0", "0", "0", "0", "0", "0", "-", "0"],
        "{empty:#?}"
    );
    assert_eq!(lines[2], format!("0 live workers run {nothing}"));
    let json = at(url, &["stats", "--json", "--job", &nothing])
        .await
        .json();
    assert_eq!(json["jobs"], serde_json::json!([]));
    assert_eq!(json["totals"]["queued"], 0);
    assert_eq!(json["oldest_wait_seconds"], Value::Null);
    assert_eq!(json["workers"], serde_json::json!([]));
}

/// The text of a status's cell in a job's row of the dashboard's overview.
fn overview_cell<'a>(html: &'a str, job: &str, status: &str) -> &'a str {
    let row_start = html
        .find(&format!("<tr data-job=\"{job}\">"))
        .unwrap_or_else(|| panic!("a row for {job} in {html}"));
    let row = &html[row_start..];
    let row = &row[..row.find("</tr>").expect("the row's end")];
    let cell = &row[row
        .find(&format!("data-status=\"{status}\""))
        .unwrap_or_else(|| panic!("a {status} cell in {row}"))..];
    let text = &cell[..cell.find("</a>").expect("the cell's link")];
    text.rsplit('>').next().unwrap_or_default()
}

/// `dashboard`: served on a free loopback port, the overview (HTML and JSON) shows the
/// backend's counts to a request naming a loopback host and refuses any other host, an action
/// works through it, and SIGINT stops it (even with a live-update stream open), exit 0.
pub async fn dashboard(url: &str, client: &Client) {
    let report = job("report");
    let failed_tasks = every_status(client, &report).await;
    let (running, port) = super::dashboard(url, &[]).await;
    let host = format!("127.0.0.1:{port}");

    let page = get(port, &host, "/", "text/html", "").await;
    assert_eq!(page.status, 200, "{page:#?}");
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{page:#?}"
    );
    for (status, n) in EVERY_STATUS {
        assert_eq!(
            overview_cell(&page.body, &report, status),
            n.to_string(),
            "{status}"
        );
    }
    let json = get(
        port,
        &format!("localhost:{port}"),
        "/?format=json",
        "application/json",
        "",
    )
    .await;
    assert_eq!(json.status, 200, "{json:#?}");
    let figures: Value = serde_json::from_str(&json.body).expect("JSON figures");
    let stats = figures["jobs"]
        .as_array()
        .expect("a jobs array")
        .iter()
        .find(|stats| stats["job"] == report.as_str())
        .expect("the job's figures");
    for (status, n) in EVERY_STATUS {
        assert_eq!(stats["counts"][status], n, "{status}: {figures:#}");
    }
    let v6 = get(port, &format!("[::1]:{port}"), "/tasks", "text/html", "").await;
    assert_eq!(v6.status, 200, "{v6:#?}");

    // Another host name (DNS rebinding), or another port: refused, and nothing shown.
    for foreign in [
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "127.0.0.1".to_owned(),
    ] {
        let refused = get(port, &foreign, "/", "text/html", "").await;
        assert_eq!(refused.status, 403, "{foreign}: {refused:#?}");
        assert!(!refused.body.contains(&report), "{foreign}: {refused:#?}");
        let action = http(
            port,
            &format!(
                "POST /purge HTTP/1.1\r\nHost: {foreign}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(action.status, 403, "{foreign}: {action:#?}");
    }
    let missing = http(port, "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(missing.status, 403, "no Host at all: {missing:#?}");

    // An action, as a browser posts it: the page's CSRF token and cookie, from this origin.
    let cookie = page
        .headers
        .iter()
        .find(|(name, value)| name == "set-cookie" && value.starts_with("longtask_dashboard_csrf="))
        .and_then(|(_, value)| value.split(';').next())
        .unwrap_or_else(|| panic!("a CSRF cookie: {page:#?}"));
    let marker = "name=\"csrf\" value=\"";
    let token = page.body[page.body.find(marker).expect("a CSRF field") + marker.len()..]
        .split('"')
        .next()
        .expect("a token");
    let form = format!("csrf={token}&job={report}");
    let retried = http(
        port,
        &format!(
            "POST /retry-failed HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
             Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
    .await;
    assert_eq!(retried.status, 303, "{retried:#?}");
    for id in failed_tasks {
        let task = client.status(id).await.expect("a retried task");
        assert_eq!(
            task.status,
            longtask::TaskStatus::Queued,
            "the failed tasks are queued again"
        );
    }

    // A live-update stream stays open; SIGINT still stops the server, soon, with exit 0.
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting for events");
    stream
        .write_all(
            format!("GET /events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("asking for events");
    let mut first = vec![0_u8; 4096];
    let n = tokio::time::timeout(BOUND, stream.read(&mut first))
        .await
        .expect("the stream answers")
        .expect("reading the stream");
    let head = String::from_utf8_lossy(&first[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    running.interrupt().await;
    let started = std::time::Instant::now();
    let (code, lines) = running.end().await;
    assert_eq!(code, 0, "{lines:#?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("stopped"),
        "{lines:#?}"
    );
    assert!(
        started.elapsed() < BOUND / 2,
        "took {:?}",
        started.elapsed()
    );
    drop(stream);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "nothing listens on {port} any more"
    );
}

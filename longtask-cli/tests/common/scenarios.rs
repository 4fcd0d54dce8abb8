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

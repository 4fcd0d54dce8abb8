//! `longtask show <id>`: everything stored about one task.

use std::process::ExitCode;

use chrono::Utc;
use longtask::{TaskId, TaskStatus};

use super::Context;
use crate::{
    error::Failure,
    render::{self, TaskJson},
};

pub(super) async fn run(id: TaskId, cx: &Context) -> Result<ExitCode, Failure> {
    let client = cx.client().await?;
    let task = client.status(id).await?;
    let now = Utc::now();
    if cx.json {
        render::print_json(&TaskJson::new(&task, now));
        return Ok(ExitCode::SUCCESS);
    }
    let or_dash = |text: Option<&str>| text.map_or_else(|| "-".to_owned(), render::clean);
    let mut rows: Vec<(&str, String)> = vec![
        ("id", task.id.to_string()),
        ("job", render::clean(&task.job)),
        ("status", render::status(&task, now)),
        (
            "attempt",
            format!("{} of {}", task.attempt, task.max_attempts),
        ),
        (
            "progress",
            task.progress
                .as_ref()
                .map_or_else(|| "-".to_owned(), render::progress_with_message),
        ),
    ];
    if let Some(eta) = render::eta(&task, now) {
        rows.push(("eta", eta));
    }
    if let Some(progress) = &task.progress {
        rows.push(("progress at", render::time(progress.updated_at, now)));
    }
    rows.push((
        "checkpoint",
        task.checkpoint
            .as_ref()
            .map_or_else(|| "-".to_owned(), |c| render::checkpoint(c, now)),
    ));
    if let Some(resumed) = task.resumed_from() {
        rows.push((
            "resumed",
            format!(
                "attempt {} resumed from the checkpoint of attempt {}",
                task.attempt, resumed.attempt
            ),
        ));
    }
    rows.push((
        "last error",
        task.last_error.as_ref().map_or_else(
            || "-".to_owned(),
            |e| {
                format!(
                    "attempt {}, {}: {}",
                    e.attempt,
                    render::time(e.at, now),
                    render::clean(&e.message)
                )
            },
        ),
    ));
    rows.extend([
        ("priority", task.priority.to_string()),
        ("run at", render::time(task.run_at, now)),
        ("created", render::time(task.created_at, now)),
        ("started", render::maybe_time(task.started_at, now)),
        ("finished", render::maybe_time(task.finished_at, now)),
        (
            "expires",
            task.expires_at().map_or_else(
                || format!("{} after it finishes", render::duration(task.retention)),
                |at| render::time(at, now),
            ),
        ),
    ]);
    if task.status == TaskStatus::Running {
        rows.push((
            "lease",
            format!(
                "{} until {}",
                or_dash(task.lease_owner.as_deref()),
                render::maybe_time(task.lease_expires_at, now)
            ),
        ));
    }
    rows.extend([
        ("owner", or_dash(task.owner.as_deref())),
        ("idempotency key", or_dash(task.idempotency_key.as_deref())),
        ("params", render::json_text(&task.params)),
        (
            "output",
            task.output
                .as_deref()
                .map_or_else(|| "-".to_owned(), render::json_text),
        ),
    ]);
    let mut table = render::table(&[]);
    for (name, value) in rows {
        table.add_row(vec![name.to_owned(), value]);
    }
    render::print_table(&table);
    Ok(ExitCode::SUCCESS)
}

//! `longtask retry <id>` and `longtask retry --failed --job <job>`.

use std::process::ExitCode;

use longtask::{RetryOutcome, TaskId, TaskStatus};
use serde::Serialize;

use super::Context;
use crate::{
    cli::RetryArgs,
    error::{Exit, Failure},
    render,
};

/// Failed tasks retried per call to the backend by `--failed`.
const BATCH: usize = 500;

#[derive(Serialize)]
struct Retried {
    id: TaskId,
    /// `retried`, `not_retryable` (waiting, running or succeeded) or `in_group`.
    outcome: &'static str,
    /// The status it had, when it was not retried.
    status: Option<TaskStatus>,
}

#[derive(Serialize)]
struct RetriedJob {
    job: String,
    retried: u64,
}

pub(super) async fn run(args: RetryArgs, cx: &Context) -> Result<ExitCode, Failure> {
    let client = cx.client().await?;
    if let (true, Some(job)) = (args.failed, args.job) {
        let retried = client.retry_failed(&job, BATCH).await?;
        if cx.json {
            render::print_json(&RetriedJob { job, retried });
        } else {
            println!(
                "{retried} failed task{} of job {} retried",
                if retried == 1 { "" } else { "s" },
                render::clean(&job)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(id) = args.id else {
        return Err(Failure::new(
            Exit::Usage,
            "name a task id, or --failed --job J",
        ));
    };
    let (name, status, text) = match client.retry(id).await? {
        RetryOutcome::Retried => (
            "retried",
            None,
            format!("task {id} queued again, with a fresh attempt budget"),
        ),
        RetryOutcome::NotRetryable(status) => (
            "not_retryable",
            Some(status),
            format!("task {id} is {status}: only failed or cancelled tasks can be retried"),
        ),
        RetryOutcome::InGroup => (
            "in_group",
            None,
            format!("task {id} belongs to a group: it cannot be retried on its own"),
        ),
        RetryOutcome::NotFound => {
            return Err(Failure::operating(&longtask::Error::NotFound(id)));
        }
    };
    if cx.json {
        render::print_json(&Retried {
            id,
            outcome: name,
            status,
        });
    } else {
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

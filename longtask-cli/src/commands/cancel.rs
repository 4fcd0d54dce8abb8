//! `longtask cancel <id>`.

use std::process::ExitCode;

use longtask::{CancelOutcome, TaskId, TaskStatus};
use serde::Serialize;

use super::Context;
use crate::{error::Failure, render};

#[derive(Serialize)]
struct Cancelled {
    id: TaskId,
    /// `cancelled` (it was waiting), `requested` (it is running) or `already_finished`.
    outcome: &'static str,
    /// The status it had already finished with.
    status: Option<TaskStatus>,
}

pub(super) async fn run(id: TaskId, cx: &Context) -> Result<ExitCode, Failure> {
    let client = cx.client().await?;
    let outcome = client.cancel(id).await?;
    let (name, status, text) = match outcome {
        CancelOutcome::Cancelled => ("cancelled", None, format!("task {id} cancelled")),
        CancelOutcome::Requested => (
            "requested",
            None,
            format!(
                "task {id} is running: cancellation requested; its worker stops it at its next \
                 heartbeat"
            ),
        ),
        CancelOutcome::AlreadyFinished(status) => (
            "already_finished",
            Some(status),
            format!("task {id} had already finished ({status}); nothing changed"),
        ),
    };
    if cx.json {
        render::print_json(&Cancelled {
            id,
            outcome: name,
            status,
        });
    } else {
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

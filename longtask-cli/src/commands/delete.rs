//! `longtask delete <id>`.

use std::process::ExitCode;

use longtask::{DeleteOutcome, TaskId, TaskStatus};
use serde::Serialize;

use super::Context;
use crate::{
    error::{Exit, Failure},
    render,
};

#[derive(Serialize)]
struct Deleted {
    id: TaskId,
    /// `deleted` or `not_finished`.
    outcome: &'static str,
    /// The status it had, when it was not deleted.
    status: Option<TaskStatus>,
}

pub(super) async fn run(id: TaskId, cx: &Context) -> Result<ExitCode, Failure> {
    let client = cx.client().await?;
    let (name, status, text) = match client.delete(id).await? {
        DeleteOutcome::Deleted => ("deleted", None, format!("task {id} deleted")),
        DeleteOutcome::NotFinished(status) => (
            "not_finished",
            Some(status),
            format!("task {id} is {status}: only finished tasks are deleted (cancel it first)"),
        ),
        DeleteOutcome::NotFound => {
            return Err(Failure::operating(&longtask::Error::NotFound(id)));
        }
    };
    if cx.json {
        render::print_json(&Deleted {
            id,
            outcome: name,
            status,
        });
    } else {
        println!("{text}");
    }
    if status.is_some() {
        return Ok(Exit::Other.into());
    }
    Ok(ExitCode::SUCCESS)
}

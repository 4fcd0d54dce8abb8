//! `longtask list`: tasks, oldest first, with filters and paging.

use std::process::ExitCode;

use chrono::Utc;
use longtask::{TaskId, TaskQuery};
use serde::Serialize;

use super::Context;
use crate::{
    cli::ListArgs,
    error::Failure,
    render::{self, TaskJson},
};

#[derive(Serialize)]
struct Page<'a> {
    tasks: Vec<TaskJson<'a>>,
    /// The id to pass as `--after` for the next page, when this page is full.
    next_after: Option<TaskId>,
}

pub(super) async fn run(args: ListArgs, cx: &Context) -> Result<ExitCode, Failure> {
    let client = cx.client().await?;
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let query = TaskQuery {
        job: args.job,
        statuses: args.status,
        owner: args.owner,
        after: args.after,
        limit,
        ..TaskQuery::default()
    };
    let tasks = client.list(&query).await?;
    let next_after = if tasks.len() >= limit {
        tasks.last().map(|task| task.id)
    } else {
        None
    };
    let now = Utc::now();
    if cx.json {
        render::print_json(&Page {
            tasks: tasks.iter().map(|task| TaskJson::new(task, now)).collect(),
            next_after,
        });
        return Ok(ExitCode::SUCCESS);
    }
    if tasks.is_empty() {
        println!("no tasks match");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = render::table(&["ID", "JOB", "STATUS", "ATTEMPT", "PROGRESS", "CREATED"]);
    for task in &tasks {
        table.add_row(vec![
            task.id.to_string(),
            render::clean(&task.job),
            render::status(task, now),
            format!("{}/{}", task.attempt, task.max_attempts),
            task.progress
                .as_ref()
                .map_or_else(|| "-".to_owned(), render::progress),
            render::time(task.created_at, now),
        ]);
    }
    render::print_table(&table);
    if let Some(last) = next_after {
        eprintln!("more tasks may follow: add --after {last}");
    }
    Ok(ExitCode::SUCCESS)
}

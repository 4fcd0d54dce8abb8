//! `longtask workers`.

use std::process::ExitCode;

use chrono::Utc;

use super::Context;
use crate::{error::Failure, render};

pub(super) async fn run(cx: &Context) -> Result<ExitCode, Failure> {
    let client = cx.client().await?;
    let workers = client.workers().await?;
    if cx.json {
        render::print_json(&workers);
        return Ok(ExitCode::SUCCESS);
    }
    if workers.is_empty() {
        println!("no live workers");
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    let mut table = render::table(&[
        "WORKER",
        "HOST",
        "PID",
        "BUSY",
        "JOBS",
        "STARTED",
        "LAST SEEN",
    ]);
    for worker in &workers {
        table.add_row(vec![
            render::clean(&worker.id),
            render::clean(&worker.host),
            worker.pid.to_string(),
            format!("{}/{}", worker.busy, worker.concurrency),
            render::clean(&worker.jobs.join(", ")),
            render::time(worker.started_at, now),
            render::time(worker.last_seen, now),
        ]);
    }
    render::print_table(&table);
    Ok(ExitCode::SUCCESS)
}

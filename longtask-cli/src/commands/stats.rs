//! `longtask stats`: each job's tasks per status, its oldest waiting task, its tasks finished
//! in the last hour with a per-minute sparkline; then the totals and the live workers.

use std::{fmt::Write as _, process::ExitCode, time::Duration};

use comfy_table::CellAlignment;
use longtask::{JobStats, Stats, StatusCounts, TaskStatus, WorkerInfo};
use serde::Serialize;

use super::Context;
use crate::{cli::StatsArgs, error::Failure, render};

/// The JSON document: the [`Stats`] fields (`at`, `jobs`), and what the table derives from
/// them, as the dashboard's overview serves it.
#[derive(Serialize)]
struct StatsJson<'a> {
    #[serde(flatten)]
    stats: &'a Stats,
    totals: StatusCounts,
    oldest_wait_seconds: Option<u64>,
    workers: &'a [WorkerInfo],
}

/// The statuses, in the table's order.
const STATUSES: [TaskStatus; 7] = [
    TaskStatus::Queued,
    TaskStatus::Scheduled,
    TaskStatus::Running,
    TaskStatus::Retrying,
    TaskStatus::Succeeded,
    TaskStatus::Failed,
    TaskStatus::Cancelled,
];

pub(super) async fn run(args: StatsArgs, cx: &Context) -> Result<ExitCode, Failure> {
    let client = cx.client().await?;
    let (mut stats, mut workers) = futures::try_join!(client.stats(), client.workers())?;
    if let Some(job) = &args.job {
        stats.jobs.retain(|stats| &stats.job == job);
        workers.retain(|worker| worker.jobs.contains(job));
    }
    if cx.json {
        render::print_json(&StatsJson {
            stats: &stats,
            totals: stats.totals(),
            oldest_wait_seconds: stats.oldest_wait().map(|wait| wait.as_secs()),
            workers: &workers,
        });
        return Ok(ExitCode::SUCCESS);
    }
    render::print_table(&counts_table(&stats));
    if !stats.jobs.is_empty() {
        println!();
        println!("finished per minute over the last hour (oldest minute first):");
        print!("{}", sparklines(&stats.jobs));
    }
    println!("{}", workers_line(&workers, args.job.as_deref()));
    Ok(ExitCode::SUCCESS)
}

/// One row per job and a `TOTAL` row: counts per status, the oldest wait, and the tasks
/// finished in the last hour.
fn counts_table(stats: &Stats) -> comfy_table::Table {
    let mut header = vec!["JOB"];
    header.extend(STATUSES.map(|status| match status {
        TaskStatus::Queued => "QUEUED",
        TaskStatus::Scheduled => "SCHEDULED",
        TaskStatus::Running => "RUNNING",
        TaskStatus::Retrying => "RETRYING",
        TaskStatus::Succeeded => "SUCCEEDED",
        TaskStatus::Failed => "FAILED",
        TaskStatus::Cancelled => "CANCELLED",
    }));
    header.extend(["OLDEST WAIT", "FINISHED 1H"]);
    let mut table = render::table(&header);
    let row = |name: String, counts: &StatusCounts, wait: Option<Duration>, finished: u64| {
        let mut cells = vec![name];
        cells.extend(STATUSES.map(|status| counts.get(status).to_string()));
        cells.push(wait.map_or_else(|| "-".to_owned(), wait_text));
        cells.push(finished.to_string());
        cells
    };
    for job in &stats.jobs {
        table.add_row(row(
            render::clean(&job.job),
            &job.counts,
            job.oldest_wait(stats.at),
            finished(job),
        ));
    }
    table.add_row(row(
        "TOTAL".to_owned(),
        &stats.totals(),
        stats.oldest_wait(),
        stats.jobs.iter().map(finished).sum(),
    ));
    for column in 1..header.len() {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// Tasks of `job` finished in the last hour.
fn finished(job: &JobStats) -> u64 {
    job.finished
        .iter()
        .map(longtask::FinishedMinute::total)
        .sum()
}

/// One line per job: its name, a sparkline of the tasks finished in each minute of the last
/// hour, and the busiest minute's count.
fn sparklines(jobs: &[JobStats]) -> String {
    let names: Vec<String> = jobs.iter().map(|job| render::clean(&job.job)).collect();
    let width = names
        .iter()
        .map(|name| name.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (job, name) in jobs.iter().zip(&names) {
        let counts: Vec<u64> = job
            .finished
            .iter()
            .map(longtask::FinishedMinute::total)
            .collect();
        let busiest = counts.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            text,
            "{name:<width$}  │{}│ busiest minute: {busiest}",
            sparkline(&counts)
        );
    }
    text
}

/// The block characters of a sparkline, lowest first.
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per count: a space for none, else a block whose height is the count's share
/// of the largest (any count above zero shows at least the lowest block).
fn sparkline(counts: &[u64]) -> String {
    let max = counts.iter().copied().max().unwrap_or(0);
    counts
        .iter()
        .map(|&n| {
            if n == 0 {
                ' '
            } else {
                // ceil(n * 8 / max), in 1..=8; u128 so that no count overflows.
                let level = (u128::from(n) * 8).div_ceil(u128::from(max));
                BLOCKS[usize::try_from(level.clamp(1, 8)).unwrap_or(8) - 1]
            }
        })
        .collect()
}

/// How long the oldest task has waited: `42s`, `3m 12s`, `2h 5m`, `3d 4h`.
fn wait_text(wait: Duration) -> String {
    let secs = wait.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h {}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d {}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

/// `2 live workers, 3 of 16 slots busy`, or which run `job`.
fn workers_line(workers: &[WorkerInfo], job: Option<&str>) -> String {
    let s = if workers.len() == 1 { "" } else { "s" };
    let scope = job.map_or_else(String::new, |job| format!(" run {}", render::clean(job)));
    if workers.is_empty() {
        return format!("0 live workers{scope}");
    }
    let busy: u64 = workers.iter().map(|w| u64::from(w.busy)).sum();
    let slots: u64 = workers.iter().map(|w| u64::from(w.concurrency)).sum();
    format!(
        "{} live worker{s}{scope}, {busy} of {slots} slots busy",
        workers.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_as_minutes_and_seconds() {
        let d = Duration::from_secs;
        assert_eq!(wait_text(d(0)), "0s");
        assert_eq!(wait_text(d(59)), "59s");
        assert_eq!(wait_text(d(192)), "3m 12s");
        assert_eq!(wait_text(d(3600 * 2 + 300 + 7)), "2h 5m");
        assert_eq!(wait_text(d(86_400 * 3 + 3600 * 4)), "3d 4h");
    }

    #[test]
    fn sparklines_scale_to_the_busiest_minute_and_show_every_nonzero_minute() {
        assert_eq!(sparkline(&[0, 1, 4, 8, 16, 0]), " ▁▂▄█ ");
        assert_eq!(sparkline(&[1, 1000]), "▁█");
        assert_eq!(sparkline(&[0, 0, 0]), "   ");
        assert_eq!(sparkline(&[u64::MAX, u64::MAX / 2]), "█▄");
        assert_eq!(sparkline(&[]), "");
    }
}

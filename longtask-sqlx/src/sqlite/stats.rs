//! Stats for [`SqliteBackend`]: finished tasks are counted as they finish and as they go, per
//! job and status and per minute (`longtask_finished`, `longtask_throughput`), in the
//! transactions that change them, one statement per batch; waiting tasks are counted from the
//! claim index alone, running ones from the lease index, and the oldest due task is found with
//! one index seek per (job, priority) pair.

use std::collections::HashMap;

use longtask_core::{minute_of, Error, Result, Stats, TaskStatus, MINUTE_MS, THROUGHPUT_MINUTES};
use serde::Serialize;
use sqlx::{Sqlite, Transaction};

use super::{
    db,
    row::{self, millis},
    SqliteBackend,
};

const COUNT_FINISHED: &str = include_str!("sql/count_finished.sql");
const COUNT_THROUGHPUT: &str = include_str!("sql/count_throughput.sql");
const PRUNE_THROUGHPUT: &str = "DELETE FROM longtask_throughput WHERE minute < ?1";
const STATS_WAITING: &str = include_str!("sql/stats_waiting.sql");
const STATS_RUNNING: &str = include_str!("sql/stats_running.sql");
const STATS_FINISHED: &str = "SELECT job, status, n FROM longtask_finished WHERE n > 0";
const STATS_THROUGHPUT: &str =
    "SELECT job, minute, status, n FROM longtask_throughput WHERE minute >= ?1";
const STATS_NEXT_PRIORITY: &str = include_str!("sql/stats_next_priority.sql");
const STATS_NEXT_JOB: &str = include_str!("sql/stats_next_job.sql");

/// How long minutes of throughput are kept: two hours, so that the last one is always whole.
const KEEP_MINUTES_MS: i64 = 2 * THROUGHPUT_MINUTES as i64 * MINUTE_MS;

#[derive(Serialize)]
struct Count<'a> {
    job: &'a str,
    status: &'static str,
    minute: i64,
    n: i64,
}

/// Counts tasks that reached a final status: `(job, status, finished_at ms)` each.
pub(crate) async fn count_finished<'a>(
    tx: &mut Transaction<'static, Sqlite>,
    finished: impl IntoIterator<Item = (&'a str, TaskStatus, i64)>,
) -> Result<()> {
    let mut counts: HashMap<(&str, TaskStatus, i64), i64> = HashMap::new();
    for (job, status, at) in finished {
        *counts.entry((job, status, minute_of(at))).or_default() += 1;
    }
    if counts.is_empty() {
        return Ok(());
    }
    let rows: Vec<Count<'_>> = counts
        .into_iter()
        .map(|((job, status, minute), n)| Count {
            job,
            status: status.as_str(),
            minute,
            n,
        })
        .collect();
    let batch = serde_json::to_string(&rows)
        .map_err(|err| Error::backend("encoding finished counts", err))?;
    sqlx::query(COUNT_FINISHED)
        .bind(&batch)
        .execute(&mut **tx)
        .await
        .map_err(db("counting finished tasks"))?;
    sqlx::query(COUNT_THROUGHPUT)
        .bind(&batch)
        .execute(&mut **tx)
        .await
        .map_err(db("counting finished tasks per minute"))?;
    Ok(())
}

/// Discounts finished tasks that went (purged, deleted, retried): `(job, status)` each, the
/// status as stored. Their minutes of throughput stay.
pub(crate) async fn discount(
    tx: &mut Transaction<'static, Sqlite>,
    gone: &[(String, String)],
) -> Result<()> {
    let mut counts: HashMap<(&str, TaskStatus), i64> = HashMap::new();
    for (job, status) in gone {
        *counts.entry((job, row::status(status)?)).or_default() -= 1;
    }
    if counts.is_empty() {
        return Ok(());
    }
    let rows: Vec<Count<'_>> = counts
        .into_iter()
        .map(|((job, status), n)| Count {
            job,
            status: status.as_str(),
            minute: 0,
            n,
        })
        .collect();
    let batch = serde_json::to_string(&rows)
        .map_err(|err| Error::backend("encoding finished counts", err))?;
    sqlx::query(COUNT_FINISHED)
        .bind(batch)
        .execute(&mut **tx)
        .await
        .map_err(db("discounting finished tasks"))?;
    Ok(())
}

/// Forgets minutes of throughput older than two hours before `now_ms`.
pub(crate) async fn prune_throughput(
    tx: &mut Transaction<'static, Sqlite>,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(PRUNE_THROUGHPUT)
        .bind(minute_of(now_ms) - KEEP_MINUTES_MS)
        .execute(&mut **tx)
        .await
        .map_err(db("forgetting old throughput"))?;
    Ok(())
}

impl SqliteBackend {
    pub(super) async fn direct_stats(&self) -> Result<Stats> {
        let now = millis(self.now());
        // One read transaction: every figure is from the same snapshot.
        let mut tx = self
            .reader
            .begin()
            .await
            .map_err(db("starting to read stats"))?;
        let waiting: Vec<(String, i64, i64, i64)> = sqlx::query_as(STATS_WAITING)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("counting waiting tasks"))?;
        let running: Vec<(String, i64)> = sqlx::query_as(STATS_RUNNING)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("counting running tasks"))?;
        let finished: Vec<(String, String, i64)> = sqlx::query_as(STATS_FINISHED)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading the counts of finished tasks"))?;
        let first_minute = minute_of(now) - (THROUGHPUT_MINUTES as i64 - 1) * MINUTE_MS;
        let minutes: Vec<(String, i64, String, i64)> = sqlx::query_as(STATS_THROUGHPUT)
            .bind(first_minute)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading throughput"))?;
        let oldest = oldest_due(&mut tx).await?;
        tx.commit().await.map_err(db("ending a stats read"))?;

        let mut counts = Vec::with_capacity(waiting.len() * 3 + running.len() + finished.len());
        for (job, queued, scheduled, retrying) in waiting {
            for (status, n) in [
                (TaskStatus::Queued, queued),
                (TaskStatus::Scheduled, scheduled),
                (TaskStatus::Retrying, retrying),
            ] {
                counts.push((job.clone(), status, count(n)));
            }
        }
        for (job, n) in running {
            counts.push((job, TaskStatus::Running, count(n)));
        }
        for (job, status, n) in finished {
            counts.push((job, row::status(&status)?, count(n)));
        }
        let minutes = minutes
            .into_iter()
            .map(|(job, minute, status, n)| Ok((job, minute, row::status(&status)?, count(n))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Stats::assemble(now, counts, oldest, minutes))
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The earliest run_at of each job's waiting tasks: per (job, priority) group, the first entry
/// of the claim index is the group's earliest, so one seek per group finds them all.
/// ([`Stats::assemble`] keeps those that are due.)
async fn oldest_due(tx: &mut Transaction<'static, Sqlite>) -> Result<Vec<(String, i64)>> {
    let mut oldest: Vec<(String, i64)> = Vec::new();
    let mut next: Option<(String, i64, i64)> = sqlx::query_as(STATS_NEXT_JOB)
        .bind("")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("finding the oldest waiting tasks"))?;
    while let Some((job, priority, run_at)) = next {
        match oldest.last_mut() {
            Some((last, earliest)) if *last == job => *earliest = (*earliest).min(run_at),
            _ => oldest.push((job.clone(), run_at)),
        }
        let lower: Option<(i64, i64)> = sqlx::query_as(STATS_NEXT_PRIORITY)
            .bind(&job)
            .bind(priority)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("finding the oldest waiting tasks"))?;
        next = match lower {
            Some((priority, run_at)) => Some((job, priority, run_at)),
            None => sqlx::query_as(STATS_NEXT_JOB)
                .bind(&job)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db("finding the oldest waiting tasks"))?,
        };
    }
    Ok(oldest)
}

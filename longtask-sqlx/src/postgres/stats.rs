//! Stats for [`PostgresBackend`]: finished tasks are counted by the statements that finish,
//! purge, delete or retry them (`leave_groups.sql`, `discount.sql`), per job and status and per
//! minute, on the connection's shard of the counters; waiting tasks are counted through the claim
//! index, running ones through the lease index, and the oldest due task is found with one index
//! probe per (job, priority) group.

use longtask_core::{minute_of, Error, Result, Stats, TaskStatus, MINUTE_MS, THROUGHPUT_MINUTES};
use sqlx::{Connection, Executor};

use super::{millis, row::parse_status, PostgresBackend};

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PostgresBackend {
    pub(super) async fn direct_stats(&self) -> Result<Stats> {
        let read = |e| Error::backend("reading stats", e);
        let now = millis(self.now());
        let first_minute = minute_of(now) - (THROUGHPUT_MINUTES as i64 - 1) * MINUTE_MS;
        let mut conn = self.pool.acquire().await.map_err(read)?;
        // One snapshot for every figure.
        let mut tx = conn.begin().await.map_err(read)?;
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(read)?;
        // The counts read one index in order; parallel workers only add their start-up cost
        // (and, on a busy machine, wait for a core).
        tx.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            .await
            .map_err(read)?;
        let waiting: Vec<(String, i64, i64, i64)> = sqlx::query_as(&self.sql.stats_waiting)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(read)?;
        let others: Vec<(String, String, i64)> = sqlx::query_as(&self.sql.stats_counts)
            .fetch_all(&mut *tx)
            .await
            .map_err(read)?;
        let minutes: Vec<(String, i64, String, i64)> = sqlx::query_as(&self.sql.stats_throughput)
            .bind(first_minute)
            .fetch_all(&mut *tx)
            .await
            .map_err(read)?;
        let oldest: Vec<(String, i64)> = sqlx::query_as(&self.sql.stats_oldest)
            .fetch_all(&mut *tx)
            .await
            .map_err(read)?;
        tx.commit().await.map_err(read)?;

        let mut counts = Vec::with_capacity(waiting.len() * 3 + others.len());
        for (job, queued, scheduled, retrying) in waiting {
            for (status, n) in [
                (TaskStatus::Queued, queued),
                (TaskStatus::Scheduled, scheduled),
                (TaskStatus::Retrying, retrying),
            ] {
                counts.push((job.clone(), status, count(n)));
            }
        }
        for (job, status, n) in others {
            counts.push((job, parse_status(&status)?, count(n)));
        }
        let minutes = minutes
            .into_iter()
            .map(|(job, minute, status, n)| Ok((job, minute, parse_status(&status)?, count(n))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Stats::assemble(now, counts, oldest, minutes))
    }
}

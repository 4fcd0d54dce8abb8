//! [`ProgressSink`] for [`PostgresBackend`]: progress stored per task, pushed to watchers with
//! `NOTIFY`.

use futures::{stream::BoxStream, StreamExt};
use longtask_core::{Error, Lease, Progress, Result, TaskEvent, TaskId};
use uuid::Uuid;

use super::{
    row::{decode_progress, encode_progress, parse_status},
    PostgresBackend,
};

impl PostgresBackend {
    pub(super) async fn direct_report(&self, updates: &[(Lease, Progress)]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = updates.iter().map(|(l, _)| l.task.as_uuid()).collect();
        // Tokens are stored as bigint; one out of its range matches no lease.
        let tokens: Vec<i64> = updates
            .iter()
            .map(|(l, _)| i64::try_from(l.token).unwrap_or(-1))
            .collect();
        let progress = updates
            .iter()
            .map(|(_, p)| encode_progress(p))
            .collect::<Result<Vec<_>>>()?;
        sqlx::query(&self.sql.report)
            .bind(&ids)
            .bind(&tokens)
            .bind(&progress)
            .bind(self.notifier.channel())
            .execute(&self.pool)
            .await
            .map_err(|e| Error::backend("storing progress", e))?;
        Ok(())
    }

    pub(super) async fn direct_latest(&self, id: TaskId) -> Result<Option<Progress>> {
        let json: Option<Option<String>> = sqlx::query_scalar(&self.sql.latest)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| Error::backend(format!("reading the progress of task {id}"), e))?;
        json.flatten().as_deref().map(decode_progress).transpose()
    }

    pub(super) async fn direct_watch(&self, id: TaskId) -> Result<BoxStream<'static, TaskEvent>> {
        let what = || format!("watching task {id}");
        self.notifier.start();
        self.notifier.ready().await;
        // Subscribe locally and mark the task watched before reading its status, so that a
        // change after the read is notified (and one racing with it is re-read).
        let stream = self.notifier.subscribe(id);
        sqlx::query(&self.sql.watch_add)
            .bind(id.as_uuid())
            .bind(self.notifier.watcher())
            .execute(&self.pool)
            .await
            .map_err(|e| Error::backend(what(), e))?;
        let row: Option<(Uuid, String)> = sqlx::query_as(&self.sql.statuses)
            .bind(vec![id.as_uuid()])
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| Error::backend(what(), e))?;
        let (_, status) = row.ok_or(Error::NotFound(id))?;
        let status = parse_status(&status)?;
        if status.is_final() {
            drop(stream);
            return Ok(futures::stream::iter([TaskEvent::Status { status }]).boxed());
        }
        self.notifier.baseline(stream.id(), status);
        Ok(stream.boxed())
    }
}

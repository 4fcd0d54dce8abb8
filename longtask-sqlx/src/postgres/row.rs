//! Rows as stored, and their conversion to and from the core types.

use chrono::{DateTime, Utc};
use longtask_core::{CheckpointInfo, Result, TaskError, TaskId, TaskRecord, TaskStatus};
use uuid::Uuid;

pub(crate) use crate::codec::{
    count, decode_attempts, decode_progress, duration_millis, encode_progress, parse_status,
    retention, time,
};

/// One row of `tasks`, as `sql/columns.sql` selects it.
#[derive(sqlx::FromRow)]
pub(crate) struct TaskRow {
    id: Uuid,
    job: String,
    params: String,
    status: String,
    priority: i32,
    run_at: i64,
    attempt: i64,
    max_attempts: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    cancel_requested: bool,
    last_error: Option<String>,
    last_error_attempt: Option<i64>,
    last_error_at: Option<i64>,
    progress: Option<String>,
    output: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    retention_ms: i64,
    owner: Option<String>,
    idempotency_key: Option<String>,
    checkpoint_info: Option<String>,
    concurrency_key: Option<String>,
    group_id: Option<Uuid>,
    open_members: Option<i64>,
    attempts: Option<String>,
}

impl TaskRow {
    /// The record, with a `scheduled` task whose time has come shown as `queued` (which it is:
    /// the next claim takes it).
    pub(crate) fn into_record(self, now: DateTime<Utc>) -> Result<TaskRecord> {
        let mut status = parse_status(&self.status)?;
        let run_at = time(self.run_at);
        if status == TaskStatus::Scheduled && run_at <= now {
            status = TaskStatus::Queued;
        }
        let last_error = match (self.last_error, self.last_error_attempt, self.last_error_at) {
            (Some(message), Some(attempt), Some(at)) => Some(TaskError {
                message,
                attempt: count(attempt),
                at: time(at),
            }),
            _ => None,
        };
        Ok(TaskRecord {
            id: TaskId::from_uuid(self.id),
            job: self.job,
            params: self.params,
            status,
            priority: self.priority,
            run_at,
            attempt: count(self.attempt),
            max_attempts: count(self.max_attempts),
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at.map(time),
            cancel_requested: self.cancel_requested,
            last_error,
            progress: self.progress.as_deref().map(decode_progress).transpose()?,
            output: self.output,
            created_at: time(self.created_at),
            started_at: self.started_at.map(time),
            finished_at: self.finished_at.map(time),
            retention: retention(self.retention_ms),
            owner: self.owner,
            idempotency_key: self.idempotency_key,
            concurrency_key: self.concurrency_key,
            group: self.group_id.map(TaskId::from_uuid),
            open_members: self.open_members.map(count),
            checkpoint: self
                .checkpoint_info
                .as_deref()
                .map(CheckpointInfo::from_json)
                .transpose()?,
            attempts: decode_attempts(self.attempts.as_deref())?,
        })
    }
}

//! How tasks are stored in SQLite rows: times as epoch milliseconds, ids as 16-byte blobs (hex
//! strings inside JSON batch parameters), progress as JSON text.

use chrono::{DateTime, Utc};
use longtask_core::{CheckpointInfo, Error, Progress, Result, TaskError, TaskId, TaskRecord};
use uuid::Uuid;

pub(crate) use crate::codec::{
    count, duration_millis as duration_ms, encode_progress as progress_json, parse_status as status,
};
use crate::codec::{decode_attempts, decode_progress, retention, time};

/// `at` as milliseconds since the epoch.
pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// A task id as the hex text `unhex()` turns back into the stored blob.
pub(crate) fn hex(id: TaskId) -> String {
    id.as_uuid().simple().to_string()
}

/// A stored blob id.
pub(crate) fn task_id(bytes: &[u8]) -> Result<TaskId> {
    Uuid::from_slice(bytes)
        .map(TaskId::from_uuid)
        .map_err(|err| Error::backend("decoding a stored task id", err))
}

/// Stored progress JSON.
pub(crate) fn progress(json: Option<&str>) -> Result<Option<Progress>> {
    json.map(decode_progress).transpose()
}

/// One row of `get.sql` / `list.sql`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TaskRow {
    id: Vec<u8>,
    job: String,
    params: String,
    status: String,
    priority: i64,
    run_at: i64,
    attempt: i64,
    max_attempts: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    cancel_requested: bool,
    error_message: Option<String>,
    error_attempt: Option<i64>,
    error_at: Option<i64>,
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
    group_id: Option<Vec<u8>>,
    open_members: Option<i64>,
    attempts: Option<String>,
}

impl TaskRow {
    /// The record this row stores.
    pub(crate) fn into_record(self) -> Result<TaskRecord> {
        let last_error = match (self.error_message, self.error_at) {
            (Some(message), Some(at)) => Some(TaskError {
                message,
                attempt: count(self.error_attempt.unwrap_or(0)),
                at: time(at),
            }),
            _ => None,
        };
        Ok(TaskRecord {
            id: task_id(&self.id)?,
            job: self.job,
            params: self.params,
            status: status(&self.status)?,
            priority: i32::try_from(self.priority).unwrap_or(if self.priority < 0 {
                i32::MIN
            } else {
                i32::MAX
            }),
            run_at: time(self.run_at),
            attempt: count(self.attempt),
            max_attempts: count(self.max_attempts),
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at.map(time),
            cancel_requested: self.cancel_requested,
            last_error,
            progress: progress(self.progress.as_deref())?,
            output: self.output,
            created_at: time(self.created_at),
            started_at: self.started_at.map(time),
            finished_at: self.finished_at.map(time),
            retention: retention(self.retention_ms),
            owner: self.owner,
            idempotency_key: self.idempotency_key,
            concurrency_key: self.concurrency_key,
            group: self.group_id.as_deref().map(task_id).transpose()?,
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

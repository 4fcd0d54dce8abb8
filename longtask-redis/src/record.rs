//! Task records as stored in a Redis hash, and the encodings the scripts share with Rust.
//!
//! Times are integer milliseconds since the epoch. Optional strings that a script must be able
//! to clear (the lease owner) or that travel as script arguments are encoded as `""` for none
//! and `"+value"` for a value, so that an empty string stays distinct from none. Fields that
//! are absent from the hash are none (or zero; a missing run time is the creation time). The
//! lease fields count only while the status is running.

use std::{collections::HashMap, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use longtask_core::{
    AttemptOutcome, AttemptRecord, CheckpointInfo, Error, Progress, Result, TaskError, TaskId,
    TaskRecord, TaskStatus,
};

/// A stored field that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("field `{field}` of task {id} is missing or malformed ({value:?}); was the key written by something other than longtask?")]
pub(crate) struct CorruptField {
    id: TaskId,
    field: &'static str,
    value: Option<String>,
}

/// Milliseconds since the epoch.
pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `""` for none, `"+value"` for a value.
pub(crate) fn encode_opt(value: Option<&str>) -> String {
    value.map_or_else(String::new, |v| format!("+{v}"))
}

/// The hash fields a record is made of, read with `HMGET` (see [`decode_fields`]): every field
/// but the lease token and the checkpoint's state, which may be large and is read only by
/// `load_checkpoint`.
pub(crate) const RECORD_FIELDS: [&str; 26] = [
    "status",
    "job",
    "prio",
    "run_at",
    "max",
    "ret",
    "created",
    "params",
    "owner",
    "ikey",
    "ckey",
    "attempt",
    "cancel",
    "lo",
    "lx",
    "started",
    "finished",
    "output",
    "progress",
    "em",
    "ea",
    "et",
    "checkpoint_info",
    "grp",
    "open",
    "ah",
];

/// Decodes the values of [`RECORD_FIELDS`] (in that order, from `HMGET`); a task with none of
/// them is a missing task.
pub(crate) fn decode_fields(id: TaskId, values: Vec<Option<String>>) -> Result<Option<TaskRecord>> {
    let hash = RECORD_FIELDS
        .iter()
        .zip(values)
        .filter_map(|(field, value)| Some(((*field).to_owned(), value?)))
        .collect();
    decode(id, hash)
}

/// Decodes one task hash; an empty hash is a missing task.
pub(crate) fn decode(id: TaskId, mut hash: HashMap<String, String>) -> Result<Option<TaskRecord>> {
    if hash.is_empty() {
        return Ok(None);
    }
    let mut fields = Fields {
        id,
        hash: &mut hash,
    };
    let attempt = fields.parsed_or("attempt", 0)?;
    let last_error = match fields.take("em") {
        Some(message) => Some(TaskError {
            message,
            attempt: fields.parsed_or("ea", 0)?,
            at: fields.time("et")?,
        }),
        None => None,
    };
    let progress = match fields.take("progress") {
        Some(json) => Some(
            serde_json::from_str::<Progress>(&json)
                .map_err(|e| Error::backend(format!("decoding the progress of task {id}"), e))?,
        ),
        None => None,
    };
    let status: TaskStatus = fields.parsed("status")?;
    let created_at = fields.time("created")?;
    // The scripts leave the lease fields behind when a task stops running (a write saved per
    // task): they count only while it runs.
    let (lease_owner, lease_expires_at) = if status == TaskStatus::Running {
        (
            fields
                .take("lo")
                .and_then(|v| v.strip_prefix('+').map(str::to_owned)),
            fields.opt_time("lx")?,
        )
    } else {
        (None, None)
    };
    let record = TaskRecord {
        id,
        job: fields.required("job")?,
        params: fields.required("params")?,
        status,
        priority: fields.parsed_or("prio", 0)?,
        // Left out when equal to the creation time.
        run_at: fields.opt_time("run_at")?.unwrap_or(created_at),
        attempt,
        max_attempts: fields.parsed("max")?,
        lease_owner,
        lease_expires_at,
        cancel_requested: fields.take("cancel").as_deref() == Some("1"),
        last_error,
        progress,
        output: fields.take("output"),
        created_at,
        started_at: fields.opt_time("started")?,
        finished_at: fields.opt_time("finished")?,
        retention: Duration::from_millis(fields.parsed_or("ret", 0)?),
        owner: fields.take("owner"),
        idempotency_key: fields
            .take("ikey")
            .and_then(|v| v.strip_prefix('+').map(str::to_owned)),
        concurrency_key: fields.take("ckey"),
        group: fields.opt_parsed("grp")?,
        open_members: fields.opt_parsed("open")?,
        checkpoint: fields
            .take("checkpoint_info")
            .map(|json| CheckpointInfo::from_json(&json))
            .transpose()?,
        attempts: match fields.take("ah") {
            Some(json) => decode_attempts(id, &json)?,
            None => Vec::new(),
        },
    };
    Ok(Some(record))
}

/// One entry of the attempt history (`ah`) as `record_attempt` in common.lua writes it: times
/// as strings of epoch milliseconds (so that Lua's cjson never rounds them).
#[derive(serde::Deserialize)]
struct StoredAttempt {
    attempt: u32,
    started_at: String,
    ended_at: String,
    worker: Option<String>,
    outcome: AttemptOutcome,
    error: Option<String>,
}

/// Decodes a task's attempt history.
fn decode_attempts(id: TaskId, json: &str) -> Result<Vec<AttemptRecord>> {
    let corrupt = |e: Box<dyn std::error::Error + Send + Sync>| {
        Error::backend(format!("decoding the attempt history of task {id}"), e)
    };
    let stored: Vec<StoredAttempt> = serde_json::from_str(json).map_err(|e| corrupt(e.into()))?;
    stored
        .into_iter()
        .map(|a| {
            let time = |ms: &str| {
                ms.parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_millis)
                    .ok_or_else(|| corrupt(format!("`{ms}` is not a time in milliseconds").into()))
            };
            Ok(AttemptRecord {
                attempt: a.attempt,
                started_at: time(&a.started_at)?,
                ended_at: time(&a.ended_at)?,
                worker: a.worker,
                outcome: a.outcome,
                error: a.error,
            })
        })
        .collect()
}

struct Fields<'a> {
    id: TaskId,
    hash: &'a mut HashMap<String, String>,
}

impl Fields<'_> {
    fn take(&mut self, field: &str) -> Option<String> {
        self.hash.remove(field)
    }

    fn corrupt(&self, field: &'static str, value: Option<String>) -> Error {
        Error::backend(
            format!("reading task {}", self.id),
            CorruptField {
                id: self.id,
                field,
                value,
            },
        )
    }

    fn required(&mut self, field: &'static str) -> Result<String> {
        self.take(field).ok_or_else(|| self.corrupt(field, None))
    }

    fn parsed<T: FromStr>(&mut self, field: &'static str) -> Result<T> {
        let value = self.required(field)?;
        value.parse().map_err(|_| self.corrupt(field, Some(value)))
    }

    fn parsed_or<T: FromStr>(&mut self, field: &'static str, default: T) -> Result<T> {
        match self.take(field) {
            None => Ok(default),
            Some(value) if value.is_empty() => Ok(default),
            Some(value) => value.parse().map_err(|_| self.corrupt(field, Some(value))),
        }
    }

    fn opt_parsed<T: FromStr>(&mut self, field: &'static str) -> Result<Option<T>> {
        match self.take(field) {
            None => Ok(None),
            Some(value) => match value.parse() {
                Ok(parsed) => Ok(Some(parsed)),
                Err(_) => Err(self.corrupt(field, Some(value))),
            },
        }
    }

    fn time(&mut self, field: &'static str) -> Result<DateTime<Utc>> {
        let ms: i64 = self.parsed(field)?;
        DateTime::from_timestamp_millis(ms).ok_or_else(|| self.corrupt(field, Some(ms.to_string())))
    }

    fn opt_time(&mut self, field: &'static str) -> Result<Option<DateTime<Utc>>> {
        match self.take(field) {
            None => Ok(None),
            Some(value) if value.is_empty() => Ok(None),
            Some(value) => value
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis)
                .map(Some)
                .ok_or_else(|| self.corrupt(field, Some(value))),
        }
    }
}

/// Parses a status a script returned.
pub(crate) fn status(text: &str) -> Result<TaskStatus> {
    text.parse()
        .map_err(|e| Error::backend("reading a task status from Redis", e))
}

/// Parses a task id a script returned.
pub(crate) fn task_id(text: &str) -> Result<TaskId> {
    text.parse()
        .map_err(|e| Error::backend("reading a task id from Redis", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_empty_strings_distinct_from_none() {
        assert_eq!(encode_opt(None), "");
        assert_eq!(encode_opt(Some("")), "+");
        assert_eq!(encode_opt(Some("alice")), "+alice");
    }

    #[test]
    fn an_empty_hash_is_a_missing_task() {
        assert!(decode(TaskId::new(), HashMap::new()).unwrap().is_none());
    }

    #[test]
    fn a_malformed_field_is_an_error_not_a_panic() {
        let hash: HashMap<String, String> = [("job", "j"), ("params", "{}"), ("status", "bogus")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert!(decode(TaskId::new(), hash).is_err());
    }
}

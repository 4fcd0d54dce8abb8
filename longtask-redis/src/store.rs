//! [`TaskStore`] for [`RedisBackend`]: insert, get, list, cancel, purge, and the operators'
//! retry and delete.

use longtask_core::{
    CancelOutcome, DeleteOutcome, Error, GroupRole, Inserted, NewTask, Result, RetryOutcome,
    TaskId, TaskQuery, TaskRecord,
};

use crate::{
    backend::RedisBackend,
    record::{self, duration_millis, encode_opt, millis},
    scripts::SCRIPTS,
};

/// Task ids a listing scans per script call, at most: bounds how long one call blocks Redis.
const LIST_SCAN_BUDGET: usize = 5_000;
/// Tasks purged per script call, at most.
const PURGE_CHUNK: usize = 1_000;

/// What a task shares with the task before it in an insert batch, when they are alike (the
/// concurrency key aside: tasks that differ only in it are sent with just their key).
#[derive(PartialEq)]
struct Spec<'a> {
    job: &'a str,
    priority: i32,
    run_at: i64,
    max_attempts: u32,
    retention: u64,
    owner: Option<&'a str>,
    idempotency_key: Option<&'a str>,
    group: Option<GroupRole>,
}

/// A task's place in a group as insert.lua reads it: `""` none, `"r"` a root, `"m<root>"` a
/// member.
fn encode_group(group: Option<GroupRole>) -> String {
    match group {
        None => String::new(),
        Some(GroupRole::Root) => "r".to_owned(),
        Some(GroupRole::Member(root)) => format!("m{root}"),
    }
}

/// Reads the insert script's `ok` reply (`created`, then the existing ids of the tasks that were
/// not created, in order) against the submitted tasks.
fn inserted(tasks: &[NewTask], reply: &[String]) -> Result<Vec<Inserted>> {
    let unexpected = || {
        Error::backend(
            "inserting tasks",
            format!("unexpected reply from the insert script: {reply:?}"),
        )
    };
    let (created, existing) = reply.split_first().ok_or_else(unexpected)?;
    if created.len() != tasks.len() {
        return Err(unexpected());
    }
    let mut existing = existing.iter();
    let out = tasks
        .iter()
        .zip(created.bytes())
        .map(|(task, flag)| match flag {
            b'1' => Ok(Inserted {
                id: task.id,
                created: true,
            }),
            _ => Ok(Inserted {
                id: record::task_id(existing.next().ok_or_else(unexpected)?)?,
                created: false,
            }),
        })
        .collect::<Result<Vec<_>>>()?;
    if existing.next().is_some() {
        return Err(unexpected());
    }
    Ok(out)
}

impl RedisBackend {
    pub(crate) async fn direct_insert(&self, tasks: Vec<NewTask>) -> Result<Vec<Inserted>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let now_ms = millis(now);
        let mut call = self.script(&SCRIPTS.insert);
        call.arg(now_ms);
        // A task with the same job, priority, run time, attempts, retention, owner and keys as
        // the one before it sends only its id and params, and one that differs only in its
        // concurrency key sends that too (see insert.lua).
        let mut previous: Option<Spec<'_>> = None;
        let mut previous_key: Option<&str> = None;
        for task in &tasks {
            let spec = Spec {
                job: &task.job,
                priority: task.priority,
                run_at: millis(task.run_at.resolve(now)),
                max_attempts: task.max_attempts,
                retention: duration_millis(task.retention),
                owner: task.owner.as_deref(),
                idempotency_key: task.idempotency_key.as_deref(),
                group: task.group,
            };
            let concurrency_key = task.concurrency_key.as_deref();
            call.arg(task.id.to_string()).arg(&task.params);
            if previous.as_ref() == Some(&spec) {
                if previous_key == concurrency_key {
                    call.arg("=");
                } else {
                    call.arg("~").arg(encode_opt(concurrency_key));
                    previous_key = concurrency_key;
                }
            } else {
                call.arg("!")
                    .arg(spec.job)
                    .arg(spec.priority)
                    .arg(spec.run_at)
                    .arg(spec.max_attempts)
                    .arg(spec.retention)
                    .arg(encode_opt(spec.owner))
                    .arg(encode_opt(spec.idempotency_key))
                    .arg(encode_opt(concurrency_key))
                    .arg(encode_group(spec.group));
                previous = Some(spec);
                previous_key = concurrency_key;
            }
        }
        let out: Vec<String> = self.invoke(&call, "inserting tasks").await?;
        match out.first().map(String::as_str) {
            Some("ok") => inserted(&tasks, &out[1..]),
            Some("bad") => Err(Error::backend(
                "inserting tasks",
                "the insert script rejected its arguments (a bug in longtask-redis)",
            )),
            Some("dup") => Err(Error::InvalidInput(format!(
                "task id {} is already in use",
                out.get(1).map_or("?", String::as_str)
            ))),
            Some("group") => Err(Error::InvalidInput(format!(
                "group {} does not exist or has finished: no member can join it",
                out.get(1).map_or("?", String::as_str)
            ))),
            _ => Err(Error::backend(
                "inserting tasks",
                format!("unexpected reply from the insert script: {out:?}"),
            )),
        }
    }

    pub(crate) async fn direct_get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        let values: Vec<Option<String>> = self
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys.task(id))
                    .arg(&record::RECORD_FIELDS[..]),
                "reading a task",
            )
            .await?;
        record::decode_fields(id, values)
    }

    pub(crate) async fn direct_list(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>> {
        let limit = query.effective_limit();
        let statuses = query
            .statuses
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let job = encode_opt(query.job.as_deref());
        let owner = encode_opt(query.owner.as_deref());
        let group = query.group.map(|id| id.to_string()).unwrap_or_default();
        let mut cursor = query.after.map(|id| id.to_string()).unwrap_or_default();
        let mut ids = Vec::new();
        while ids.len() < limit {
            let mut call = self.script(&SCRIPTS.list);
            call.arg(&cursor)
                .arg(limit - ids.len())
                .arg(LIST_SCAN_BUDGET)
                .arg(&job)
                .arg(&owner)
                .arg(&statuses)
                .arg(&group);
            let out: Vec<String> = self.invoke(&call, "listing tasks").await?;
            let [next, done, found @ ..] = out.as_slice() else {
                return Err(Error::backend(
                    "listing tasks",
                    format!("unexpected reply from the list script: {out:?}"),
                ));
            };
            for id in found {
                ids.push(record::task_id(id)?);
            }
            if done == "1" || *next == cursor {
                break;
            }
            cursor.clone_from(next);
        }
        ids.truncate(limit);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.keys.task(*id))
                .arg(&record::RECORD_FIELDS[..]);
        }
        let mut conn = self.conn.clone();
        let hashes: Vec<Vec<Option<String>>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| Error::backend("reading listed tasks", e))?;
        let mut records = Vec::with_capacity(ids.len());
        for (id, hash) in ids.into_iter().zip(hashes) {
            // A task purged between the scan and the read is simply not listed.
            if let Some(record) = record::decode_fields(id, hash)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    pub(crate) async fn direct_cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        let mut call = self.script(&SCRIPTS.cancel);
        call.arg(self.now_ms()).arg(id.to_string());
        let out: String = self.invoke(&call, "cancelling a task").await?;
        match out.as_str() {
            "missing" => Err(Error::NotFound(id)),
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "requested" => Ok(CancelOutcome::Requested),
            other => match other.strip_prefix("finished:") {
                Some(status) => Ok(CancelOutcome::AlreadyFinished(record::status(status)?)),
                None => Err(Error::backend(
                    "cancelling a task",
                    format!("unexpected reply from the cancel script: {other:?}"),
                )),
            },
        }
    }

    pub(crate) async fn direct_purge(&self, limit: usize) -> Result<u64> {
        let now_ms = self.now_ms();
        let mut purged = 0_u64;
        let mut left = limit;
        // A call visits a bounded number of retention periods and says whether more remain:
        // keep going until `limit` is reached, or a call purged less than asked and visited
        // the last of them (one full round).
        while left > 0 {
            let chunk = left.min(PURGE_CHUNK);
            let mut call = self.script(&SCRIPTS.purge);
            call.arg(now_ms).arg(chunk);
            let (n, more): (u64, u8) = self.invoke(&call, "purging finished tasks").await?;
            purged += n;
            left = left.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
            if n < chunk as u64 && more == 0 {
                break;
            }
        }
        Ok(purged)
    }

    pub(crate) async fn direct_retry(&self, ids: &[TaskId]) -> Result<Vec<RetryOutcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.script(&SCRIPTS.retry);
        call.arg(self.now_ms());
        for id in ids {
            call.arg(id.to_string());
        }
        let out: Vec<String> = self.invoke(&call, "retrying tasks").await?;
        if out.len() != ids.len() {
            return Err(Error::backend(
                "retrying tasks",
                format!("unexpected reply from the retry script: {out:?}"),
            ));
        }
        out.iter()
            .map(|reply| match reply.as_str() {
                "r" => Ok(RetryOutcome::Retried),
                "n" => Ok(RetryOutcome::NotFound),
                "g" => Ok(RetryOutcome::InGroup),
                status => record::status(status).map(RetryOutcome::NotRetryable),
            })
            .collect()
    }

    pub(crate) async fn direct_delete(&self, ids: &[TaskId]) -> Result<Vec<DeleteOutcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.script(&SCRIPTS.delete);
        for id in ids {
            call.arg(id.to_string());
        }
        let out: Vec<String> = self.invoke(&call, "deleting tasks").await?;
        if out.len() != ids.len() {
            return Err(Error::backend(
                "deleting tasks",
                format!("unexpected reply from the delete script: {out:?}"),
            ));
        }
        out.iter()
            .map(|reply| match reply.as_str() {
                "d" => Ok(DeleteOutcome::Deleted),
                "n" => Ok(DeleteOutcome::NotFound),
                status => record::status(status).map(DeleteOutcome::NotFinished),
            })
            .collect()
    }
}

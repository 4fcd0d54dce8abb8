//! [`TaskStore`] for [`SqliteBackend`]: insert (one statement per batch), read, list, cancel,
//! purge.

use std::collections::{HashMap, HashSet};

use longtask_core::{
    saturating_add, CancelOutcome, DeleteOutcome, Error, GroupRole, Inserted, NewTask, Result,
    RetryOutcome, TaskEvent, TaskId, TaskQuery, TaskRecord, TaskStatus, WorkerInfo,
};
use serde::Serialize;
use sqlx::{Sqlite, Transaction};

use super::{
    db,
    queue::{settle, Settle},
    row::{self, duration_ms, hex, millis, TaskRow},
    stats::{discount, prune_throughput},
    SqliteBackend,
};

const INSERT: &str = include_str!("sql/insert.sql");
const FIND_KEY: &str = include_str!("sql/find_key.sql");
const GET: &str = include_str!("sql/get.sql");
const LIST: &str = include_str!("sql/list.sql");
const RETRY_TASK: &str = include_str!("sql/retry_task.sql");
const TASK_STATE: &str = include_str!("sql/task_state.sql");
const DELETE_TASK: &str = include_str!("sql/delete_task.sql");
const REGISTER_WORKER: &str =
    "INSERT INTO longtask_workers (id, info, expires_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at";
const UNREGISTER_WORKER: &str = "DELETE FROM longtask_workers WHERE id = ?1";
const EXPIRE_WORKERS: &str = "DELETE FROM longtask_workers WHERE expires_at <= ?1";
const WORKERS: &str = "SELECT info FROM longtask_workers WHERE expires_at > ?1 ORDER BY id";
const LIST_GROUP: &str = include_str!("sql/list_group.sql");
const OPEN_GROUPS: &str = include_str!("sql/open_groups.sql");
const JOIN_GROUP: &str = include_str!("sql/join_group.sql");
const CANCEL_STATE: &str = include_str!("sql/cancel_state.sql");
const REQUEST_CANCEL: &str = include_str!("sql/request_cancel.sql");
const PURGE: &str = include_str!("sql/purge.sql");

/// A blob that sorts before every 16-byte id: the `after` of a list from the start.
/// What `status.sql` reads: status, progress, version, retention, group.
pub(crate) type StatusRow = (String, Option<String>, i64, i64, Option<Vec<u8>>);

/// What `cancel_state.sql` reads: a [`StatusRow`] and the job.
type CancelRow = (String, Option<String>, i64, i64, Option<Vec<u8>>, String);

const BEFORE_ALL: [u8; 15] = [0; 15];

/// One new task, as `insert.sql` reads it.
#[derive(Serialize)]
struct InsertRow<'a> {
    id: String,
    job: &'a str,
    params: &'a str,
    status: &'static str,
    priority: i32,
    run_at: i64,
    max_attempts: u32,
    retention_ms: i64,
    owner: Option<&'a str>,
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ckey: Option<&'a str>,
    /// A member's group (its root's id, hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    /// A root's count of open members (0: members count themselves in).
    #[serde(skip_serializing_if = "Option::is_none")]
    open: Option<u32>,
}

impl SqliteBackend {
    /// Counts the new members of each group in `joining`; refuses the whole insert when a group
    /// is neither created by this batch nor open (its root waiting) in the database.
    async fn join_groups(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        joining: &HashMap<TaskId, i64>,
        new_roots: &HashSet<TaskId>,
    ) -> Result<()> {
        let existing: Vec<String> = joining
            .keys()
            .filter(|root| !new_roots.contains(root))
            .map(|root| hex(*root))
            .collect();
        if !existing.is_empty() {
            let batch = serde_json::to_string(&existing)
                .map_err(|err| Error::backend("encoding group ids", err))?;
            let open: Vec<Vec<u8>> = sqlx::query_scalar(OPEN_GROUPS)
                .bind(batch)
                .fetch_all(&mut **tx)
                .await
                .map_err(db("looking up groups"))?;
            let open: HashSet<TaskId> = open
                .iter()
                .map(|id| row::task_id(id))
                .collect::<Result<_>>()?;
            if let Some(closed) = joining
                .keys()
                .find(|root| !new_roots.contains(root) && !open.contains(root))
            {
                return Err(Error::InvalidInput(format!(
                    "group {closed} does not exist or has finished: no member can join it"
                )));
            }
        }
        for (root, count) in joining {
            sqlx::query(JOIN_GROUP)
                .bind(root.as_uuid())
                .bind(count)
                .execute(&mut **tx)
                .await
                .map_err(db("counting a group's members"))?;
        }
        Ok(())
    }

    pub(super) async fn direct_insert(&self, tasks: Vec<NewTask>) -> Result<Vec<Inserted>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = HashSet::with_capacity(tasks.len());
        for task in &tasks {
            if !ids.insert(task.id) {
                return Err(Error::InvalidInput(format!(
                    "task id {} appears twice in one insert",
                    task.id
                )));
            }
        }
        let now = self.now();
        let mut tx = self.begin("starting to insert tasks").await?;
        let mut inserted = Vec::with_capacity(tasks.len());
        let mut rows = Vec::with_capacity(tasks.len());
        let mut keys: HashMap<(&str, &str), TaskId> = HashMap::new();
        let mut any_due = false;
        // Members by group, and the roots this batch creates.
        let mut joining: HashMap<TaskId, i64> = HashMap::new();
        let mut new_roots: HashSet<TaskId> = HashSet::new();
        for task in &tasks {
            if let Some(key) = task.idempotency_key.as_deref() {
                if let Some(&id) = keys.get(&(task.job.as_str(), key)) {
                    inserted.push(Inserted { id, created: false });
                    continue;
                }
                let existing: Option<Vec<u8>> = sqlx::query_scalar(FIND_KEY)
                    .bind(&task.job)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("looking up an idempotency key"))?;
                if let Some(bytes) = existing {
                    let id = row::task_id(&bytes)?;
                    keys.insert((task.job.as_str(), key), id);
                    inserted.push(Inserted { id, created: false });
                    continue;
                }
                keys.insert((task.job.as_str(), key), task.id);
            }
            let run_at = task.run_at.resolve(now);
            let status = if run_at > now {
                TaskStatus::Scheduled
            } else {
                any_due = true;
                TaskStatus::Queued
            };
            rows.push(InsertRow {
                id: hex(task.id),
                job: &task.job,
                params: &task.params,
                status: status.as_str(),
                priority: task.priority,
                run_at: millis(run_at),
                max_attempts: task.max_attempts,
                retention_ms: duration_ms(task.retention),
                owner: task.owner.as_deref(),
                key: task.idempotency_key.as_deref(),
                ckey: task.concurrency_key.as_deref(),
                group: match task.group {
                    Some(GroupRole::Member(root)) => {
                        *joining.entry(root).or_default() += 1;
                        Some(hex(root))
                    }
                    _ => None,
                },
                open: matches!(task.group, Some(GroupRole::Root)).then_some(0),
            });
            if matches!(task.group, Some(GroupRole::Root)) {
                new_roots.insert(task.id);
            }
            inserted.push(Inserted {
                id: task.id,
                created: true,
            });
        }
        if !rows.is_empty() {
            let batch = serde_json::to_string(&rows)
                .map_err(|err| Error::backend("encoding tasks to insert", err))?;
            sqlx::query(INSERT)
                .bind(batch)
                .bind(millis(now))
                .execute(&mut *tx)
                .await
                .map_err(|err| match &err {
                    sqlx::Error::Database(e) if e.is_unique_violation() => {
                        Error::InvalidInput("a task id in this insert is already in use".to_owned())
                    }
                    _ => Error::backend("inserting tasks", err),
                })?;
        }
        if !joining.is_empty() {
            self.join_groups(&mut tx, &joining, &new_roots).await?;
        }
        tx.commit().await.map_err(db("committing inserted tasks"))?;
        if any_due {
            self.wake();
        }
        Ok(inserted)
    }

    pub(super) async fn direct_get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        sqlx::query_as::<_, TaskRow>(GET)
            .bind(id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(db("reading a task"))?
            .map(TaskRow::into_record)
            .transpose()
    }

    pub(super) async fn direct_list(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>> {
        let statuses = if query.statuses.is_empty() {
            None
        } else {
            let names: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
            Some(
                serde_json::to_string(&names)
                    .map_err(|err| Error::backend("encoding a task query", err))?,
            )
        };
        let after = match query.after {
            Some(id) => id.as_uuid().as_bytes().to_vec(),
            None => BEFORE_ALL.to_vec(),
        };
        let limit = i64::try_from(query.effective_limit()).unwrap_or(i64::MAX);
        let sql = if query.group.is_some() {
            LIST_GROUP
        } else {
            LIST
        };
        sqlx::query_as::<_, TaskRow>(sql)
            .bind(query.job.as_deref())
            .bind(statuses)
            .bind(query.owner.as_deref())
            .bind(after)
            .bind(limit)
            .bind(query.group.map(TaskId::as_uuid))
            .fetch_all(&self.reader)
            .await
            .map_err(db("listing tasks"))?
            .into_iter()
            .map(TaskRow::into_record)
            .collect()
    }

    pub(super) async fn direct_cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        let now = self.now();
        let mut tx = self.begin("starting to cancel a task").await?;
        let (status, _, version, retention_ms, group, job): CancelRow =
            sqlx::query_as(CANCEL_STATE)
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a task to cancel"))?
                .ok_or(Error::NotFound(id))?;
        let status = row::status(&status)?;
        let mut fired = super::queue::Fired::default();
        let outcome = match status {
            s if s.is_final() => return Ok(CancelOutcome::AlreadyFinished(s)),
            TaskStatus::Running => {
                sqlx::query(REQUEST_CANCEL)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(db("requesting cancellation"))?;
                CancelOutcome::Requested
            }
            _ => {
                let mut change = Settle::new(id, TaskStatus::Cancelled);
                change.finish(now, retention_ms);
                change.group = group;
                change.job = job;
                fired = settle(&mut tx, &[change]).await?;
                CancelOutcome::Cancelled
            }
        };
        tx.commit().await.map_err(db("committing a cancellation"))?;
        if outcome == CancelOutcome::Cancelled {
            let mut events = vec![(
                id,
                version + 1,
                vec![TaskEvent::Status {
                    status: TaskStatus::Cancelled,
                }],
            )];
            events.append(&mut fired.events);
            self.emit(events);
            if fired.due {
                self.wake();
            }
        }
        Ok(outcome)
    }

    pub(super) async fn direct_retry(&self, ids: &[TaskId]) -> Result<Vec<RetryOutcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let mut tx = self.begin("starting to retry tasks").await?;
        let mut outcomes = Vec::with_capacity(ids.len());
        let mut events = Vec::new();
        let mut gone = Vec::new();
        for id in ids {
            let state: Option<(String, bool, String)> = sqlx::query_as(TASK_STATE)
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a task to retry"))?;
            let Some((status, grouped, job)) = state else {
                outcomes.push(RetryOutcome::NotFound);
                continue;
            };
            match row::status(&status)? {
                TaskStatus::Failed | TaskStatus::Cancelled if grouped => {
                    outcomes.push(RetryOutcome::InGroup);
                    continue;
                }
                TaskStatus::Failed | TaskStatus::Cancelled => {}
                other => {
                    outcomes.push(RetryOutcome::NotRetryable(other));
                    continue;
                }
            }
            let version: i64 = sqlx::query_scalar(RETRY_TASK)
                .bind(id.as_uuid())
                .bind(millis(now))
                .fetch_one(&mut *tx)
                .await
                .map_err(db("retrying a task"))?;
            events.push((
                *id,
                version,
                vec![TaskEvent::Status {
                    status: TaskStatus::Queued,
                }],
            ));
            gone.push((job, status));
            outcomes.push(RetryOutcome::Retried);
        }
        discount(&mut tx, &gone).await?;
        tx.commit().await.map_err(db("committing retried tasks"))?;
        if !events.is_empty() {
            self.emit(events);
            self.wake();
        }
        Ok(outcomes)
    }

    pub(super) async fn direct_delete(&self, ids: &[TaskId]) -> Result<Vec<DeleteOutcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin("starting to delete tasks").await?;
        let mut outcomes = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for id in ids {
            let deleted: Option<(String, String)> = sqlx::query_as(DELETE_TASK)
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("deleting a task"))?;
            if let Some(deleted) = deleted {
                gone.push(deleted);
                outcomes.push(DeleteOutcome::Deleted);
                continue;
            }
            let state: Option<(String, bool, String)> = sqlx::query_as(TASK_STATE)
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a task to delete"))?;
            outcomes.push(match state {
                None => DeleteOutcome::NotFound,
                Some((status, ..)) => DeleteOutcome::NotFinished(row::status(&status)?),
            });
        }
        discount(&mut tx, &gone).await?;
        tx.commit().await.map_err(db("committing deleted tasks"))?;
        Ok(outcomes)
    }

    pub(super) async fn direct_register_worker(
        &self,
        info: &WorkerInfo,
        ttl: std::time::Duration,
    ) -> Result<()> {
        let now = self.now();
        let mut info = info.clone();
        info.last_seen = now;
        let json = serde_json::to_string(&info)
            .map_err(|err| Error::backend("encoding a worker's description", err))?;
        let mut tx = self.begin("starting to register a worker").await?;
        sqlx::query(REGISTER_WORKER)
            .bind(&info.id)
            .bind(json)
            .bind(millis(saturating_add(now, ttl)))
            .execute(&mut *tx)
            .await
            .map_err(db("registering a worker"))?;
        tx.commit()
            .await
            .map_err(db("committing a worker's entry"))?;
        Ok(())
    }

    pub(super) async fn direct_unregister_worker(&self, id: &str) -> Result<()> {
        let mut tx = self.begin("starting to unregister a worker").await?;
        sqlx::query(UNREGISTER_WORKER)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("unregistering a worker"))?;
        tx.commit()
            .await
            .map_err(db("committing a worker's removal"))?;
        Ok(())
    }

    pub(super) async fn direct_workers(&self) -> Result<Vec<WorkerInfo>> {
        let now = millis(self.now());
        let mut tx = self.begin("starting to list workers").await?;
        sqlx::query(EXPIRE_WORKERS)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("removing the entries of lost workers"))?;
        let rows: Vec<String> = sqlx::query_scalar(WORKERS)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("listing workers"))?;
        tx.commit()
            .await
            .map_err(db("committing the workers list"))?;
        rows.iter()
            .map(|json| {
                serde_json::from_str(json)
                    .map_err(|err| Error::backend("decoding a worker's description", err))
            })
            .collect()
    }

    pub(super) async fn direct_purge(&self, limit: usize) -> Result<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(0);
        }
        let now = millis(self.now());
        let mut tx = self.begin("starting to purge tasks").await?;
        let gone: Vec<(String, String)> = sqlx::query_as(PURGE)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("purging finished tasks"))?;
        discount(&mut tx, &gone).await?;
        prune_throughput(&mut tx, now).await?;
        tx.commit().await.map_err(db("committing a purge"))?;
        Ok(gone.len() as u64)
    }
}

/// The purge time of a task finishing at `now`: `now + retention`, saturating.
pub(crate) fn purge_at(now: chrono::DateTime<chrono::Utc>, retention_ms: i64) -> i64 {
    let retention = std::time::Duration::from_millis(u64::try_from(retention_ms).unwrap_or(0));
    millis(saturating_add(now, retention))
}

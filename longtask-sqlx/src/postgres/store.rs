//! [`TaskStore`] for [`PostgresBackend`]: batch insert with idempotency keys, reads, cancel,
//! purge.

use std::collections::{HashMap, HashSet};

use longtask_core::{
    CancelOutcome, DeleteOutcome, Error, GroupRole, Inserted, NewTask, Result, RetryOutcome,
    TaskId, TaskQuery, TaskRecord, TaskStatus, WorkerInfo,
};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::{
    cursor::Key,
    max_millis, millis,
    row::{duration_millis, parse_status, TaskRow},
    to_i64, PostgresBackend,
};

/// The columns of a batch insert, one array per column.
#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    job: Vec<String>,
    params: Vec<String>,
    status: Vec<&'static str>,
    priority: Vec<i32>,
    run_at: Vec<i64>,
    max_attempts: Vec<i64>,
    retention_ms: Vec<i64>,
    owner: Vec<Option<String>>,
    idempotency_key: Vec<Option<String>>,
    concurrency_key: Vec<Option<String>>,
    group_id: Vec<Option<Uuid>>,
    open_members: Vec<Option<i64>>,
}

impl PostgresBackend {
    /// Inserts `tasks` with one statement on `conn` (a pooled connection, or the caller's
    /// transaction). Returns the entries in order, and whether a due task was inserted.
    pub(crate) async fn insert_on(
        &self,
        conn: &mut PgConnection,
        tasks: Vec<NewTask>,
    ) -> Result<(Vec<Inserted>, bool)> {
        if tasks.is_empty() {
            return Ok((Vec::new(), false));
        }
        let now = self.now();
        let n = tasks.len();
        let mut columns = Columns::default();
        // (job, key) of each task, kept to resolve the tasks that were not inserted.
        let mut keys: Vec<Option<(String, String)>> = Vec::with_capacity(n);
        for task in tasks {
            let run_at = task.run_at.resolve(now);
            columns.id.push(task.id.as_uuid());
            columns.status.push(if run_at > now {
                TaskStatus::Scheduled.as_str()
            } else {
                TaskStatus::Queued.as_str()
            });
            self.cursors.waiting(
                &task.job,
                Key {
                    priority: task.priority,
                    run_at: millis(run_at),
                    id: task.id.as_uuid(),
                },
            );
            columns.priority.push(task.priority);
            columns.run_at.push(millis(run_at));
            columns.max_attempts.push(i64::from(task.max_attempts));
            columns.retention_ms.push(duration_millis(task.retention));
            columns.owner.push(task.owner);
            keys.push(
                task.idempotency_key
                    .as_ref()
                    .map(|key| (task.job.clone(), key.clone())),
            );
            columns.idempotency_key.push(task.idempotency_key);
            columns.concurrency_key.push(task.concurrency_key);
            columns.group_id.push(match task.group {
                Some(GroupRole::Member(root)) => Some(root.as_uuid()),
                _ => None,
            });
            columns
                .open_members
                .push(matches!(task.group, Some(GroupRole::Root)).then_some(0));
            columns.job.push(task.job);
            columns.params.push(task.params);
        }
        // Members join open groups only: roots of this batch, or roots waiting in the database,
        // locked until the caller's transaction ends (in id order, as every statement that
        // counts a group down locks them).
        let batch_roots: HashSet<Uuid> = columns
            .id
            .iter()
            .zip(&columns.open_members)
            .filter(|(_, open)| open.is_some())
            .map(|(id, _)| *id)
            .collect();
        let mut outside: Vec<Uuid> = columns
            .group_id
            .iter()
            .flatten()
            .filter(|root| !batch_roots.contains(root))
            .copied()
            .collect();
        outside.sort_unstable();
        outside.dedup();
        if !outside.is_empty() {
            let found: Vec<(Uuid, bool)> = sqlx::query_as(&self.sql.lock_roots)
                .bind(&outside)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| Error::backend("locking groups", e))?;
            let open: HashSet<Uuid> = found
                .into_iter()
                .filter_map(|(id, open)| open.then_some(id))
                .collect();
            if let Some(closed) = outside.iter().find(|root| !open.contains(root)) {
                return Err(Error::InvalidInput(format!(
                    "group {closed} does not exist or has finished: no member can join it"
                )));
            }
        }
        let rows: Vec<(Uuid, bool)> = sqlx::query_as(&self.sql.insert)
            .bind(&columns.id)
            .bind(&columns.job)
            .bind(&columns.params)
            .bind(&columns.status)
            .bind(&columns.priority)
            .bind(&columns.run_at)
            .bind(&columns.max_attempts)
            .bind(&columns.retention_ms)
            .bind(&columns.owner)
            .bind(&columns.idempotency_key)
            .bind(millis(now))
            .bind(self.notifier.channel())
            .bind(&columns.concurrency_key)
            .bind(&columns.group_id)
            .bind(&columns.open_members)
            .fetch_all(&mut *conn)
            .await
            .map_err(insert_error)?;
        let any_due = rows.iter().any(|(_, due)| *due);
        let created: HashSet<Uuid> = rows.into_iter().map(|(id, _)| id).collect();
        let mut joined: HashMap<Uuid, i64> = HashMap::new();
        for (id, root) in columns.id.iter().zip(&columns.group_id) {
            if let (Some(root), true) = (root, created.contains(id)) {
                *joined.entry(*root).or_default() += 1;
            }
        }
        if !joined.is_empty() {
            let (roots, counts): (Vec<Uuid>, Vec<i64>) = joined.into_iter().unzip();
            sqlx::query(&self.sql.join_groups)
                .bind(&roots)
                .bind(&counts)
                .execute(&mut *conn)
                .await
                .map_err(|e| Error::backend("counting the members of groups", e))?;
        }

        // Ids by (job, key): the first task of this batch that was inserted with the key, or the
        // existing task that holds it.
        let mut by_key: HashMap<(String, String), Uuid> = HashMap::new();
        let mut missing: Vec<(String, String)> = Vec::new();
        for (id, key) in columns.id.iter().zip(&keys) {
            if let Some(key) = key {
                if created.contains(id) {
                    by_key.insert(key.clone(), *id);
                }
            }
        }
        for (id, key) in columns.id.iter().zip(&keys) {
            if let Some(key) = key {
                if !created.contains(id) && !by_key.contains_key(key) {
                    missing.push(key.clone());
                }
            }
        }
        if !missing.is_empty() {
            let (jobs, keys): (Vec<String>, Vec<String>) = missing.into_iter().unzip();
            let existing: Vec<(String, String, Uuid)> = sqlx::query_as(&self.sql.existing_keys)
                .bind(&jobs)
                .bind(&keys)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| Error::backend("reading tasks by idempotency key", e))?;
            for (job, key, id) in existing {
                by_key.insert((job, key), id);
            }
        }
        let inserted = columns
            .id
            .iter()
            .zip(&keys)
            .map(|(id, key)| {
                if created.contains(id) {
                    return Ok(Inserted {
                        id: TaskId::from_uuid(*id),
                        created: true,
                    });
                }
                key.as_ref()
                    .and_then(|key| by_key.get(key))
                    .map(|existing| Inserted {
                        id: TaskId::from_uuid(*existing),
                        created: false,
                    })
                    .ok_or_else(|| {
                        Error::backend(
                            "inserting tasks",
                            format!(
                                "task {id} was neither inserted nor matched by its idempotency key \
                                 (the task holding the key was purged meanwhile, or was inserted by \
                                 a transaction this one's snapshot cannot see); submit it again"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((inserted, any_due))
    }
}

/// A failed insert: a task id in use is the caller's mistake, anything else the database's.
fn insert_error(err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() && db.constraint() == Some("tasks_pkey") {
            return Error::InvalidInput(
                "a task id in this batch is already in use (or appears twice); nothing was inserted"
                    .to_owned(),
            );
        }
    }
    Error::backend("inserting tasks", err)
}

impl PostgresBackend {
    pub(super) async fn direct_insert(&self, tasks: Vec<NewTask>) -> Result<Vec<Inserted>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| Error::backend("inserting tasks", e))?;
        let (inserted, any_due) = if tasks.iter().any(|t| t.group.is_some()) {
            // A group's members and its count change together.
            let mut tx = conn
                .begin()
                .await
                .map_err(|e| Error::backend("inserting tasks", e))?;
            let done = self.insert_on(&mut tx, tasks).await?;
            tx.commit()
                .await
                .map_err(|e| Error::backend("committing inserted tasks", e))?;
            done
        } else {
            self.insert_on(&mut conn, tasks).await?
        };
        drop(conn);
        if any_due {
            // Workers in this process need not wait for the notification's round trip.
            self.notifier.wake_local();
        }
        Ok(inserted)
    }

    pub(super) async fn direct_get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        let row: Option<TaskRow> = sqlx::query_as(&self.sql.get)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| Error::backend(format!("reading task {id}"), e))?;
        row.map(|r| r.into_record(self.now())).transpose()
    }

    pub(super) async fn direct_list(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>> {
        let now = self.now();
        let statuses: Option<Vec<&str>> = (!query.statuses.is_empty())
            .then(|| query.statuses.iter().map(|s| s.as_str()).collect());
        let sql = if query.group.is_some() {
            &self.sql.list_group
        } else {
            &self.sql.list
        };
        let mut list = sqlx::query_as(sql)
            .bind(query.job.as_deref())
            .bind(statuses)
            .bind(query.owner.as_deref())
            .bind(query.after.map(TaskId::as_uuid))
            .bind(to_i64(query.effective_limit() as u64))
            .bind(millis(now));
        if let Some(group) = query.group {
            list = list.bind(group.as_uuid());
        }
        let rows: Vec<TaskRow> = list
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::backend("listing tasks", e))?;
        rows.into_iter().map(|r| r.into_record(now)).collect()
    }

    pub(super) async fn direct_cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        let what = || format!("cancelling task {id}");
        let now = self.now();
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| Error::backend(what(), e))?;
        let mut tx = conn.begin().await.map_err(|e| Error::backend(what(), e))?;
        let status: Option<String> = sqlx::query_scalar(&self.sql.cancel_lock)
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| Error::backend(what(), e))?;
        let status = parse_status(&status.ok_or(Error::NotFound(id))?)?;
        let outcome = match status {
            s if s.is_final() => CancelOutcome::AlreadyFinished(s),
            TaskStatus::Running => {
                sqlx::query(&self.sql.cancel_running)
                    .bind(id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::backend(what(), e))?;
                CancelOutcome::Requested
            }
            _ => {
                sqlx::query(&self.sql.cancel_waiting)
                    .bind(id.as_uuid())
                    .bind(millis(now))
                    .bind(max_millis())
                    .bind(self.notifier.channel())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Error::backend(what(), e))?;
                CancelOutcome::Cancelled
            }
        };
        tx.commit().await.map_err(|e| Error::backend(what(), e))?;
        Ok(outcome)
    }

    pub(super) async fn direct_retry(&self, ids: &[TaskId]) -> Result<Vec<RetryOutcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let uuids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        let retried: Vec<(Uuid, i64)> = sqlx::query_as(&self.sql.retry)
            .bind(&uuids)
            .bind(millis(self.now()))
            .bind(self.notifier.channel())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::backend("retrying tasks", e))?;
        let retried: HashSet<Uuid> = retried.into_iter().map(|(id, _)| id).collect();
        if !retried.is_empty() {
            self.notifier.wake_local();
        }
        let states = self.task_states(&uuids).await?;
        uuids
            .iter()
            .map(|id| {
                if retried.contains(id) {
                    return Ok(RetryOutcome::Retried);
                }
                Ok(match states.get(id) {
                    None => RetryOutcome::NotFound,
                    Some((status, grouped)) => match parse_status(status)? {
                        TaskStatus::Failed | TaskStatus::Cancelled if *grouped => {
                            RetryOutcome::InGroup
                        }
                        status => RetryOutcome::NotRetryable(status),
                    },
                })
            })
            .collect()
    }

    pub(super) async fn direct_delete(&self, ids: &[TaskId]) -> Result<Vec<DeleteOutcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let uuids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        let deleted: Vec<Uuid> = sqlx::query_scalar(&self.sql.delete)
            .bind(&uuids)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::backend("deleting tasks", e))?;
        let deleted: HashSet<Uuid> = deleted.into_iter().collect();
        let states = self.task_states(&uuids).await?;
        // An id named twice is deleted once: the second time it is not found.
        let mut seen = HashSet::new();
        uuids
            .iter()
            .map(|id| {
                if deleted.contains(id) && seen.insert(*id) {
                    return Ok(DeleteOutcome::Deleted);
                }
                Ok(match states.get(id) {
                    None => DeleteOutcome::NotFound,
                    Some((status, _)) => DeleteOutcome::NotFinished(parse_status(status)?),
                })
            })
            .collect()
    }

    /// The status of each of the tasks that exist, and whether it is in a group.
    async fn task_states(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, (String, bool)>> {
        let rows: Vec<(Uuid, String, bool)> = sqlx::query_as(&self.sql.task_states)
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::backend("reading tasks", e))?;
        Ok(rows
            .into_iter()
            .map(|(id, status, grouped)| (id, (status, grouped)))
            .collect())
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
            .map_err(|e| Error::backend("encoding a worker's description", e))?;
        sqlx::query(&self.sql.register_worker)
            .bind(&info.id)
            .bind(json)
            .bind(millis(longtask_core::saturating_add(now, ttl)))
            .execute(&self.pool)
            .await
            .map_err(|e| Error::backend("registering a worker", e))?;
        Ok(())
    }

    pub(super) async fn direct_unregister_worker(&self, id: &str) -> Result<()> {
        sqlx::query(&self.sql.unregister_worker)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| Error::backend("unregistering a worker", e))?;
        Ok(())
    }

    pub(super) async fn direct_workers(&self) -> Result<Vec<WorkerInfo>> {
        let now = millis(self.now());
        sqlx::query(&self.sql.expire_workers)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| Error::backend("removing the entries of lost workers", e))?;
        let rows: Vec<String> = sqlx::query_scalar(&self.sql.workers)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::backend("listing workers", e))?;
        rows.iter()
            .map(|json| {
                serde_json::from_str(json)
                    .map_err(|e| Error::backend("decoding a worker's description", e))
            })
            .collect()
    }

    pub(super) async fn direct_purge(&self, limit: usize) -> Result<u64> {
        if limit == 0 {
            return Ok(0);
        }
        let now = millis(self.now());
        let purged: i64 = sqlx::query_scalar(&self.sql.purge)
            .bind(now)
            .bind(to_i64(limit as u64))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| Error::backend("purging finished tasks", e))?;
        sqlx::query(&self.sql.fold_throughput)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| Error::backend("folding old minutes of throughput", e))?;
        Ok(u64::try_from(purged).unwrap_or(0))
    }
}

//! [`Queue`] for [`SqliteBackend`]: claims, heartbeats, outcomes, releases and recovery, each a
//! single `BEGIN IMMEDIATE` transaction of a few set-based statements per batch.
//!
//! Outcomes follow the same steps as [`MemoryBackend`](longtask_core::MemoryBackend): the rows
//! under live leases are read (fenced by their token), the rules decide each task's next state
//! here in Rust, and one `UPDATE … FROM json_each(…)` writes them all.

use std::{
    cmp::Reverse,
    collections::{HashMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use longtask_core::{
    saturating_add, Ack, AttemptOutcome, Checkpoint, CheckpointInfo, ClaimRequest, ClaimedTask,
    Completion, Error, JobLimits, Lease, LeaseState, Outcome, Result, TaskEvent, TaskId,
    TaskStatus, WorkSignal, GROUP_JOB,
};
use serde::Serialize;
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::{
    db,
    row::{self, count, hex, millis, progress_json},
    stats::count_finished,
    store::purge_at,
    SqliteBackend,
};

const PROMOTE: &str = include_str!("sql/promote.sql");
const CLAIM_CANDIDATES: &str = include_str!("sql/claim_candidates.sql");
const CLAIM: &str = include_str!("sql/claim.sql");
const LOAD_LEASED: &str = include_str!("sql/load_leased.sql");
const LOAD_EXPIRED: &str = include_str!("sql/load_expired.sql");
const SETTLE: &str = include_str!("sql/settle.sql");
const HEARTBEAT: &str = include_str!("sql/heartbeat.sql");
const RELEASE: &str = include_str!("sql/release.sql");
const RUNNING_COUNTS: &str = include_str!("sql/running_counts.sql");
const CLAIM_CANDIDATES_AFTER: &str = include_str!("sql/claim_candidates_after.sql");
const LEAVE_GROUP: &str = include_str!("sql/leave_group.sql");
const FIRE_ROOT: &str = include_str!("sql/fire_root.sql");
const SAVE_CHECKPOINT: &str = include_str!("sql/save_checkpoint.sql");
const LOAD_CHECKPOINT: &str = include_str!("sql/load_checkpoint.sql");

/// A task's new state, as `settle.sql` reads it; `None` keeps the stored value.
#[derive(Debug, Serialize)]
pub(crate) struct Settle {
    id: String,
    #[serde(serialize_with = "status_str")]
    status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purge_at: Option<i64>,
    /// How the running attempt ended without success: appended to the attempt history.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<AttemptOutcome>,
    /// The task's group (its root's id), if it is a member: a final change discounts it there.
    #[serde(skip)]
    pub(crate) group: Option<Vec<u8>>,
    /// The task's job: a final change counts it in the job's stats.
    #[serde(skip)]
    pub(crate) job: String,
}

fn status_str<S: serde::Serializer>(status: &TaskStatus, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(status.as_str())
}

impl Settle {
    /// A change of `task` to `status`, nothing else changed yet.
    pub(crate) fn new(task: TaskId, status: TaskStatus) -> Self {
        Self {
            id: hex(task),
            status,
            run_at: None,
            error: None,
            error_at: None,
            progress: None,
            output: None,
            finished_at: None,
            purge_at: None,
            outcome: None,
            group: None,
            job: String::new(),
        }
    }

    /// Marks the task finished at `now`, to be purged after its retention.
    pub(crate) fn finish(&mut self, now: DateTime<Utc>, retention_ms: i64) {
        self.finished_at = Some(millis(now));
        self.purge_at = Some(purge_at(now, retention_ms));
    }
}

/// Group roots that [`settle`] fired: their watch events, and whether one became due (so that
/// workers are woken after the commit).
#[derive(Debug, Default)]
pub(crate) struct Fired {
    pub(crate) events: Vec<(TaskId, i64, Vec<TaskEvent>)>,
    pub(crate) due: bool,
}

/// Writes the changes (one statement for the batch), then discounts the members that reached a
/// final status in their groups, firing the roots whose last member this was.
pub(crate) async fn settle(
    tx: &mut Transaction<'static, Sqlite>,
    changes: &[Settle],
) -> Result<Fired> {
    if changes.is_empty() {
        return Ok(Fired::default());
    }
    let batch = serde_json::to_string(changes)
        .map_err(|err| Error::backend("encoding task changes", err))?;
    sqlx::query(SETTLE)
        .bind(batch)
        .execute(&mut **tx)
        .await
        .map_err(db("recording task changes"))?;
    count_finished(
        tx,
        changes.iter().filter_map(|change| {
            let at = change.finished_at?;
            Some((change.job.as_str(), change.status, at))
        }),
    )
    .await?;
    let mut left: HashMap<&[u8], (i64, i64)> = HashMap::new();
    for change in changes {
        if let (Some(root), Some(at)) = (&change.group, change.finished_at) {
            let entry = left.entry(root.as_slice()).or_insert((0, at));
            entry.0 += 1;
        }
    }
    let mut fired = Fired::default();
    let mut roots: Vec<(&[u8], (i64, i64))> = left.into_iter().collect();
    roots.sort_unstable();
    for (root, (ended, now)) in roots {
        let row: Option<(i64, String, String, i64, i64)> = sqlx::query_as(LEAVE_GROUP)
            .bind(root)
            .bind(ended)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("counting down a group"))?;
        let Some((open, status, job, retention_ms, version)) = row else {
            continue;
        };
        if open > 0 || status != TaskStatus::Scheduled.as_str() {
            continue;
        }
        let id = row::task_id(root)?;
        let status = if job == GROUP_JOB {
            let mut done = Settle::new(id, TaskStatus::Succeeded);
            done.output = Some("null".to_owned());
            done.finish(
                chrono::DateTime::from_timestamp_millis(now).unwrap_or_default(),
                retention_ms,
            );
            count_finished(tx, [(job.as_str(), TaskStatus::Succeeded, now)]).await?;
            let batch = serde_json::to_string(&[done])
                .map_err(|err| Error::backend("encoding task changes", err))?;
            sqlx::query(SETTLE)
                .bind(batch)
                .execute(&mut **tx)
                .await
                .map_err(db("finishing a group"))?;
            TaskStatus::Succeeded
        } else {
            sqlx::query(FIRE_ROOT)
                .bind(root)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(db("starting a group's completion"))?;
            fired.due = true;
            TaskStatus::Queued
        };
        fired
            .events
            .push((id, version + 1, vec![TaskEvent::Status { status }]));
    }
    Ok(fired)
}

/// A running task as `load_leased.sql` and `load_expired.sql` read it.
#[derive(Debug, sqlx::FromRow)]
struct LeasedRow {
    id: Vec<u8>,
    job: String,
    token: i64,
    attempt: i64,
    max_attempts: i64,
    cancel_requested: bool,
    retention_ms: i64,
    version: i64,
    group_id: Option<Vec<u8>>,
}

/// One claimed row, as `claim.sql` returns it.
#[derive(Debug, sqlx::FromRow)]
struct ClaimedRow {
    id: Vec<u8>,
    job: String,
    params: String,
    attempt: i64,
    max_attempts: i64,
    token: i64,
    version: i64,
    run_at: i64,
}

/// A lease as the heartbeat and release statements read it.
#[derive(Serialize)]
struct LeaseRef {
    id: String,
    token: u64,
}

fn lease_batch(leases: &[Lease]) -> Result<String> {
    let refs: Vec<LeaseRef> = leases
        .iter()
        .map(|l| LeaseRef {
            id: hex(l.task),
            token: l.token,
        })
        .collect();
    serde_json::to_string(&refs).map_err(|err| Error::backend("encoding leases", err))
}

fn id_batch<'a>(ids: impl Iterator<Item = &'a [u8]>) -> Result<String> {
    let hexes: Vec<String> = ids
        .map(|bytes| Uuid::from_slice(bytes).map(|u| u.simple().to_string()))
        .collect::<Result<_, _>>()
        .map_err(|err| Error::backend("decoding a stored task id", err))?;
    serde_json::to_string(&hexes).map_err(|err| Error::backend("encoding task ids", err))
}

fn token(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
}

/// Ends a failed (or lost) attempt of `row`, recorded in its attempt history: a retry after `retry_after` when attempts remain and no
/// cancellation was requested, otherwise failed (or cancelled, when it was requested). Returns
/// whether a retry was scheduled.
fn fail_attempt(
    change: &mut Settle,
    row: &LeasedRow,
    outcome: AttemptOutcome,
    error: String,
    retry_after: Option<Duration>,
    now: DateTime<Utc>,
) -> bool {
    change.outcome = Some(outcome);
    change.error = Some(error);
    change.error_at = Some(millis(now));
    let retry = retry_after.filter(|_| row.attempt < row.max_attempts && !row.cancel_requested);
    if let Some(delay) = retry {
        change.status = TaskStatus::Retrying;
        change.run_at = Some(millis(saturating_add(now, delay)));
        true
    } else {
        change.status = if row.cancel_requested {
            TaskStatus::Cancelled
        } else {
            TaskStatus::Failed
        };
        change.finish(now, row.retention_ms);
        false
    }
}

impl SqliteBackend {
    /// The due waiting tasks to claim, in claim order, across the requested jobs.
    async fn candidates(
        tx: &mut Transaction<'static, Sqlite>,
        jobs: &[String],
        now: i64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let per_job = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut seen = HashSet::with_capacity(jobs.len());
        let mut found: Vec<(i64, i64, Vec<u8>)> = Vec::new();
        for job in jobs {
            if !seen.insert(job.as_str()) {
                continue;
            }
            let rows: Vec<(Vec<u8>, i64, i64)> = sqlx::query_as(CLAIM_CANDIDATES)
                .bind(job)
                .bind(now)
                .bind(per_job)
                .fetch_all(&mut **tx)
                .await
                .map_err(db("finding tasks to claim"))?;
            found.extend(
                rows.into_iter()
                    .map(|(id, priority, run_at)| (priority, run_at, id)),
            );
        }
        if seen.len() > 1 {
            found
                .sort_unstable_by(|a, b| (Reverse(a.0), a.1, &a.2).cmp(&(Reverse(b.0), b.1, &b.2)));
            found.truncate(limit);
        }
        Ok(found.into_iter().map(|(_, _, id)| id).collect())
    }
}

/// Candidates a claim under concurrency limits reads per page of the ready index.
const LIMITED_PAGE: usize = 256;

impl SqliteBackend {
    /// The due waiting tasks to claim, in claim order, across the requested jobs, skipping those
    /// over a concurrency limit (counted from the tasks running now: claims are serialized by
    /// the writer's `BEGIN IMMEDIATE`, so the counts cannot change under this one). The tasks of
    /// a job do not affect another job's limits, so each job is walked on its own, past the
    /// tasks it must skip, and the results are merged in claim order.
    async fn limited_candidates(
        tx: &mut Transaction<'static, Sqlite>,
        request: ClaimRequest<'_>,
        now: i64,
    ) -> Result<Vec<Vec<u8>>> {
        let mut seen = HashSet::with_capacity(request.jobs.len());
        let mut found: Vec<(i64, i64, Vec<u8>)> = Vec::new();
        for job in request.jobs {
            if !seen.insert(job.as_str()) {
                continue;
            }
            let Some(limits) = request
                .limits
                .iter()
                .find(|l| &l.job == job && l.is_limited())
            else {
                let per_job = i64::try_from(request.limit).unwrap_or(i64::MAX);
                let rows: Vec<(Vec<u8>, i64, i64)> = sqlx::query_as(CLAIM_CANDIDATES)
                    .bind(job)
                    .bind(now)
                    .bind(per_job)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db("finding tasks to claim"))?;
                found.extend(rows.into_iter().map(|(id, p, r)| (p, r, id)));
                continue;
            };
            let running: Vec<(Option<String>, i64)> = sqlx::query_as(RUNNING_COUNTS)
                .bind(job)
                .fetch_all(&mut **tx)
                .await
                .map_err(db("counting running tasks"))?;
            let mut total: u64 = running.iter().map(|(_, n)| u64::from(count(*n))).sum();
            let mut per_key: HashMap<String, u64> = running
                .into_iter()
                .filter_map(|(key, n)| key.map(|k| (k, u64::from(count(n)))))
                .collect();
            let max_total = limits.max_running.map_or(u64::MAX, u64::from);
            let room = usize::try_from(max_total.saturating_sub(total)).unwrap_or(usize::MAX);
            let wanted = request.limit.min(room);
            let mut taken = 0;
            // Claim order is priority descending: start above every priority.
            let mut after: (i64, i64, Vec<u8>) = (i64::MAX, i64::MIN, Vec::new());
            'pages: while taken < wanted {
                let page: Vec<(Vec<u8>, i64, i64, Option<String>)> =
                    sqlx::query_as(CLAIM_CANDIDATES_AFTER)
                        .bind(job)
                        .bind(now)
                        .bind(after.0)
                        .bind(after.1)
                        .bind(&after.2)
                        .bind(LIMITED_PAGE as i64)
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(db("finding tasks to claim under limits"))?;
                let last_page = page.len() < LIMITED_PAGE;
                for (id, priority, run_at, key) in page {
                    after = (priority, run_at, id.clone());
                    if total >= max_total {
                        break 'pages;
                    }
                    if let (Some(max), Some(key)) = (limits.max_running_per_key, key) {
                        let running = per_key.entry(key).or_default();
                        if *running >= u64::from(max) {
                            continue;
                        }
                        *running += 1;
                    }
                    total += 1;
                    taken += 1;
                    found.push((priority, run_at, id));
                    if taken == wanted {
                        break 'pages;
                    }
                }
                if last_page {
                    break;
                }
            }
        }
        found.sort_unstable_by(|a, b| (Reverse(a.0), a.1, &a.2).cmp(&(Reverse(b.0), b.1, &b.2)));
        found.truncate(request.limit);
        Ok(found.into_iter().map(|(_, _, id)| id).collect())
    }

    pub(super) async fn direct_claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedTask>> {
        if request.limit == 0 || request.jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let expires = saturating_add(now, request.lease);
        let mut tx = self.begin("starting to claim tasks").await?;
        sqlx::query(PROMOTE)
            .bind(millis(now))
            .execute(&mut *tx)
            .await
            .map_err(db("marking due scheduled tasks queued"))?;
        let order = if request.limits.iter().any(JobLimits::is_limited) {
            Self::limited_candidates(&mut tx, request, millis(now)).await?
        } else {
            Self::candidates(&mut tx, request.jobs, millis(now), request.limit).await?
        };
        if order.is_empty() {
            tx.commit().await.map_err(db("committing a claim"))?;
            return Ok(Vec::new());
        }
        let rows: Vec<ClaimedRow> = sqlx::query_as(CLAIM)
            .bind(id_batch(order.iter().map(Vec::as_slice))?)
            .bind(request.worker)
            .bind(millis(expires))
            .bind(millis(now))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("claiming tasks"))?;
        tx.commit().await.map_err(db("committing claimed tasks"))?;
        let mut by_id: HashMap<Vec<u8>, ClaimedRow> =
            rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut claimed = Vec::with_capacity(order.len());
        let mut events = Vec::new();
        let watched = self.watched();
        for id in order {
            let Some(row) = by_id.remove(&id) else {
                continue;
            };
            let task = row::task_id(&row.id)?;
            if watched {
                events.push((
                    task,
                    row.version,
                    vec![TaskEvent::Status {
                        status: TaskStatus::Running,
                    }],
                ));
            }
            claimed.push(ClaimedTask {
                lease: Lease {
                    task,
                    token: token(row.token),
                },
                job: row.job,
                params: row.params,
                attempt: count(row.attempt),
                max_attempts: count(row.max_attempts),
                due_at: crate::codec::time(row.run_at),
            });
        }
        if watched {
            self.emit(events);
        }
        Ok(claimed)
    }

    pub(super) async fn direct_heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let expires = millis(saturating_add(self.now(), extend));
        let batch = lease_batch(leases)?;
        let mut tx = self.begin("starting a heartbeat").await?;
        let rows: Vec<(Vec<u8>, i64, bool)> = sqlx::query_as(HEARTBEAT)
            .bind(batch)
            .bind(expires)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("extending leases"))?;
        tx.commit()
            .await
            .map_err(db("committing extended leases"))?;
        let mut held = HashMap::with_capacity(rows.len());
        for (id, stored, cancel_requested) in rows {
            held.insert((row::task_id(&id)?, token(stored)), cancel_requested);
        }
        Ok(leases
            .iter()
            .map(|l| match held.get(&(l.task, l.token)) {
                Some(&cancel_requested) => LeaseState::Held { cancel_requested },
                None => LeaseState::Lost,
            })
            .collect())
    }

    pub(super) async fn direct_finish(&self, completions: Vec<Completion>) -> Result<Vec<Ack>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let ids: Vec<String> = completions.iter().map(|c| hex(c.lease.task)).collect();
        let ids =
            serde_json::to_string(&ids).map_err(|err| Error::backend("encoding task ids", err))?;
        let mut tx = self.begin("starting to record task outcomes").await?;
        let rows: Vec<LeasedRow> = sqlx::query_as(LOAD_LEASED)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading leased tasks"))?;
        let mut live = HashMap::with_capacity(rows.len());
        for row in rows {
            live.insert(row::task_id(&row.id)?, row);
        }
        let watched = self.watched();
        let mut acks = Vec::with_capacity(completions.len());
        let mut changes = Vec::with_capacity(completions.len());
        let mut events = Vec::new();
        let mut retried = false;
        for completion in completions {
            let id = completion.lease.task;
            // Taken out when its lease matches, so that a second outcome for the same lease is
            // stale; an outcome under an older lease leaves it for the live one.
            let live_lease = live
                .get(&id)
                .is_some_and(|r| token(r.token) == completion.lease.token);
            let Some(row) = live_lease.then(|| live.remove(&id)).flatten() else {
                acks.push(Ack::Stale);
                continue;
            };
            let mut change = Settle::new(id, TaskStatus::Succeeded);
            let mut task_events = Vec::new();
            if let Some(progress) = completion.progress {
                change.progress = Some(progress_json(&progress)?);
                if watched {
                    task_events.push(TaskEvent::Progress(progress));
                }
            }
            match completion.outcome {
                Outcome::Succeeded { output } => {
                    change.output = Some(output);
                    change.finish(now, row.retention_ms);
                }
                Outcome::Failed { error, retry_after } => {
                    retried |= fail_attempt(
                        &mut change,
                        &row,
                        AttemptOutcome::Failed,
                        error,
                        retry_after,
                        now,
                    );
                }
                Outcome::Cancelled { reason } => {
                    change.status = TaskStatus::Cancelled;
                    change.outcome = Some(AttemptOutcome::Cancelled);
                    change.error = Some(reason);
                    change.error_at = Some(millis(now));
                    change.finish(now, row.retention_ms);
                }
            }
            if watched {
                task_events.push(TaskEvent::Status {
                    status: change.status,
                });
                events.push((id, row.version + 1, task_events));
            }
            change.group = row.group_id;
            change.job = row.job;
            changes.push(change);
            acks.push(Ack::Applied);
        }
        let mut fired = settle(&mut tx, &changes).await?;
        tx.commit().await.map_err(db("committing task outcomes"))?;
        events.append(&mut fired.events);
        if watched || !events.is_empty() {
            self.emit(events);
        }
        if retried || fired.due {
            self.wake();
        }
        Ok(acks)
    }

    pub(super) async fn direct_release(&self, leases: &[Lease]) -> Result<Vec<Ack>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let now = millis(self.now());
        let batch = lease_batch(leases)?;
        let mut tx = self.begin("starting to release tasks").await?;
        let rows: Vec<(Vec<u8>, i64, i64)> = sqlx::query_as(RELEASE)
            .bind(batch)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("releasing tasks"))?;
        tx.commit().await.map_err(db("committing released tasks"))?;
        let mut released = HashMap::with_capacity(rows.len());
        for (id, stored, version) in rows {
            released.insert((row::task_id(&id)?, token(stored)), version);
        }
        let mut events = Vec::new();
        let acks: Vec<Ack> = leases
            .iter()
            .map(|l| match released.remove(&(l.task, l.token)) {
                Some(version) => {
                    events.push((
                        l.task,
                        version,
                        vec![TaskEvent::Status {
                            status: TaskStatus::Queued,
                        }],
                    ));
                    Ack::Applied
                }
                None => Ack::Stale,
            })
            .collect();
        if !events.is_empty() {
            self.emit(events);
            self.wake();
        }
        Ok(acks)
    }

    pub(super) async fn direct_recover_expired(&self, limit: usize) -> Result<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(0);
        }
        let now = self.now();
        let mut tx = self.begin("starting to recover expired leases").await?;
        let rows: Vec<LeasedRow> = sqlx::query_as(LOAD_EXPIRED)
            .bind(millis(now))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("finding expired leases"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut changes = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        let mut retried = false;
        for row in &rows {
            let id = row::task_id(&row.id)?;
            let error = format!(
                "attempt {} was lost: its worker stopped renewing the lease (crashed, killed or stalled)",
                row.attempt
            );
            let mut change = Settle::new(id, TaskStatus::Failed);
            retried |= fail_attempt(
                &mut change,
                row,
                AttemptOutcome::Lost,
                error,
                Some(Duration::ZERO),
                now,
            );
            events.push((
                id,
                row.version + 1,
                vec![TaskEvent::Status {
                    status: change.status,
                }],
            ));
            change.group.clone_from(&row.group_id);
            change.job.clone_from(&row.job);
            changes.push(change);
        }
        let mut fired = settle(&mut tx, &changes).await?;
        tx.commit()
            .await
            .map_err(db("committing recovered tasks"))?;
        events.append(&mut fired.events);
        self.emit(events);
        if retried || fired.due {
            self.wake();
        }
        Ok(rows.len() as u64)
    }

    pub(super) async fn direct_save_checkpoint(&self, checkpoint: Checkpoint) -> Result<Ack> {
        let Checkpoint {
            lease,
            ref state,
            ref progress,
            ..
        } = checkpoint;
        let Ok(token) = i64::try_from(lease.token) else {
            return Ok(Ack::Stale);
        };
        let info = CheckpointInfo::new(&checkpoint, self.now()).to_json();
        let progress_text = progress.as_ref().map(row::progress_json).transpose()?;
        let mut tx = self.begin("starting to save a checkpoint").await?;
        let version: Option<i64> = sqlx::query_scalar(SAVE_CHECKPOINT)
            .bind(lease.task.as_uuid())
            .bind(token)
            .bind(state)
            .bind(info)
            .bind(progress_text)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("saving a checkpoint"))?;
        let Some(version) = version else {
            return Ok(Ack::Stale);
        };
        tx.commit().await.map_err(db("committing a checkpoint"))?;
        if let Some(progress) = checkpoint.progress {
            if self.watched() {
                self.emit(vec![(
                    lease.task,
                    version,
                    vec![TaskEvent::Progress(progress)],
                )]);
            }
        }
        Ok(Ack::Applied)
    }

    pub(super) async fn direct_load_checkpoint(&self, task: TaskId) -> Result<Option<String>> {
        let stored: Option<Option<String>> = sqlx::query_scalar(LOAD_CHECKPOINT)
            .bind(task.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(db("loading a checkpoint"))?;
        Ok(stored.flatten())
    }

    pub(super) fn direct_work_signal(&self) -> WorkSignal {
        WorkSignal::new(self.shared.signal.subscribe())
    }
}

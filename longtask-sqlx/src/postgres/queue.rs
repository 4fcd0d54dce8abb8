//! [`Queue`] for [`PostgresBackend`]: batch claim with `FOR UPDATE SKIP LOCKED`, heartbeats,
//! batch completion fenced by lease token, release, and recovery of expired leases.

use std::{
    cmp::Reverse,
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use longtask_core::{
    saturating_add, Ack, Checkpoint, CheckpointInfo, ClaimRequest, ClaimedTask, Completion, Error,
    JobLimits, Lease, LeaseState, Outcome, Result, TaskId, WorkSignal,
};
use uuid::Uuid;

use super::{
    cursor::Key,
    max_millis, millis,
    row::{count, encode_progress},
    to_i64, PostgresBackend,
};

/// A claimed row: id, job, params, attempt, max_attempts, token, priority, run_at.
type ClaimedRow = (Uuid, String, String, i64, i64, i64, i32, i64);

/// A lease's token as stored; tokens beyond `i64` never match (stored tokens start at 1).
fn token(lease: &Lease) -> i64 {
    i64::try_from(lease.token).unwrap_or(-1)
}

/// The leases' ids and tokens, as two arrays.
fn lease_columns(leases: &[Lease]) -> (Vec<Uuid>, Vec<i64>) {
    leases.iter().map(|l| (l.task.as_uuid(), token(l))).unzip()
}

/// Acks in order: applied when the lease is among those the statement changed.
fn acks(leases: &[Lease], applied: &HashSet<(Uuid, i64)>) -> Vec<Ack> {
    let mut seen = HashSet::with_capacity(leases.len());
    leases
        .iter()
        .map(|l| {
            let key = (l.task.as_uuid(), token(l));
            // A lease listed twice is applied once.
            if applied.contains(&key) && seen.insert(key) {
                Ack::Applied
            } else {
                Ack::Stale
            }
        })
        .collect()
}

/// Per job, the greatest key (in claim order) among `rows`.
fn last_keys(rows: &[ClaimedRow]) -> HashMap<&str, Key> {
    let mut last: HashMap<&str, Key> = HashMap::new();
    for row in rows {
        let key = Key {
            priority: row.6,
            run_at: row.7,
            id: row.0,
        };
        last.entry(row.1.as_str())
            .and_modify(|k| *k = (*k).max(key))
            .or_insert(key);
    }
    last
}

/// The claimed rows as tasks, in claim order.
fn claimed_tasks(mut rows: Vec<ClaimedRow>) -> Vec<ClaimedTask> {
    rows.sort_unstable_by_key(|r| (Reverse(r.6), r.7, r.0));
    rows.into_iter()
        .map(
            |(id, job, params, attempt, max_attempts, token, _, run_at)| ClaimedTask {
                lease: Lease {
                    task: TaskId::from_uuid(id),
                    token: u64::try_from(token).unwrap_or(0),
                },
                job,
                params,
                attempt: count(attempt),
                max_attempts: count(max_attempts),
                due_at: crate::codec::time(run_at),
            },
        )
        .collect()
}

/// Candidates a claim under concurrency limits reads (and locks) per page of the waiting-tasks
/// index at most: the page is as large as the tasks still wanted, within 16 to 256.
const LIMITED_PAGE: i64 = 256;

/// The advisory lock that serializes the claims of one limited job in one schema: a stable
/// 64-bit FNV-1a hash of both names (the same in every process and version).
fn limit_lock(schema: &str, job: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"longtask-limit\0"
        .iter()
        .chain(schema.as_bytes())
        .chain(b"\0")
        .chain(job.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl PostgresBackend {
    /// A claim under concurrency limits, in one transaction. The claims of each limited job are
    /// serialized by an advisory transaction lock (taken in job-name order, so two claims never
    /// wait on each other in a cycle): the running tasks it counts cannot change until it
    /// commits. Each job is walked on its own in claim order (its tasks do not affect another
    /// job's limits), past the tasks over a limit, and the best of all jobs are leased. Claims
    /// without limits take no lock and never wait on these.
    async fn claim_limited(
        &self,
        request: &ClaimRequest<'_>,
        jobs: &[&str],
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<Vec<ClaimedRow>> {
        let fail = |doing: &'static str| move |e: sqlx::Error| Error::backend(doing, e);
        let limits_of = |job: &str| {
            request
                .limits
                .iter()
                .find(|l| l.job == job && l.is_limited())
        };
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(fail("starting a claim under concurrency limits"))?;
        let mut limited: Vec<&str> = jobs
            .iter()
            .copied()
            .filter(|j| limits_of(j).is_some())
            .collect();
        limited.sort_unstable();
        for job in &limited {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(limit_lock(&self.schema, job))
                .execute(&mut *tx)
                .await
                .map_err(fail("locking a limited job's claims"))?;
        }
        let mut found: Vec<(i32, i64, Uuid)> = Vec::new();
        for job in jobs {
            let limits = limits_of(job);
            let mut total: u64 = 0;
            let mut per_key: HashMap<String, u64> = HashMap::new();
            if limits.is_some() {
                let running: Vec<(Option<String>, i64)> = sqlx::query_as(&self.sql.running_counts)
                    .bind(*job)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(fail("counting running tasks"))?;
                for (key, n) in running {
                    let n = u64::try_from(n).unwrap_or(0);
                    total += n;
                    if let Some(key) = key {
                        per_key.insert(key, n);
                    }
                }
            }
            let max_total = limits
                .and_then(|l| l.max_running)
                .map_or(u64::MAX, u64::from);
            let per_key_max = limits.and_then(|l| l.max_running_per_key).map(u64::from);
            let room = usize::try_from(max_total.saturating_sub(total)).unwrap_or(usize::MAX);
            let wanted = request.limit.min(room);
            let mut taken = 0;
            let mut after: (i64, i64, Uuid) = (i64::MAX, i64::MIN, Uuid::nil());
            'pages: while taken < wanted {
                let page_size = to_i64((wanted - taken) as u64).clamp(16, LIMITED_PAGE);
                let page: Vec<(Uuid, i32, i64, Option<String>)> =
                    sqlx::query_as(&self.sql.claim_candidates_after)
                        .bind(*job)
                        .bind(millis(now))
                        .bind(after.0)
                        .bind(after.1)
                        .bind(after.2)
                        .bind(page_size)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(fail("finding tasks to claim under limits"))?;
                let last_page = (page.len() as i64) < page_size;
                for (id, priority, run_at, key) in page {
                    after = (i64::from(priority), run_at, id);
                    if let (Some(max), Some(key)) = (per_key_max, key) {
                        let running = per_key.entry(key).or_default();
                        if *running >= max {
                            continue;
                        }
                        *running += 1;
                    }
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
        found.sort_unstable_by_key(|&(priority, run_at, id)| (Reverse(priority), run_at, id));
        found.truncate(request.limit);
        if found.is_empty() {
            tx.commit()
                .await
                .map_err(fail("committing a claim under concurrency limits"))?;
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = found.iter().map(|&(_, _, id)| id).collect();
        let rows: Vec<ClaimedRow> = sqlx::query_as(&self.sql.claim_ids)
            .bind(&ids)
            .bind(millis(now))
            .bind(to_i64(ids.len() as u64))
            .bind(request.worker)
            .bind(millis(expires))
            .bind(self.notifier.channel())
            .fetch_all(&mut *tx)
            .await
            .map_err(fail("claiming tasks under concurrency limits"))?;
        tx.commit()
            .await
            .map_err(fail("committing a claim under concurrency limits"))?;
        Ok(rows)
    }
}

impl PostgresBackend {
    /// Runs one claim statement for up to `limit` tasks: from the head of the index, or, given
    /// the jobs' cursor keys, from the cursors on (see [`super::cursor`]).
    async fn claim_rows(
        &self,
        request: &ClaimRequest<'_>,
        jobs: &[&str],
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
        limit: usize,
        after: Option<&[Key]>,
    ) -> Result<Vec<ClaimedRow>> {
        let sql = if after.is_some() {
            &self.sql.claim_after
        } else {
            &self.sql.claim
        };
        let mut query = sqlx::query_as(sql)
            .bind(jobs)
            .bind(millis(now))
            .bind(to_i64(limit as u64))
            .bind(request.worker)
            .bind(millis(expires))
            .bind(self.notifier.channel());
        if let Some(keys) = after {
            query = query
                .bind(keys.iter().map(|k| k.priority).collect::<Vec<_>>())
                .bind(keys.iter().map(|k| k.run_at).collect::<Vec<_>>())
                .bind(keys.iter().map(|k| k.id).collect::<Vec<_>>());
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::backend("claiming tasks", e))
    }
}

impl PostgresBackend {
    pub(super) async fn direct_claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedTask>> {
        if request.limit == 0 || request.jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let expires = saturating_add(now, request.lease);
        let mut jobs: Vec<&str> = Vec::with_capacity(request.jobs.len());
        for job in request.jobs {
            if !jobs.contains(&job.as_str()) {
                jobs.push(job);
            }
        }
        let mut rows: Vec<ClaimedRow> = Vec::new();
        if request.limits.iter().any(JobLimits::is_limited) {
            rows = self.claim_limited(&request, &jobs, now, expires).await?;
            return Ok(claimed_tasks(rows));
        }
        let started = Instant::now();
        if let Some(keys) = self.cursors.keys(&jobs, started) {
            rows = self
                .claim_rows(&request, &jobs, now, expires, request.limit, Some(&keys))
                .await?;
            self.cursors.claimed(&jobs, &last_keys(&rows), None);
        }
        if rows.len() < request.limit {
            // No cursor, an old one, or nothing more after it: scan from the head.
            let more = self
                .claim_rows(
                    &request,
                    &jobs,
                    now,
                    expires,
                    request.limit - rows.len(),
                    None,
                )
                .await;
            match more {
                Ok(more) => {
                    rows.extend(more);
                    self.cursors
                        .claimed(&jobs, &last_keys(&rows), Some(started));
                }
                // The tasks claimed after the cursor are leased already: hand them out rather
                // than leave them to expire.
                Err(_) if !rows.is_empty() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(claimed_tasks(rows))
    }

    pub(super) async fn direct_heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let expires = saturating_add(self.now(), extend);
        let (ids, tokens) = lease_columns(leases);
        let rows: Vec<(Uuid, i64, bool)> = sqlx::query_as(&self.sql.heartbeat)
            .bind(&ids)
            .bind(&tokens)
            .bind(millis(expires))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::backend("extending leases", e))?;
        let held: HashMap<(Uuid, i64), bool> = rows
            .into_iter()
            .map(|(id, token, cancel)| ((id, token), cancel))
            .collect();
        Ok(ids
            .into_iter()
            .zip(tokens)
            .map(|key| match held.get(&key) {
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
        let n = completions.len();
        let leases: Vec<Lease> = completions.iter().map(|c| c.lease).collect();
        let mut ids = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut kinds: Vec<&str> = Vec::with_capacity(n);
        let mut outputs: Vec<Option<String>> = Vec::with_capacity(n);
        let mut errors: Vec<Option<String>> = Vec::with_capacity(n);
        let mut retry_at: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut progress: Vec<Option<String>> = Vec::with_capacity(n);
        let mut listed = HashSet::with_capacity(n);
        // Whether a task may go back to waiting (to be retried), perhaps before a claim cursor.
        let mut retries = false;
        for completion in completions {
            let key = (completion.lease.task.as_uuid(), token(&completion.lease));
            if !listed.insert(key) {
                // The same lease twice: the first outcome counts, the second is stale.
                continue;
            }
            ids.push(key.0);
            tokens.push(key.1);
            progress.push(
                completion
                    .progress
                    .as_ref()
                    .map(encode_progress)
                    .transpose()?,
            );
            match completion.outcome {
                Outcome::Succeeded { output } => {
                    kinds.push("succeeded");
                    outputs.push(Some(output));
                    errors.push(None);
                    retry_at.push(None);
                }
                Outcome::Failed { error, retry_after } => {
                    if retry_after.is_some() {
                        retries = true;
                    }
                    kinds.push("failed");
                    outputs.push(None);
                    errors.push(Some(error));
                    retry_at.push(retry_after.map(|d| millis(saturating_add(now, d))));
                }
                Outcome::Cancelled { reason } => {
                    kinds.push("cancelled");
                    outputs.push(None);
                    errors.push(Some(reason));
                    retry_at.push(None);
                }
            }
        }
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(&self.sql.finish)
            .bind(&ids)
            .bind(&tokens)
            .bind(&kinds)
            .bind(&outputs)
            .bind(&errors)
            .bind(&retry_at)
            .bind(&progress)
            .bind(millis(now))
            .bind(max_millis())
            .bind(self.notifier.channel())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::backend("recording outcomes", e))?;
        if retries {
            self.cursors.reset();
        }
        Ok(acks(&leases, &rows.into_iter().collect()))
    }

    pub(super) async fn direct_release(&self, leases: &[Lease]) -> Result<Vec<Ack>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, tokens) = lease_columns(leases);
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(&self.sql.release)
            .bind(&ids)
            .bind(&tokens)
            .bind(millis(self.now()))
            .bind(self.notifier.channel())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::backend("releasing tasks", e))?;
        if !rows.is_empty() {
            self.cursors.reset();
        }
        Ok(acks(leases, &rows.into_iter().collect()))
    }

    pub(super) async fn direct_recover_expired(&self, limit: usize) -> Result<u64> {
        if limit == 0 {
            return Ok(0);
        }
        let recovered: i64 = sqlx::query_scalar(&self.sql.recover)
            .bind(millis(self.now()))
            .bind(to_i64(limit as u64))
            .bind(max_millis())
            .bind(self.notifier.channel())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| Error::backend("recovering expired leases", e))?;
        if recovered > 0 {
            self.cursors.reset();
        }
        Ok(u64::try_from(recovered).unwrap_or(0))
    }

    pub(super) async fn direct_save_checkpoint(&self, checkpoint: Checkpoint) -> Result<Ack> {
        let info = CheckpointInfo::new(&checkpoint, self.now()).to_json();
        let progress = checkpoint
            .progress
            .as_ref()
            .map(encode_progress)
            .transpose()?;
        let (saved, _notified): (i64, i64) = sqlx::query_as(&self.sql.save_checkpoint)
            .bind(checkpoint.lease.task.as_uuid())
            .bind(token(&checkpoint.lease))
            .bind(&checkpoint.state)
            .bind(info)
            .bind(progress)
            .bind(self.notifier.channel())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| Error::backend("saving a checkpoint", e))?;
        Ok(if saved == 1 { Ack::Applied } else { Ack::Stale })
    }

    pub(super) async fn direct_load_checkpoint(&self, task: TaskId) -> Result<Option<String>> {
        let state: Option<Option<String>> = sqlx::query_scalar(&self.sql.load_checkpoint)
            .bind(task.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| Error::backend(format!("loading the checkpoint of task {task}"), e))?;
        Ok(state.flatten())
    }

    pub(super) fn direct_work_signal(&self) -> WorkSignal {
        self.notifier.start();
        self.notifier.work_signal()
    }
}

//! [`MemoryBackend`]: every backend trait over process memory.
//!
//! The embedded default for tests and single-process use: fast (no I/O, batch operations under
//! one lock), complete (it passes the whole conformance suite, and keeps every task's record,
//! status and output queryable until its retention ends), and not durable: tasks live only as
//! long as the process.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use std::sync::Arc;
//! use longtask_core::{Client, ManualClock, MemoryBackend};
//!
//! let clock = Arc::new(ManualClock::new());
//! let backend = MemoryBackend::new().with_clock(clock.clone());
//! let client = Client::new(backend);
//! # Ok(()) }
//! ```
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{channel::mpsc, stream::BoxStream, StreamExt};
use tokio::sync::watch;

use crate::{
    attempt::AttemptOutcome,
    clock::{saturating_add, Clock, SystemClock},
    error::{Error, Result},
    progress::{ProgressSink, TaskEvent},
    queue::{
        Ack, Checkpoint, CheckpointInfo, ClaimRequest, ClaimedTask, Completion, JobLimits, Lease,
        LeaseState, Outcome, Queue, WorkSignal, WorkerInfo,
    },
    stats::Stats,
    store::{CancelOutcome, DeleteOutcome, RetryOutcome, TaskStore},
    task::{Inserted, NewTask, Progress, TaskError, TaskId, TaskQuery, TaskRecord, TaskStatus},
};

mod state;

use self::state::{millis, IdHash, Place, ReadyKey, Slot, State};

/// All three backend traits over process memory. Cheap to clone: clones share the same tasks.
#[derive(Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    signal: watch::Sender<()>,
}

impl MemoryBackend {
    /// An empty backend on the system clock.
    ///
    /// ```
    /// let backend = longtask_core::MemoryBackend::new();
    /// ```
    pub fn new() -> Self {
        Self::with_clock_inner(Arc::new(SystemClock))
    }

    /// Uses `clock` for every time this backend reads (lease expiry, schedules, retention): a
    /// [`ManualClock`](crate::ManualClock) in tests.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let backend = longtask_core::MemoryBackend::new()
    ///     .with_clock(Arc::new(longtask_core::ManualClock::new()));
    /// ```
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self::with_clock_inner(clock)
    }

    fn with_clock_inner(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                clock,
                signal: watch::Sender::new(()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn wake(&self) {
        self.inner.signal.send_replace(());
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryBackend")
            .field("tasks", &state.tasks.len())
            .field("running", &state.running.len())
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TaskStore for MemoryBackend {
    async fn insert(&self, tasks: Vec<NewTask>) -> Result<Vec<Inserted>> {
        let now = self.now();
        let now_ms = millis(now);
        let mut batch_ids: HashSet<TaskId, IdHash> = HashSet::default();
        // Build the records before taking the lock: submitters and workers share it.
        let slots: Vec<Box<Slot>> = tasks
            .into_iter()
            .map(|task| {
                task.validate()?;
                if !batch_ids.insert(task.id) {
                    return Err(Error::InvalidInput(format!(
                        "task id {} appears twice in one batch",
                        task.id
                    )));
                }
                Ok(Box::new(Slot {
                    record: TaskRecord::new(task, now),
                    token: 0,
                    place: Place::Elsewhere,
                    checkpoint: None,
                }))
            })
            .collect::<Result<_>>()?;
        let mut any_due = false;
        let inserted = {
            let mut state = self.lock();
            if let Some(taken) = slots.iter().find(|s| state.tasks.contains(s.record.id)) {
                return Err(Error::InvalidInput(format!(
                    "task id {} is already in use",
                    taken.record.id
                )));
            }
            // Members join open groups only: of this batch, or waiting in the backend.
            for slot in &slots {
                let Some(root) = slot.record.group else {
                    continue;
                };
                let in_batch = slots
                    .iter()
                    .take_while(|s| s.record.id != slot.record.id)
                    .any(|s| s.record.id == root && s.record.open_members.is_some());
                let open = state.tasks.get(root).is_some_and(|r| {
                    r.record.open_members.is_some() && r.record.status == TaskStatus::Scheduled
                });
                if !in_batch && !open {
                    return Err(Error::InvalidInput(format!(
                        "group {root} does not exist or has finished: no member can join it"
                    )));
                }
            }
            let mut inserted = Vec::with_capacity(slots.len());
            for slot in slots {
                let id = slot.record.id;
                let group = slot.record.group;
                if let Some(key) = &slot.record.idempotency_key {
                    let key = (
                        slot.record.job.clone(),
                        slot.record.owner.clone(),
                        key.clone(),
                    );
                    if let Some(&existing) = state.keys.get(&key) {
                        inserted.push(Inserted {
                            id: existing,
                            created: false,
                        });
                        continue;
                    }
                    state.keys.insert(key, id);
                }
                any_due |= slot.record.status == TaskStatus::Queued;
                let idx = state.tasks.insert(slot);
                state.enqueue(idx, now_ms);
                if let Some(root) = group {
                    state.join_group(root);
                }
                inserted.push(Inserted { id, created: true });
            }
            inserted
        };
        if any_due {
            self.wake();
        }
        Ok(inserted)
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>> {
        Ok(self.lock().tasks.get(id).map(|s| s.record.clone()))
    }

    async fn list(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>> {
        let state = self.lock();
        let mut found: Vec<&TaskRecord> = state
            .tasks
            .values()
            .map(|s| &s.record)
            .filter(|r| query.after.is_none_or(|after| r.id > after) && query.matches(r))
            .collect();
        found.sort_unstable_by_key(|r| r.id);
        found.truncate(query.effective_limit());
        Ok(found.into_iter().cloned().collect())
    }

    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        let now = self.now();
        let mut state = self.lock();
        let idx = state.tasks.idx(id).ok_or(Error::NotFound(id))?;
        let Some(slot) = state.tasks.at_mut(idx) else {
            return Err(Error::NotFound(id));
        };
        Ok(match slot.record.status {
            s if s.is_final() => CancelOutcome::AlreadyFinished(s),
            TaskStatus::Running => {
                slot.record.cancel_requested = true;
                CancelOutcome::Requested
            }
            _ => {
                state.dequeue(idx);
                state.finalize(idx, TaskStatus::Cancelled, now);
                if std::mem::take(&mut state.fired) {
                    drop(state);
                    self.wake();
                }
                CancelOutcome::Cancelled
            }
        })
    }

    async fn purge(&self, limit: usize) -> Result<u64> {
        let now = millis(self.now());
        let mut state = self.lock();
        let mut purged = 0;
        while purged < limit {
            match state.expiring.first() {
                Some(&(at, id, idx)) if at <= now => {
                    state.expiring.pop_first();
                    if let Some(slot) = state.tasks.remove(idx) {
                        if let Some(key) = slot.record.idempotency_key {
                            state
                                .keys
                                .remove(&(slot.record.job, slot.record.owner, key));
                        }
                    }
                    state.watchers.remove(&id);
                    purged += 1;
                }
                _ => break,
            }
        }
        Ok(purged as u64)
    }

    async fn retry(&self, ids: &[TaskId]) -> Result<Vec<RetryOutcome>> {
        let now = self.now();
        let outcomes: Vec<RetryOutcome> = {
            let mut state = self.lock();
            ids.iter()
                .map(|id| Self::retry_one(&mut state, *id, now))
                .collect()
        };
        if outcomes.contains(&RetryOutcome::Retried) {
            self.wake();
        }
        Ok(outcomes)
    }

    async fn delete(&self, ids: &[TaskId]) -> Result<Vec<DeleteOutcome>> {
        let mut state = self.lock();
        Ok(ids
            .iter()
            .map(|id| Self::delete_one(&mut state, *id))
            .collect())
    }

    async fn stats(&self) -> Result<Stats> {
        let now = millis(self.now());
        let state = self.lock();
        let mut counts = HashMap::<(&str, TaskStatus), u64>::new();
        let mut oldest = HashMap::<&str, i64>::new();
        for slot in state.tasks.values() {
            let record = &slot.record;
            let run_at = millis(record.run_at);
            let status = match record.status {
                TaskStatus::Scheduled if run_at <= now => TaskStatus::Queued,
                status => status,
            };
            *counts.entry((record.job.as_str(), status)).or_default() += 1;
            if matches!(status, TaskStatus::Queued | TaskStatus::Retrying) && run_at <= now {
                let first = oldest.entry(record.job.as_str()).or_insert(run_at);
                *first = (*first).min(run_at);
            }
        }
        let finished = state.finished.iter().flat_map(|(job, minutes)| {
            minutes.iter().flat_map(move |(&minute, counts)| {
                TaskStatus::ALL
                    .into_iter()
                    .map(move |status| (job.clone(), minute, status, counts.get(status)))
            })
        });
        Ok(Stats::assemble(
            now,
            counts
                .into_iter()
                .map(|((job, status), n)| (job.to_owned(), status, n)),
            oldest.into_iter().map(|(job, at)| (job.to_owned(), at)),
            finished,
        ))
    }
}

impl MemoryBackend {
    fn retry_one(state: &mut State, id: TaskId, now: DateTime<Utc>) -> RetryOutcome {
        let Some(idx) = state.tasks.idx(id) else {
            return RetryOutcome::NotFound;
        };
        let Some(slot) = state.tasks.at_mut(idx) else {
            return RetryOutcome::NotFound;
        };
        let record = &mut slot.record;
        if !matches!(record.status, TaskStatus::Failed | TaskStatus::Cancelled) {
            return RetryOutcome::NotRetryable(record.status);
        }
        if record.group.is_some() || record.open_members.is_some() {
            return RetryOutcome::InGroup;
        }
        let expires = record
            .finished_at
            .map(|at| millis(saturating_add(at, record.retention)));
        record.status = TaskStatus::Queued;
        record.attempt = 0;
        record.run_at = now;
        record.cancel_requested = false;
        record.finished_at = None;
        record.output = None;
        record.lease_owner = None;
        record.lease_expires_at = None;
        if let Some(expires) = expires {
            state.expiring.remove(&(expires, id, idx));
        }
        state.enqueue(idx, millis(now));
        state.emit(
            id,
            &TaskEvent::Status {
                status: TaskStatus::Queued,
            },
        );
        RetryOutcome::Retried
    }

    fn delete_one(state: &mut State, id: TaskId) -> DeleteOutcome {
        let Some(idx) = state.tasks.idx(id) else {
            return DeleteOutcome::NotFound;
        };
        let Some(slot) = state.tasks.at(idx) else {
            return DeleteOutcome::NotFound;
        };
        let record = &slot.record;
        if !record.status.is_final() {
            return DeleteOutcome::NotFinished(record.status);
        }
        if let Some(at) = record.finished_at {
            let expires = millis(saturating_add(at, record.retention));
            state.expiring.remove(&(expires, id, idx));
        }
        if let Some(slot) = state.tasks.remove(idx) {
            if let Some(key) = slot.record.idempotency_key {
                state
                    .keys
                    .remove(&(slot.record.job, slot.record.owner, key));
            }
        }
        state.watchers.remove(&id);
        DeleteOutcome::Deleted
    }

    /// Picks tasks in claim order from the jobs' ready sets, skipping those over a concurrency
    /// limit: a job at its limit is passed over, and so is a task whose key is at its limit
    /// (it stays ready, in its place, for a later claim).
    fn pick_limited(
        state: &State,
        sets: &mut [(String, BTreeSet<ReadyKey>)],
        request: ClaimRequest<'_>,
        picked: &mut Vec<(TaskId, u32)>,
    ) {
        let limits_of = |job: &str| request.limits.iter().find(|l| l.job == job);
        let mut per_job: HashMap<&str, u32> = HashMap::new();
        let mut per_key: HashMap<(&str, &str), u32> = HashMap::new();
        for &idx in &state.running {
            let Some(slot) = state.tasks.at(idx) else {
                continue;
            };
            let record = &slot.record;
            if limits_of(&record.job).is_none() {
                continue;
            }
            *per_job.entry(record.job.as_str()).or_default() += 1;
            if let Some(key) = &record.concurrency_key {
                *per_key
                    .entry((record.job.as_str(), key.as_str()))
                    .or_default() += 1;
            }
        }
        // Each set is walked in order from its head; `skipped` holds how far.
        let mut cursor: Vec<Option<ReadyKey>> = vec![None; sets.len()];
        let mut done: Vec<bool> = vec![false; sets.len()];
        let mut taken: Vec<Vec<ReadyKey>> = vec![Vec::new(); sets.len()];
        while picked.len() < request.limit {
            let best = sets
                .iter()
                .enumerate()
                .filter(|(i, _)| !done[*i])
                .filter_map(|(i, (_, set))| {
                    let next = match cursor[i] {
                        None => set.first(),
                        Some(after) => set
                            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                            .next(),
                    };
                    next.map(|head| (i, *head))
                })
                .min_by_key(|(_, head)| *head);
            let Some((i, key)) = best else {
                break;
            };
            cursor[i] = Some(key);
            let job = sets[i].0.as_str();
            let Some(limits) = limits_of(job) else {
                taken[i].push(key);
                picked.push((key.2, key.3));
                continue;
            };
            let running = per_job.get(job).copied().unwrap_or(0);
            if limits.max_running.is_some_and(|max| running >= max) {
                done[i] = true;
                continue;
            }
            let task_key = state
                .tasks
                .at(key.3)
                .and_then(|slot| slot.record.concurrency_key.as_deref());
            if let (Some(max), Some(task_key)) = (limits.max_running_per_key, task_key) {
                let count = per_key.entry((job, task_key)).or_default();
                if *count >= max {
                    continue;
                }
                *count += 1;
            }
            *per_job.entry(job).or_default() += 1;
            taken[i].push(key);
            picked.push((key.2, key.3));
        }
        for ((_, set), taken) in sets.iter_mut().zip(taken) {
            for key in taken {
                set.remove(&key);
            }
        }
    }
}

#[async_trait]
impl Queue for MemoryBackend {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedTask>> {
        let now = self.now();
        let expires = saturating_add(now, request.lease);
        let mut guard = self.lock();
        let state = &mut *guard;
        state.promote(millis(now));
        // Take the requested jobs' ready sets out of the map, so that picking the best head among
        // them costs no hashing per task; they go back below.
        let mut sets: Vec<(String, BTreeSet<ReadyKey>)> = request
            .jobs
            .iter()
            .filter_map(|job| state.ready.remove_entry(job.as_str()))
            .collect();
        let mut picked: Vec<(TaskId, u32)> = Vec::with_capacity(request.limit.min(4096));
        if request.limits.iter().any(JobLimits::is_limited) {
            Self::pick_limited(state, &mut sets, request, &mut picked);
        } else {
            while picked.len() < request.limit {
                let best = sets
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (_, set))| set.first().map(|head| (i, *head)))
                    .min_by_key(|(_, head)| *head);
                let Some((i, key)) = best else {
                    break;
                };
                sets[i].1.pop_first();
                picked.push((key.2, key.3));
            }
        }
        state.ready.extend(sets);

        let worker: Arc<str> = Arc::from(request.worker);
        let mut claimed = Vec::with_capacity(picked.len());
        for (id, idx) in picked {
            state.claims = state.claims.wrapping_add(1);
            let token = (u64::from(state.claims) << 32) | u64::from(idx);
            let Some(slot) = state.tasks.at_mut(idx) else {
                continue;
            };
            slot.place = Place::Elsewhere;
            slot.token = token;
            let record = &mut slot.record;
            record.status = TaskStatus::Running;
            record.attempt += 1;
            record.lease_owner = Some(worker.to_string());
            record.lease_expires_at = Some(expires);
            record.started_at = Some(now);
            claimed.push(ClaimedTask {
                lease: Lease { task: id, token },
                job: record.job.clone(),
                params: record.params.clone(),
                attempt: record.attempt,
                max_attempts: record.max_attempts,
                due_at: record.run_at,
            });
            state.running.insert(idx);
            state.emit(
                id,
                &TaskEvent::Status {
                    status: TaskStatus::Running,
                },
            );
        }
        Ok(claimed)
    }

    async fn heartbeat(&self, leases: &[Lease], extend: Duration) -> Result<Vec<LeaseState>> {
        let expires = saturating_add(self.now(), extend);
        let mut state = self.lock();
        Ok(leases
            .iter()
            .map(
                |lease| match state.leased(*lease).and_then(|idx| state.tasks.at_mut(idx)) {
                    Some(slot) => {
                        slot.record.lease_expires_at = Some(expires);
                        LeaseState::Held {
                            cancel_requested: slot.record.cancel_requested,
                        }
                    }
                    None => LeaseState::Lost,
                },
            )
            .collect())
    }

    async fn finish(&self, completions: Vec<Completion>) -> Result<Vec<Ack>> {
        let now = self.now();
        let mut retried = false;
        let acks = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let mut acks = Vec::with_capacity(completions.len());
            for completion in completions {
                let id = completion.lease.task;
                let Some(idx) = state.leased(completion.lease) else {
                    acks.push(Ack::Stale);
                    continue;
                };
                let Some(slot) = state.tasks.at_mut(idx) else {
                    acks.push(Ack::Stale);
                    continue;
                };
                let progress = completion.progress.inspect(|p| {
                    slot.record.progress = Some(p.clone());
                });
                match completion.outcome {
                    Outcome::Succeeded { output } => {
                        slot.record.output = Some(output);
                        if let Some(progress) = progress {
                            state.emit(id, &TaskEvent::Progress(progress));
                        }
                        state.finalize(idx, TaskStatus::Succeeded, now);
                    }
                    Outcome::Failed { error, retry_after } => {
                        if let Some(progress) = progress {
                            state.emit(id, &TaskEvent::Progress(progress));
                        }
                        retried |= state.fail_attempt(
                            idx,
                            AttemptOutcome::Failed,
                            error,
                            retry_after,
                            now,
                        );
                    }
                    Outcome::Cancelled { reason } => {
                        slot.record.push_attempt(
                            AttemptOutcome::Cancelled,
                            Some(reason.clone()),
                            now,
                        );
                        slot.record.last_error = Some(TaskError {
                            message: reason,
                            attempt: slot.record.attempt,
                            at: now,
                        });
                        if let Some(progress) = progress {
                            state.emit(id, &TaskEvent::Progress(progress));
                        }
                        state.finalize(idx, TaskStatus::Cancelled, now);
                    }
                }
                acks.push(Ack::Applied);
            }
            retried |= std::mem::take(&mut state.fired);
            acks
        };
        if retried {
            self.wake();
        }
        Ok(acks)
    }

    async fn release(&self, leases: &[Lease]) -> Result<Vec<Ack>> {
        let now = self.now();
        let acks: Vec<Ack> = {
            let mut state = self.lock();
            leases
                .iter()
                .map(|lease| {
                    let Some(idx) = state.leased(*lease) else {
                        return Ack::Stale;
                    };
                    if let Some(slot) = state.tasks.at_mut(idx) {
                        let record = &mut slot.record;
                        record.status = TaskStatus::Queued;
                        record.attempt = record.attempt.saturating_sub(1);
                        record.run_at = now;
                        record.lease_owner = None;
                        record.lease_expires_at = None;
                    }
                    state.running.remove(&idx);
                    state.enqueue(idx, millis(now));
                    state.emit(
                        lease.task,
                        &TaskEvent::Status {
                            status: TaskStatus::Queued,
                        },
                    );
                    Ack::Applied
                })
                .collect()
        };
        if acks.contains(&Ack::Applied) {
            self.wake();
        }
        Ok(acks)
    }

    async fn recover_expired(&self, limit: usize) -> Result<u64> {
        let now = self.now();
        let mut state = self.lock();
        let expired: Vec<(u32, u32)> = state
            .running
            .iter()
            .filter_map(|&idx| {
                let record = &state.tasks.at(idx)?.record;
                record
                    .lease_expires_at
                    .is_some_and(|at| at <= now)
                    .then_some((idx, record.attempt))
            })
            .take(limit)
            .collect();
        let mut retried = false;
        for &(idx, attempt) in &expired {
            let error = format!(
                "attempt {attempt} was lost: its worker stopped renewing the lease (crashed, killed or stalled)"
            );
            retried |=
                state.fail_attempt(idx, AttemptOutcome::Lost, error, Some(Duration::ZERO), now);
        }
        retried |= std::mem::take(&mut state.fired);
        drop(state);
        if retried {
            self.wake();
        }
        Ok(expired.len() as u64)
    }

    async fn save_checkpoint(&self, checkpoint: Checkpoint) -> Result<Ack> {
        let now = self.now();
        let mut state = self.lock();
        let lease = checkpoint.lease;
        let Some(slot) = state.leased(lease).and_then(|idx| state.tasks.at_mut(idx)) else {
            return Ok(Ack::Stale);
        };
        slot.record.checkpoint = Some(CheckpointInfo::new(&checkpoint, now));
        slot.checkpoint = Some(checkpoint.state);
        if let Some(progress) = checkpoint.progress {
            slot.record.progress = Some(progress.clone());
            state.emit(lease.task, &TaskEvent::Progress(progress));
        }
        Ok(Ack::Applied)
    }

    async fn load_checkpoint(&self, task: TaskId) -> Result<Option<String>> {
        Ok(self
            .lock()
            .tasks
            .get(task)
            .and_then(|slot| slot.checkpoint.clone()))
    }

    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<()> {
        let now = self.now();
        let mut info = info.clone();
        info.last_seen = now;
        let until = millis(saturating_add(now, ttl));
        self.lock().workers.insert(info.id.clone(), (info, until));
        Ok(())
    }

    async fn unregister_worker(&self, id: &str) -> Result<()> {
        self.lock().workers.remove(id);
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let now = millis(self.now());
        let mut state = self.lock();
        state.workers.retain(|_, (_, until)| *until > now);
        let mut workers: Vec<WorkerInfo> = state
            .workers
            .values()
            .map(|(info, _)| info.clone())
            .collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(workers)
    }

    fn work_signal(&self) -> WorkSignal {
        WorkSignal::new(self.inner.signal.subscribe())
    }
}

#[async_trait]
impl ProgressSink for MemoryBackend {
    async fn report(&self, updates: &[(Lease, Progress)]) -> Result<()> {
        let mut state = self.lock();
        for (lease, progress) in updates {
            // Only the live lease of a running task may write its progress.
            let Some(slot) = state.leased(*lease).and_then(|idx| state.tasks.at_mut(idx)) else {
                continue;
            };
            slot.record.progress = Some(progress.clone());
            state.emit(lease.task, &TaskEvent::Progress(progress.clone()));
        }
        Ok(())
    }

    async fn latest(&self, id: TaskId) -> Result<Option<Progress>> {
        Ok(self
            .lock()
            .tasks
            .get(id)
            .and_then(|s| s.record.progress.clone()))
    }

    async fn watch(&self, id: TaskId) -> Result<BoxStream<'static, TaskEvent>> {
        let mut state = self.lock();
        let status = state
            .tasks
            .get(id)
            .ok_or(Error::NotFound(id))?
            .record
            .status;
        if status.is_final() {
            return Ok(futures::stream::iter([TaskEvent::Status { status }]).boxed());
        }
        let (tx, rx) = mpsc::unbounded();
        state.watchers.entry(id).or_default().push(tx);
        Ok(rx.boxed())
    }
}

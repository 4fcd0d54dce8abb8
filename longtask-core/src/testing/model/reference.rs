//! The reference model: a small state machine written from the contract, which says what every
//! answer and record must be after each call, and compares a backend's records with its own.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    time::Duration,
};

use chrono::{DateTime, Utc};

use super::ops::{Answer, Call, Watched};
use crate::{
    clock::saturating_add, testing::LEASE, Ack, AttemptOutcome, AttemptRecord, CancelOutcome,
    ClaimedTask, Completion, Error, Inserted, Lease, LeaseState, NewTask, Outcome, Result, RunAt,
    TaskError, TaskEvent, TaskId, TaskQuery, TaskRecord, TaskStatus,
};

/// Where a task stands in the model; the statuses a backend may show follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Submitted and never claimed.
    New,
    /// Given back unrun.
    Released,
    /// Waiting out a backoff after a failed attempt.
    Retry,
    /// Waiting to run again after its lease expired.
    Recovered,
    Running,
    Finished,
}

#[derive(Debug, Clone)]
pub(super) struct Task {
    /// The record as the contract says it must read (its status: one allowed value).
    pub(super) record: TaskRecord,
    pub(super) phase: Phase,
    /// The live lease, while running.
    pub(super) lease: Option<Lease>,
    /// The last error is a lost attempt's: its message only has to say "lost".
    pub(super) lost: bool,
}

/// The records a backend shows, by id.
pub(super) type Seen = BTreeMap<TaskId, TaskRecord>;

#[derive(Debug, Clone)]
pub(super) struct Model {
    pub(super) jobs: [String; 2],
    pub(super) now: DateTime<Utc>,
    pub(super) tasks: BTreeMap<TaskId, Task>,
    /// Every id created in this sequence, purged ones included.
    pub(super) known: Vec<TaskId>,
    /// Every lease handed out in this sequence.
    pub(super) leases: Vec<Lease>,
    /// (job, owner, key) to the task holding it.
    pub(super) keys: HashMap<(String, Option<String>, String), TaskId>,
    /// Numbers params, outputs and messages.
    pub(super) serial: u64,
    pub(super) stats: Stats,
}

/// What the sequences exercised, printed at the end so that a reader sees the model was not
/// idle.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Stats {
    pub(super) operations: u64,
    pub(super) created: u64,
    pub(super) claimed: u64,
    pub(super) applied: u64,
    pub(super) stale: u64,
    pub(super) recovered: u64,
    pub(super) purged: u64,
    pub(super) dropped_done: u64,
    pub(super) dropped_not_done: u64,
}

impl Stats {
    pub(super) fn add(&mut self, o: &Self) {
        self.operations += o.operations;
        self.created += o.created;
        self.claimed += o.claimed;
        self.applied += o.applied;
        self.stale += o.stale;
        self.recovered += o.recovered;
        self.purged += o.purged;
        self.dropped_done += o.dropped_done;
        self.dropped_not_done += o.dropped_not_done;
    }
}

pub(super) fn json_eq(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub(super) fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

pub(super) fn same<T: PartialEq + fmt::Debug>(
    what: &str,
    expected: &T,
    got: &T,
) -> Result<(), String> {
    check(expected == got, || {
        format!("{what}: expected {expected:?}, got {got:?}")
    })
}

impl Model {
    pub(super) fn new(prefix: &str, now: DateTime<Utc>) -> Self {
        Self {
            jobs: [format!("{prefix}-a"), format!("{prefix}-b")],
            now,
            tasks: BTreeMap::new(),
            known: Vec::new(),
            leases: Vec::new(),
            keys: HashMap::new(),
            serial: 0,
            stats: Stats::default(),
        }
    }

    /// The statuses a backend may show for `task` now.
    fn allowed(&self, task: &Task) -> Vec<TaskStatus> {
        let r = &task.record;
        match task.phase {
            Phase::New if r.run_at <= r.created_at => vec![TaskStatus::Queued],
            Phase::New if r.run_at > self.now => vec![TaskStatus::Scheduled],
            Phase::New => vec![TaskStatus::Scheduled, TaskStatus::Queued],
            Phase::Released => vec![TaskStatus::Queued],
            Phase::Retry => vec![TaskStatus::Retrying],
            Phase::Recovered => vec![TaskStatus::Retrying, TaskStatus::Queued],
            Phase::Running => vec![TaskStatus::Running],
            Phase::Finished => vec![r.status],
        }
    }

    /// How `got` differs from the model's `task`.
    fn diff_task(&self, task: &Task, got: &TaskRecord) -> Vec<String> {
        let e = &task.record;
        let mut out = Vec::new();
        macro_rules! fields {
            ($($field:ident),*) => {$(
                if e.$field != got.$field {
                    out.push(format!(
                        "{}: expected {:?}, got {:?}", stringify!($field), e.$field, got.$field
                    ));
                }
            )*};
        }
        fields!(
            id,
            job,
            priority,
            run_at,
            attempt,
            max_attempts,
            lease_owner,
            lease_expires_at,
            cancel_requested,
            progress,
            created_at,
            started_at,
            finished_at,
            retention,
            owner,
            idempotency_key
        );
        if !json_eq(&e.params, &got.params) {
            out.push(format!("params: expected {}, got {}", e.params, got.params));
        }
        let output_same = match (&e.output, &got.output) {
            (Some(a), Some(b)) => json_eq(a, b),
            (a, b) => a == b,
        };
        if !output_same {
            out.push(format!(
                "output: expected {:?}, got {:?}",
                e.output, got.output
            ));
        }
        let allowed = self.allowed(task);
        if !allowed.contains(&got.status) {
            out.push(format!(
                "status: expected one of {allowed:?}, got {:?}",
                got.status
            ));
        }
        let error_same = match (&e.last_error, &got.last_error) {
            (Some(a), Some(b)) if task.lost => {
                a.attempt == b.attempt && a.at == b.at && b.message.contains("lost")
            }
            (a, b) => a == b,
        };
        // A lost attempt's message is the backend's own; it must say "lost".
        let attempts_same = e.attempts.len() == got.attempts.len()
            && e.attempts.iter().zip(&got.attempts).all(|(a, b)| {
                if a.outcome == AttemptOutcome::Lost {
                    let times = |x: &AttemptRecord| (x.attempt, x.started_at, x.ended_at);
                    times(a) == times(b)
                        && (&a.worker, a.outcome) == (&b.worker, b.outcome)
                        && b.error.as_deref().is_some_and(|m| m.contains("lost"))
                } else {
                    a == b
                }
            });
        if !attempts_same {
            out.push(format!(
                "attempts: expected {:?} (lost ones with any message saying lost), got {:?}",
                e.attempts, got.attempts
            ));
        }
        if !error_same {
            out.push(format!(
                "last_error: expected {:?}{}, got {:?}",
                e.last_error,
                if task.lost {
                    " (any message saying lost)"
                } else {
                    ""
                },
                got.last_error
            ));
        }
        out
    }

    /// Whether the backend's records are exactly the model's.
    pub(super) fn diff(&self, seen: &Seen) -> Result<(), String> {
        let mut problems = Vec::new();
        for (id, task) in &self.tasks {
            match seen.get(id) {
                None => problems.push(format!("task {id} is missing: the model has {task:?}")),
                Some(got) => problems.extend(
                    self.diff_task(task, got)
                        .into_iter()
                        .map(|d| format!("task {id}: {d}")),
                ),
            }
        }
        for (id, got) in seen {
            if !self.tasks.contains_key(id) {
                problems.push(format!("task {id} should not exist, got {got:?}"));
            }
        }
        check(problems.is_empty(), || problems.join("\n"))
    }

    fn live(&self, lease: Lease) -> bool {
        self.tasks
            .get(&lease.task)
            .is_some_and(|t| t.lease == Some(lease))
    }

    /// Ends an attempt without success: retried after `retry_after` if attempts remain and no
    /// cancel was requested, else failed (cancelled if cancel was requested).
    fn fail(&mut self, id: TaskId, message: String, retry_after: Option<Duration>, lost: bool) {
        let now = self.now;
        let Some(task) = self.tasks.get_mut(&id) else {
            return;
        };
        let r = &mut task.record;
        let outcome = if lost {
            AttemptOutcome::Lost
        } else {
            AttemptOutcome::Failed
        };
        r.push_attempt(outcome, Some(message.clone()), now);
        r.last_error = Some(TaskError {
            message,
            attempt: r.attempt,
            at: now,
        });
        task.lost = lost;
        task.lease = None;
        r.lease_owner = None;
        r.lease_expires_at = None;
        match retry_after {
            Some(delay) if r.attempt < r.max_attempts && !r.cancel_requested => {
                task.phase = if lost { Phase::Recovered } else { Phase::Retry };
                r.status = TaskStatus::Retrying;
                r.run_at = saturating_add(now, delay);
            }
            _ => {
                let status = if r.cancel_requested {
                    TaskStatus::Cancelled
                } else {
                    TaskStatus::Failed
                };
                self.finalize(id, status);
            }
        }
    }

    fn finalize(&mut self, id: TaskId, status: TaskStatus) {
        let now = self.now;
        if let Some(task) = self.tasks.get_mut(&id) {
            task.phase = Phase::Finished;
            task.lease = None;
            let r = &mut task.record;
            r.status = status;
            r.finished_at = Some(now);
            r.lease_owner = None;
            r.lease_expires_at = None;
        }
    }

    fn insert(
        &mut self,
        tasks: &[NewTask],
        answer: Option<&Result<Vec<Inserted>>>,
    ) -> Result<(), String> {
        let mut expected = Vec::new();
        for t in tasks {
            self.known.push(t.id);
            let key = t
                .idempotency_key
                .clone()
                .map(|k| (t.job.clone(), t.owner.clone(), k));
            if let Some(&existing) = key.as_ref().and_then(|k| self.keys.get(k)) {
                expected.push(Inserted {
                    id: existing,
                    created: false,
                });
                continue;
            }
            if let Some(key) = key {
                self.keys.insert(key, t.id);
            }
            let run_at = match t.run_at {
                RunAt::Now => self.now,
                RunAt::At(at) => at.max(self.now),
                RunAt::After(d) => saturating_add(self.now, d),
            };
            let record = TaskRecord {
                id: t.id,
                job: t.job.clone(),
                params: t.params.clone(),
                status: if run_at > self.now {
                    TaskStatus::Scheduled
                } else {
                    TaskStatus::Queued
                },
                priority: t.priority,
                run_at,
                attempt: 0,
                max_attempts: t.max_attempts,
                lease_owner: None,
                lease_expires_at: None,
                cancel_requested: false,
                last_error: None,
                progress: None,
                output: None,
                created_at: self.now,
                started_at: None,
                finished_at: None,
                retention: t.retention,
                owner: t.owner.clone(),
                idempotency_key: t.idempotency_key.clone(),
                concurrency_key: t.concurrency_key.clone(),
                group: None,
                open_members: None,
                checkpoint: None,
                attempts: Vec::new(),
            };
            let task = Task {
                record,
                phase: Phase::New,
                lease: None,
                lost: false,
            };
            self.tasks.insert(t.id, task);
            self.stats.created += 1;
            expected.push(Inserted {
                id: t.id,
                created: true,
            });
        }
        match answer {
            Some(Ok(got)) => same("inserted", &expected, got),
            Some(Err(err)) => Err(format!("insert failed: {err:?}")),
            None => Ok(()),
        }
    }

    fn claim(
        &mut self,
        jobs: &[String],
        limit: usize,
        worker: &str,
        answer: &Result<Vec<ClaimedTask>>,
    ) -> Result<(), String> {
        let mut due: Vec<&Task> = self
            .tasks
            .values()
            .filter(|t| {
                matches!(
                    t.phase,
                    Phase::New | Phase::Released | Phase::Retry | Phase::Recovered
                ) && jobs.contains(&t.record.job)
                    && t.record.run_at <= self.now
            })
            .collect();
        due.sort_by_key(|t| {
            (
                std::cmp::Reverse(t.record.priority),
                t.record.run_at,
                t.record.id,
            )
        });
        let picked: Vec<TaskId> = due.iter().take(limit).map(|t| t.record.id).collect();
        let got = answer
            .as_ref()
            .map_err(|e| format!("claim failed: {e:?}"))?;
        let got_ids: Vec<TaskId> = got.iter().map(|c| c.lease.task).collect();
        same("claimed tasks (in claim order)", &picked, &got_ids)?;
        let (now, expires) = (self.now, saturating_add(self.now, LEASE));
        for claimed in got {
            check(!self.leases.contains(&claimed.lease), || {
                format!("claim reused an earlier lease token: {:?}", claimed.lease)
            })?;
            self.leases.push(claimed.lease);
            self.stats.claimed += 1;
            let task = self
                .tasks
                .get_mut(&claimed.lease.task)
                .expect("picked above");
            let r = &mut task.record;
            r.attempt += 1;
            r.status = TaskStatus::Running;
            r.lease_owner = Some(worker.to_owned());
            r.lease_expires_at = Some(expires);
            r.started_at = Some(now);
            task.phase = Phase::Running;
            task.lease = Some(claimed.lease);
            same("claimed job", &r.job, &claimed.job)?;
            check(json_eq(&r.params, &claimed.params), || {
                format!(
                    "claimed params: expected {}, got {}",
                    r.params, claimed.params
                )
            })?;
            same("claimed attempt", &r.attempt, &claimed.attempt)?;
            same(
                "claimed max_attempts",
                &r.max_attempts,
                &claimed.max_attempts,
            )?;
        }
        Ok(())
    }

    fn finish(&mut self, completions: &[Completion]) -> Vec<Ack> {
        let mut acks = Vec::new();
        for c in completions {
            if !self.live(c.lease) {
                acks.push(Ack::Stale);
                self.stats.stale += 1;
                continue;
            }
            acks.push(Ack::Applied);
            self.stats.applied += 1;
            let id = c.lease.task;
            let now = self.now;
            let task = self.tasks.get_mut(&id).expect("live");
            if let Some(progress) = &c.progress {
                task.record.progress = Some(progress.clone());
            }
            match &c.outcome {
                Outcome::Succeeded { output } => {
                    task.record.output = Some(output.clone());
                    self.finalize(id, TaskStatus::Succeeded);
                }
                Outcome::Failed { error, retry_after } => {
                    self.fail(id, error.clone(), *retry_after, false);
                }
                Outcome::Cancelled { reason } => {
                    task.lost = false;
                    task.record
                        .push_attempt(AttemptOutcome::Cancelled, Some(reason.clone()), now);
                    task.record.last_error = Some(TaskError {
                        message: reason.clone(),
                        attempt: task.record.attempt,
                        at: now,
                    });
                    self.finalize(id, TaskStatus::Cancelled);
                }
            }
        }
        acks
    }

    fn release(&mut self, leases: &[Lease]) -> Vec<Ack> {
        let now = self.now;
        leases
            .iter()
            .map(|lease| {
                if !self.live(*lease) {
                    return Ack::Stale;
                }
                let task = self.tasks.get_mut(&lease.task).expect("live");
                task.phase = Phase::Released;
                task.lease = None;
                let r = &mut task.record;
                r.status = TaskStatus::Queued;
                r.attempt -= 1;
                r.run_at = now;
                r.lease_owner = None;
                r.lease_expires_at = None;
                Ack::Applied
            })
            .collect()
    }

    fn cancel(&mut self, id: TaskId) -> Result<CancelOutcome> {
        let Some(task) = self.tasks.get_mut(&id) else {
            return Err(Error::NotFound(id));
        };
        Ok(match task.phase {
            Phase::Finished => CancelOutcome::AlreadyFinished(task.record.status),
            Phase::Running => {
                task.record.cancel_requested = true;
                CancelOutcome::Requested
            }
            _ => {
                self.finalize(id, TaskStatus::Cancelled);
                CancelOutcome::Cancelled
            }
        })
    }

    /// Recovery or purge: `candidates` may go, at most `limit` of them, and exactly that many
    /// when there are enough; `gone` tells which ones the backend took.
    fn pick_some(
        what: &str,
        candidates: &[TaskId],
        limit: usize,
        gone: impl Fn(TaskId) -> bool,
        count: Option<u64>,
    ) -> Result<Vec<TaskId>, String> {
        let taken: Vec<TaskId> = candidates.iter().copied().filter(|id| gone(*id)).collect();
        let expected = candidates.len().min(limit);
        check(taken.len() == expected, || {
            format!("{what}: expected {expected} of {candidates:?} to go, {taken:?} went")
        })?;
        if let Some(count) = count {
            same(&format!("{what} count"), &(expected as u64), &count)?;
        }
        Ok(taken)
    }

    fn recover(&mut self, limit: usize, seen: &Seen, count: Option<u64>) -> Result<(), String> {
        let expired: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| {
                t.phase == Phase::Running
                    && t.record.lease_expires_at.is_some_and(|at| at <= self.now)
            })
            .map(|t| t.record.id)
            .collect();
        let gone = |id| {
            seen.get(&id)
                .is_none_or(|r| r.status != TaskStatus::Running)
        };
        for id in Self::pick_some("recovery", &expired, limit, gone, count)? {
            self.stats.recovered += 1;
            let attempt = self.tasks[&id].record.attempt;
            let message = format!("attempt {attempt} was lost");
            self.fail(id, message, Some(Duration::ZERO), true);
        }
        Ok(())
    }

    fn purge(&mut self, limit: usize, seen: &Seen, count: Option<u64>) -> Result<(), String> {
        let due: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| {
                let r = &t.record;
                r.finished_at
                    .is_some_and(|at| saturating_add(at, r.retention) <= self.now)
            })
            .map(|t| t.record.id)
            .collect();
        for id in Self::pick_some("purge", &due, limit, |id| !seen.contains_key(&id), count)? {
            self.stats.purged += 1;
            self.tasks.remove(&id);
            self.keys.retain(|_, holder| *holder != id);
        }
        Ok(())
    }

    fn list(&self, query: &TaskQuery, seen: &Seen) -> Vec<TaskId> {
        self.tasks
            .values()
            .filter(|t| {
                let r = &t.record;
                query.job.as_ref().is_none_or(|j| *j == r.job)
                    && query
                        .owner
                        .as_ref()
                        .is_none_or(|o| Some(o) == r.owner.as_ref())
                    && query.after.is_none_or(|after| r.id > after)
                    && (query.statuses.is_empty()
                        || seen
                            .get(&r.id)
                            .is_some_and(|s| query.statuses.contains(&s.status)))
            })
            .map(|t| t.record.id)
            .take(query.limit)
            .collect()
    }

    /// Applies `call` to the model and checks its `answer` (none when its future was dropped
    /// before it answered); `seen` says which candidates a recovery or purge took.
    pub(super) fn apply(
        &mut self,
        call: &Call,
        answer: Option<&Answer>,
        seen: &Seen,
    ) -> Result<(), String> {
        match (call, answer) {
            (Call::Insert(tasks, true), Some(Answer::Inserted(got))) => {
                self.insert(tasks, Some(got))
            }
            (Call::Insert(tasks, true), None) => self.insert(tasks, None),
            (Call::Insert(tasks, false), Some(Answer::Inserted(got))) => {
                self.known.extend(tasks.iter().map(|t| t.id));
                check(matches!(got, Err(Error::InvalidInput(_))), || {
                    format!("an invalid batch must fail as invalid input and insert nothing, got {got:?}")
                })
            }
            (Call::Claim(jobs, limit, worker), Some(Answer::Claimed(got))) => {
                self.claim(jobs, *limit, worker, got)
            }
            (Call::Heartbeat(leases, extend), answer) => {
                let expires = saturating_add(self.now, *extend);
                let mut expected = Vec::new();
                for lease in leases {
                    if self.live(*lease) {
                        let task = self.tasks.get_mut(&lease.task).expect("live");
                        task.record.lease_expires_at = Some(expires);
                        expected.push(LeaseState::Held {
                            cancel_requested: task.record.cancel_requested,
                        });
                    } else {
                        expected.push(LeaseState::Lost);
                    }
                }
                match answer {
                    Some(Answer::States(Ok(got))) => same("heartbeat", &expected, got),
                    None => Ok(()),
                    other => Err(format!("heartbeat failed: {other:?}")),
                }
            }
            (Call::Finish(completions), answer) => {
                let expected = self.finish(completions);
                match answer {
                    Some(Answer::Acks(Ok(got))) => same("finish acks", &expected, got),
                    None => Ok(()),
                    other => Err(format!("finish failed: {other:?}")),
                }
            }
            (Call::Release(leases), answer) => {
                let expected = self.release(leases);
                match answer {
                    Some(Answer::Acks(Ok(got))) => same("release acks", &expected, got),
                    None => Ok(()),
                    other => Err(format!("release failed: {other:?}")),
                }
            }
            (Call::Report(updates), answer) => {
                for (lease, progress) in updates {
                    if self.live(*lease) {
                        let task = self.tasks.get_mut(&lease.task).expect("live");
                        task.record.progress = Some(progress.clone());
                    }
                }
                match answer {
                    Some(Answer::Unit(Ok(()))) | None => Ok(()),
                    other => Err(format!("report failed: {other:?}")),
                }
            }
            (Call::Cancel(id), answer) => {
                let expected = self.cancel(*id);
                match answer {
                    Some(Answer::Cancel(got)) => check(
                        match (&expected, got) {
                            (Ok(a), Ok(b)) => a == b,
                            (Err(Error::NotFound(a)), Err(Error::NotFound(b))) => a == b,
                            _ => false,
                        },
                        || format!("cancel: expected {expected:?}, got {got:?}"),
                    ),
                    None => Ok(()),
                    other => Err(format!("cancel: unexpected answer {other:?}")),
                }
            }
            (Call::Recover(limit), Some(Answer::Count(Ok(n)))) => {
                self.recover(*limit, seen, Some(*n))
            }
            (Call::Recover(limit), None) => self.recover(*limit, seen, None),
            (Call::Purge(limit), Some(Answer::Count(Ok(n)))) => self.purge(*limit, seen, Some(*n)),
            (Call::Purge(limit), None) => self.purge(*limit, seen, None),
            (Call::Advance(by), _) => {
                self.now = saturating_add(self.now, *by);
                Ok(())
            }
            (Call::Get(id), Some(Answer::Record(Ok(got)))) => {
                match (self.tasks.get(id), got.as_deref()) {
                    (None, None) => Ok(()),
                    (Some(task), Some(got)) => {
                        let diff = self.diff_task(task, got);
                        check(diff.is_empty(), || format!("get {id}: {}", diff.join("; ")))
                    }
                    (task, got) => Err(format!("get {id}: expected {task:?}, got {got:?}")),
                }
            }
            (Call::Latest(id), Some(Answer::Progress(Ok(got)))) => {
                let expected = self.tasks.get(id).and_then(|t| t.record.progress.clone());
                same("latest progress", &expected, got)
            }
            (Call::Watch(id, _), Some(Answer::Watch(got))) => match (self.tasks.get(id), got) {
                (None, Err(Error::NotFound(_))) => Ok(()),
                (Some(t), Ok(Watched::Ended(events))) if t.phase == Phase::Finished => same(
                    "watching a finished task",
                    &vec![TaskEvent::Status {
                        status: t.record.status,
                    }],
                    events,
                ),
                (Some(t), Ok(Watched::Opened)) if t.phase != Phase::Finished => Ok(()),
                (task, got) => Err(format!("watch {id}: the model has {task:?}, got {got:?}")),
            },
            (Call::List(query), Some(Answer::Records(Ok(got)))) => {
                let expected = self.list(query, seen);
                let got_ids: Vec<TaskId> = got.iter().map(|r| r.id).collect();
                same(&format!("list {query:?}"), &expected, &got_ids)?;
                for record in got {
                    let diff = self.diff_task(&self.tasks[&record.id], record);
                    check(diff.is_empty(), || format!("list: {}", diff.join("; ")))?;
                }
                Ok(())
            }
            (Call::Get(_) | Call::Latest(_) | Call::Watch(..) | Call::List(_), None) => Ok(()),
            (call, answer) => Err(format!("{call:?} answered {answer:?}")),
        }
    }
}

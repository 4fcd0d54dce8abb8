//! Case: the backend against a reference model. Random sequences of operations (insert batches
//! with priorities, schedules, owners and idempotency keys, invalid batches, claim, heartbeat,
//! finish with every outcome, release, progress reports, cancel, recover, purge, get, list,
//! latest, watch, clock advances, and futures dropped part-way) run against the backend and
//! against a small state machine written from the contract; after every operation each answer
//! and every record must agree. A failing sequence is shrunk (proptest) to a minimal one, which
//! the failure prints with the seed that found it (`LONGTASK_MODEL_SEED=<seed>` replays it).
//!
//! Where backends may legitimately differ, the model accepts exactly the allowed set:
//! - a task submitted for later shows `scheduled` until its `run_at`, then `scheduled` or `queued`
//!   until it is claimed (backends may promote it early or only when claiming);
//! - a task recovered from an expired lease with attempts left waits as `retrying` or `queued`;
//!   the error of a lost attempt only has to say "lost" (attempt and time are exact);
//! - lease tokens are opaque: a claim's token only has to be new for its task;
//! - `recover_expired` and `purge` with a `limit` below the number of candidates may pick any of
//!   them: the model reads which ones went, and checks the number and that each was a candidate;
//! - params and outputs are compared as JSON values.
//!
//! A lease lives until its task is finished, released or recovered: an expired lease that was not
//! recovered yet may still heartbeat and finish (no backend refuses it, and the contract's
//! [`Ack::Stale`] names recovery, a new claim, finishing and purging).
//!
//! Dropped futures: an insert, cancel, heartbeat, finish, release, report, recover or purge (and
//! reads) is dropped after its first poll or after a few scheduler turns. It must then have
//! happened entirely or not at all: the model waits until the records match the state after the
//! operation, and accepts the state before it only once [`SETTLE`] has passed (a backend may
//! finish a dropped operation in the background, as `cancel_safe_backend!` does). A dropped claim
//! is not modelled (a backend may give the claimed tasks back, changing their `run_at`): the
//! `cancel_safety` case covers it.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, PoisonError,
    },
    task::Poll,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::{future::BoxFuture, FutureExt, StreamExt};
use proptest::{
    prelude::*,
    sample::{select, Index},
    test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner},
};

use super::{Harness, LEASE};
use crate::{
    clock::saturating_add, Ack, Backend, CancelOutcome, ClaimRequest, ClaimedTask, Completion,
    Error, Inserted, Lease, LeaseState, NewTask, Outcome, Progress, Result, RunAt, TaskError,
    TaskEvent, TaskId, TaskQuery, TaskRecord, TaskStatus,
};

/// Sequences run per backend (each against fresh job names on the case's backend).
const SEQUENCES: u32 = 48;
/// Operations per sequence, at most.
const MAX_OPS: usize = 48;
/// How long a dropped operation may take to land before the model accepts that it never will.
const SETTLE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Generated operations: abstract, so that they shrink well; resolved against the model's state
// (which leases and tasks exist) when they run.

#[derive(Debug, Clone, Copy)]
enum When {
    Now,
    Past,
    InSecs(u64),
}

/// One task of an insert batch.
#[derive(Debug, Clone)]
struct Spec {
    job: usize,
    priority: i32,
    when: When,
    max_attempts: u32,
    retention: Duration,
    owner: Option<u8>,
    key: Option<u8>,
}

#[derive(Debug, Clone, Copy)]
enum LeasePick {
    /// A lease the model holds live (or any, if none is).
    Live(Index),
    /// Any lease handed out in this sequence, mostly stale.
    Any(Index),
    /// A lease of a task that never existed.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
enum TaskPick {
    Known(Index),
    Unknown,
}

#[derive(Debug, Clone, Copy)]
enum End {
    Succeed,
    Retry(Duration),
    Fail,
    Cancel,
}

#[derive(Debug, Clone, Copy)]
enum Jobs {
    A,
    B,
    Both,
}

#[derive(Debug, Clone, Copy)]
enum Cut {
    FirstPoll,
    Turns(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<Spec>),
    InsertInvalid(Vec<Spec>, Index),
    Claim(Jobs, usize, u8),
    Heartbeat(Vec<LeasePick>, Duration),
    Finish(Vec<(LeasePick, End, bool)>),
    Release(Vec<LeasePick>),
    Report(Vec<(LeasePick, u64)>),
    Cancel(TaskPick),
    Recover(usize),
    Purge(usize),
    Advance(Duration),
    Get(TaskPick),
    Latest(TaskPick),
    Watch(TaskPick),
    List(Option<u8>, Option<TaskStatus>, usize, Option<TaskPick>),
    Dropped(Box<Op>, Cut),
}

fn spec() -> impl Strategy<Value = Spec> {
    let priority = select(vec![0, 0, 0, 1, -1, 7, i32::MAX, i32::MIN]);
    let when = prop_oneof![
        4 => Just(When::Now),
        1 => Just(When::Past),
        2 => select(vec![1_u64, 5, 60]).prop_map(When::InSecs),
    ];
    let retention = select(vec![0_u64, 10, 60, 3600]).prop_map(Duration::from_secs);
    (
        0..2_usize,
        priority,
        when,
        1..=3_u32,
        retention,
        prop::option::of(0..2_u8),
        prop::option::weighted(0.4, 0..2_u8),
    )
        .prop_map(
            |(job, priority, when, max_attempts, retention, owner, key)| Spec {
                job,
                priority,
                when,
                max_attempts,
                retention,
                owner,
                key,
            },
        )
}

fn lease_pick() -> impl Strategy<Value = LeasePick> {
    prop_oneof![
        8 => any::<Index>().prop_map(LeasePick::Live),
        3 => any::<Index>().prop_map(LeasePick::Any),
        1 => Just(LeasePick::Unknown),
    ]
}

fn task_pick() -> impl Strategy<Value = TaskPick> {
    prop_oneof![
        9 => any::<Index>().prop_map(TaskPick::Known),
        1 => Just(TaskPick::Unknown),
    ]
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::Succeed),
        select(vec![0_u64, 1, 10]).prop_map(|s| End::Retry(Duration::from_secs(s))),
        Just(End::Fail),
        Just(End::Cancel),
    ]
}

/// Operations whose future may be dropped, and whose effect the model can recognise.
fn droppable() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::collection::vec(spec(), 1..=3).prop_map(Op::Insert),
        task_pick().prop_map(Op::Cancel),
        prop::collection::vec((lease_pick(), end(), any::<bool>()), 1..=2).prop_map(Op::Finish),
        prop::collection::vec(lease_pick(), 1..=2).prop_map(Op::Release),
        (
            prop::collection::vec(lease_pick(), 1..=2),
            select(vec![10_u64, 60])
        )
            .prop_map(|(l, s)| Op::Heartbeat(l, Duration::from_secs(s))),
        prop::collection::vec((lease_pick(), 0..1000_u64), 1..=2).prop_map(Op::Report),
        Just(Op::Recover(1000)),
        Just(Op::Purge(1000)),
        task_pick().prop_map(Op::Get),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let advance = select(vec![
        1_u64, 999, 1_000, 5_000, 10_000, 30_000, 31_000, 60_000, 3_600_000,
    ])
    .prop_map(|ms| Op::Advance(Duration::from_millis(ms)));
    let statuses = prop::option::of(select(TaskStatus::ALL.to_vec()));
    prop_oneof![
        6 => prop::collection::vec(spec(), 1..=3).prop_map(Op::Insert),
        1 => (prop::collection::vec(spec(), 1..=3), any::<Index>())
            .prop_map(|(specs, bad)| Op::InsertInvalid(specs, bad)),
        10 => (select(vec![Jobs::A, Jobs::B, Jobs::Both]), 1..=3_usize, 0..2_u8)
            .prop_map(|(jobs, limit, worker)| Op::Claim(jobs, limit, worker)),
        2 => (prop::collection::vec(lease_pick(), 1..=3), select(vec![10_u64, 30, 60]))
            .prop_map(|(l, s)| Op::Heartbeat(l, Duration::from_secs(s))),
        8 => prop::collection::vec((lease_pick(), end(), any::<bool>()), 1..=2)
            .prop_map(Op::Finish),
        1 => prop::collection::vec(lease_pick(), 1..=2).prop_map(Op::Release),
        2 => prop::collection::vec((lease_pick(), 0..1000_u64), 1..=3).prop_map(Op::Report),
        2 => task_pick().prop_map(Op::Cancel),
        3 => select(vec![1_usize, 2, 1000]).prop_map(Op::Recover),
        3 => select(vec![1_usize, 2, 1000]).prop_map(Op::Purge),
        6 => advance,
        1 => task_pick().prop_map(Op::Get),
        1 => task_pick().prop_map(Op::Latest),
        1 => task_pick().prop_map(Op::Watch),
        1 => (prop::option::of(0..2_u8), statuses, select(vec![1_usize, 2, 100]),
              prop::option::of(task_pick()))
            .prop_map(|(owner, status, limit, after)| Op::List(owner, status, limit, after)),
        2 => (droppable(), prop_oneof![Just(Cut::FirstPoll), (1..16_u8).prop_map(Cut::Turns)])
            .prop_map(|(op, cut)| Op::Dropped(Box::new(op), cut)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Concrete calls and their answers.

#[derive(Debug, Clone)]
enum Call {
    Insert(Vec<NewTask>, bool),
    Claim(Vec<String>, usize, String),
    Heartbeat(Vec<Lease>, Duration),
    Finish(Vec<Completion>),
    Release(Vec<Lease>),
    Report(Vec<(Lease, Progress)>),
    Cancel(TaskId),
    Recover(usize),
    Purge(usize),
    Advance(Duration),
    Get(TaskId),
    Latest(TaskId),
    Watch(TaskId, bool),
    List(TaskQuery),
}

#[derive(Debug)]
enum Watched {
    Opened,
    Ended(Vec<TaskEvent>),
    /// What came before the stream stalled (read through `Debug`, in failure messages).
    #[allow(dead_code)]
    DidNotEnd(Vec<TaskEvent>),
}

#[derive(Debug)]
enum Answer {
    Inserted(Result<Vec<Inserted>>),
    Claimed(Result<Vec<ClaimedTask>>),
    States(Result<Vec<LeaseState>>),
    Acks(Result<Vec<Ack>>),
    Unit(Result<()>),
    Cancel(Result<CancelOutcome>),
    Count(Result<u64>),
    Record(Result<Option<Box<TaskRecord>>>),
    Progress(Result<Option<Progress>>),
    Watch(Result<Watched>),
    Records(Result<Vec<TaskRecord>>),
    Moved,
}

/// The call as a future that owns everything it needs, so that it can be dropped at any point.
fn start(backend: &Backend, call: &Call) -> BoxFuture<'static, Answer> {
    let (store, queue) = (backend.store().clone(), backend.queue().clone());
    let progress = backend.progress().clone();
    match call.clone() {
        Call::Insert(tasks, _) => {
            async move { Answer::Inserted(store.insert(tasks).await) }.boxed()
        }
        Call::Claim(jobs, limit, worker) => async move {
            let request = ClaimRequest {
                jobs: &jobs,
                worker: &worker,
                limit,
                lease: LEASE,
            };
            Answer::Claimed(queue.claim(request).await)
        }
        .boxed(),
        Call::Heartbeat(leases, extend) => {
            async move { Answer::States(queue.heartbeat(&leases, extend).await) }.boxed()
        }
        Call::Finish(completions) => {
            async move { Answer::Acks(queue.finish(completions).await) }.boxed()
        }
        Call::Release(leases) => async move { Answer::Acks(queue.release(&leases).await) }.boxed(),
        Call::Report(updates) => {
            async move { Answer::Unit(progress.report(&updates).await) }.boxed()
        }
        Call::Cancel(id) => async move { Answer::Cancel(store.cancel(id).await) }.boxed(),
        Call::Recover(limit) => {
            async move { Answer::Count(queue.recover_expired(limit).await) }.boxed()
        }
        Call::Purge(limit) => async move { Answer::Count(store.purge(limit).await) }.boxed(),
        Call::Advance(_) => async { Answer::Moved }.boxed(),
        Call::Get(id) => {
            async move { Answer::Record(store.get(id).await.map(|r| r.map(Box::new))) }.boxed()
        }
        Call::Latest(id) => async move { Answer::Progress(progress.latest(id).await) }.boxed(),
        Call::Watch(id, collect) => async move {
            let watched = match progress.watch(id).await {
                Err(err) => Err(err),
                Ok(_) if !collect => Ok(Watched::Opened),
                Ok(stream) => {
                    let mut events = Vec::new();
                    let mut stream = stream.take(3);
                    let read = tokio::time::timeout(SETTLE, async {
                        while let Some(event) = stream.next().await {
                            events.push(event);
                        }
                    });
                    Ok(match read.await {
                        Ok(()) => Watched::Ended(events),
                        Err(_) => Watched::DidNotEnd(events),
                    })
                }
            };
            Answer::Watch(watched)
        }
        .boxed(),
        Call::List(query) => async move { Answer::Records(store.list(&query).await) }.boxed(),
    }
}

/// Polls `op` until it answers, or drops it at `cut`.
async fn cut(mut op: BoxFuture<'static, Answer>, cut: Cut) -> Option<Answer> {
    let turns = match cut {
        Cut::FirstPoll => 1,
        Cut::Turns(n) => n.max(1),
    };
    for turn in 0..turns {
        if let Poll::Ready(answer) = futures::poll!(op.as_mut()) {
            return Some(answer);
        }
        if turn + 1 < turns {
            tokio::task::yield_now().await;
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The model.

/// Where a task stands in the model; the statuses a backend may show follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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
struct Task {
    /// The record as the contract says it must read (its status: one allowed value).
    record: TaskRecord,
    phase: Phase,
    /// The live lease, while running.
    lease: Option<Lease>,
    /// The last error is a lost attempt's: its message only has to say "lost".
    lost: bool,
}

/// The records a backend shows, by id.
type Seen = BTreeMap<TaskId, TaskRecord>;

#[derive(Debug, Clone)]
struct Model {
    jobs: [String; 2],
    now: DateTime<Utc>,
    tasks: BTreeMap<TaskId, Task>,
    /// Every id created in this sequence, purged ones included.
    known: Vec<TaskId>,
    /// Every lease handed out in this sequence.
    leases: Vec<Lease>,
    /// (job, owner, key) to the task holding it.
    keys: HashMap<(String, Option<String>, String), TaskId>,
    /// Numbers params, outputs and messages.
    serial: u64,
    stats: Stats,
}

/// What the sequences exercised, printed at the end so that a reader sees the model was not
/// idle.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    operations: u64,
    created: u64,
    claimed: u64,
    applied: u64,
    stale: u64,
    recovered: u64,
    purged: u64,
    dropped_done: u64,
    dropped_not_done: u64,
}

impl Stats {
    fn add(&mut self, o: &Self) {
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

fn json_eq(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn same<T: PartialEq + fmt::Debug>(what: &str, expected: &T, got: &T) -> Result<(), String> {
    check(expected == got, || {
        format!("{what}: expected {expected:?}, got {got:?}")
    })
}

impl Model {
    fn new(prefix: &str, now: DateTime<Utc>) -> Self {
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

    fn next(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn progress(&mut self, step: u64) -> Progress {
        let n = self.next();
        Progress {
            step,
            total: Some(1000),
            message: Some(format!("report {n}: step {step} \"of\" 1000 ✓")),
            rate: None,
            updated_at: self.now,
        }
    }

    fn lease(&self, pick: LeasePick) -> Lease {
        let live: Vec<Lease> = self.tasks.values().filter_map(|t| t.lease).collect();
        match pick {
            LeasePick::Live(i) if !live.is_empty() => live[i.index(live.len())],
            LeasePick::Live(i) | LeasePick::Any(i) if !self.leases.is_empty() => {
                self.leases[i.index(self.leases.len())]
            }
            _ => Lease {
                task: TaskId::new(),
                token: 1,
            },
        }
    }

    fn task(&self, pick: TaskPick) -> TaskId {
        match pick {
            TaskPick::Known(i) if !self.known.is_empty() => self.known[i.index(self.known.len())],
            _ => TaskId::new(),
        }
    }

    fn new_task(&mut self, spec: &Spec) -> NewTask {
        let n = self.next();
        NewTask {
            id: TaskId::new(),
            job: self.jobs[spec.job].clone(),
            params: format!("{{\"n\": {n}, \"text\": \"a \\\"quoted\\\" line\\n\"}}"),
            priority: spec.priority,
            run_at: match spec.when {
                When::Now => RunAt::Now,
                When::Past => RunAt::At(self.now - chrono::Duration::seconds(10)),
                When::InSecs(s) => RunAt::After(Duration::from_secs(s)),
            },
            max_attempts: spec.max_attempts,
            retention: spec.retention,
            owner: spec.owner.map(|o| format!("u{o}")),
            idempotency_key: spec.key.map(|k| format!("k{k}")),
        }
    }

    /// The concrete call an operation stands for now.
    fn resolve(&mut self, op: &Op) -> Call {
        match op {
            Op::Insert(specs) => {
                Call::Insert(specs.iter().map(|s| self.new_task(s)).collect(), true)
            }
            Op::InsertInvalid(specs, bad) => {
                let mut tasks: Vec<NewTask> = specs.iter().map(|s| self.new_task(s)).collect();
                let i = bad.index(tasks.len());
                match self.serial % 3 {
                    0 => tasks[i].idempotency_key = Some("line\nbreak".to_owned()),
                    1 => tasks[i].owner = Some(String::new()),
                    _ => tasks[i].max_attempts = 0,
                }
                Call::Insert(tasks, false)
            }
            Op::Claim(jobs, limit, worker) => {
                let jobs = match jobs {
                    Jobs::A => vec![self.jobs[0].clone()],
                    Jobs::B => vec![self.jobs[1].clone()],
                    Jobs::Both => self.jobs.to_vec(),
                };
                Call::Claim(jobs, *limit, format!("w{worker}"))
            }
            Op::Heartbeat(picks, extend) => {
                Call::Heartbeat(picks.iter().map(|p| self.lease(*p)).collect(), *extend)
            }
            Op::Finish(ends) => Call::Finish(
                ends.iter()
                    .map(|(pick, end, with_progress)| {
                        let lease = self.lease(*pick);
                        let n = self.next();
                        let outcome = match end {
                            End::Succeed => Outcome::Succeeded {
                                output: format!("{{\"done\": {n}}}"),
                            },
                            End::Retry(after) => Outcome::Failed {
                                error: format!("failure {n}, will retry"),
                                retry_after: Some(*after),
                            },
                            End::Fail => Outcome::Failed {
                                error: format!("failure {n} for good"),
                                retry_after: None,
                            },
                            End::Cancel => Outcome::Cancelled {
                                reason: format!("stopped {n}"),
                            },
                        };
                        let progress = with_progress.then(|| self.progress(1000));
                        Completion {
                            lease,
                            outcome,
                            progress,
                        }
                    })
                    .collect(),
            ),
            Op::Release(picks) => Call::Release(picks.iter().map(|p| self.lease(*p)).collect()),
            Op::Report(picks) => {
                // One entry per task, as the contract asks of a batch.
                let mut updates: Vec<(Lease, Progress)> = Vec::new();
                for (pick, step) in picks {
                    let lease = self.lease(*pick);
                    if updates.iter().all(|(l, _)| l.task != lease.task) {
                        updates.push((lease, self.progress(*step)));
                    }
                }
                Call::Report(updates)
            }
            Op::Cancel(pick) => Call::Cancel(self.task(*pick)),
            Op::Recover(limit) => Call::Recover(*limit),
            Op::Purge(limit) => Call::Purge(*limit),
            Op::Advance(by) => Call::Advance(*by),
            Op::Get(pick) => Call::Get(self.task(*pick)),
            Op::Latest(pick) => Call::Latest(self.task(*pick)),
            Op::Watch(pick) => {
                let id = self.task(*pick);
                let finished = self
                    .tasks
                    .get(&id)
                    .is_some_and(|t| t.phase == Phase::Finished);
                Call::Watch(id, finished)
            }
            Op::List(owner, status, limit, after) => Call::List(TaskQuery {
                job: Some(self.jobs[0].clone()),
                statuses: status.iter().copied().collect(),
                owner: owner.map(|o| format!("u{o}")),
                after: after.map(|p| self.task(p)),
                limit: *limit,
            }),
            Op::Dropped(op, _) => self.resolve(op),
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
    fn diff(&self, seen: &Seen) -> Result<(), String> {
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
    fn apply(&mut self, call: &Call, answer: Option<&Answer>, seen: &Seen) -> Result<(), String> {
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

// ---------------------------------------------------------------------------------------------
// Running sequences.

/// Every task of the sequence's jobs, as the backend lists them (in id order, as listed).
async fn observe(backend: &Backend, jobs: &[String; 2]) -> Result<Seen, String> {
    let mut seen = Seen::new();
    for job in jobs {
        let query = TaskQuery {
            job: Some(job.clone()),
            limit: 10_000,
            ..TaskQuery::default()
        };
        let listed = backend
            .store()
            .list(&query)
            .await
            .map_err(|e| format!("list failed: {e:?}"))?;
        check(listed.windows(2).all(|w| w[0].id < w[1].id), || {
            format!("list is not in id order: {listed:?}")
        })?;
        seen.extend(listed.into_iter().map(|r| (r.id, r)));
    }
    Ok(seen)
}

async fn run_sequence(
    h: &Harness,
    prefix: &str,
    ops: &[Op],
    total: &Mutex<Stats>,
) -> Result<(), String> {
    let mut model = Model::new(prefix, h.now());
    let ran = run_steps(h, &mut model, ops).await;
    total
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .add(&model.stats);
    ran
}

async fn run_steps(h: &Harness, model: &mut Model, ops: &[Op]) -> Result<(), String> {
    for (step, op) in ops.iter().enumerate() {
        model.stats.operations += 1;
        let call = model.resolve(op);
        let context = |problem: String| format!("step {step}: {op:?}\n  as {call:?}\n{problem}");
        if let Call::Advance(by) = call {
            h.advance(by);
        }
        let future = start(&h.backend, &call);
        let answer = match op {
            Op::Dropped(_, at) => cut(future, *at).await,
            _ => Some(future.await),
        };
        match answer {
            Some(answer) => {
                let seen = observe(&h.backend, &model.jobs).await.map_err(context)?;
                model.apply(&call, Some(&answer), &seen).map_err(context)?;
                model.diff(&seen).map_err(context)?;
            }
            None => {
                let (settled, done) = settle(h, model, &call).await.map_err(context)?;
                *model = settled;
                if done {
                    model.stats.dropped_done += 1;
                } else {
                    model.stats.dropped_not_done += 1;
                }
            }
        }
    }
    Ok(())
}

/// After a dropped operation: waits until the records show it done entirely (the model after
/// it), or, once [`SETTLE`] has passed, not at all (the model before it). Records that match
/// neither twice in a row (one reading may straddle the operation landing, as the two jobs are
/// listed one after the other) show it half done.
async fn settle(h: &Harness, model: &Model, call: &Call) -> Result<(Model, bool), String> {
    let started = Instant::now();
    let mut neither = 0;
    loop {
        let seen = observe(&h.backend, &model.jobs).await?;
        let mut after = model.clone();
        let done = after
            .apply(call, None, &seen)
            .and_then(|()| after.diff(&seen));
        let before = model.diff(&seen);
        match (done, before) {
            (Ok(()), _) => return Ok((after, true)),
            (Err(_), Ok(())) if started.elapsed() > SETTLE => return Ok((model.clone(), false)),
            (Err(_), Ok(())) => neither = 0,
            (Err(after), Err(before)) => {
                neither += 1;
                if neither == 2 {
                    return Err(format!(
                        "a dropped operation was half done: against the state after it:\n{after}\nagainst the state before it:\n{before}"
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Leaves nothing of a sequence that a later one's recovery or purge could see: every lease
/// expired and recovered, every task cancelled or finished, and all of them purged.
async fn clean_up(h: &Harness, prefix: &str) -> Result<(), String> {
    let jobs = [format!("{prefix}-a"), format!("{prefix}-b")];
    let (store, queue) = (h.backend.store(), h.backend.queue());
    let day = Duration::from_secs(24 * 3600);
    h.advance(day);
    queue
        .recover_expired(100_000)
        .await
        .map_err(|e| format!("clean-up recovery failed: {e:?}"))?;
    for record in observe(&h.backend, &jobs).await?.into_values() {
        if !record.status.is_final() {
            store
                .cancel(record.id)
                .await
                .map_err(|e| format!("clean-up cancel failed: {e:?}"))?;
        }
    }
    h.advance(day);
    while store
        .purge(100_000)
        .await
        .map_err(|e| format!("clean-up purge failed: {e:?}"))?
        > 0
    {}
    let left = observe(&h.backend, &jobs).await?;
    check(left.is_empty(), || {
        format!("clean-up left tasks behind: {left:?}")
    })
}

/// Random sequences of every backend operation, dropped futures and clock advances agree with
/// the reference model at every step: each answer and every record (see the module
/// documentation for what the model leaves open, and why). Shrinks a failure to a minimal
/// sequence and prints it with its seed.
pub async fn random_operations_match_the_model(h: Harness) {
    let seed: u64 = std::env::var("LONGTASK_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "random_operations_match_the_model: seed {seed} (replay with LONGTASK_MODEL_SEED={seed})"
    );
    let mut bytes = [0_u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    let config = Config {
        cases: SEQUENCES,
        max_shrink_iters: 1000,
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let runtime = tokio::runtime::Handle::current();
    let sequences = AtomicUsize::new(0);
    let stats = Mutex::new(Stats::default());
    let strategy = prop::collection::vec(op(), 1..=MAX_OPS);
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |ops| {
            let n = sequences.fetch_add(1, Ordering::Relaxed);
            let prefix = format!("model-{n}");
            runtime.block_on(async {
                let ran = run_sequence(&h, &prefix, &ops, &stats).await;
                let cleaned = clean_up(&h, &prefix).await;
                ran.and(cleaned).map_err(TestCaseError::fail)
            })
        })
    });
    let stats = *stats.lock().unwrap_or_else(PoisonError::into_inner);
    eprintln!("random_operations_match_the_model: {stats:?}");
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!(
            "the backend diverged from the model (seed {seed}; replay with \
             LONGTASK_MODEL_SEED={seed}). Minimal sequence ({} operations):\n{ops:#?}\n{reason}",
            ops.len()
        ),
        Err(TestError::Abort(reason)) => panic!("the model test gave up (seed {seed}): {reason}"),
    }
}

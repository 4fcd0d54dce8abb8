//! The operations a sequence is made of: generated abstractly (so that they shrink well),
//! resolved against the model's state into concrete calls, and run against a backend.

use std::{task::Poll, time::Duration};

use futures::{future::BoxFuture, FutureExt, StreamExt};
use proptest::{
    prelude::*,
    sample::{select, Index},
};

use super::{
    reference::{Model, Phase},
    SETTLE,
};
use crate::{
    testing::LEASE, Ack, Backend, CancelOutcome, ClaimRequest, ClaimedTask, Completion, Inserted,
    Lease, LeaseState, NewTask, Outcome, Progress, Result, RunAt, TaskEvent, TaskId, TaskQuery,
    TaskRecord, TaskStatus,
};

#[derive(Debug, Clone, Copy)]
pub(super) enum When {
    Now,
    Past,
    InSecs(u64),
}

/// One task of an insert batch.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    job: usize,
    priority: i32,
    when: When,
    max_attempts: u32,
    retention: Duration,
    owner: Option<u8>,
    key: Option<u8>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum LeasePick {
    /// A lease the model holds live (or any, if none is).
    Live(Index),
    /// Any lease handed out in this sequence, mostly stale.
    Any(Index),
    /// A lease of a task that never existed.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum TaskPick {
    Known(Index),
    Unknown,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum End {
    Succeed,
    Retry(Duration),
    Fail,
    Cancel,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Jobs {
    A,
    B,
    Both,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Cut {
    FirstPoll,
    Turns(u8),
}

#[derive(Debug, Clone)]
pub(super) enum Op {
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

pub(super) fn spec() -> impl Strategy<Value = Spec> {
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

pub(super) fn lease_pick() -> impl Strategy<Value = LeasePick> {
    prop_oneof![
        8 => any::<Index>().prop_map(LeasePick::Live),
        3 => any::<Index>().prop_map(LeasePick::Any),
        1 => Just(LeasePick::Unknown),
    ]
}

pub(super) fn task_pick() -> impl Strategy<Value = TaskPick> {
    prop_oneof![
        9 => any::<Index>().prop_map(TaskPick::Known),
        1 => Just(TaskPick::Unknown),
    ]
}

pub(super) fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::Succeed),
        select(vec![0_u64, 1, 10]).prop_map(|s| End::Retry(Duration::from_secs(s))),
        Just(End::Fail),
        Just(End::Cancel),
    ]
}

/// Operations whose future may be dropped, and whose effect the model can recognise.
///
/// A dropped operation goes on running in the background (cancel-safety), concurrently with the
/// operations after it; the model waits until its effect shows. A purge is left out: when it has
/// nothing to delete yet, "not run yet" and "done" look alike, and if it then runs after a task
/// with no retention finished at the same instant, it rightly deletes that task, which the model
/// cannot tell from a divergence. (Found on Postgres; the `cancel_safety` case drops purges.)
pub(super) fn droppable() -> impl Strategy<Value = Op> {
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
        task_pick().prop_map(Op::Get),
    ]
}

pub(super) fn op() -> impl Strategy<Value = Op> {
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
pub(super) enum Call {
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
pub(super) enum Watched {
    Opened,
    Ended(Vec<TaskEvent>),
    /// What came before the stream stalled (read through `Debug`, in failure messages).
    #[allow(dead_code)]
    DidNotEnd(Vec<TaskEvent>),
}

#[derive(Debug)]
pub(super) enum Answer {
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
pub(super) fn start(backend: &Backend, call: &Call) -> BoxFuture<'static, Answer> {
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
                limits: &[],
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
pub(super) async fn cut(mut op: BoxFuture<'static, Answer>, cut: Cut) -> Option<Answer> {
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

impl Model {
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
            concurrency_key: spec.owner.map(|o| format!("customer {o} ✓")),
            group: None,
        }
    }

    /// The concrete call an operation stands for now.
    pub(super) fn resolve(&mut self, op: &Op) -> Call {
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
                group: None,
            }),
            Op::Dropped(op, _) => self.resolve(op),
        }
    }
}

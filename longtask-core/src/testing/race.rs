//! Cases: several instances of a backend on one namespace at once, as several processes would
//! run them, with everything that can race a claim racing it.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use super::{numbered, Harness, LEASE};
use crate::{
    Ack, Backend, CancelOutcome, ClaimRequest, ClaimedTask, Completion, NewTask, Outcome, TaskId,
    TaskQuery, TaskStatus,
};

/// Tasks in the race.
const TASKS: usize = 300;
/// Claimers, spread over the instances.
const CLAIMERS: usize = 4;
/// How far each claimer moves the clock per round: a lease lives about eight rounds of each of
/// the four claimers. (Moving it with the claimers' progress, not with wall time, keeps a slow
/// machine from expiring every lease before its outcome is in.)
const TICK: Duration = Duration::from_secs(1);

/// What the racers saw, for the checks at the end.
#[derive(Default)]
struct Log {
    /// Every claim: (task, token, attempt).
    claims: Vec<(TaskId, u64, u32)>,
    /// Every success the backend applied: task → (attempt, output).
    successes: HashMap<TaskId, Vec<(u32, String)>>,
    /// Every cancel that found the task waiting.
    cancelled_waiting: HashSet<TaskId>,
}

/// A small deterministic generator (xorshift), so that no racer needs a random source.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// One racer's share of the harness.
struct Racer {
    backend: Backend,
    name: String,
    seed: u64,
    clock: Arc<crate::ManualClock>,
    log: Arc<Mutex<Log>>,
    done: Arc<AtomicBool>,
}

/// A task held for a while before its outcome.
struct Held {
    task: ClaimedTask,
    rounds: u64,
    /// A live, slow job extends its lease; a stalled one does not, and loses it.
    heartbeat: bool,
}

/// Claims, and for each task claimed: succeeds at once, fails with a retry, or holds it for a
/// few rounds, heartbeating or stalled, and then succeeds late (a stalled holder's lease has by
/// then often expired, been recovered and the task claimed again elsewhere). Each round moves
/// the clock on.
async fn claimer(racer: Racer) {
    let Racer {
        backend,
        name,
        seed,
        clock,
        log,
        done,
    } = racer;
    let jobs = ["race".to_owned()];
    let queue = backend.queue();
    let mut dice = Dice(seed);
    let mut held: Vec<Held> = Vec::new();
    let mut finishing = Vec::new();
    while !done.load(Ordering::Acquire) {
        let claimed = queue
            .claim(ClaimRequest {
                jobs: &jobs,
                worker: &name,
                limit: 8,
                lease: LEASE,
                limits: &[],
            })
            .await
            .expect("claim failed");
        {
            let mut log = log.lock().unwrap();
            log.claims.extend(
                claimed
                    .iter()
                    .map(|c| (c.lease.task, c.lease.token, c.attempt)),
            );
        }
        let idle = claimed.is_empty();
        for task in claimed {
            match dice.roll(6) {
                0..=2 => finishing.push(task),
                3 => {
                    let failure = Completion::new(
                        task.lease,
                        Outcome::Failed {
                            error: "try again".to_owned(),
                            retry_after: Some(Duration::ZERO),
                        },
                    );
                    queue.finish(vec![failure]).await.expect("finish failed");
                }
                _ => held.push(Held {
                    task,
                    rounds: 2 + dice.roll(12),
                    heartbeat: dice.roll(2) == 0,
                }),
            }
        }
        for h in &mut held {
            h.rounds -= 1;
        }
        let (late, still): (Vec<_>, Vec<_>) = held.into_iter().partition(|h| h.rounds == 0);
        held = still;
        let beating: Vec<_> = held
            .iter()
            .filter(|h| h.heartbeat)
            .map(|h| h.task.lease)
            .collect();
        if !beating.is_empty() {
            queue
                .heartbeat(&beating, LEASE)
                .await
                .expect("heartbeat failed");
        }
        finishing.extend(late.into_iter().map(|h| h.task));
        succeed(queue.as_ref(), &name, std::mem::take(&mut finishing), &log).await;
        clock.advance(TICK);
        if idle {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    // Every task is final by now: these late outcomes must all be refused.
    let late = held.into_iter().map(|h| h.task).collect();
    succeed(queue.as_ref(), &name, late, &log).await;
}

/// Reports success for `tasks`, logging the ones applied.
async fn succeed(queue: &dyn crate::Queue, name: &str, tasks: Vec<ClaimedTask>, log: &Mutex<Log>) {
    if tasks.is_empty() {
        return;
    }
    let outputs: Vec<String> = tasks
        .iter()
        .map(|c| format!("\"{name}/{}\"", c.lease.token))
        .collect();
    let completions = tasks
        .iter()
        .zip(&outputs)
        .map(|(c, output)| {
            Completion::new(
                c.lease,
                Outcome::Succeeded {
                    output: output.clone(),
                },
            )
        })
        .collect();
    let acks = queue.finish(completions).await.expect("finish failed");
    let mut log = log.lock().unwrap();
    for ((task, output), ack) in tasks.iter().zip(outputs).zip(acks) {
        if ack == Ack::Applied {
            log.successes
                .entry(task.lease.task)
                .or_default()
                .push((task.attempt, output));
        }
    }
}

/// Claimers on three instances of one namespace, a recovery loop, a clock moving past leases,
/// late outcomes under old leases and cancels racing claims: no task is lost, none is handed out
/// twice under one attempt, and each ends with exactly one final outcome, the one of its latest
/// attempt.
pub async fn racing_instances_finish_each_task_once(h: Harness) {
    let instances = [
        h.backend.clone(),
        h.open_instance().await,
        h.open_instance().await,
    ];
    let tasks: Vec<NewTask> = (0..TASKS)
        .map(|i| NewTask {
            max_attempts: 10_000,
            ..NewTask::new("race", numbered(i))
        })
        .collect();
    let ids = h.insert(tasks).await;
    let log = Arc::new(Mutex::new(Log::default()));
    let done = Arc::new(AtomicBool::new(false));
    let mut racers = tokio::task::JoinSet::new();
    for c in 0..CLAIMERS {
        racers.spawn(claimer(Racer {
            backend: instances[c % instances.len()].clone(),
            name: format!("claimer-{c}"),
            seed: 0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1),
            clock: h.clock.clone(),
            log: log.clone(),
            done: done.clone(),
        }));
    }
    {
        // Expired leases are recovered from another instance.
        let (queue, done) = (instances[2].queue().clone(), done.clone());
        racers.spawn(async move {
            while !done.load(Ordering::Acquire) {
                queue.recover_expired(50).await.expect("recovery failed");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });
    }
    {
        // Every seventh task is cancelled while the claimers run.
        let (store, log) = (instances[1].store().clone(), log.clone());
        let doomed: Vec<TaskId> = ids.iter().copied().step_by(7).collect();
        racers.spawn(async move {
            for id in doomed {
                let outcome = store.cancel(id).await.expect("cancel failed");
                if outcome == CancelOutcome::Cancelled {
                    log.lock().unwrap().cancelled_waiting.insert(id);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }

    // Until every task is final.
    let unfinished = TaskQuery {
        job: Some("race".to_owned()),
        statuses: vec![
            TaskStatus::Queued,
            TaskStatus::Scheduled,
            TaskStatus::Running,
            TaskStatus::Retrying,
        ],
        limit: TASKS,
        ..TaskQuery::default()
    };
    let started = Instant::now();
    loop {
        let left = h.backend.store().list(&unfinished).await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} tasks never finished (lost?): {:?}",
            left.len(),
            left.iter()
                .map(|t| (t.id, t.status, t.attempt))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, Ordering::Release);
    while let Some(racer) = racers.join_next().await {
        racer.expect("a racer panicked");
    }

    let log = Arc::try_unwrap(log)
        .ok()
        .expect("every racer is done")
        .into_inner()
        .unwrap();
    // One winner: no lease token or attempt handed out twice for a task.
    let mut tokens = HashSet::new();
    let mut attempts = HashSet::new();
    for (task, token, attempt) in &log.claims {
        assert!(
            tokens.insert((*task, *token)),
            "task {task}: token {token} handed out twice"
        );
        assert!(
            attempts.insert((*task, *attempt)),
            "task {task}: attempt {attempt} claimed twice"
        );
    }
    // Exactly one final outcome each.
    let mut by_status: HashMap<TaskStatus, usize> = HashMap::new();
    for id in &ids {
        let task = h.get(*id).await;
        *by_status.entry(task.status).or_default() += 1;
        let successes = log.successes.get(id).map_or(&[][..], Vec::as_slice);
        match task.status {
            TaskStatus::Succeeded => {
                assert_eq!(
                    successes.len(),
                    1,
                    "task {id} succeeded {} times: {successes:?}",
                    successes.len()
                );
                let (attempt, output) = &successes[0];
                assert_eq!(
                    *attempt, task.attempt,
                    "task {id}: the success of attempt {attempt} was applied, but attempt {} was the latest",
                    task.attempt
                );
                super::assert_json_eq(task.output.as_deref().unwrap(), output);
                assert!(
                    !log.cancelled_waiting.contains(id),
                    "task {id} was cancelled while waiting, and then succeeded"
                );
            }
            TaskStatus::Cancelled => assert!(
                successes.is_empty(),
                "task {id} is cancelled, yet a success was applied: {successes:?}"
            ),
            other => panic!("task {id} ended {other}: no task may fail or stay unfinished here"),
        }
    }
    assert!(
        by_status.get(&TaskStatus::Succeeded).copied().unwrap_or(0) > TASKS / 2,
        "most tasks succeed: {by_status:?}"
    );
}

//! Cases: cancel-safety. A web handler's future is dropped when its client hangs up, at any
//! `.await`; dropping any operation's future must leave the backend usable and its records
//! consistent, the operation done entirely or not at all.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::pin,
    task::Poll,
    time::Duration,
};

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{Harness, LEASE};
use crate::{
    Completion, Error, Lease, NewTask, Outcome, Progress, Result, TaskId, TaskQuery, TaskRecord,
    TaskStatus,
};

const JOB: &str = "dropped";
/// Rounds of operations, each dropped at a random point (or let finish).
const ROUNDS: usize = 250;
/// How long any operation may take once the chaos is over: a wedged backend fails here instead
/// of after a pool's 30 s timeout.
const PROMPT: Duration = Duration::from_secs(10);

/// Runs `op` until it answers or until a random point, where it is dropped: after its first
/// poll, after a number of scheduler turns, or after a short sleep. Returns the answer if it came.
async fn cut<T>(rng: &mut StdRng, op: impl Future<Output = Result<T>>) -> Option<Result<T>> {
    let mut op = pin!(op);
    match rng.gen_range(0..10) {
        // Dropped after the first poll.
        0 | 1 => match futures::poll!(op.as_mut()) {
            Poll::Ready(answer) => Some(answer),
            Poll::Pending => None,
        },
        // Dropped after a few turns of the scheduler (I/O progresses meanwhile).
        2..=5 => {
            let turns = rng.gen_range(1..=64);
            for _ in 0..turns {
                if let Poll::Ready(answer) = futures::poll!(op.as_mut()) {
                    return Some(answer);
                }
                tokio::task::yield_now().await;
            }
            None
        }
        // Dropped after a short sleep.
        6..=8 => {
            let delay = Duration::from_micros(rng.gen_range(0..3_000));
            tokio::select! {
                biased;
                answer = op => Some(answer),
                () = tokio::time::sleep(delay) => None,
            }
        }
        // Let finish (promptly: a wedged backend fails here rather than hanging).
        _ => match tokio::time::timeout(PROMPT, op).await {
            Ok(answer) => Some(answer),
            Err(_) => panic!("an operation took over {PROMPT:?} after earlier ones were dropped"),
        },
    }
}

/// Waits for `op`, which must answer successfully within [`PROMPT`].
async fn promptly<T>(what: &str, op: impl Future<Output = Result<T>>) -> T {
    match tokio::time::timeout(PROMPT, op).await {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => panic!("{what} failed after the dropped operations: {err:?}"),
        Err(_) => panic!("{what} took over {PROMPT:?} after the dropped operations"),
    }
}

/// An answer that came must be a success (or "not found" for a task whose insert was dropped
/// before it happened); anything else means a dropped operation broke the backend.
#[track_caller]
fn ok_or_not_found<T>(answer: Option<Result<T>>, what: &str) -> Option<T> {
    match answer? {
        Ok(value) => Some(value),
        Err(Error::NotFound(_)) => None,
        Err(err) => panic!("{what} failed after earlier operations were dropped: {err:?}"),
    }
}

/// Dropping every kind of operation (insert with idempotency keys, claim, heartbeat, finish,
/// release, cancel, report, watch, recover, purge, get, list) at random points, hundreds of
/// times, leaves the backend answering every later operation promptly, each dropped insert
/// batch present entirely or not at all, each idempotency key on at most one task, every record
/// consistent, and every task still able to reach a final status.
pub async fn dropped_operations_leave_the_backend_consistent(h: Harness) {
    let seed: u64 = rand::thread_rng().gen();
    eprintln!("dropped_operations_leave_the_backend_consistent: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let store = h.backend.store().clone();
    let queue = h.backend.queue().clone();
    let progress = h.backend.progress().clone();
    let jobs = [JOB.to_owned()];

    let mut batches: Vec<(String, Vec<TaskId>)> = Vec::new();
    let mut known: Vec<TaskId> = Vec::new();
    let mut held: Vec<Lease> = Vec::new();
    for round in 0..ROUNDS {
        // Insert a batch of three, one of them with a key shared by other rounds.
        let batch: Vec<NewTask> = (0..3)
            .map(|i| {
                let mut task = NewTask::new(JOB, format!("{{\"round\":{round},\"i\":{i}}}"));
                if i == 0 {
                    task.idempotency_key = Some(format!("key-{}", round % 17));
                }
                task
            })
            .collect();
        batches.push((
            format!("key-{}", round % 17),
            batch.iter().map(|t| t.id).collect(),
        ));
        known.extend(batch.iter().map(|t| t.id));
        let _ = ok_or_not_found(cut(&mut rng, store.insert(batch)).await, "insert");

        // Claim.
        let limit = rng.gen_range(1..=3);
        let claim = queue.claim(crate::ClaimRequest {
            jobs: &jobs,
            worker: "dropper",
            limit,
            lease: LEASE,
            limits: &[],
        });
        if let Some(claimed) = ok_or_not_found(cut(&mut rng, claim).await, "claim") {
            held.extend(claimed.into_iter().map(|c| c.lease));
        }

        // Heartbeat, report progress for, and finish or release what is held.
        if !held.is_empty() {
            let beat = queue.heartbeat(&held, LEASE);
            let _ = ok_or_not_found(cut(&mut rng, beat).await, "heartbeat");
            let lease = held[rng.gen_range(0..held.len())];
            let update = [(lease, Progress::new(round as u64, Some(1000)))];
            let _ = ok_or_not_found(cut(&mut rng, progress.report(&update)).await, "report");
        }
        if !held.is_empty() && rng.gen_bool(0.6) {
            let lease = held.swap_remove(rng.gen_range(0..held.len()));
            let outcome = match rng.gen_range(0..4) {
                0 => Outcome::Failed {
                    error: "dropped".to_owned(),
                    retry_after: Some(Duration::from_secs(1)),
                },
                1 => Outcome::Failed {
                    error: "dropped for good".to_owned(),
                    retry_after: None,
                },
                2 => Outcome::Cancelled {
                    reason: "dropped".to_owned(),
                },
                _ => Outcome::Succeeded {
                    output: round.to_string(),
                },
            };
            let mut completion = Completion::new(lease, outcome);
            if rng.gen_bool(0.5) {
                completion.progress = Some(Progress::new(1000, Some(1000)));
            }
            let _ = ok_or_not_found(
                cut(&mut rng, queue.finish(vec![completion])).await,
                "finish",
            );
        }
        if !held.is_empty() && rng.gen_bool(0.2) {
            let lease = held.swap_remove(rng.gen_range(0..held.len()));
            let _ = ok_or_not_found(cut(&mut rng, queue.release(&[lease])).await, "release");
        }

        // Cancel, read and watch a task submitted earlier.
        let id = known[rng.gen_range(0..known.len())];
        let _ = ok_or_not_found(cut(&mut rng, store.cancel(id)).await, "cancel");
        let _ = ok_or_not_found(cut(&mut rng, store.get(id)).await, "get");
        let id = known[rng.gen_range(0..known.len())];
        if let Some(stream) = ok_or_not_found(cut(&mut rng, progress.watch(id)).await, "watch") {
            drop(stream);
        }
        let _ = ok_or_not_found(cut(&mut rng, progress.latest(id)).await, "latest");
        let query = TaskQuery {
            job: Some(JOB.to_owned()),
            limit: 50,
            ..TaskQuery::default()
        };
        let _ = ok_or_not_found(cut(&mut rng, store.list(&query)).await, "list");

        // Now and then, let leases expire and recover them, and purge.
        if round % 25 == 24 {
            h.advance(LEASE + Duration::from_secs(1));
            held.clear();
            let _ = ok_or_not_found(cut(&mut rng, queue.recover_expired(100)).await, "recover");
            let _ = ok_or_not_found(cut(&mut rng, store.purge(100)).await, "purge");
        }
    }

    // Every operation answers promptly now, and each answers correctly.
    let fresh = NewTask::new("after-drops", "{}");
    let fresh_id = fresh.id;
    let inserted = promptly("insert", store.insert(vec![fresh])).await;
    assert_eq!(inserted[0].id, fresh_id);
    let claimed = promptly(
        "claim",
        h.backend.queue().claim(crate::ClaimRequest {
            jobs: &["after-drops".to_owned()],
            worker: "after",
            limit: 1,
            lease: LEASE,
            limits: &[],
        }),
    )
    .await;
    assert_eq!(
        claimed.len(),
        1,
        "the task inserted after the drops was not claimed"
    );
    let done = Completion::new(
        claimed[0].lease,
        Outcome::Succeeded {
            output: "1".to_owned(),
        },
    );
    let acks = promptly("finish", queue.finish(vec![done])).await;
    assert_eq!(acks, vec![crate::Ack::Applied]);
    assert_eq!(h.get(fresh_id).await.status, TaskStatus::Succeeded);

    // Drive every task to a final status: expire leases (and backoffs), recover, claim, finish.
    // A task a dropped operation left half-changed would be stuck here.
    let all = |store: std::sync::Arc<dyn crate::TaskStore>| async move {
        let mut tasks = Vec::new();
        let mut after = None;
        loop {
            let page = promptly(
                "list",
                store.list(&TaskQuery {
                    job: Some(JOB.to_owned()),
                    after,
                    limit: 500,
                    ..TaskQuery::default()
                }),
            )
            .await;
            let Some(last) = page.last() else {
                break tasks;
            };
            after = Some(last.id);
            tasks.extend(page);
        }
    };
    for _ in 0..50 {
        h.advance(Duration::from_secs(24 * 3600));
        promptly("recover", queue.recover_expired(10_000)).await;
        let claimed = promptly(
            "claim",
            queue.claim(crate::ClaimRequest {
                jobs: &jobs,
                worker: "closer",
                limit: 1_000,
                lease: LEASE,
                limits: &[],
            }),
        )
        .await;
        if claimed.is_empty() {
            break;
        }
        let completions = claimed
            .iter()
            .map(|c| {
                Completion::new(
                    c.lease,
                    Outcome::Succeeded {
                        output: "\"closed\"".to_owned(),
                    },
                )
            })
            .collect();
        let acks = promptly("finish", queue.finish(completions)).await;
        assert!(
            acks.iter().all(|a| *a == crate::Ack::Applied),
            "a fresh lease was refused"
        );
    }
    // Let any operation the drops left running in the background land, then check the records.
    h.advance(Duration::from_secs(24 * 3600));
    promptly("recover", queue.recover_expired(10_000)).await;
    let tasks = all(store.clone()).await;
    check_records(&tasks, &batches);
}

/// Each insert batch is there entirely or not at all; each idempotency key names at most one
/// task; every task is final, with a consistent record.
#[track_caller]
fn check_records(tasks: &[TaskRecord], batches: &[(String, Vec<TaskId>)]) {
    let present: HashSet<TaskId> = tasks.iter().map(|t| t.id).collect();
    let keys: HashSet<&str> = tasks
        .iter()
        .filter_map(|t| t.idempotency_key.as_deref())
        .collect();
    for (key, batch) in batches {
        // The first task carries a key: it is stored, or its key names an earlier task.
        let stored: Vec<bool> = batch.iter().map(|id| present.contains(id)).collect();
        let whole = stored[1..].iter().all(|s| *s) && (stored[0] || keys.contains(key.as_str()));
        let none = !stored.iter().any(|s| *s);
        assert!(
            whole || none,
            "an insert batch was half written: stored {stored:?} of {batch:?}"
        );
    }
    assert!(!tasks.is_empty(), "no insert ever completed");
    let mut keys: HashMap<&str, TaskId> = HashMap::new();
    for task in tasks {
        if let Some(key) = task.idempotency_key.as_deref() {
            if let Some(other) = keys.insert(key, task.id) {
                panic!(
                    "idempotency key {key} names two tasks: {other} and {}",
                    task.id
                );
            }
        }
        assert!(
            task.status.is_final(),
            "task {} is stuck {:?} after every lease expired and every due task was claimed: {task:?}",
            task.id,
            task.status
        );
        assert!(
            task.finished_at.is_some(),
            "final task without finished_at: {task:?}"
        );
        assert!(
            task.lease_owner.is_none() && task.lease_expires_at.is_none(),
            "final task keeps a lease: {task:?}"
        );
        assert!(
            task.attempt <= task.max_attempts,
            "task ran more attempts than allowed: {task:?}"
        );
        if task.status == TaskStatus::Succeeded {
            assert!(task.output.is_some(), "succeeded without output: {task:?}");
        }
    }
}

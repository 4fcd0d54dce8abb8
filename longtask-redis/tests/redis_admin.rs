//! Task groups and operators' actions on a real redis-server, beyond the conformance cases:
//! random groups, members, outcomes, cancellations, recoveries, retries, deletes and purges
//! give exactly the reference backend's records, claims and answers; a retried task's old
//! entry in its finished list neither purges it early nor holds up the purge of the tasks
//! behind it; a task cancelled while waiting in its submission list and then retried is
//! claimed once, in its new place; deleted and purged groups leave no keys behind.
//!
//! Uses `REDIS_URL` when set, otherwise a throwaway `redis-server` (see `tests/common`).

mod common;

use std::{sync::Arc, time::Duration};

use common::{redis_url, unique_prefix};
use longtask_core::{
    group_root_run_at, Ack, Backend, ClaimRequest, ClaimedTask, Clock, Completion, DeleteOutcome,
    Error, GroupRole, JobLimits, Lease, ManualClock, MemoryBackend, NewTask, Outcome, RetryOutcome,
    RunAt, TaskId, TaskQuery, TaskRecord, TaskStatus, GROUP_JOB,
};
use longtask_redis::RedisBackend;

const LEASE: Duration = Duration::from_secs(30);
const RETENTION: Duration = Duration::from_secs(60);

async fn redis_backend(clock: Arc<dyn Clock>) -> RedisBackend {
    RedisBackend::connect(&redis_url())
        .await
        .expect("cannot connect to the test Redis")
        .with_prefix(unique_prefix())
        .with_clock(clock)
}

/// A small deterministic random number generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

fn task(job: &str, n: usize) -> NewTask {
    NewTask {
        retention: RETENTION,
        max_attempts: 2,
        ..NewTask::new(job, n.to_string())
    }
}

fn root(job: &str) -> NewTask {
    NewTask {
        run_at: RunAt::At(group_root_run_at()),
        group: Some(GroupRole::Root),
        ..task(job, 0)
    }
}

fn member(root: TaskId, n: usize) -> NewTask {
    NewTask {
        group: Some(GroupRole::Member(root)),
        ..task("m", n)
    }
}

async fn claim(backend: &Backend, jobs: &[&str], limit: usize) -> Vec<ClaimedTask> {
    let jobs: Vec<String> = jobs.iter().map(|j| (*j).to_owned()).collect();
    backend
        .queue()
        .claim(ClaimRequest {
            jobs: &jobs,
            worker: "w",
            limit,
            lease: LEASE,
            limits: &[],
        })
        .await
        .expect("claim failed")
}

/// What two backends must agree on about a task (tokens and lease times aside).
#[derive(Debug, PartialEq)]
struct Summary {
    status: TaskStatus,
    attempt: u32,
    group: Option<TaskId>,
    open_members: Option<u32>,
    output: Option<String>,
    finished: bool,
}

fn summary(record: Option<TaskRecord>) -> Option<Summary> {
    record.map(|r| Summary {
        status: r.status,
        attempt: r.attempt,
        group: r.group,
        open_members: r.open_members,
        output: r.output,
        finished: r.finished_at.is_some(),
    })
}

/// Random groups (plain roots and roots with a completion job), members added at once and
/// later (some to groups that fired, some to unknown groups), plain tasks, claims, outcomes
/// (success, retry, permanent failure, cancellation), cancellations, lease recoveries,
/// operators' retries and deletes, and purges, applied alike to Redis and to the in-memory
/// reference backend: every answer, every claim and every record agree, and so do the group
/// listings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_operators_match_the_reference_backend() {
    for seed in [11_u64, 4_242_424, 77_777_777] {
        let clock = Arc::new(ManualClock::new());
        let redis = Backend::new(redis_backend(clock.clone()).await);
        let memory = Backend::new(MemoryBackend::new().with_clock(clock.clone()));
        let mut rng = Rng(seed);
        let mut roots: Vec<TaskId> = Vec::new();
        let mut ids: Vec<TaskId> = Vec::new();
        let mut plains: Vec<TaskId> = Vec::new();
        let mut held: Vec<(Lease, Lease)> = Vec::new();
        let (mut fired, mut refused, mut retried, mut deleted) = (0, 0, 0, 0);
        let mut n = 0;
        for step in 0..400 {
            let at = format!("seed {seed}, step {step}");
            match rng.below(14) {
                0 | 1 => {
                    let group = root(if rng.below(2) == 0 { GROUP_JOB } else { "done" });
                    let id = group.id;
                    let mut batch = vec![group];
                    for _ in 0..1 + rng.below(3) {
                        n += 1;
                        batch.push(member(id, n));
                    }
                    for _ in 0..rng.below(3) {
                        n += 1;
                        let plain = task("plain", n);
                        plains.push(plain.id);
                        batch.push(plain);
                    }
                    roots.push(id);
                    ids.extend(batch.iter().map(|t| t.id));
                    for backend in [&redis, &memory] {
                        backend.store().insert(batch.clone()).await.unwrap();
                    }
                }
                2 => {
                    // Members join a known group (open or not) or an unknown one, with a plain
                    // task in the same batch: both refuse the whole batch, or both take it.
                    let group = if roots.is_empty() || rng.below(5) == 0 {
                        TaskId::new()
                    } else {
                        roots[rng.below(roots.len())]
                    };
                    n += 2;
                    let batch = vec![task("plain", n - 1), member(group, n)];
                    let r = redis.store().insert(batch.clone()).await;
                    let m = memory.store().insert(batch.clone()).await;
                    match (&r, &m) {
                        (Ok(_), Ok(_)) => ids.extend(batch.iter().map(|t| t.id)),
                        (Err(Error::InvalidInput(_)), Err(Error::InvalidInput(_))) => {
                            refused += 1;
                        }
                        _ => panic!("{at}: inserting into group {group}: {r:?} / {m:?}"),
                    }
                }
                3..=5 => {
                    let jobs: &[&str] = match rng.below(3) {
                        0 => &["m"],
                        1 => &["done", "plain"],
                        _ => &["m", "done", "plain", GROUP_JOB],
                    };
                    let limit = 1 + rng.below(3);
                    let from_redis = claim(&redis, jobs, limit).await;
                    let from_memory = claim(&memory, jobs, limit).await;
                    let tasks = |c: &[ClaimedTask]| {
                        c.iter()
                            .map(|t| (t.lease.task, t.attempt))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(tasks(&from_redis), tasks(&from_memory), "{at}: claims");
                    fired += from_redis.iter().filter(|c| c.job == "done").count();
                    held.extend(
                        from_redis
                            .iter()
                            .zip(&from_memory)
                            .map(|(r, m)| (r.lease, m.lease)),
                    );
                }
                6 | 7 if !held.is_empty() => {
                    let (on_redis, on_memory) = held.swap_remove(rng.below(held.len()));
                    let kind = rng.below(4);
                    for (backend, lease) in [(&redis, on_redis), (&memory, on_memory)] {
                        let outcome = match kind {
                            0 => Outcome::Failed {
                                error: "again".to_owned(),
                                retry_after: Some(Duration::ZERO),
                            },
                            1 => Outcome::Failed {
                                error: "broken".to_owned(),
                                retry_after: None,
                            },
                            2 => Outcome::Cancelled {
                                reason: "asked".to_owned(),
                            },
                            _ => Outcome::Succeeded {
                                output: format!("\"{}\"", lease.task),
                            },
                        };
                        let done = Completion::new(lease, outcome);
                        let ack = backend.queue().finish(vec![done]).await.unwrap();
                        assert_eq!(ack, [Ack::Applied], "{at}");
                    }
                }
                8 if !ids.is_empty() => {
                    let id = ids[rng.below(ids.len())];
                    let r = redis.store().cancel(id).await.ok();
                    let m = memory.store().cancel(id).await.ok();
                    assert_eq!(r, m, "{at}: cancelling {id}");
                }
                9 if rng.below(3) == 0 => {
                    clock.advance(LEASE + Duration::from_secs(1));
                    let r = redis.queue().recover_expired(1000).await.unwrap();
                    let m = memory.queue().recover_expired(1000).await.unwrap();
                    assert_eq!(r, m, "{at}: recovered");
                    held.clear();
                }
                10 if !ids.is_empty() => {
                    // Mostly tasks in no group (a member or root is refused).
                    let picked: Vec<TaskId> = (0..1 + rng.below(3))
                        .map(|_| match rng.below(4) {
                            0 => ids[rng.below(ids.len())],
                            _ if !plains.is_empty() => plains[rng.below(plains.len())],
                            _ => ids[rng.below(ids.len())],
                        })
                        .collect();
                    let r = redis.store().retry(&picked).await.unwrap();
                    let m = memory.store().retry(&picked).await.unwrap();
                    assert_eq!(r, m, "{at}: retrying {picked:?}");
                    retried += r.iter().filter(|o| **o == RetryOutcome::Retried).count();
                }
                11 if !ids.is_empty() => {
                    let picked: Vec<TaskId> = (0..3).map(|_| ids[rng.below(ids.len())]).collect();
                    let r = redis.store().delete(&picked).await.unwrap();
                    let m = memory.store().delete(&picked).await.unwrap();
                    assert_eq!(r, m, "{at}: deleting {picked:?}");
                    deleted += r.iter().filter(|o| **o == DeleteOutcome::Deleted).count();
                }
                12 if rng.below(4) == 0 => {
                    clock.advance(RETENTION / 2);
                    let r = redis.store().purge(1000).await.unwrap();
                    let m = memory.store().purge(1000).await.unwrap();
                    assert_eq!(r, m, "{at}: purged");
                }
                _ => clock.advance(Duration::from_millis(5)),
            }
            if step % 25 == 24 {
                compare(&redis, &memory, &ids, &roots, &at).await;
            }
        }
        compare(&redis, &memory, &ids, &roots, &format!("seed {seed}, end")).await;
        assert!(
            fired > 2 && refused > 2 && retried > 2 && deleted > 2,
            "seed {seed}: too little happened: {fired} completions claimed, {refused} batches \
             refused, {retried} retried, {deleted} deleted"
        );
    }
}

/// Every task's record agrees, and so does every group's listing (in full, and by status).
async fn compare(redis: &Backend, memory: &Backend, ids: &[TaskId], roots: &[TaskId], at: &str) {
    for id in ids {
        let r = summary(redis.store().get(*id).await.unwrap());
        let m = summary(memory.store().get(*id).await.unwrap());
        assert_eq!(
            r, m,
            "{at}: task {id}: Redis (left) and memory (right) differ"
        );
    }
    for root in roots {
        for statuses in [vec![], vec![TaskStatus::Succeeded, TaskStatus::Failed]] {
            let query = TaskQuery {
                group: Some(*root),
                statuses,
                ..TaskQuery::default()
            };
            let listed = |records: Vec<TaskRecord>| {
                records
                    .into_iter()
                    .map(|r| (r.id, r.status))
                    .collect::<Vec<_>>()
            };
            let r = listed(redis.store().list(&query).await.unwrap());
            let m = listed(memory.store().list(&query).await.unwrap());
            assert_eq!(r, m, "{at}: group {root}");
        }
    }
}

/// A task that failed, was retried and failed again is purged at the retention of its new
/// end, not its first; and its first entry (ahead in its finished list) does not hold up the
/// purge of a task that finished between its two ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_tasks_old_entry_neither_purges_it_nor_holds_up_others() {
    let clock = Arc::new(ManualClock::new());
    let backend = Backend::new(redis_backend(clock.clone()).await);
    let tasks = vec![task("job", 1), task("job", 2)];
    let (again, other) = (tasks[0].id, tasks[1].id);
    backend.store().insert(tasks).await.unwrap();
    let claimed = claim(&backend, &["job"], 2).await;
    let failed = Outcome::Failed {
        error: "no".to_owned(),
        retry_after: None,
    };
    let first = Completion::new(claimed[0].lease, failed.clone());
    assert_eq!(claimed[0].lease.task, again);
    backend.queue().finish(vec![first]).await.unwrap();
    clock.advance(Duration::from_secs(10));
    let done = Outcome::Succeeded {
        output: "2".to_owned(),
    };
    backend
        .queue()
        .finish(vec![Completion::new(claimed[1].lease, done)])
        .await
        .unwrap();
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        backend.store().retry(&[again]).await.unwrap(),
        [RetryOutcome::Retried]
    );
    let second = claim(&backend, &["job"], 1).await;
    let second = Completion::new(second[0].lease, failed);
    backend.queue().finish(vec![second]).await.unwrap();

    // 61 s after the first failure: nothing is due yet (the retried task's first entry is
    // passed over, not purged).
    clock.advance(RETENTION - Duration::from_secs(19));
    assert_eq!(backend.store().purge(100).await.unwrap(), 0);
    assert!(backend.store().get(again).await.unwrap().is_some());
    // 61 s after the other task's end: it goes, though the retried task's first entry was
    // ahead of it in the list.
    clock.advance(Duration::from_secs(10));
    assert_eq!(backend.store().purge(100).await.unwrap(), 1);
    assert!(backend.store().get(other).await.unwrap().is_none());
    assert!(backend.store().get(again).await.unwrap().is_some());
    // 61 s after its second end, the retried task goes too.
    clock.advance(Duration::from_secs(10));
    assert_eq!(backend.store().purge(100).await.unwrap(), 1);
    assert!(backend.store().get(again).await.unwrap().is_none());
}

/// A task cancelled while it waited in its job's submission list, then retried, is claimed
/// once, in its new place (after tasks that became due before the retry), by plain claims and
/// by claims under a concurrency limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_while_listed_and_retried_is_claimed_once_in_its_new_place() {
    for limited in [false, true] {
        let clock = Arc::new(ManualClock::new());
        let backend = Backend::new(redis_backend(clock.clone()).await);
        let keyed = |n| NewTask {
            concurrency_key: Some("k".to_owned()),
            ..task("job", n)
        };
        let first = vec![keyed(1), keyed(2)];
        let (a, b) = (first[0].id, first[1].id);
        backend.store().insert(first).await.unwrap();
        backend.store().cancel(a).await.unwrap();
        clock.advance(Duration::from_secs(1));
        let c = keyed(3);
        let c_id = c.id;
        backend.store().insert(vec![c]).await.unwrap();
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            backend.store().retry(&[a]).await.unwrap(),
            [RetryOutcome::Retried]
        );
        let limits = [JobLimits {
            job: "job".to_owned(),
            max_running: None,
            max_running_per_key: Some(10),
        }];
        let jobs = ["job".to_owned()];
        let mut order = Vec::new();
        for _ in 0..5 {
            let request = ClaimRequest {
                jobs: &jobs,
                worker: "w",
                limit: 1,
                lease: LEASE,
                limits: if limited { &limits } else { &[] },
            };
            let claimed = backend.queue().claim(request).await.unwrap();
            order.extend(claimed.iter().map(|c| c.lease.task));
        }
        assert_eq!(order, [b, c_id, a], "limited: {limited}");
    }
}

/// Deleting and purging a group's members and root, and tasks with idempotency keys, leaves no
/// task, group index or key entry behind; a deleted task's leftover entry is not counted by
/// purge; the fired root waits nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_purged_groups_leave_no_keys() {
    let clock = Arc::new(ManualClock::new());
    let redis = redis_backend(clock.clone()).await;
    let prefix = redis.prefix().to_owned();
    let backend = Backend::new(redis);
    let group = root("done");
    let id = group.id;
    let keyed = NewTask {
        idempotency_key: Some("once".to_owned()),
        group: Some(GroupRole::Member(id)),
        ..task("m", 9)
    };
    let tasks = vec![group, member(id, 1), member(id, 2), keyed];
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    backend.store().insert(tasks).await.unwrap();
    let claimed = claim(&backend, &["m"], 3).await;
    let done: Vec<Completion> = claimed
        .iter()
        .map(|c| {
            let output = Outcome::Succeeded {
                output: "1".to_owned(),
            };
            Completion::new(c.lease, output)
        })
        .collect();
    backend.queue().finish(done).await.unwrap();
    let completion = claim(&backend, &["done"], 1).await;
    assert_eq!(completion[0].lease.task, id);
    let output = Outcome::Succeeded {
        output: "3".to_owned(),
    };
    backend
        .queue()
        .finish(vec![Completion::new(completion[0].lease, output)])
        .await
        .unwrap();
    assert_eq!(
        backend.store().delete(&[ids[3], id]).await.unwrap(),
        [DeleteOutcome::Deleted, DeleteOutcome::Deleted]
    );
    clock.advance(RETENTION + Duration::from_secs(1));
    assert_eq!(
        backend.store().purge(100).await.unwrap(),
        2,
        "the two members left, not the deleted tasks"
    );
    let client = ::redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    let base = format!("{{{prefix}}}:");
    let left: Vec<&str> = keys
        .iter()
        .map(|k| k.strip_prefix(&base).unwrap())
        // Left by design: the priorities index, the retention periods, and the minutes of
        // throughput (stats show the last hour, purged tasks included).
        .filter(|k| !k.starts_with("qp:") && !matches!(*k, "xr" | "tp" | "tpm"))
        .collect();
    assert!(left.is_empty(), "keys left behind: {left:?}");
    let query = TaskQuery {
        group: Some(id),
        ..TaskQuery::default()
    };
    assert!(backend.store().list(&query).await.unwrap().is_empty());
}

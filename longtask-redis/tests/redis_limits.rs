//! Concurrency limits on a real redis-server, beyond the conformance cases: limited claims give
//! exactly the reference backend's tasks through random submissions, claims, outcomes,
//! recoveries and cancellations; a key with thousands of waiting tasks does not hold up the keys
//! behind it; the running counts stay exact (tasks that ran before the first limited claim,
//! recovery, cancellation while running, purge); cancelling a waiting task never strands the
//! tasks its key parked.
//!
//! Uses `REDIS_URL` when set, otherwise a throwaway `redis-server` (see `tests/common`).

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::{redis_url, unique_prefix};
use longtask_core::{
    Ack, Backend, ClaimRequest, ClaimedTask, Clock, Completion, JobLimits, Lease, ManualClock,
    MemoryBackend, NewTask, Outcome, RunAt, TaskId, TaskStatus,
};
use longtask_redis::RedisBackend;

const LEASE: Duration = Duration::from_secs(30);

async fn redis_backend(clock: Arc<dyn Clock>) -> RedisBackend {
    RedisBackend::connect(&redis_url())
        .await
        .expect("cannot connect to the test Redis")
        .with_prefix(unique_prefix())
        .with_clock(clock)
}

fn limits(job: &str, max_running: Option<u32>, per_key: Option<u32>) -> JobLimits {
    JobLimits {
        job: job.to_owned(),
        max_running,
        max_running_per_key: per_key,
    }
}

fn keyed(job: &str, params: &str, key: Option<&str>) -> NewTask {
    NewTask {
        concurrency_key: key.map(str::to_owned),
        ..NewTask::new(job, params)
    }
}

async fn claim(
    backend: &Backend,
    jobs: &[&str],
    limit: usize,
    limits: &[JobLimits],
) -> Vec<ClaimedTask> {
    let jobs: Vec<String> = jobs.iter().map(|j| (*j).to_owned()).collect();
    backend
        .queue()
        .claim(ClaimRequest {
            jobs: &jobs,
            worker: "w",
            limit,
            lease: LEASE,
            limits,
        })
        .await
        .expect("claim failed")
}

fn params(claimed: &[ClaimedTask]) -> Vec<&str> {
    claimed.iter().map(|c| c.params.as_str()).collect()
}

async fn succeed(backend: &Backend, lease: Lease) {
    let done = Completion::new(
        lease,
        Outcome::Succeeded {
            output: "0".to_owned(),
        },
    );
    assert_eq!(
        backend.queue().finish(vec![done]).await.unwrap(),
        [Ack::Applied]
    );
}

/// The fields of a job's running-counts hash (`{prefix}:rn:<job>`).
async fn counts(backend: &RedisBackend, job: &str) -> HashMap<String, String> {
    let client = ::redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    ::redis::cmd("HGETALL")
        .arg(format!("{{{}}}:rn:{job}", backend.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn counted(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
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

/// Random submissions (two jobs, three keys and none, two priorities, some run times in the
/// past), limited claims, successes, retries, releases, cancellations (waiting and running) and
/// lease recoveries, applied alike to Redis and to the in-memory reference backend: every
/// claim hands out the same tasks in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_claims_match_the_reference_backend() {
    for seed in [7_u64, 1_234_567, 987_654_321] {
        let clock = Arc::new(ManualClock::new());
        let redis = Backend::new(redis_backend(clock.clone()).await);
        let memory = Backend::new(MemoryBackend::new().with_clock(clock.clone()));
        let mut rng = Rng(seed);
        let keys = [None, Some("k1"), Some("k:2{x}%"), Some("k3")];
        let caps = [limits("a", Some(4), Some(2)), limits("b", None, Some(1))];
        // The leases held, on Redis and on memory (their tokens differ).
        let mut held: Vec<(Lease, Lease)> = Vec::new();
        let mut submitted: Vec<TaskId> = Vec::new();
        let mut claims = 0;
        for step in 0..250 {
            match rng.below(10) {
                0..=2 => {
                    let batch: Vec<NewTask> = (0..1 + rng.below(6))
                        .map(|_| NewTask {
                            priority: i32::try_from(rng.below(2)).unwrap(),
                            run_at: if rng.below(5) == 0 {
                                RunAt::At(clock.now() - chrono::Duration::seconds(3))
                            } else {
                                RunAt::Now
                            },
                            ..keyed(["a", "b"][rng.below(2)], "null", keys[rng.below(4)])
                        })
                        .collect();
                    submitted.extend(batch.iter().map(|t| t.id));
                    for backend in [&redis, &memory] {
                        backend.store().insert(batch.clone()).await.unwrap();
                    }
                }
                3..=5 => {
                    let jobs: &[&str] = if rng.below(3) == 0 {
                        &["a"]
                    } else {
                        &["a", "b"]
                    };
                    let limit = 1 + rng.below(4);
                    let from_redis = claim(&redis, jobs, limit, &caps).await;
                    let from_memory = claim(&memory, jobs, limit, &caps).await;
                    let tasks = |c: &[ClaimedTask]| {
                        c.iter()
                            .map(|t| (t.lease.task, t.attempt))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(
                        tasks(&from_redis),
                        tasks(&from_memory),
                        "seed {seed}, step {step}: Redis (left) and memory (right) differ"
                    );
                    claims += usize::from(!from_redis.is_empty());
                    held.extend(
                        from_redis
                            .iter()
                            .zip(&from_memory)
                            .map(|(r, m)| (r.lease, m.lease)),
                    );
                }
                6 | 7 if !held.is_empty() => {
                    let (on_redis, on_memory) = held.swap_remove(rng.below(held.len()));
                    let kind = rng.below(5);
                    for (backend, lease) in [(&redis, on_redis), (&memory, on_memory)] {
                        let queue = backend.queue();
                        let ack = match kind {
                            0 => queue.release(&[lease]).await.unwrap(),
                            1 => {
                                let failed = Outcome::Failed {
                                    error: "again".to_owned(),
                                    retry_after: Some(Duration::ZERO),
                                };
                                queue
                                    .finish(vec![Completion::new(lease, failed)])
                                    .await
                                    .unwrap()
                            }
                            2 => {
                                backend.store().cancel(lease.task).await.unwrap();
                                let cancelled = Outcome::Cancelled {
                                    reason: "asked".to_owned(),
                                };
                                let done = Completion::new(lease, cancelled);
                                queue.finish(vec![done]).await.unwrap()
                            }
                            _ => {
                                let done = Outcome::Succeeded {
                                    output: "0".to_owned(),
                                };
                                queue
                                    .finish(vec![Completion::new(lease, done)])
                                    .await
                                    .unwrap()
                            }
                        };
                        assert_eq!(ack, [Ack::Applied], "seed {seed}, step {step}");
                    }
                }
                8 if !submitted.is_empty() => {
                    let id = submitted[rng.below(submitted.len())];
                    let r = redis.store().cancel(id).await.unwrap();
                    let m = memory.store().cancel(id).await.unwrap();
                    assert_eq!(r, m, "seed {seed}, step {step}: cancelling {id}");
                }
                9 if rng.below(4) == 0 => {
                    // Every lease held expires; both recover the same tasks.
                    clock.advance(LEASE + Duration::from_secs(1));
                    let r = redis.queue().recover_expired(1000).await.unwrap();
                    let m = memory.queue().recover_expired(1000).await.unwrap();
                    assert_eq!(r, m, "seed {seed}, step {step}: recovered");
                    held.clear();
                }
                _ => clock.advance(Duration::from_millis(5)),
            }
        }
        assert!(claims > 20, "seed {seed}: only {claims} claims took tasks");
    }
}

/// A key with 3,000 waiting tasks ahead of another key's task does not hold it up: limited
/// claims park the busy key's tasks (a bounded number per call) and reach the other task in a
/// few calls; the busy key's tasks then run one at a time, in their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_key_does_not_block_the_keys_behind_it() {
    let backend = Backend::new(redis_backend(Arc::new(ManualClock::new())).await);
    let busy: Vec<NewTask> = (0..3000)
        .map(|n| keyed("export", &n.to_string(), Some("big")))
        .collect();
    backend.store().insert(busy).await.unwrap();
    backend
        .store()
        .insert(vec![keyed("export", "small", Some("small"))])
        .await
        .unwrap();
    let per_key = [limits("export", None, Some(1))];

    let first = claim(&backend, &["export"], 1, &per_key).await;
    assert_eq!(params(&first), ["0"]);
    let mut calls = 0;
    let small = loop {
        calls += 1;
        assert!(
            calls <= 5,
            "the small key's task was not reached in 5 calls"
        );
        let claimed = claim(&backend, &["export"], 1, &per_key).await;
        if !claimed.is_empty() {
            break claimed;
        }
    };
    assert_eq!(params(&small), ["small"]);
    assert!(claim(&backend, &["export"], 5, &per_key).await.is_empty());

    let mut lease = first[0].lease;
    for next in 1..4 {
        succeed(&backend, lease).await;
        let claimed = claim(&backend, &["export"], 5, &per_key).await;
        assert_eq!(params(&claimed), [next.to_string()], "big's tasks in order");
        lease = claimed[0].lease;
    }
}

/// The first limited claim of a job counts the tasks already running (claimed without limits);
/// the counts stay exact through recovery after lease expiry, release, cancellation while
/// running and purge, ending at zero with no key left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_counts_stay_exact() {
    let clock = Arc::new(ManualClock::new());
    let redis = redis_backend(clock.clone()).await;
    let backend = Backend::new(redis.clone());
    let tasks: Vec<NewTask> = (0..6)
        .map(|n| NewTask {
            retention: Duration::from_secs(1),
            ..keyed("job", &n.to_string(), Some(["x", "y"][n % 2]))
        })
        .collect();
    backend.store().insert(tasks).await.unwrap();
    let cap = [limits("job", Some(2), Some(1))];

    let unlimited = claim(&backend, &["job"], 3, &[]).await;
    assert_eq!(params(&unlimited), ["0", "1", "2"]);
    assert!(counts(&redis, "job").await.is_empty(), "not counted yet");
    assert!(claim(&backend, &["job"], 5, &cap).await.is_empty());
    assert_eq!(
        counts(&redis, "job").await,
        counted(&[("n", "3"), ("held", "1"), ("kx", "2"), ("ky", "1")])
    );
    succeed(&backend, unlimited[1].lease).await; // y
    assert!(claim(&backend, &["job"], 5, &cap).await.is_empty(), "2 run");
    succeed(&backend, unlimited[0].lease).await; // x
    let next = claim(&backend, &["job"], 5, &cap).await;
    assert_eq!(params(&next), ["3"], "x is busy with 2, so y's 3");

    // Leases expire: recovered tasks stop counting and are retried.
    clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(backend.queue().recover_expired(100).await.unwrap(), 2);
    assert_eq!(counts(&redis, "job").await, counted(&[("n", "0")]));
    let again = claim(&backend, &["job"], 5, &cap).await;
    assert_eq!(params(&again), ["4", "5"], "before 2 and 3, retried now");

    // Cancelled while running, then released.
    backend.store().cancel(again[0].lease.task).await.unwrap();
    let cancelled = Completion::new(
        again[0].lease,
        Outcome::Cancelled {
            reason: "asked".to_owned(),
        },
    );
    backend.queue().finish(vec![cancelled]).await.unwrap();
    assert_eq!(
        backend.queue().release(&[again[1].lease]).await.unwrap(),
        [Ack::Applied]
    );
    assert_eq!(counts(&redis, "job").await, counted(&[("n", "0")]));
    let rest = claim(&backend, &["job"], 5, &cap).await;
    assert_eq!(params(&rest), ["2", "3"]);
    for task in &rest {
        succeed(&backend, task.lease).await;
    }
    let last = claim(&backend, &["job"], 5, &cap).await;
    assert_eq!(params(&last), ["5"]);
    succeed(&backend, last[0].lease).await;
    clock.advance(Duration::from_secs(2));
    assert!(backend.store().purge(100).await.unwrap() >= 5);
    assert_eq!(counts(&redis, "job").await, counted(&[("n", "0")]));
}

/// A waiting task that was its key's next to run (moved back from the parked set when a task
/// of its key finished) is cancelled: the key's next parked task takes its place instead of
/// waiting for a task of its key that never runs. A parked task that is cancelled leaves its
/// parked set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_keys_next_task_lets_the_parked_ones_run() {
    let backend = Backend::new(redis_backend(Arc::new(ManualClock::new())).await);
    let tasks: Vec<NewTask> = (1..=4)
        .map(|n| keyed("export", &n.to_string(), Some("acme")))
        .collect();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    backend.store().insert(tasks).await.unwrap();
    let per_key = [limits("export", None, Some(1))];

    let first = claim(&backend, &["export"], 5, &per_key).await;
    assert_eq!(params(&first), ["1"], "2, 3 and 4 are parked");
    backend.store().cancel(ids[2]).await.unwrap(); // 3, while parked
    succeed(&backend, first[0].lease).await; // 2 is the next to run
    backend.store().cancel(ids[1]).await.unwrap();
    let next = claim(&backend, &["export"], 5, &per_key).await;
    assert_eq!(params(&next), ["4"]);
    let record = backend.store().get(ids[2]).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Cancelled);
    assert_eq!(record.concurrency_key.as_deref(), Some("acme"));
}

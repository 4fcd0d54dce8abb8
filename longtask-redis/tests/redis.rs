//! The Redis backend against a real redis-server: the whole conformance suite, plus
//! Redis-specific cases (large backlogs, reconnecting pub/sub, key layout).
//!
//! Uses `REDIS_URL` when set (point it at a scratch database: test keys are left behind);
//! otherwise starts a throwaway `redis-server` on a free loopback port, one per test process,
//! which a watchdog shell stops (and whose directory it removes) when the test process exits.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{redis_url, unique_prefix};

use longtask_core::{
    testing::{Namespace, WakeUps},
    Ack, Backend, Checkpoint, ClaimRequest, Clock, Completion, ManualClock, NewTask, Outcome,
    Queue, RunAt, TaskQuery, TaskStatus, TaskStore,
};
use longtask_redis::RedisBackend;

/// A backend on a fresh key prefix.
async fn redis_backend(clock: Arc<dyn Clock>) -> RedisBackend {
    redis_backend_on(&unique_prefix(), clock).await
}

/// A new instance (its own connections) on the key prefix `prefix`.
async fn redis_backend_on(prefix: &str, clock: Arc<dyn Clock>) -> RedisBackend {
    RedisBackend::connect(&redis_url())
        .await
        .expect("cannot connect to the test Redis")
        .with_prefix(prefix)
        .with_clock(clock)
}

/// A fresh key prefix; each instance connects anew (its own connections and pub/sub
/// subscriber), as another process would.
async fn namespace(clock: Arc<dyn Clock>) -> Namespace {
    let prefix = unique_prefix();
    Namespace::new(WakeUps::Push, move || {
        let (prefix, clock) = (prefix.clone(), clock.clone());
        async move { redis_backend_on(&prefix, clock).await }
    })
}

longtask_core::conformance_suite!(redis, namespace);

/// Inserts `n` tasks of `job` in batches, each made by `task`.
async fn insert_many(backend: &RedisBackend, n: usize, task: impl Fn(usize) -> NewTask) {
    let mut i = 0;
    while i < n {
        let batch: Vec<NewTask> = (i..(i + 10_000).min(n)).map(&task).collect();
        i += batch.len();
        backend.insert(batch).await.expect("batch insert failed");
    }
}

/// Claims and completes everything of `job`; returns (tasks, slowest claim call).
async fn drain(backend: &RedisBackend, job: &str) -> (usize, Duration) {
    let jobs = [job.to_owned()];
    let mut done = 0;
    let mut slowest = Duration::ZERO;
    loop {
        let started = Instant::now();
        let claimed = backend
            .claim(ClaimRequest {
                jobs: &jobs,
                worker: "drain",
                limit: 500,
                lease: Duration::from_secs(30),
                limits: &[],
            })
            .await
            .expect("claim failed");
        slowest = slowest.max(started.elapsed());
        if claimed.is_empty() {
            return (done, slowest);
        }
        done += claimed.len();
        let completions = claimed
            .into_iter()
            .map(|c| {
                Completion::new(
                    c.lease,
                    Outcome::Succeeded {
                        output: "null".to_owned(),
                    },
                )
            })
            .collect();
        backend.finish(completions).await.expect("finish failed");
    }
}

/// A backlog of 50,000 due tasks drains without error, each claim call staying cheap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_backlog_drains_with_bounded_claims() {
    const N: usize = 50_000;
    let backend = redis_backend(Arc::new(ManualClock::new())).await;
    insert_many(&backend, N, |i| NewTask::new("backlog", format!("{i}"))).await;
    let (done, slowest) = drain(&backend, "backlog").await;
    assert_eq!(done, N);
    assert!(
        slowest < Duration::from_secs(2),
        "a claim of 500 took {slowest:?} with a {N}-task backlog"
    );
}

/// 50,000 scheduled tasks that all become due at once are promoted in bounded chunks: every
/// claim call stays cheap and the whole backlog drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_scheduled_backlog_is_promoted_in_bounded_chunks() {
    const N: usize = 50_000;
    let clock = Arc::new(ManualClock::new());
    let backend = redis_backend(clock.clone()).await;
    insert_many(&backend, N, |i| NewTask {
        run_at: RunAt::After(Duration::from_secs(60)),
        ..NewTask::new("later", format!("{i}"))
    })
    .await;
    let (none, _) = drain(&backend, "later").await;
    assert_eq!(none, 0, "scheduled tasks must not be claimed early");
    clock.advance(Duration::from_secs(61));
    let (done, slowest) = drain(&backend, "later").await;
    assert_eq!(done, N);
    assert!(
        slowest < Duration::from_secs(2),
        "a claim took {slowest:?} while promoting a {N}-task due backlog"
    );
}

/// The ids of the pub/sub connections that `user` holds on the test server.
async fn pubsub_clients_of(
    admin: &mut ::redis::aio::MultiplexedConnection,
    user: &str,
) -> Vec<i64> {
    let list: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(admin)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == format!("user={user}")))
        .filter_map(|line| {
            let id = line
                .split(' ')
                .find_map(|field| field.strip_prefix("id="))?;
            id.parse().ok()
        })
        .collect()
}

/// The pub/sub connection comes back after the server drops it: workers are woken again by
/// work submitted elsewhere, and watchers keep streaming.
///
/// The backend under test connects as a Redis user of its own, so that exactly its pub/sub
/// connection can be found and killed (`CLIENT KILL ID`), leaving every other test's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_reconnects_after_the_connection_is_killed() {
    use futures::StreamExt;
    use longtask_core::{ProgressSink, TaskEvent};

    let client = ::redis::Client::open(redis_url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = unique_prefix();
    let user = format!("{prefix}-user");
    let () = ::redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">secret")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .expect("creating a Redis user for the test (needs ACL rights on REDIS_URL)");
    let url = redis_url();
    let (scheme, rest) = url.split_once("://").expect("a redis:// URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    let backend = RedisBackend::connect(&format!("{scheme}://{user}:secret@{host}"))
        .await
        .expect("connecting as the test's user")
        .with_prefix(&prefix)
        .with_clock(clock.clone());
    let elsewhere = redis_backend_on(&prefix, clock).await;

    let mut signal = backend.work_signal();
    let id = backend
        .insert(vec![NewTask::new("re", "{}")])
        .await
        .unwrap()[0]
        .id;
    let claimed = backend
        .claim(ClaimRequest {
            jobs: &["re".to_owned()],
            worker: "w",
            limit: 1,
            lease: Duration::from_secs(30),
            limits: &[],
        })
        .await
        .unwrap();
    // Once `watch` returns, the pub/sub connection is up and subscribed.
    let mut events = backend.watch(id).await.unwrap();

    let before = pubsub_clients_of(&mut admin, &user).await;
    assert_eq!(
        before.len(),
        1,
        "the backend holds one pub/sub connection: {before:?}"
    );
    let killed: i64 = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(before[0])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1, "the backend's pub/sub connection was killed");

    // Work submitted through another instance wakes this one, round after round: the
    // reconnect's own wake-up can stand in for at most one of them.
    for round in 1..=3 {
        while futures::FutureExt::now_or_never(signal.changed()).is_some() {}
        elsewhere
            .insert(vec![NewTask::new("re-more", "{}")])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), signal.changed())
            .await
            .unwrap_or_else(|_| {
                panic!("round {round}: no wake-up for new work after reconnecting")
            });
    }
    let after = pubsub_clients_of(&mut admin, &user).await;
    assert_eq!(after.len(), 1, "one pub/sub connection again: {after:?}");
    assert_ne!(after, before, "a new connection");

    // The watcher hears of a change made elsewhere, through the new connection.
    elsewhere
        .finish(vec![Completion::new(
            claimed[0].lease,
            Outcome::Succeeded {
                output: "1".to_owned(),
            },
        )])
        .await
        .unwrap();
    let seen: Vec<TaskEvent> =
        tokio::time::timeout(Duration::from_secs(10), events.by_ref().collect())
            .await
            .expect("the watch stream did not end after reconnecting");
    assert_eq!(
        seen.last(),
        Some(&TaskEvent::Status {
            status: TaskStatus::Succeeded
        })
    );
    drop(backend);
    let _: i64 = ::redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .unwrap();
}

/// Every key of a namespace carries the `{prefix}` hash tag, whatever the job names (groups and
/// the workers registry included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_shares_the_namespace_hash_tag() {
    let backend = redis_backend(Arc::new(ManualClock::new())).await;
    let prefix = backend.prefix().to_owned();
    let root = NewTask {
        run_at: RunAt::At(longtask_core::group_root_run_at()),
        group: Some(longtask_core::GroupRole::Root),
        ..NewTask::new(longtask_core::GROUP_JOB, "null")
    };
    let member = NewTask {
        group: Some(longtask_core::GroupRole::Member(root.id)),
        ..NewTask::new("a:b{c}", "{}")
    };
    backend
        .insert(vec![
            NewTask {
                idempotency_key: Some("k:{x}".to_owned()),
                ..NewTask::new("a:b{c}", "{}")
            },
            NewTask {
                run_at: RunAt::After(Duration::from_secs(5)),
                ..NewTask::new("plain", "{}")
            },
            root,
            member,
        ])
        .await
        .unwrap();
    let worker = longtask_core::WorkerInfo {
        id: "w{1}:x".to_owned(),
        host: "h".to_owned(),
        pid: 1,
        jobs: vec!["a:b{c}".to_owned()],
        concurrency: 1,
        busy: 0,
        started_at: chrono::DateTime::from_timestamp_millis(0).unwrap(),
        last_seen: chrono::DateTime::from_timestamp_millis(0).unwrap(),
    };
    backend
        .register_worker(&worker, Duration::from_secs(30))
        .await
        .unwrap();
    let client = ::redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("*{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() >= 8, "{keys:?}");
    for suffix in [":w", ":wx"] {
        assert!(keys.iter().any(|k| k.ends_with(suffix)), "{keys:?}");
    }
    assert!(keys.iter().any(|k| k.contains(":g:")), "{keys:?}");
    for key in &keys {
        assert!(key.starts_with(&format!("{{{prefix}}}:")), "{key}");
        assert_eq!(
            key.matches('{').count(),
            1,
            "a user string leaked braces: {key}"
        );
    }
}

/// Claims across several jobs, priorities, run times, retries and releases come in exactly the
/// order the in-memory reference backend gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_job_claims_match_the_reference_backend() {
    use longtask_core::{Lease, MemoryBackend, TaskId};

    let clock = Arc::new(ManualClock::new());
    let redis = redis_backend(clock.clone()).await;
    let memory = MemoryBackend::new().with_clock(clock.clone());
    let backends: [&(dyn Fn() -> Backend + Sync); 2] = [&|| Backend::new(redis.clone()), &|| {
        Backend::new(memory.clone())
    }];
    let jobs = ["a".to_owned(), "b".to_owned(), "c:{x}".to_owned()];
    // The same tasks (same ids) in both backends.
    let tasks: Vec<NewTask> = (0..60)
        .map(|i: i32| NewTask {
            priority: (i * 7) % 5 - 2,
            run_at: if i % 4 == 0 {
                RunAt::After(Duration::from_millis(u64::try_from(i).unwrap_or(0) * 10))
            } else {
                RunAt::Now
            },
            ..NewTask::new(
                jobs[usize::try_from(i).unwrap_or(0) % 3].clone(),
                format!("{i}"),
            )
        })
        .collect();
    for make in backends {
        make().store().insert(tasks.clone()).await.unwrap();
    }
    let mut orders: Vec<Vec<TaskId>> = vec![Vec::new(), Vec::new()];
    for round in 0..12 {
        clock.advance(Duration::from_millis(70));
        for (b, make) in backends.iter().enumerate() {
            let backend = make();
            let claimed = backend
                .queue()
                .claim(ClaimRequest {
                    jobs: if round % 2 == 0 { &jobs } else { &jobs[1..] },
                    worker: "w",
                    limit: 4,
                    lease: Duration::from_secs(30),
                    limits: &[],
                })
                .await
                .unwrap();
            let leases: Vec<Lease> = claimed.iter().map(|c| c.lease).collect();
            orders[b].extend(leases.iter().map(|l| l.task));
            // Release one, fail one with an immediate retry, finish the rest.
            if let Some(first) = leases.first() {
                backend.queue().release(&[*first]).await.unwrap();
            }
            let completions = leases
                .iter()
                .skip(1)
                .enumerate()
                .map(|(i, lease)| {
                    let outcome = if i == 0 {
                        Outcome::Failed {
                            error: "again".to_owned(),
                            retry_after: Some(Duration::ZERO),
                        }
                    } else {
                        Outcome::Succeeded {
                            output: "null".to_owned(),
                        }
                    };
                    Completion::new(*lease, outcome)
                })
                .collect();
            backend.queue().finish(completions).await.unwrap();
        }
    }
    assert_eq!(orders[0].len(), 48);
    assert_eq!(
        orders[0], orders[1],
        "Redis (left) and memory (right) claim orders differ"
    );
}

/// A batch whose tasks differ in every field, alike runs and repeats between them (the insert
/// script sends a task like the one before as id and params only) stores exactly what the
/// in-memory reference backend stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_insert_batches_match_the_reference_backend() {
    use longtask_core::MemoryBackend;

    let clock = Arc::new(ManualClock::new());
    let redis = redis_backend(clock.clone()).await;
    let memory = MemoryBackend::new().with_clock(clock.clone());
    let tasks: Vec<NewTask> = (0..120_u32)
        .map(|i| {
            // Runs of alike tasks of varying length, then a change in one field.
            let run = i / 3;
            NewTask {
                priority: i32::try_from(run % 3).unwrap_or(0) - 1,
                run_at: if run % 5 == 4 {
                    RunAt::After(Duration::from_secs(u64::from(run)))
                } else {
                    RunAt::Now
                },
                max_attempts: 1 + run % 4,
                retention: Duration::from_secs(u64::from(run % 6) * 100),
                owner: (run % 7 != 0).then(|| format!("owner:{{{}}}", run % 2)),
                // Keys repeat inside a run: the later tasks of the run are the first one.
                idempotency_key: (run % 4 == 1).then(|| format!("key-{run}")),
                ..NewTask::new(format!("job-{}", run % 2), format!("{{\"i\":{i}}}"))
            }
        })
        .collect();
    let from_redis = redis.insert(tasks.clone()).await.unwrap();
    let from_memory = memory.insert(tasks.clone()).await.unwrap();
    assert_eq!(from_redis, from_memory);
    assert!(from_redis.iter().any(|i| !i.created));
    for inserted in from_redis.iter().filter(|i| i.created) {
        assert_eq!(
            redis.get(inserted.id).await.unwrap(),
            memory.get(inserted.id).await.unwrap(),
            "task {} differs",
            inserted.id
        );
    }
}

/// Purge finds due tasks across many retention periods (more than one purge call visits at
/// once), keeps the others, and agrees with the in-memory reference backend as the clock moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_covers_many_retention_periods() {
    use longtask_core::MemoryBackend;

    let clock = Arc::new(ManualClock::new());
    let redis = redis_backend(clock.clone()).await;
    let memory = MemoryBackend::new().with_clock(clock.clone());
    // 250 retention periods, two tasks each, finished a second apart (so each period's list
    // holds tasks that come due at different times).
    let tasks: Vec<NewTask> = (0..500_u64)
        .map(|i| NewTask {
            retention: Duration::from_secs(10 + (i % 250) * 3),
            ..NewTask::new("kept", "null")
        })
        .collect();
    for backend in [Backend::new(redis.clone()), Backend::new(memory.clone())] {
        backend.store().insert(tasks.clone()).await.unwrap();
    }
    for half in tasks.chunks(250) {
        for backend in [Backend::new(redis.clone()), Backend::new(memory.clone())] {
            for task in half {
                backend.store().cancel(task.id).await.unwrap();
            }
        }
        clock.advance(Duration::from_secs(1));
    }
    let mut purged = [0_u64; 2];
    for step in 0..40 {
        clock.advance(Duration::from_secs(20));
        for (b, backend) in [Backend::new(redis.clone()), Backend::new(memory.clone())]
            .iter()
            .enumerate()
        {
            purged[b] += backend.store().purge(10_000).await.unwrap();
        }
        assert_eq!(
            purged[0], purged[1],
            "purged counts differ after step {step}"
        );
        for task in &tasks {
            assert_eq!(
                redis.get(task.id).await.unwrap().is_some(),
                memory.get(task.id).await.unwrap().is_some(),
                "task {} kept by one backend only after step {step}",
                task.id
            );
        }
    }
    assert_eq!(purged[0], 500);
}

/// A batch that fails on an id in use leaves no trace in the listing index (which the insert
/// script also uses to find ids in use), and the task that had the id stays listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_leaves_the_listing_index_as_it_was() {
    let backend = redis_backend(Arc::new(ManualClock::new())).await;
    let existing = NewTask::new("listed", "1");
    let existing_id = existing.id;
    backend.insert(vec![existing]).await.unwrap();
    // Fresh ids before and after the one in use, across more than one chunk of 500.
    let mut batch: Vec<NewTask> = (0..700)
        .map(|i| NewTask::new("listed", i.to_string()))
        .collect();
    batch.insert(
        600,
        NewTask {
            id: existing_id,
            ..NewTask::new("listed", "again")
        },
    );
    let fresh: Vec<_> = batch
        .iter()
        .map(|t| t.id)
        .filter(|id| *id != existing_id)
        .collect();
    let err = backend.insert(batch).await.unwrap_err();
    assert!(err.to_string().contains("already in use"), "{err}");

    let client = ::redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let listed: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(format!("{{{}}}:all", backend.prefix()))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(listed, vec![existing_id.to_string()]);
    let all = backend
        .list(&longtask_core::TaskQuery::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, existing_id);
    for id in fresh.iter().take(3) {
        assert!(backend.get(*id).await.unwrap().is_none());
    }
}

/// Claims `n` tasks of `jobs` one call at a time with a fixed limit; returns their ids in order.
async fn claim_order(
    backend: &Backend,
    jobs: &[String],
    limit: usize,
) -> Vec<longtask_core::TaskId> {
    let mut order = Vec::new();
    loop {
        let claimed = backend
            .queue()
            .claim(ClaimRequest {
                jobs,
                worker: "w",
                limit,
                lease: Duration::from_secs(30),
                limits: &[],
            })
            .await
            .unwrap();
        if claimed.is_empty() {
            return order;
        }
        order.extend(claimed.iter().map(|c| c.lease.task));
    }
}

/// Tasks due at submission go to a submission list when that keeps it in claim order, else to
/// the ready set; claims merge both, skip cancelled tasks and fill their limit: the order is
/// exactly the reference backend's, for batches in any id order, cancelled tasks, explicit past
/// run times, and several priorities and jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_lists_keep_claim_order() {
    use longtask_core::MemoryBackend;

    let clock = Arc::new(ManualClock::new());
    let redis = Backend::new(redis_backend(clock.clone()).await);
    let memory = Backend::new(MemoryBackend::new().with_clock(clock.clone()));
    let jobs = ["x".to_owned(), "y".to_owned()];
    let mut ids: Vec<longtask_core::TaskId> =
        (0..40).map(|_| longtask_core::TaskId::new()).collect();
    // Ids in descending order, then ascending, then shuffled: only some can be appended.
    ids[..10].reverse();
    ids[20..].sort_by_key(|id| id.to_string().chars().rev().collect::<String>());
    for round in 0..4_u32 {
        let batch: Vec<NewTask> = ids[(round as usize) * 10..(round as usize + 1) * 10]
            .iter()
            .enumerate()
            .map(|(i, id)| NewTask {
                id: *id,
                priority: i32::try_from(i % 2).unwrap(),
                run_at: if i == 3 {
                    RunAt::At(clock.now() - chrono::Duration::seconds(5))
                } else {
                    RunAt::Now
                },
                ..NewTask::new(jobs[i % 3 / 2].clone(), "null")
            })
            .collect();
        for backend in [&redis, &memory] {
            backend.store().insert(batch.clone()).await.unwrap();
            // Cancel two of each batch while they wait.
            for id in [batch[1].id, batch[6].id] {
                backend.store().cancel(id).await.unwrap();
            }
        }
        clock.advance(Duration::from_millis(if round == 1 { 0 } else { 7 }));
    }
    let from_redis = claim_order(&redis, &jobs, 3).await;
    let from_memory = claim_order(&memory, &jobs, 3).await;
    assert_eq!(from_memory.len(), 32);
    assert_eq!(
        from_redis, from_memory,
        "Redis (left) and memory (right) claim orders differ"
    );
}

/// A client whose clock is behind another's submits tasks that sort before those already
/// listed: they are claimed in run-time order all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_clock_behind_keeps_claim_order() {
    let ahead = Arc::new(ManualClock::new());
    let behind = Arc::new(ManualClock::new());
    behind.set(ahead.now() - chrono::Duration::seconds(2));
    let first = redis_backend(ahead.clone()).await;
    let prefix = first.prefix().to_owned();
    let second = RedisBackend::connect(&redis_url())
        .await
        .unwrap()
        .with_prefix(prefix)
        .with_clock(behind.clone());
    let late: Vec<NewTask> = (0..5)
        .map(|i| NewTask::new("skew", i.to_string()))
        .collect();
    let early: Vec<NewTask> = (0..5)
        .map(|i| NewTask::new("skew", i.to_string()))
        .collect();
    first.insert(late.clone()).await.unwrap();
    second.insert(early.clone()).await.unwrap();
    let order = claim_order(&Backend::new(first), &["skew".to_owned()], 4).await;
    let expected: Vec<_> = early.iter().chain(&late).map(|t| t.id).collect();
    assert_eq!(order, expected);
}

struct Quick;

impl longtask_core::Job for Quick {
    const NAME: &'static str = "quick";
    type Params = u32;
    type Output = u32;

    async fn run(
        &self,
        n: u32,
        _cx: longtask_core::TaskContext,
    ) -> Result<u32, longtask_core::JobError> {
        Ok(n)
    }
}

/// Thousands of tasks cancelled while queued (left in the submission list until a claim pops
/// them) do not hold up the live tasks behind them until the worker's next poll: a claim that
/// runs out of its budget on cancelled tasks wakes the workers to claim again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_cancellation_does_not_stall_workers() {
    use longtask_core::{Client, TaskStatus, Worker};

    let backend = redis_backend(Arc::new(longtask_core::SystemClock)).await;
    let client = Client::new(backend.clone());
    let ids = client.submit_many::<Quick>(0..5_000).await.unwrap();
    for id in &ids[..4_900] {
        client.cancel(*id).await.unwrap();
    }
    let worker = Worker::builder(backend.clone())
        .register(Quick)
        .prefetch(64)
        .poll_interval(Duration::from_secs(60))
        .build()
        .unwrap()
        .spawn();
    for id in &ids[4_900..] {
        let task = client.wait(*id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded);
    }
    worker.shutdown().await.unwrap();
}

/// Reading records (`get`, `list`) never fetches a checkpoint's state, which may be a megabyte
/// per task (a status page listing 100 tasks would read 100 MiB): only `load_checkpoint` reads
/// it, while the record still shows what was saved. Probed with a state field that is not text,
/// which any read of the field fails to decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_reads_leave_the_checkpoint_state_unread() {
    let backend = redis_backend(Arc::new(ManualClock::new())).await;
    let task = NewTask::new("probe", "{}");
    let id = task.id;
    backend.insert(vec![task]).await.unwrap();
    let claimed = backend
        .claim(ClaimRequest {
            jobs: &["probe".to_owned()],
            worker: "w",
            limit: 1,
            lease: Duration::from_secs(30),
            limits: &[],
        })
        .await
        .unwrap()
        .remove(0);
    let ack = backend
        .save_checkpoint(Checkpoint {
            lease: claimed.lease,
            attempt: 1,
            state: "[1]".to_owned(),
            progress: None,
        })
        .await
        .unwrap();
    assert_eq!(ack, Ack::Applied);

    let client = ::redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = ::redis::cmd("HSET")
        .arg(format!("{{{}}}:t:{id}", backend.prefix()))
        .arg("checkpoint")
        .arg(&b"\xff\xfe not text"[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        backend.load_checkpoint(id).await.is_err(),
        "the probe is where the state is stored"
    );

    let record = backend.get(id).await.unwrap().expect("the task is there");
    assert_eq!(record.checkpoint.map(|c| c.attempt), Some(1));
    let listed = backend.list(&TaskQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].checkpoint.as_ref().map(|c| c.attempt), Some(1));
}

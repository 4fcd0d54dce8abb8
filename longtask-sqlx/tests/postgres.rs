//! The Postgres backend against a real server (`DATABASE_URL`, or a throwaway cluster started by
//! this test process): the whole conformance suite (each case in its own schema), migrations,
//! submitting inside the application's transaction, and waking idle workers with NOTIFY.

#![cfg(feature = "postgres")]

#[path = "postgres/server.rs"]
mod server;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use longtask_core::{
    testing::{Namespace, WakeUps},
    ClaimRequest, Client, Clock, Error, Job, JobError, NewTask, Queue, RunAt, TaskContext,
    TaskStatus, TaskStore, Worker,
};
use longtask_sqlx::PostgresBackend;

use crate::server::{database_url, fresh_schema};

/// A backend on a fresh, migrated schema.
async fn fresh() -> PostgresBackend {
    let backend = PostgresBackend::connect(database_url())
        .await
        .expect("connecting to the test database")
        .with_schema(&fresh_schema())
        .expect("a valid schema name");
    backend.migrate().await.expect("migrating");
    backend
}

/// A fresh, migrated schema; each instance connects anew (its own pool and LISTEN connection),
/// as another process would.
async fn namespace(clock: Arc<dyn Clock>) -> Namespace {
    let schema = fresh().await.schema().to_owned();
    Namespace::new(WakeUps::Push, move || {
        let (schema, clock) = (schema.clone(), clock.clone());
        async move {
            PostgresBackend::connect(database_url())
                .await
                .expect("connecting to the test database")
                .with_schema(&schema)
                .expect("a valid schema name")
                .with_clock(clock)
        }
    })
}

longtask_core::conformance_suite!(postgres, namespace);

async fn tables(backend: &PostgresBackend) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(backend.schema())
    .fetch_all(backend.pool())
    .await
    .expect("listing tables")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_create_the_schema_and_rerun_as_no_op() {
    let schema = fresh_schema();
    let backend = PostgresBackend::connect(database_url())
        .await
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    assert!(tables(&backend).await.is_empty());
    backend.migrate().await.expect("first migration");
    assert_eq!(
        tables(&backend).await,
        [
            "_sqlx_migrations",
            "tasks",
            "throughput",
            "watches",
            "workers"
        ]
    );
    let applied: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\"._sqlx_migrations"
    ))
    .fetch_one(backend.pool())
    .await
    .unwrap();

    // Again, and from several backends at once: nothing changes, nothing fails.
    let id = backend
        .insert(vec![longtask_core::NewTask::new("kept", "{}")])
        .await
        .unwrap()[0]
        .id;
    let others: Vec<PostgresBackend> = (0..4)
        .map(|_| backend.clone().with_schema(&schema).unwrap())
        .collect();
    let runs = others.iter().map(PostgresBackend::migrate);
    for result in futures::future::join_all(runs).await {
        result.expect("re-running migrations");
    }
    backend.migrate().await.expect("re-running migrations");
    let again: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\"._sqlx_migrations"
    ))
    .fetch_one(backend.pool())
    .await
    .unwrap();
    assert_eq!(again, applied);
    assert!(
        backend.get(id).await.unwrap().is_some(),
        "tasks survive a re-run"
    );

    // The default schema is `longtask`; other schemas are untouched by this one.
    let default = PostgresBackend::from_pool(backend.pool().clone());
    assert_eq!(default.schema(), "longtask");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schema_names_are_rejected() {
    let backend = PostgresBackend::connect(database_url()).await.unwrap();
    let long = "s".repeat(49);
    for bad in [
        "",
        "1st",
        "has space",
        "dash-ed",
        "quote\"d",
        "semi;colon",
        "x; DROP SCHEMA public CASCADE; --",
        "schéma",
        "pg_toast",
        long.as_str(),
    ] {
        match backend.clone().with_schema(bad) {
            Err(Error::InvalidInput(message)) => assert!(!message.is_empty()),
            Err(other) => panic!("`{bad}`: expected InvalidInput, got {other:?}"),
            Ok(_) => panic!("`{bad}` was accepted as a schema name"),
        }
    }
    for good in ["jobs", "_private", "Tenant_42"] {
        assert_eq!(backend.clone().with_schema(good).unwrap().schema(), good);
    }
}

/// Counts runs per parameter.
#[derive(Clone, Default)]
struct Recorder {
    runs: Arc<Mutex<Vec<String>>>,
}

impl Job for Recorder {
    const NAME: &'static str = "recorder";
    type Params = String;
    type Output = String;

    async fn run(&self, params: String, _cx: TaskContext) -> Result<String, JobError> {
        self.runs.lock().unwrap().push(params.clone());
        Ok(params)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_submitted_in_a_transaction_run_iff_it_commits() {
    let backend = fresh().await;
    let recorder = Recorder::default();
    let worker = Worker::builder(backend.clone())
        .register(recorder.clone())
        .poll_interval(Duration::from_millis(200))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend.clone());

    // Rolled back: the task never exists, and never runs.
    let mut tx = backend.pool().begin().await.unwrap();
    let rolled_back = backend
        .enqueue_in(&mut tx)
        .submit::<Recorder>("rolled back".to_owned())
        .await
        .unwrap();
    // Visible inside the transaction...
    let inside: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".tasks WHERE id = $1",
        backend.schema()
    ))
    .bind(rolled_back.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(inside, 1);
    // ...and nowhere else.
    assert!(backend.get(rolled_back).await.unwrap().is_none());
    tx.rollback().await.unwrap();

    // Committed: it runs, together with the rest of the transaction's work.
    let mut tx = backend.pool().begin().await.unwrap();
    let mut submit = backend.enqueue_in(&mut tx);
    let committed = submit
        .submit::<Recorder>("committed".to_owned())
        .await
        .unwrap();
    let many = submit
        .submit_many::<Recorder>(["batch 1".to_owned(), "batch 2".to_owned()])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    for id in std::iter::once(committed).chain(many) {
        let done = client.wait(id, Duration::from_secs(20)).await.unwrap();
        assert_eq!(done.status, TaskStatus::Succeeded);
    }
    // Give a wrongly queued task time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.shutdown().await.unwrap();
    assert!(backend.get(rolled_back).await.unwrap().is_none());
    let mut runs = recorder.runs.lock().unwrap().clone();
    runs.sort();
    assert_eq!(runs, ["batch 1", "batch 2", "committed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_inside_a_transaction() {
    let backend = fresh().await;
    let mut tx = backend.pool().begin().await.unwrap();
    let options = || longtask_core::SubmitOptions::new().idempotency_key("order-7");
    let first = backend
        .enqueue_in(&mut tx)
        .submit_with::<Recorder>("a".to_owned(), options())
        .await
        .unwrap();
    let second = backend
        .enqueue_in(&mut tx)
        .submit_with::<Recorder>("b".to_owned(), options())
        .await
        .unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.id, second.id);
    tx.commit().await.unwrap();
    let outside = Client::new(backend.clone())
        .submit_with::<Recorder>("c".to_owned(), options())
        .await
        .unwrap();
    assert_eq!(outside.id, first.id);
}

/// Counts runs.
#[derive(Clone, Default)]
struct Counter {
    runs: Arc<AtomicUsize>,
}

impl Job for Counter {
    const NAME: &'static str = "counter";
    type Params = ();
    type Output = ();

    async fn run(&self, (): (), _cx: TaskContext) -> Result<(), JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_an_idle_worker_long_before_its_poll_interval() {
    let backend = fresh().await;
    let counter = Counter::default();
    let worker = Worker::builder(backend.clone())
        .register(counter.clone())
        .poll_interval(Duration::from_secs(60))
        .build()
        .unwrap()
        .spawn();
    // Let the worker find the queue empty and go idle.
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Submit from another backend instance (another pool, as another process would): only the
    // NOTIFY can wake the worker.
    let elsewhere = PostgresBackend::connect(database_url())
        .await
        .unwrap()
        .with_schema(backend.schema())
        .unwrap();
    let client = Client::new(elsewhere.clone());
    for round in 1..=3 {
        let started = Instant::now();
        let id = client.submit::<Counter>(()).await.unwrap();
        let done = client.wait(id, Duration::from_secs(10)).await.unwrap();
        let took = started.elapsed();
        assert_eq!(done.status, TaskStatus::Succeeded);
        assert!(
            took < Duration::from_secs(3),
            "round {round}: the idle worker took {took:?} to run a new task (poll interval 60 s)"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(counter.runs.load(Ordering::SeqCst), 3);
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_in_another_process_see_progress_and_the_end() {
    use futures::StreamExt;
    use longtask_core::{ClaimRequest, Completion, Outcome, Progress, ProgressSink, Queue};

    let backend = fresh().await;
    let watcher = PostgresBackend::connect(database_url())
        .await
        .unwrap()
        .with_schema(backend.schema())
        .unwrap();
    let id = backend
        .insert(vec![longtask_core::NewTask::new("watched", "{}")])
        .await
        .unwrap()[0]
        .id;
    let mut events = watcher.watch(id).await.unwrap();
    let jobs = ["watched".to_owned()];
    let claimed = backend
        .claim(ClaimRequest {
            jobs: &jobs,
            worker: "w",
            limit: 1,
            lease: Duration::from_secs(30),
            limits: &[],
        })
        .await
        .unwrap();
    // A message too large for a NOTIFY payload is read back by the watcher.
    let big = Progress::new(1, Some(2)).with_message("x".repeat(10_000));
    backend
        .report(&[(claimed[0].lease, big.clone())])
        .await
        .unwrap();
    backend
        .finish(vec![Completion::new(
            claimed[0].lease,
            Outcome::Succeeded {
                output: "null".to_owned(),
            },
        )])
        .await
        .unwrap();
    let seen: Vec<_> = tokio::time::timeout(Duration::from_secs(10), events.by_ref().collect())
        .await
        .expect("the stream ends after the final status");
    assert_eq!(
        seen,
        vec![
            longtask_core::TaskEvent::Status {
                status: TaskStatus::Running
            },
            longtask_core::TaskEvent::Progress(big),
            longtask_core::TaskEvent::Status {
                status: TaskStatus::Succeeded
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_reconnects_after_its_connection_is_killed() {
    let backend = fresh().await;
    let counter = Counter::default();
    let worker = Worker::builder(backend.clone())
        .register(counter.clone())
        .poll_interval(Duration::from_secs(60))
        .build()
        .unwrap()
        .spawn();
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Kill the LISTEN connection from the server side, as a restart or a network cut would.
    let admin = PostgresBackend::connect(database_url()).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE $1",
    )
    .bind(format!("LISTEN \"longtask_{}\"%", backend.schema()))
    .fetch_all(admin.pool())
    .await
    .unwrap();
    assert_eq!(killed, [true], "exactly one LISTEN connection to kill");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let elsewhere = admin.with_schema(backend.schema()).unwrap();
    let client = Client::new(elsewhere);
    let started = Instant::now();
    let id = client.submit::<Counter>(()).await.unwrap();
    let done = client.wait(id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "after a reconnect the idle worker took {:?} (poll interval 60 s)",
        started.elapsed()
    );
    worker.shutdown().await.unwrap();
}

/// Claims start after the last task claimed (claim cursors, so they skip the dead index entries
/// behind it); a task that another process puts in front of that point is still claimed: one of
/// a higher priority by the next claim, one with an earlier `run_at` within about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_find_tasks_another_process_puts_before_the_cursor() {
    let claimer = fresh().await;
    let other = PostgresBackend::connect(database_url())
        .await
        .expect("connecting to the test database")
        .with_schema(claimer.schema())
        .expect("a valid schema name");
    let jobs = ["cursor".to_owned()];
    let claim = |limit: usize| {
        claimer.claim(ClaimRequest {
            jobs: &jobs,
            worker: "w",
            limit,
            lease: Duration::from_secs(60),
            limits: &[],
        })
    };
    claimer
        .insert(
            (0..300)
                .map(|i| NewTask::new("cursor", i.to_string()))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(claim(10).await.unwrap().len(), 10);

    let urgent = other
        .insert(vec![NewTask {
            priority: 5,
            ..NewTask::new("cursor", "urgent")
        }])
        .await
        .unwrap()[0]
        .id;
    assert_eq!(claim(1).await.unwrap()[0].lease.task, urgent);

    let early = other
        .insert(vec![NewTask {
            run_at: RunAt::At(Utc::now() - chrono::Duration::hours(1)),
            ..NewTask::new("cursor", "early")
        }])
        .await
        .unwrap()[0]
        .id;
    let start = Instant::now();
    loop {
        let claimed = claim(1).await.unwrap();
        assert_eq!(
            claimed.len(),
            1,
            "the queue ran dry before the early task was claimed"
        );
        if claimed[0].lease.task == early {
            break;
        }
        // The cursors rescan from the start every second (FULL_SCAN_EVERY); the bound leaves
        // room for a loaded machine, where one claim can take a good part of a second.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a task with an earlier run_at waited more than 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Finishing, heartbeats and releases never compare every running task with every lease of
/// their batch, even when the table's statistics were gathered while no task ran; recovery finds
/// expired leases through its own index. (With a partial index matching their
/// `status = 'running'` fence, the planner believed one row was running, scanned that index and
/// filtered the join: 40 ms instead of 3 for 320 leases, until the next ANALYZE.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_statements_join_by_key_whatever_the_statistics() {
    let backend = fresh().await;
    backend
        .insert(
            (0..2_000)
                .map(|i| NewTask::new("plan", i.to_string()))
                .collect(),
        )
        .await
        .unwrap();
    let schema = backend.schema().to_owned();
    sqlx::query(&format!("ANALYZE \"{schema}\".tasks"))
        .execute(backend.pool())
        .await
        .unwrap();
    let claimed = backend
        .claim(ClaimRequest {
            jobs: &["plan".to_owned()],
            worker: "w",
            limit: 500,
            lease: Duration::from_secs(60),
            limits: &[],
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 500);
    // The server plans a statement that runs often once for all parameters (a generic plan,
    // which cannot see how many leases the arrays hold): that is where the bad plan was chosen.
    let mut conn = backend.pool().acquire().await.unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .unwrap();
    let statements = [
        ("finish", "finish", 10, None),
        ("heartbeat", "heartbeat", 3, None),
        ("release", "release", 4, None),
        // Recovery finds expired leases through their own index, not by reading every task.
        ("recover", "recover", 4, Some("tasks_leased")),
    ];
    for (name, statement, params, index) in statements {
        let text = backend
            .statement(statement)
            .expect("a statement of the backend");
        sqlx::raw_sql(&format!("PREPARE {name} AS {text}"))
            .execute(&mut *conn)
            .await
            .unwrap();
        let nulls = vec!["NULL"; params].join(", ");
        let plan = sqlx::raw_sql(&format!("EXPLAIN EXECUTE {name}({nulls})"))
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, 0))
            .collect::<Vec<_>>()
            .join("\n");
        // A join on the task id must be an index or hash condition, never a filter applied to
        // every pair of rows.
        assert!(
            !plan
                .lines()
                .any(|line| line.contains("Filter:") && line.contains(".id = ")),
            "{name} filters every (task, lease) pair:\n{plan}"
        );
        if let Some(index) = index {
            assert!(
                plan.contains(index),
                "{name} does not find its tasks through {index}:\n{plan}"
            );
        }
    }
}

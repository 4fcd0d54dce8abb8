//! The SQLite backend against real SQLite files: the whole conformance suite (each case on its
//! own file in a temporary directory), migrations, a worker end to end, and durability across
//! reopening the database.

#![cfg(feature = "sqlite")]

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use longtask_core::{
    testing::{Namespace, WakeUps},
    Client, Clock, Job, JobError, NewTask, TaskContext, TaskStatus, TaskStore, Worker,
};
use longtask_sqlx::SqliteBackend;
use tempfile::TempDir;

/// A fresh database file in its own temporary directory (removed when the process exits).
async fn open(dir: &Path) -> SqliteBackend {
    let url = format!("sqlite://{}", dir.join("longtask.db").display());
    let backend = SqliteBackend::connect(&url).await.expect("opening SQLite");
    backend.migrate().await.expect("migrating");
    backend
}

/// The folder of the suite's database files: cargo's scratch folder for integration tests (under
/// the target directory, removed by `cargo clean`). Each case gets its own subfolder, which
/// outlives the case (the suite owns the backend); folders left by runs over an hour old are
/// removed on first use.
fn scratch() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("longtask-sqlite");
        std::fs::create_dir_all(&root).expect("creating the scratch folder");
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at < hour_ago);
            if old {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        root
    })
}

/// A fresh database file; each instance opens it anew (its own writer and readers, its own
/// in-process wake-up signal and watchers), as another process would. SQLite has no
/// cross-process notification: other instances find new work at their poll interval
/// ([`WakeUps::Poll`]).
async fn namespace(clock: Arc<dyn Clock>) -> Namespace {
    let dir = tempfile::Builder::new()
        .prefix("case-")
        .tempdir_in(scratch())
        .expect("creating a folder for the database")
        .keep();
    Namespace::new(WakeUps::Poll, move || {
        let (dir, clock) = (dir.clone(), clock.clone());
        async move { open(&dir).await.with_clock(clock) }
    })
}

longtask_core::conformance_suite!(sqlite, namespace);

#[tokio::test]
async fn migrations_apply_once_and_record_their_version() {
    let dir = TempDir::new().unwrap();
    let backend = open(dir.path()).await;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(backend.reader())
            .await
            .unwrap();
    assert!(!versions.is_empty(), "no migration recorded");

    // Re-running is a no-op: same versions, and the data stays.
    let id = backend
        .insert(vec![NewTask::new("noop", "null")])
        .await
        .unwrap()[0]
        .id;
    backend.migrate().await.unwrap();
    let again: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(backend.reader())
            .await
            .unwrap();
    assert_eq!(versions, again);
    assert!(backend.get(id).await.unwrap().is_some());

    // The database is in WAL mode.
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(backend.writer())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

struct Double;

impl Job for Double {
    const NAME: &'static str = "double";
    type Params = u64;
    type Output = u64;

    async fn run(&self, n: u64, cx: TaskContext) -> Result<u64, JobError> {
        cx.progress(1, Some(2), "halfway")?;
        Ok(n * 2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_runs_jobs_on_a_file_database() {
    let dir = TempDir::new().unwrap();
    let backend = open(dir.path()).await;
    let worker = Worker::builder(backend.clone())
        .register(Double)
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(client.submit::<Double>(n).await.unwrap());
    }
    for (n, id) in ids.into_iter().enumerate() {
        let task = client.wait(id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded);
        assert_eq!(
            client.output::<Double>(id).await.unwrap(),
            Some(n as u64 * 2)
        );
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_survives_reopening_the_database() {
    let dir = TempDir::new().unwrap();
    let id = {
        let backend = open(dir.path()).await;
        let id = Client::new(backend.clone())
            .submit::<Double>(21)
            .await
            .unwrap();
        backend.writer().close().await;
        backend.reader().close().await;
        id
    };

    let backend = open(dir.path()).await;
    let client = Client::new(backend.clone());
    assert_eq!(client.status(id).await.unwrap().status, TaskStatus::Queued);
    let worker = Worker::builder(backend)
        .register(Double)
        .build()
        .unwrap()
        .spawn();
    let task = client.wait(id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(task.status, TaskStatus::Succeeded);
    assert_eq!(client.output::<Double>(id).await.unwrap(), Some(42));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn in_memory_database_works() {
    let backend = SqliteBackend::connect("sqlite::memory:").await.unwrap();
    backend.migrate().await.unwrap();
    let id = backend
        .insert(vec![NewTask::new("noop", "null")])
        .await
        .unwrap()[0]
        .id;
    assert_eq!(
        backend.get(id).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );
}

/// Two backends on one file stand for two processes: neither sees the other's in-process
/// signals, so watchers rely on polling the row, and claims on SQLite's write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_sees_changes_and_never_double_claims() {
    use longtask_core::{
        ClaimRequest, Completion, Outcome, Progress, ProgressSink, Queue, TaskEvent,
    };

    let dir = TempDir::new().unwrap();
    let web = open(dir.path())
        .await
        .with_watch_interval(Duration::from_millis(20));
    let worker = open(dir.path()).await;

    // Watching from one process what another does.
    let id = web
        .insert(vec![NewTask::new("noop", "null")])
        .await
        .unwrap()[0]
        .id;
    let mut events = web.watch(id).await.unwrap();
    let jobs = ["noop".to_owned()];
    let request = ClaimRequest {
        jobs: &jobs,
        worker: "w",
        limit: 10,
        lease: Duration::from_secs(30),
        limits: &[],
    };
    let claimed = worker.claim(request).await.unwrap();
    assert_eq!(
        next(&mut events).await,
        Some(TaskEvent::Status {
            status: TaskStatus::Running
        })
    );
    worker
        .report(&[(claimed[0].lease, Progress::new(1, Some(2)))])
        .await
        .unwrap();
    assert!(matches!(next(&mut events).await, Some(TaskEvent::Progress(p)) if p.step == 1));
    let done = Completion::new(
        claimed[0].lease,
        Outcome::Succeeded {
            output: "null".to_owned(),
        },
    );
    worker.finish(vec![done]).await.unwrap();
    assert_eq!(
        next(&mut events).await,
        Some(TaskEvent::Status {
            status: TaskStatus::Succeeded
        })
    );
    assert_eq!(next(&mut events).await, None);

    // Claiming from both at once: every task once.
    let tasks: Vec<NewTask> = (0..400).map(|_| NewTask::new("noop", "null")).collect();
    web.insert(tasks).await.unwrap();
    let claim_all = |backend: SqliteBackend| {
        tokio::spawn(async move {
            let jobs = ["noop".to_owned()];
            let mut ids = Vec::new();
            loop {
                let claimed = backend
                    .claim(ClaimRequest {
                        jobs: &jobs,
                        worker: "w",
                        limit: 7,
                        lease: Duration::from_secs(30),
                        limits: &[],
                    })
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return ids;
                }
                ids.extend(claimed.into_iter().map(|c| c.lease.task));
            }
        })
    };
    let (a, b) = (claim_all(web.clone()), claim_all(worker.clone()));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let mut all: Vec<_> = a.iter().chain(&b).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 400);
    assert_eq!(a.len() + b.len(), 400);
}

async fn next(
    events: &mut futures::stream::BoxStream<'static, longtask_core::TaskEvent>,
) -> Option<longtask_core::TaskEvent> {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no event within 10 s")
}

#[tokio::test]
async fn due_scheduled_tasks_show_as_queued_after_a_claim() {
    use longtask_core::{ClaimRequest, ManualClock, Queue, RunAt};

    let dir = TempDir::new().unwrap();
    let clock = Arc::new(ManualClock::new());
    let backend = open(dir.path()).await.with_clock(clock.clone());
    let mut later = NewTask::new("later", "null");
    later.run_at = RunAt::After(Duration::from_secs(60));
    let id = backend.insert(vec![later]).await.unwrap()[0].id;
    assert_eq!(
        backend.get(id).await.unwrap().unwrap().status,
        TaskStatus::Scheduled
    );
    clock.advance(Duration::from_secs(61));
    let jobs = ["other".to_owned()];
    let request = ClaimRequest {
        jobs: &jobs,
        worker: "w",
        limit: 1,
        lease: Duration::from_secs(30),
        limits: &[],
    };
    assert!(backend.claim(request).await.unwrap().is_empty());
    assert_eq!(
        backend.get(id).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );
}

/// The versions of the embedded SQLite migrations, from their file names.
fn migration_versions() -> Vec<i64> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut versions: Vec<i64> = std::fs::read_dir(&dir)
        .expect("reading the migrations folder")
        .map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let (version, _) = name.split_once('_').expect("a `<version>_<name>.sql` file");
            version.parse().expect("a numeric migration version")
        })
        .collect();
    versions.sort_unstable();
    versions
}

/// The migrations recorded as applied in `backend`'s database, in order.
async fn applied(backend: &SqliteBackend) -> Vec<(i64, bool)> {
    sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(backend.reader())
        .await
        .expect("reading _sqlx_migrations")
}

/// Four processes opening one new file at once: each one's `migrate` returns only once the
/// schema is complete, and every migration is applied (and recorded) exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_migrate_once() {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}", dir.path().join("longtask.db").display());
    let expected: Vec<(i64, bool)> = migration_versions()
        .into_iter()
        .map(|v| (v, true))
        .collect();
    assert!(!expected.is_empty(), "no migration files found");
    let start = Arc::new(tokio::sync::Barrier::new(4));
    let mut starts = Vec::new();
    for _ in 0..4 {
        let (url, start) = (url.clone(), start.clone());
        starts.push(tokio::spawn(async move {
            let backend = SqliteBackend::connect(&url).await.unwrap();
            start.wait().await;
            backend.migrate().await.unwrap();
            backend
        }));
    }
    for start in starts {
        let backend = start.await.unwrap();
        assert_eq!(
            applied(&backend).await,
            expected,
            "migrate returned before every migration was applied once"
        );
        backend
            .insert(vec![NewTask::new("noop", "null")])
            .await
            .unwrap();
    }
}

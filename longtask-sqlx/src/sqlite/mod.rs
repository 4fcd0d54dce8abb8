//! The SQLite backend: [`SqliteBackend`], every longtask backend trait over one SQLite file.
//!
//! `store.rs`, `queue.rs` and `progress.rs` implement the three traits; `row.rs` maps rows to
//! records; the SQL lives in `sql/*.sql` and the schema in `migrations/sqlite`.

mod progress;
mod queue;
mod row;
mod stats;
mod store;

use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use longtask_core::{Clock, Error, Result, SystemClock, TaskEvent, TaskId};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Sqlite, SqlitePool, Transaction,
};
use tokio::{
    sync::{mpsc, watch},
    task::AbortHandle,
};

impl Watched {
    /// Sends one commit's events to the task's streams and notes what they changed; `true` when
    /// the task has reached a final status (its streams are done).
    fn send(&mut self, version: i64, events: &[TaskEvent]) -> bool {
        let last = events
            .iter()
            .any(|e| matches!(e, TaskEvent::Status { status } if status.is_final()));
        if let Some(seen) = self.seen.as_mut().filter(|seen| seen.version < version) {
            seen.version = version;
            for event in events {
                match event {
                    TaskEvent::Status { status } => seen.status = *status,
                    TaskEvent::Progress(progress) => seen.progress = Some(progress.clone()),
                }
            }
        }
        self.senders
            .retain(|tx| tx.send((version, events.to_vec())).is_ok());
        last
    }
}

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for the writer connection (behind the writes queued before it) or a
/// reader before failing, instead of sqlx's 30 s: twice the busy timeout, so that writes queued
/// behind one that waits for another process's lock are not failed for that wait alone.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader connections opened by [`SqliteBackend::connect`].
const READERS: u32 = 4;
/// The default interval of watch polls (changes made by other processes).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// One commit's events for one task, with the task's change counter after the commit.
pub(crate) type Batch = (i64, Vec<TaskEvent>);
type Watchers = HashMap<TaskId, Watched>;

/// The watch streams of one task, and what the backend last knew of it.
#[derive(Default)]
pub(crate) struct Watched {
    senders: Vec<mpsc::UnboundedSender<Batch>>,
    /// The task as of its latest change seen (a commit through this backend, a watch's first
    /// read, or a poll); `None` until the first stream has read it.
    seen: Option<progress::Seen>,
}

/// Every longtask backend trait ([`TaskStore`](longtask_core::TaskStore),
/// [`Queue`](longtask_core::Queue), [`ProgressSink`](longtask_core::ProgressSink)) over one SQLite
/// database: the embedded, durable default (no server, one file; tasks survive restarts and
/// crashes). Cheap to clone: clones share the connections, the wake-up signal and the watchers.
///
/// - **Connections.** The database runs in WAL mode with `synchronous = NORMAL` (a commit is
///   durable against a crash of the process; a power loss may undo the last commits, never corrupt
///   the file) and a busy timeout of 5 s. All writes go through a *single writer connection* (a
///   pool of one) in `BEGIN IMMEDIATE` transactions, so writers never deadlock and never upgrade a
///   read lock; reads (`get`, `list`, `latest`, watch polls) use a separate pool of readers beside
///   it, which WAL lets run while a write is under way. A call waits at most 10 s for its
///   connection (the writes queued before it included), then fails with
///   [`Error::Backend`](longtask_core::Error::Backend) (`longtask-tower` answers 503 with
///   `Retry-After`) rather than sqlx's 30 s; pools of your own
///   ([`from_pools`](SqliteBackend::from_pools)) set their own `acquire_timeout`.
/// - **Batches.** A claim, a batch of completions, heartbeats, releases, progress reports or
///   inserts is one transaction with a fixed number of statements, whatever the batch size: the
///   batch travels as one JSON array parameter, unpacked in SQL with `json_each`.
/// - **Indexes.** Claims read a partial index over waiting tasks only, in the claim order
///   (`job, priority DESC, run_at, id`), after marking scheduled tasks that have come due as
///   queued (through a partial index of scheduled tasks by due time); completions look tasks up
///   by primary key; recovery reads a partial index of running tasks by lease expiry, and purging
///   one of finished tasks by purge time. Finished tasks are never scanned by claim, complete or
///   recover, so their cost does not grow with the history kept.
/// - **Wake-ups.** Inserting due tasks, scheduling retries, releasing and recovering tasks bump
///   the [`work_signal`](longtask_core::Queue::work_signal) of this backend (and its clones), so
///   idle workers *in the same process* start at once. Workers in other processes sharing the
///   file find new work at their poll interval
///   ([`WorkerBuilder::poll_interval`](longtask_core::WorkerBuilder::poll_interval), 1 s by default).
/// - **Watching.** [`watch`](longtask_core::ProgressSink::watch) streams the progress and status
///   changes made through this backend (and its clones) as they commit. Changes made by other
///   processes sharing the file are found by one poller per backend (shared by its clones), every
///   [`with_watch_interval`](SqliteBackend::with_watch_interval) (1 s by default): it asks
///   SQLite whether any other connection has committed since its last look (`PRAGMA
///   data_version` on the writer connection, a read of no table), and only then reads the change
///   counters of all watched tasks in one statement, and the rows of those that changed. So the
///   cost of watching is one statement per interval at most, plus one per watched task that
///   changed, however many tasks are watched; with no other process writing it is nothing at
///   all. A change counter stored with each task keeps the two sources in order and free of
///   duplicates.
/// - **Time.** Every time is read from the backend's [`Clock`] and stored as integer milliseconds
///   since the epoch; SQLite's own clock is never used.
/// - **Schema.** [`SqliteBackend::migrate`] applies the embedded, versioned migrations of
///   `migrations/sqlite` (recorded in sqlx's `_sqlx_migrations` table; re-running is a no-op).
///   The tables are named `longtask_*`. Keep them in a file of their own, or, to share a file
///   with an application's own sqlx migrations, let the application's migrator ignore versions
///   it does not know (`Migrator::set_ignore_missing(true)`; longtask's does the same).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
/// use longtask_core::Client;
/// use longtask_sqlx::SqliteBackend;
///
/// let backend = SqliteBackend::connect("sqlite://longtask.db").await?;
/// backend.migrate().await?;
/// let client = Client::new(backend);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteBackend {
    writer: SqlitePool,
    reader: SqlitePool,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    watch_interval: Duration,
}

struct Shared {
    signal: watch::Sender<()>,
    watchers: Mutex<Watchers>,
    /// Statements run by the watch machinery (see [`SqliteBackend::watch_reads`]).
    watch_reads: AtomicU64,
    /// A watch started since the last poll: the next poll reads the watched tasks even if no
    /// other process committed.
    watch_started: AtomicBool,
    /// The task that polls for other processes' changes, once someone watches.
    poller: Mutex<Option<AbortHandle>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let poller = self
            .poller
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(poller) = poller.take() {
            poller.abort();
        }
    }
}

impl SqliteBackend {
    /// Opens (creating it if missing) the database at `url`, such as `sqlite://longtask.db`
    /// (relative to the working directory) or `sqlite:///var/lib/app/longtask.db`, in WAL mode
    /// with `synchronous = NORMAL`, one writer connection and four readers. Run
    /// [`migrate`](Self::migrate) before first use.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// let backend = longtask_sqlx::SqliteBackend::connect("sqlite:///tmp/longtask.db").await?;
    /// backend.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| Error::backend(format!("parsing the SQLite URL `{url}`"), err))?;
        Self::connect_with(options).await
    }

    /// Opens the database described by `options` (see [`connect`](Self::connect)); the
    /// options' journal mode, synchronous setting and busy timeout are replaced by the backend's
    /// (WAL, NORMAL, 5 s), and the file is created if missing.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// use sqlx::sqlite::SqliteConnectOptions;
    /// let options = SqliteConnectOptions::new().filename("/tmp/longtask.db");
    /// let backend = longtask_sqlx::SqliteBackend::connect_with(options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self> {
        let options = options
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", "-32768");
        // The journal mode is stored in the file: the writer sets it, readers find it.
        let writer = open_pool(options.clone().journal_mode(SqliteJournalMode::Wal), 1)
            .await
            .map_err(|err| Error::backend("opening the SQLite writer connection", err))?;
        let filename = options.get_filename().to_string_lossy();
        let in_memory = filename == ":memory:" || filename.starts_with("file:sqlx-in-memory-");
        if in_memory {
            // An in-memory database lives in its one connection's cache: read through the writer.
            return Ok(Self::from_pool(writer));
        }
        let reader = open_pool(options, READERS)
            .await
            .map_err(|err| Error::backend("opening the SQLite reader connections", err))?;
        Ok(Self::from_pools(writer, reader))
    }

    /// Uses existing pools: `writer` for every write (give it `max_connections(1)`: SQLite
    /// allows one writer at a time, and one connection avoids lock waits) and `reader` for
    /// reads. Both should open the same database in WAL mode with a busy timeout; for an
    /// in-memory database pass the same pool twice.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    /// let options = SqliteConnectOptions::new()
    ///     .filename("/tmp/longtask.db")
    ///     .create_if_missing(true)
    ///     .journal_mode(SqliteJournalMode::Wal);
    /// let writer = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
    /// let reader = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
    /// let backend = longtask_sqlx::SqliteBackend::from_pools(writer, reader);
    /// # Ok(()) }
    /// ```
    pub fn from_pools(writer: SqlitePool, reader: SqlitePool) -> Self {
        Self {
            writer,
            reader,
            clock: Arc::new(SystemClock),
            shared: Arc::new(Shared {
                signal: watch::Sender::new(()),
                watchers: Mutex::new(HashMap::new()),
                watch_reads: AtomicU64::new(0),
                watch_started: AtomicBool::new(false),
                poller: Mutex::new(None),
            }),
            watch_interval: WATCH_INTERVAL,
        }
    }

    /// Uses one pool for reads and writes (see [`from_pools`](Self::from_pools)).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
    /// let backend = longtask_sqlx::SqliteBackend::from_pool(pool);
    /// # Ok(()) }
    /// ```
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self::from_pools(pool.clone(), pool)
    }

    /// Uses `clock` for every time this backend reads (lease expiry, schedules, retention): a
    /// [`ManualClock`](longtask_core::ManualClock) in tests.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// use std::sync::Arc;
    /// let backend = longtask_sqlx::SqliteBackend::connect("sqlite:///tmp/longtask.db")
    ///     .await?
    ///     .with_clock(Arc::new(longtask_core::ManualClock::new()));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How often this backend looks for changes that other processes made to watched tasks
    /// (default 1 s; see *Watching* above). Changes made through this backend reach watchers at
    /// once, whatever the interval. Set it before the first watch: the poller, shared by every
    /// clone, keeps the interval it started with.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// use std::time::Duration;
    /// let backend = longtask_sqlx::SqliteBackend::connect("sqlite:///tmp/longtask.db")
    ///     .await?
    ///     .with_watch_interval(Duration::from_millis(250));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_watch_interval(mut self, every: Duration) -> Self {
        self.watch_interval = every.max(Duration::from_millis(1));
        self
    }

    /// Creates or updates the schema with the embedded migrations. Re-running is a no-op.
    /// Applied versions are recorded in `_sqlx_migrations`; versions applied by an application's
    /// own sqlx migrations in the same database are left alone.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// let backend = longtask_sqlx::SqliteBackend::connect("sqlite://longtask.db").await?;
    /// backend.migrate().await?;
    /// backend.migrate().await?; // nothing left to do
    /// # Ok(()) }
    /// ```
    ///
    /// Several processes may migrate the same file at once (a web process and its workers
    /// starting together): SQLite has no migration lock, so a run that loses the race to another
    /// process is retried, and then finds the versions applied.
    pub async fn migrate(&self) -> Result<()> {
        const ATTEMPTS: u32 = 3;
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        migrator.set_ignore_missing(true);
        let mut attempt = 1;
        loop {
            match migrator.run(&self.writer).await {
                Ok(()) => return Ok(()),
                Err(err) if attempt < ATTEMPTS => {
                    tracing::debug!(error = %err, attempt, "migrating the SQLite schema failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100) * attempt).await;
                    attempt += 1;
                }
                Err(err) => return Err(Error::backend("migrating the SQLite schema", err)),
            }
        }
    }

    /// The pool every write goes through.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The pool reads go through.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// How many statements the watch machinery of this backend (and its clones) has run so far:
    /// the first read of each watched task and the reads that look for changes made by other
    /// processes. A diagnostic: it grows with the tasks that change, not with the streams open.
    pub fn watch_reads(&self) -> u64 {
        self.shared.watch_reads.load(Ordering::Relaxed)
    }

    fn count_watch_read(&self) {
        self.shared.watch_reads.fetch_add(1, Ordering::Relaxed);
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn wake(&self) {
        self.shared.signal.send_replace(());
    }

    /// Starts a write transaction, taking the database's write lock at once.
    async fn begin(&self, what: &'static str) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|err| Error::backend(what, err))
    }

    fn watchers(&self) -> MutexGuard<'_, Watchers> {
        self.shared
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends committed changes to their watchers; a final status closes the task's streams.
    fn emit(&self, changes: Vec<(TaskId, i64, Vec<TaskEvent>)>) {
        let mut watchers = self.watchers();
        if watchers.is_empty() {
            return;
        }
        for (id, version, events) in changes {
            if let Some(watched) = watchers.get_mut(&id) {
                if watched.send(version, &events) {
                    watchers.remove(&id);
                }
            }
        }
    }

    /// Whether anyone watches any task (so that writers skip building events otherwise).
    fn watched(&self) -> bool {
        !self.watchers().is_empty()
    }
}

// Every operation runs to its end even if its caller is dropped (a client hanging up), so a
// connection is never left inside a transaction and no write is left half done.
longtask_core::cancel_safe_backend!(SqliteBackend);

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("writer", &self.writer)
            .field("reader", &self.reader)
            .field("clock", &self.clock)
            .field("watch_interval", &self.watch_interval)
            .finish_non_exhaustive()
    }
}

/// Opens a pool of up to `max` connections. Switching a new file to WAL takes an exclusive lock
/// that SQLite does not wait for, so a process opening the file while another creates it is
/// told "database is locked": that is retried for a while.
async fn open_pool(options: SqliteConnectOptions, max: u32) -> Result<SqlitePool, sqlx::Error> {
    let mut attempt: u32 = 1;
    loop {
        let opened = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await;
        match opened {
            Err(sqlx::Error::Database(err)) if attempt < 20 && is_busy(&*err) => {
                tokio::time::sleep(Duration::from_millis(25) * attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether SQLite said SQLITE_BUSY (primary result code 5, with any extended code).
fn is_busy(err: &dyn sqlx::error::DatabaseError) -> bool {
    err.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

/// Maps a driver error to [`Error::Backend`] with what the backend was doing.
fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |err| Error::backend(what, err)
}

//! The Postgres backend: [`PostgresBackend`].
//!
//! Many web and worker processes on many machines share one queue in one schema (`longtask` by
//! default). Workers claim batches with `FOR UPDATE SKIP LOCKED` over a partial index of waiting
//! tasks, report outcomes in batches (one statement per batch, fenced by lease token in SQL), and
//! are woken by `LISTEN`/`NOTIFY` instead of polling. Tasks can be submitted inside the
//! application's own transaction ([`PostgresBackend::enqueue_in`]): the task exists, and workers
//! hear of it, if and only if that transaction commits.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use longtask_core::{Client, Worker};
//! use longtask_sqlx::PostgresBackend;
//!
//! let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://localhost/app".into());
//! let backend = PostgresBackend::connect(&url).await?;
//! backend.migrate().await?;
//! let client = Client::new(backend.clone());
//! # Ok(()) }
//! ```
//!
//! Durability: every state change is one statement (or one short transaction) and is as durable
//! as the server's `synchronous_commit` setting makes it. Keep it `on` (the server's default)
//! unless losing the last few hundred milliseconds of submissions and outcomes after a server
//! crash is acceptable (the database stays consistent; a lost outcome means the task runs again
//! after its lease, a lost submission is gone). It can be turned off for this backend's
//! connections only, with the URL parameter `options[synchronous_commit]=off`
//! (`postgres://host/db?options[synchronous_commit]=off`).
//!
//! The pool: [`connect`](PostgresBackend::connect) opens up to 16 connections; the backend keeps
//! one of them for `LISTEN` once a worker runs or a task is watched. Progress and status changes
//! are sent with `NOTIFY` only for tasks someone watches, so a busy queue does not flood the
//! notification channel.
//!
//! Outages: a call waits at most 5 s for a connection, connecting included
//! ([`ACQUIRE_TIMEOUT`](PostgresBackend::ACQUIRE_TIMEOUT), sqlx's own default is 30 s), then
//! fails with [`Error::Backend`]; so while the server cannot be reached every call, and every
//! HTTP request that makes one, fails within about 5 s (`longtask-tower` answers 503 with
//! `Retry-After`). Nothing needs restarting when the server is back: broken connections are
//! dropped at their next use, new ones are opened, the `LISTEN` connection reconnects and
//! workers go on. Change the bound with [`connect_with`](PostgresBackend::connect_with), or with
//! `acquire_timeout` on a pool of your own ([`from_pool`](PostgresBackend::from_pool)). A
//! statement on a connection that was open before the server froze (rather than stopped) waits
//! for TCP to notice; set `statement_timeout` on the server side if that matters.
//!
//! Claim order and history: each backend remembers, per job, where its last claim stopped in
//! the waiting-tasks index, and claims from there, so that claims do not slow down stepping
//! over the dead index entries of the tasks claimed since the last VACUUM. Claim order
//! (priority, then `run_at`, then submission) is exact for tasks of a higher priority and for
//! everything this process submits, releases or retries; a task that another process puts in
//! front of where this process's claims have reached (an earlier `run_at`, a released or
//! recovered lease) is claimed by the next scan from the head of the index, which runs at least
//! once a second and whenever the queue after the cursor runs dry: at most about one second
//! later than strict order would have it.

mod cursor;
mod listener;
mod progress;
mod queue;
mod row;
mod sql;
mod stats;
mod store;
mod submit;

use std::{fmt, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use longtask_core::{Clock, Error, Result, SystemClock};
use sqlx::{postgres::PgPoolOptions, Connection, PgPool};

pub use self::submit::InTransaction;
use self::{cursor::Cursors, listener::Notifier, sql::Queries};

/// The migrations, embedded at build time from `migrations/postgres`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The default schema.
const DEFAULT_SCHEMA: &str = "longtask";

/// Longest accepted schema name (the NOTIFY channel name, `longtask_<schema>`, must fit in
/// Postgres' 63-byte identifiers).
const MAX_SCHEMA_LEN: usize = 48;

/// Tasks, queue and progress in Postgres. Cheap to clone: clones share the pool and the
/// notification listener.
#[derive(Clone)]
pub struct PostgresBackend {
    pool: PgPool,
    schema: Arc<str>,
    sql: Arc<Queries>,
    clock: Arc<dyn Clock>,
    notifier: Arc<Notifier>,
    cursors: Arc<Cursors>,
}

impl PostgresBackend {
    /// How long a call waits for a pooled connection, connecting included, before it fails: 5 s.
    /// This bounds how long anything (an HTTP request, a worker's claim) waits while the server
    /// cannot be reached; sqlx's default would be 30 s.
    pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

    /// The connections [`connect`](Self::connect) opens at most.
    pub const MAX_CONNECTIONS: u32 = 16;

    /// Connects to the database at `url` (a pool of up to 16 connections, each call waiting at
    /// most 5 s for one: see [`pool_options`](Self::pool_options)), using the schema `longtask`.
    /// Call [`migrate`](Self::migrate) once before use.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://localhost/app".into());
    /// let backend = longtask_sqlx::PostgresBackend::connect(&url).await?;
    /// backend.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, Self::pool_options()).await
    }

    /// Connects to the database at `url` with a pool built from `options`: start from
    /// [`pool_options`](Self::pool_options) and change what you need, such as the number of
    /// connections or how long a call may wait for one (and so how soon requests fail while the
    /// server cannot be reached).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// use std::time::Duration;
    /// use longtask_sqlx::PostgresBackend;
    ///
    /// let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://localhost/app".into());
    /// let options = PostgresBackend::pool_options()
    ///     .max_connections(32)
    ///     .acquire_timeout(Duration::from_secs(2));
    /// let backend = PostgresBackend::connect_with(&url, options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(url: &str, options: PgPoolOptions) -> Result<Self> {
        let pool = options
            .connect(url)
            .await
            .map_err(|e| Error::backend("connecting to Postgres", e))?;
        Ok(Self::from_pool(pool))
    }

    /// The pool settings [`connect`](Self::connect) uses: at most
    /// [`MAX_CONNECTIONS`](Self::MAX_CONNECTIONS) connections, and a call waits at most
    /// [`ACQUIRE_TIMEOUT`](Self::ACQUIRE_TIMEOUT) for one (connecting included) before it fails.
    ///
    /// ```
    /// let options = longtask_sqlx::PostgresBackend::pool_options();
    /// assert_eq!(options.get_max_connections(), 16);
    /// assert_eq!(options.get_acquire_timeout(), std::time::Duration::from_secs(5));
    /// ```
    pub fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(Self::MAX_CONNECTIONS)
            .acquire_timeout(Self::ACQUIRE_TIMEOUT)
    }

    /// Uses an existing pool (shared with the application), with the schema `longtask`.
    /// The backend holds one of the pool's connections for `LISTEN` once workers or watchers
    /// start. The pool's `acquire_timeout` bounds how long calls wait while the server cannot be
    /// reached: sqlx's default is 30 s, [`pool_options`](Self::pool_options) sets 5 s.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = std::env::var("DATABASE_URL")?;
    /// let pool = longtask_sqlx::PostgresBackend::pool_options().connect(&url).await?;
    /// let backend = longtask_sqlx::PostgresBackend::from_pool(pool);
    /// # Ok(()) }
    /// ```
    pub fn from_pool(pool: PgPool) -> Self {
        let schema: Arc<str> = Arc::from(DEFAULT_SCHEMA);
        let sql = Arc::new(Queries::new(&schema));
        Self {
            notifier: Arc::new(Notifier::new(pool.clone(), &schema, sql.clone())),
            sql,
            pool,
            schema,
            clock: Arc::new(SystemClock),
            cursors: Arc::default(),
        }
    }

    /// Keeps everything in schema `name` instead of `longtask` (one queue per schema). The name
    /// must be a plain identifier: ASCII letters, digits and `_`, not starting with a digit, at
    /// most 48 bytes; anything else is refused with [`Error::InvalidInput`].
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// # let url = std::env::var("DATABASE_URL").unwrap_or_default();
    /// let backend = longtask_sqlx::PostgresBackend::connect(&url).await?.with_schema("jobs")?;
    /// backend.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_schema(mut self, name: &str) -> Result<Self> {
        validate_schema(name)?;
        let schema: Arc<str> = Arc::from(name);
        self.sql = Arc::new(Queries::new(&schema));
        self.notifier = Arc::new(Notifier::new(self.pool.clone(), &schema, self.sql.clone()));
        self.schema = schema;
        self.cursors = Arc::default();
        Ok(self)
    }

    /// Reads every time (lease expiry, schedules, retries, retention) from `clock` instead of
    /// the system clock: a [`ManualClock`](longtask_core::ManualClock) in tests. The database's
    /// own `now()` is never used.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// use std::sync::Arc;
    /// # let url = std::env::var("DATABASE_URL").unwrap_or_default();
    /// let backend = longtask_sqlx::PostgresBackend::connect(&url)
    ///     .await?
    ///     .with_clock(Arc::new(longtask_core::ManualClock::new()));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Creates the schema if needed and applies the embedded migrations inside it. Safe to run
    /// at every start, from many processes at once: applied migrations are skipped.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// # let url = std::env::var("DATABASE_URL").unwrap_or_default();
    /// let backend = longtask_sqlx::PostgresBackend::connect(&url).await?;
    /// backend.migrate().await?;
    /// backend.migrate().await?; // a no-op
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<()> {
        let what = format!("migrating schema {}", self.schema);
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| Error::backend(what.clone(), e))?
            .detach();
        let quoted = quote_ident(&self.schema);
        let result = async {
            // Serialise concurrent migrations of this schema (CREATE SCHEMA IF NOT EXISTS
            // races); the lock ends with the connection.
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(format!("longtask migrate {}", self.schema))
                .execute(&mut conn)
                .await
                .map_err(|e| Error::backend(what.clone(), e))?;
            sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
                .execute(&mut conn)
                .await
                .map_err(|e| Error::backend(what.clone(), e))?;
            sqlx::raw_sql(&format!("SET search_path TO {quoted}"))
                .execute(&mut conn)
                .await
                .map_err(|e| Error::backend(what.clone(), e))?;
            MIGRATOR
                .run(&mut conn)
                .await
                .map_err(|e| Error::backend(what.clone(), e))
        }
        .await;
        // The connection's search_path was changed: never hand it back to the pool.
        let _ = conn.close().await;
        result
    }

    /// The pool this backend uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema this backend uses.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The text of one of the backend's statements as it runs it (schema and shared fragments
    /// in place), for tests that check their plans: `finish`, `heartbeat`, `release`, `recover`.
    #[doc(hidden)]
    pub fn statement(&self, name: &str) -> Option<&str> {
        Some(match name {
            "finish" => &self.sql.finish,
            "heartbeat" => &self.sql.heartbeat,
            "release" => &self.sql.release,
            "recover" => &self.sql.recover,
            _ => return None,
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

// Every operation runs to its end even if its caller is dropped (a client hanging up), so a
// connection is never left inside a transaction and no write is left half done.
longtask_core::cancel_safe_backend!(PostgresBackend);

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool.size())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

fn validate_schema(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(Error::InvalidInput(format!(
            "`{}` is not a plain schema name: use ASCII letters, digits and `_`, not starting with a digit",
            name.chars().take(64).collect::<String>()
        )));
    }
    if name.len() > MAX_SCHEMA_LEN {
        return Err(Error::InvalidInput(format!(
            "the schema name is {} bytes long; at most {MAX_SCHEMA_LEN} are allowed",
            name.len()
        )));
    }
    if name.starts_with("pg_") {
        return Err(Error::InvalidInput(format!(
            "`{name}` is reserved for Postgres' own schemas (names starting with `pg_`)"
        )));
    }
    Ok(())
}

/// `name` as a quoted identifier (names are validated, so quoting only keeps their case).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Milliseconds since the epoch, as stored.
fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The latest time a backend stores (`DateTime::MAX_UTC`), in milliseconds: times computed in SQL
/// saturate here.
fn max_millis() -> i64 {
    DateTime::<Utc>::MAX_UTC.timestamp_millis()
}

/// A `u64` (a token, a limit) as `i64`, saturating.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::validate_schema;

    #[test]
    fn schema_names() {
        for good in ["longtask", "_x", "Jobs_2026", "a"] {
            assert!(validate_schema(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "x\"; DROP TABLE t; --",
            "ä",
            "pg_catalog",
            &"x".repeat(49),
        ] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
    }
}

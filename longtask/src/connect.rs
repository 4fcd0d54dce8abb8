//! [`connect`]: open the backend a URL names, among those compiled in.
//!
//! | URL | backend | feature |
//! |---|---|---|
//! | `memory://` | [`MemoryBackend`] (this process only) | always |
//! | `sqlite://path/to/file.db`, `sqlite:///abs/path.db`, `sqlite::memory:` | `SqliteBackend` | `sqlite` |
//! | `postgres://user:password@host:port/db` (or `postgresql://`) | `PostgresBackend` | `postgres` |
//! | `redis://[:password@]host[:port][/db]` (or `rediss://`) | `RedisBackend` | `redis` |
//! | `redis+cluster://[:password@]host:port,host:port` | `RedisBackend` on a Redis Cluster | `redis` |
//!
//! The errors tell a malformed URL ([`Error::InvalidInput`]: no scheme, an unknown scheme, a
//! scheme whose feature is off, a URL its driver cannot read) from a backend that cannot be
//! reached or opened ([`Error::Backend`], with the driver's error as its source). No message
//! repeats a password given in the URL.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask::Result<()> {
//! let backend = longtask::connect("memory://").await?;
//! let client = longtask::Client::new(backend);
//!
//! let err = longtask::connect("ftp://files.example").await.unwrap_err();
//! assert!(matches!(err, longtask::Error::InvalidInput(_)));
//! # Ok(()) }
//! ```

use longtask_core::{Backend, Error, MemoryBackend, Result};

/// The schemes [`connect`] knows, for messages.
const KNOWN: &str =
    "memory://, sqlite://, postgres:// (or postgresql://), redis:// (or rediss://) \
                     and redis+cluster://";

/// How long [`connect`] waits for a Postgres server to answer before it gives up.
#[cfg(feature = "postgres")]
const POSTGRES_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How [`connect_with`] opens a backend. The defaults (those of [`connect`]) suit an
/// application starting up: migrate the schema, create a missing SQLite file.
///
/// ```
/// let options = longtask::ConnectOptions::new().migrate(false).create_if_missing(false);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ConnectOptions {
    migrate: bool,
    create_if_missing: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            create_if_missing: true,
        }
    }
}

impl ConnectOptions {
    /// The defaults: migrate, and create a missing SQLite file.
    ///
    /// ```
    /// let options = longtask::ConnectOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to apply the embedded migrations after connecting (SQLite and Postgres; the
    /// other backends keep no schema). Migrating is safe at every start and from many processes
    /// at once. Default `true`.
    ///
    /// ```
    /// let options = longtask::ConnectOptions::new().migrate(false);
    /// ```
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Whether a SQLite URL naming a file that does not exist creates it (`true`, the default)
    /// or fails with [`Error::Backend`] (`false`: a tool that only reads, where a typo in the
    /// path should not leave an empty database behind).
    ///
    /// ```
    /// let options = longtask::ConnectOptions::new().create_if_missing(false);
    /// ```
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }
}

/// Opens the backend that `url` names (see the [module docs](crate#connecting)), and applies
/// its migrations (SQLite, Postgres). Surrounding whitespace in `url` is ignored.
///
/// # Errors
/// - [`Error::InvalidInput`] when `url` is empty, has no scheme, names a scheme this build does
///   not know or has not compiled in (the message names the feature to enable), or cannot be
///   read by its driver;
/// - [`Error::Backend`] when the backend cannot be reached or opened (a refused or silent
///   Postgres port fails within 5 s), or its migrations fail.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask::Result<()> {
/// let backend = longtask::connect("memory://").await?;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Backend> {
    connect_with(url, &ConnectOptions::new()).await
}

/// Opens the backend that `url` names, as [`connect`] does, with `options`.
///
/// # Errors
/// As [`connect`]; with [`create_if_missing(false)`](ConnectOptions::create_if_missing), also
/// [`Error::Backend`] when a SQLite file does not exist.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask::Result<()> {
/// use longtask::ConnectOptions;
/// let backend = longtask::connect_with("memory://", &ConnectOptions::new().migrate(false)).await?;
/// # Ok(()) }
/// ```
pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Backend> {
    let url = url.trim();
    let scheme = scheme_of(url)?;
    match scheme.as_str() {
        "memory" => memory(url),
        "sqlite" => sqlite(url, options).await,
        "postgres" | "postgresql" => postgres(url, options).await,
        "redis" | "rediss" => redis(url).await,
        "redis+cluster" => redis_cluster(url).await,
        other => Err(Error::InvalidInput(format!(
            "no backend is named `{other}:`; the known schemes are {KNOWN}"
        ))),
    }
}

/// The URL's scheme, lower-cased; a clear error when there is none.
fn scheme_of(url: &str) -> Result<String> {
    if url.is_empty() {
        return Err(Error::InvalidInput(format!(
            "the backend URL is empty; give one such as sqlite://longtask.db, \
             postgres://user@host/database or redis://host (known schemes: {KNOWN})"
        )));
    }
    let scheme = url.split_once(':').map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme)
            if !scheme.is_empty()
                && scheme.len() <= 32
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            Ok(scheme.to_ascii_lowercase())
        }
        // The text is not repeated: it may hold a password.
        _ => Err(Error::InvalidInput(format!(
            "the backend URL does not start with a scheme; the known schemes are {KNOWN}"
        ))),
    }
}

#[cfg_attr(
    all(feature = "sqlite", feature = "postgres", feature = "redis"),
    allow(dead_code)
)]
fn not_compiled(scheme: &str, feature: &str) -> Error {
    Error::InvalidInput(format!(
        "the `{scheme}://` backend is not compiled in: enable the `{feature}` feature of the \
         `longtask` crate"
    ))
}

fn memory(url: &str) -> Result<Backend> {
    let rest = &url["memory:".len()..];
    if !rest.is_empty() && rest != "//" {
        return Err(Error::InvalidInput(
            "memory:// takes no host or path: write memory://".to_owned(),
        ));
    }
    Ok(Backend::new(MemoryBackend::new()))
}

#[cfg(feature = "sqlite")]
async fn sqlite(url: &str, options: &ConnectOptions) -> Result<Backend> {
    use std::str::FromStr;

    use sqlx::sqlite::SqliteConnectOptions;

    let bad_url = |detail: String| {
        Error::InvalidInput(format!(
            "`{url}` is not a SQLite URL ({detail}); use sqlite://relative/path.db, \
             sqlite:///absolute/path.db or sqlite::memory:"
        ))
    };
    let connect = SqliteConnectOptions::from_str(url).map_err(|e| bad_url(e.to_string()))?;
    let path = connect.get_filename().to_path_buf();
    let shown = path.display().to_string();
    if shown.is_empty() {
        return Err(bad_url("it names no file".to_owned()));
    }
    let in_memory = shown == ":memory:" || shown.starts_with("file:sqlx-in-memory-");
    if !in_memory && !options.create_if_missing && !path.exists() {
        return Err(Error::backend(
            format!("opening the SQLite database {shown}"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let backend = longtask_sqlx::SqliteBackend::connect_with(connect)
        .await
        .map_err(|e| Error::backend(format!("opening the SQLite database {shown}"), e))?;
    if options.migrate {
        backend.migrate().await?;
    }
    Ok(Backend::new(backend))
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(_url: &str, _options: &ConnectOptions) -> Result<Backend> {
    Err(not_compiled("sqlite", "sqlite"))
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str, options: &ConnectOptions) -> Result<Backend> {
    use std::str::FromStr;

    use sqlx::{postgres::PgConnectOptions, Connection, PgConnection};

    let connect = PgConnectOptions::from_str(url).map_err(|e| {
        Error::InvalidInput(format!(
            "the URL is not a Postgres URL ({e}); use postgres://user:password@host:port/database"
        ))
    })?;
    // Where, without the password, for messages.
    let at = format!(
        "{}:{}/{}",
        connect.get_host(),
        connect.get_port(),
        connect
            .get_database()
            .unwrap_or_else(|| connect.get_username())
    );
    let what = format!("connecting to Postgres at {at}");
    // One connection first, given up after a while: a refused port or a wrong password says so
    // at once (the pool would retry a refused port until its timeout and only say it timed out),
    // and a server that never answers does not hold the caller for long.
    match tokio::time::timeout(
        POSTGRES_CONNECT_TIMEOUT,
        PgConnection::connect_with(&connect),
    )
    .await
    {
        Ok(Ok(probe)) => {
            let _ = probe.close().await;
        }
        Ok(Err(err)) => return Err(Error::backend(what, err)),
        Err(_) => {
            return Err(Error::backend(
                what,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", POSTGRES_CONNECT_TIMEOUT.as_secs()),
                ),
            ))
        }
    }
    let pool = longtask_sqlx::PostgresBackend::pool_options()
        .connect_with(connect)
        .await
        .map_err(|e| Error::backend(what, e))?;
    let backend = longtask_sqlx::PostgresBackend::from_pool(pool);
    if options.migrate {
        backend.migrate().await?;
    }
    Ok(Backend::new(backend))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str, _options: &ConnectOptions) -> Result<Backend> {
    Err(not_compiled("postgres", "postgres"))
}

/// Checks a Redis URL the way the driver reads it, without repeating it.
#[cfg(feature = "redis")]
fn check_redis_url(url: &str, what: &str) -> Result<()> {
    redis::Client::open(url).map(drop).map_err(|e| {
        Error::InvalidInput(format!(
            "{what} is not a Redis URL ({e}); use redis://[:password@]host[:port][/db] \
             or rediss://..."
        ))
    })
}

#[cfg(feature = "redis")]
async fn redis(url: &str) -> Result<Backend> {
    check_redis_url(url, "the URL")?;
    let backend = longtask_redis::RedisBackend::connect(url).await?;
    Ok(Backend::new(backend))
}

#[cfg(not(feature = "redis"))]
async fn redis(_url: &str) -> Result<Backend> {
    Err(not_compiled("redis", "redis"))
}

/// `redis+cluster://[user:password@]host:port,host:port` as one `redis://` URL per node, each
/// with the credentials.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn cluster_nodes(url: &str) -> Result<Vec<String>> {
    let rest = &url["redis+cluster:".len()..];
    let rest = rest.strip_prefix("//").ok_or_else(|| {
        Error::InvalidInput(
            "a Redis Cluster URL is written redis+cluster://host:port,host:port".to_owned(),
        )
    })?;
    // Hosts hold no `@`; a password may (unencoded), so the credentials end at the last one.
    let (auth, hosts) = match rest.rfind('@') {
        Some(at) => rest.split_at(at + 1),
        None => ("", rest),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(|node| format!("redis://{auth}{node}"))
        .collect();
    if nodes.is_empty() {
        return Err(Error::InvalidInput(
            "redis+cluster:// names no node: use redis+cluster://host:port,host:port".to_owned(),
        ));
    }
    Ok(nodes)
}

#[cfg(feature = "redis")]
async fn redis_cluster(url: &str) -> Result<Backend> {
    let nodes = cluster_nodes(url)?;
    for (n, node) in nodes.iter().enumerate() {
        check_redis_url(node, &format!("node {} of the cluster URL", n + 1))?;
    }
    let backend = longtask_redis::RedisBackend::connect_cluster(nodes).await?;
    Ok(Backend::new(backend))
}

#[cfg(not(feature = "redis"))]
async fn redis_cluster(_url: &str) -> Result<Backend> {
    Err(not_compiled("redis+cluster", "redis"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_read_case_insensitively_and_garbage_is_not_echoed() {
        assert_eq!(scheme_of("SQLite://x.db").unwrap(), "sqlite");
        assert_eq!(scheme_of("sqlite::memory:").unwrap(), "sqlite");
        for garbage in ["", "no scheme here", "://x", "1abc://x", ":secret@host"] {
            let err = scheme_of(garbage).unwrap_err().to_string();
            assert!(!err.contains("secret"), "{err}");
            assert!(err.contains("memory://"), "{garbage:?}: {err}");
        }
    }

    #[test]
    fn cluster_urls_give_every_node_the_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://:pw@a:1, b:2,").unwrap(),
            ["redis://:pw@a:1", "redis://:pw@b:2"]
        );
        assert_eq!(
            cluster_nodes("redis+cluster://a:1").unwrap(),
            ["redis://a:1"]
        );
        for url in [
            "redis+cluster://",
            "redis+cluster:// , ",
            "redis+cluster:a:1",
        ] {
            assert!(cluster_nodes(url).is_err(), "{url}");
        }
    }
}

//! [`RedisBackend`]: the connection, namespace and clock shared by the three backend traits.

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use longtask_core::{Clock, Error, Result, SystemClock};
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClient,
    FromRedisValue, Script, ScriptInvocation,
};

use crate::{conn::Conn, hub::Hub, keys::Keys};

/// How long one command or script may take by default before the call fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection attempt may take by default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts after the first when the connection to one server is lost: each call waits for the
/// reconnection under way, and the next call starts another if it failed, so more retries would
/// only make calls wait longer while the server is down.
const RECONNECT_RETRIES: usize = 1;
/// The longest pause between two connection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// How a [`RedisBackend`] talks to its server: how long a command may take and how long
/// connecting may take. Together they bound how long any call (and so any HTTP request, or a
/// worker's claim) waits while the server cannot be reached.
///
/// The defaults: 5 s per command or script (Redis' own `busy-reply-threshold`: a script that
/// runs longer blocks every client anyway), 2 s per connection attempt. A call made while the
/// server is down fails within about a second (connections are refused) or, if the server is
/// frozen or the network drops packets, within the response timeout; nothing needs restarting
/// when the server is back, the connection is re-established by the next call. Raise the
/// response timeout for single insert batches of hundreds of thousands of tasks (one script).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
/// use std::time::Duration;
/// use longtask_redis::{RedisBackend, RedisOptions};
///
/// let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1/".to_owned());
/// let options = RedisOptions::new()
///     .response_timeout(Duration::from_secs(10))
///     .connect_timeout(Duration::from_secs(1));
/// let backend = RedisBackend::connect_with(&url, &options).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisOptions {
    response_timeout: Duration,
    connect_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            response_timeout: RESPONSE_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

impl RedisOptions {
    /// The defaults: 5 s per command, 2 s per connection attempt.
    ///
    /// ```
    /// let options = longtask_redis::RedisOptions::new();
    /// assert_eq!(options.get_response_timeout(), std::time::Duration::from_secs(5));
    /// assert_eq!(options.get_connect_timeout(), std::time::Duration::from_secs(2));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How long one command or script may take before the call fails with
    /// [`Error::Backend`] (5 s by default).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = longtask_redis::RedisOptions::new().response_timeout(Duration::from_secs(30));
    /// assert_eq!(options.get_response_timeout(), Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one attempt to connect may take (2 s by default).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = longtask_redis::RedisOptions::new().connect_timeout(Duration::from_secs(1));
    /// assert_eq!(options.get_connect_timeout(), Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The response timeout.
    pub fn get_response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The connect timeout.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

/// Tasks, queue and progress in Redis: one server ([`connect`](Self::connect)) or a Redis
/// Cluster ([`connect_cluster`](Self::connect_cluster)).
///
/// Cheap to clone: clones share one multiplexed, self-reconnecting connection
/// ([`ConnectionManager`], or a cluster connection that follows slot moves and failovers) and
/// one pub/sub connection (started on first use) that wakes idle workers and feeds watchers.
#[derive(Clone)]
pub struct RedisBackend {
    /// The servers the pub/sub connection may use, tried in turn when one fails (in a cluster,
    /// messages published on any node reach subscribers on every node).
    pub(crate) pubsub: Arc<[redis::Client]>,
    pub(crate) conn: Conn,
    pub(crate) keys: Arc<Keys>,
    pub(crate) clock: Arc<dyn Clock>,
    hub: Arc<OnceLock<Hub>>,
}

impl RedisBackend {
    /// Connects to the Redis server at `url` (`redis://[:password@]host[:port][/db]`, or
    /// `rediss://` for TLS when redis-rs is built with a TLS feature), with the key prefix
    /// `longtask`, the system clock and the default [`RedisOptions`].
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1/".to_owned());
    /// let backend = longtask_redis::RedisBackend::connect(&url).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &RedisOptions::default()).await
    }

    /// Connects to the Redis server at `url` (see [`connect`](Self::connect)) with the timeouts
    /// of `options`.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// use std::time::Duration;
    /// use longtask_redis::{RedisBackend, RedisOptions};
    ///
    /// let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1/".to_owned());
    /// let options = RedisOptions::new().response_timeout(Duration::from_secs(2));
    /// let backend = RedisBackend::connect_with(&url, &options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(url: &str, options: &RedisOptions) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| {
            Error::backend(
                "parsing the Redis URL (expected redis://host:port/db or rediss://...)",
                e,
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.response_timeout))
            .set_connection_timeout(Some(options.connect_timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| Error::backend("connecting to Redis", e))?;
        Ok(Self::with_conn(Conn::Single(conn), vec![client]))
    }

    /// Connects to a Redis Cluster through some of its nodes (`redis://host:port` each; the
    /// others are discovered), with the key prefix `longtask`, the system clock and the default
    /// [`RedisOptions`].
    ///
    /// All keys of a namespace share one hash tag (`{prefix}`), so one namespace lives in one
    /// slot and every script runs on the node that owns it; commands follow the cluster when
    /// slots move or a replica takes over. Spread load over the cluster with several prefixes
    /// (one per application or queue). Idle workers and watchers subscribe on one of the given
    /// nodes (trying the next when it fails): published messages reach every node.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// let backend = longtask_redis::RedisBackend::connect_cluster([
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379",
    /// ])
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster<I, S>(nodes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::connect_cluster_with(nodes, &RedisOptions::default()).await
    }

    /// Connects to a Redis Cluster (see [`connect_cluster`](Self::connect_cluster)) with the
    /// timeouts of `options`, for each node. Commands to a cluster are retried while a failover
    /// is under way (redis-rs' cluster retries), so a call may take longer than one response
    /// timeout when a node is lost.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// use std::time::Duration;
    /// use longtask_redis::{RedisBackend, RedisOptions};
    ///
    /// let options = RedisOptions::new().connect_timeout(Duration::from_secs(1));
    /// let backend =
    ///     RedisBackend::connect_cluster_with(["redis://10.0.0.1:6379"], &options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster_with<I, S>(nodes: I, options: &RedisOptions) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        if nodes.is_empty() {
            return Err(Error::InvalidInput(
                "no Redis Cluster node given: pass at least one redis://host:port".to_owned(),
            ));
        }
        let bad_url = |e| {
            Error::backend(
                "parsing a Redis Cluster node URL (expected redis://host:port)",
                e,
            )
        };
        let pubsub = nodes
            .iter()
            .map(|node| redis::Client::open(node.as_str()).map_err(bad_url))
            .collect::<Result<Vec<_>>>()?;
        let client = ClusterClient::builder(nodes)
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.response_timeout)
            .build()
            .map_err(bad_url)?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| Error::backend("connecting to the Redis Cluster", e))?;
        Ok(Self::with_conn(Conn::Cluster(conn), pubsub))
    }

    fn with_conn(conn: Conn, pubsub: Vec<redis::Client>) -> Self {
        Self {
            pubsub: pubsub.into(),
            conn,
            keys: Arc::new(Keys::new("longtask")),
            clock: Arc::new(SystemClock),
            hub: Arc::new(OnceLock::new()),
        }
    }

    /// Keeps every key of this backend under `prefix` (default `longtask`): backends with
    /// different prefixes share nothing, so several applications (or test cases) can use one
    /// Redis. Every key is `{prefix}:...`, one Redis Cluster hash slot per prefix.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1/".to_owned());
    /// let backend = longtask_redis::RedisBackend::connect(&url).await?.with_prefix("billing");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl AsRef<str>) -> Self {
        self.keys = Arc::new(Keys::new(prefix.as_ref()));
        self.hub = Arc::new(OnceLock::new());
        self
    }

    /// Reads every time (lease expiry, schedules, retention) from `clock`: a
    /// [`ManualClock`](longtask_core::ManualClock) in tests. Scripts get "now" from this clock as
    /// an argument; the server's clock is never used (except for the real-time expiry safety net
    /// described in the crate docs).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// use std::sync::Arc;
    /// let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1/".to_owned());
    /// let backend = longtask_redis::RedisBackend::connect(&url)
    ///     .await?
    ///     .with_clock(Arc::new(longtask_core::ManualClock::new()));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// The pub/sub hub, started on first use.
    pub(crate) fn hub(&self) -> &Hub {
        self.hub
            .get_or_init(|| Hub::start(self.pubsub.clone(), self.conn.clone(), &self.keys))
    }

    /// A script call with the namespace base as its one key; add the arguments and
    /// [`invoke`](Self::invoke) it.
    pub(crate) fn script<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.keys.base());
        invocation
    }

    /// Runs a prepared script call; `doing` says what for, in errors.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        doing: &str,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| Error::backend(doing.to_owned(), e))
    }

    /// Runs a plain command.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        doing: &str,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| Error::backend(doing.to_owned(), e))
    }
}

// Every operation runs to its end even if its caller is dropped (a client hanging up), so a
// connection is never left inside a transaction and no write is left half done.
longtask_core::cancel_safe_backend!(RedisBackend);

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.keys.prefix())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

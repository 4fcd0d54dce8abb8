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

/// How long one command or script may take before the call fails. Large batch inserts are a
/// single atomic script, so this is generous.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// `longtask` and the system clock.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
    /// let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1/".to_owned());
    /// let backend = longtask_redis::RedisBackend::connect(&url).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| {
            Error::backend(
                "parsing the Redis URL (expected redis://host:port/db or rediss://...)",
                e,
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| Error::backend("connecting to Redis", e))?;
        Ok(Self::with_conn(Conn::Single(conn), vec![client]))
    }

    /// Connects to a Redis Cluster through some of its nodes (`redis://host:port` each; the
    /// others are discovered), with the key prefix `longtask` and the system clock.
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
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
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

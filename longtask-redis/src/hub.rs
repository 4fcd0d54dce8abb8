//! The pub/sub hub: one subscriber connection per backend that wakes idle workers and feeds
//! watchers.
//!
//! A background task owns a dedicated pub/sub connection, subscribed to the namespace's work
//! channel and to the channel of every watched task. Work messages bump a [`watch`] channel
//! behind [`Queue::work_signal`](longtask_core::Queue::work_signal); task messages go to that
//! task's watchers. When the connection drops, the task reconnects with backoff, subscribes
//! again, and then bumps the work signal and asks every watcher to re-read its task's status,
//! because messages sent while it was away are lost (pub/sub does not queue them).

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::StreamExt;
use longtask_core::{Error, Result, WorkSignal};
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{conn::Conn, keys::Keys};

/// The first pause before reconnecting.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle subscriber connection is checked with a PING (a silently dropped TCP
/// connection would otherwise go unnoticed, and workers would fall back to polling).
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long that PING may take before the connection is deemed lost.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the `{prefix}:watching` marker lives unless refreshed: scripts publish task events
/// only while it exists, so it outlives a crashed subscriber by at most this long.
const WATCHING_TTL: Duration = Duration::from_secs(30);
/// How often a hub with watchers refreshes the marker.
const WATCHING_REFRESH: Duration = Duration::from_secs(10);

/// What the hub hands a watcher.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A message published to the task's channel.
    Message(Vec<u8>),
    /// The connection was re-established; messages may have been missed.
    Resync,
}

enum Command {
    Watch {
        channel: String,
        watcher: u64,
        sender: mpsc::UnboundedSender<Delivery>,
        subscribed: oneshot::Sender<Result<()>>,
    },
    Unwatch {
        channel: String,
        watcher: u64,
    },
}

/// A handle on the hub task; the task ends when every handle (and every watcher) is gone.
pub(crate) struct Hub {
    commands: mpsc::UnboundedSender<Command>,
    work: Arc<watch::Sender<()>>,
}

/// Keeps a watcher subscribed; dropping it unsubscribes.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) deliveries: mpsc::UnboundedReceiver<Delivery>,
    commands: mpsc::UnboundedSender<Command>,
    channel: String,
    watcher: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unwatch {
            channel: std::mem::take(&mut self.channel),
            watcher: self.watcher,
        });
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Watch { channel, .. } => write!(f, "Watch({channel})"),
            Self::Unwatch { channel, .. } => write!(f, "Unwatch({channel})"),
        }
    }
}

impl Hub {
    /// Starts the hub task on the current Tokio runtime. Outside a runtime the hub stays idle:
    /// the work signal never fires (workers fall back to polling) and watching fails.
    pub(crate) fn start(clients: Arc<[redis::Client]>, conn: Conn, keys: &Keys) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let work = Arc::new(watch::Sender::new(()));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = HubTask {
                    clients,
                    next_client: 0,
                    conn,
                    watching_key: keys.watching(),
                    work_channel: keys.work_channel(),
                    work: work.clone(),
                    commands: receiver,
                    watchers: HashMap::new(),
                };
                runtime.spawn(task.run());
            }
            Err(_) => {
                tracing::warn!(
                    "longtask-redis: no Tokio runtime; workers will poll instead of waiting for wake-ups"
                );
            }
        }
        Self { commands, work }
    }

    /// A signal that changes when work may have become available.
    pub(crate) fn work_signal(&self) -> WorkSignal {
        WorkSignal::new(self.work.subscribe())
    }

    /// Subscribes to a channel; returns once the server confirmed the subscription.
    pub(crate) async fn subscribe(&self, channel: String, watcher: u64) -> Result<Subscription> {
        let (sender, deliveries) = mpsc::unbounded_channel();
        let (subscribed, confirmed) = oneshot::channel();
        let subscription = Subscription {
            deliveries,
            commands: self.commands.clone(),
            channel: channel.clone(),
            watcher,
        };
        let hub_gone = || {
            Error::backend(
                "subscribing to task events",
                "the pub/sub task is not running (no Tokio runtime when the backend was first used)",
            )
        };
        self.commands
            .send(Command::Watch {
                channel,
                watcher,
                sender,
                subscribed,
            })
            .map_err(|_| hub_gone())?;
        confirmed.await.map_err(|_| hub_gone())??;
        Ok(subscription)
    }
}

type Watchers = HashMap<String, HashMap<u64, mpsc::UnboundedSender<Delivery>>>;

struct HubTask {
    /// The servers to subscribe on, tried in turn.
    clients: Arc<[redis::Client]>,
    next_client: usize,
    conn: Conn,
    watching_key: String,
    work_channel: String,
    work: Arc<watch::Sender<()>>,
    commands: mpsc::UnboundedReceiver<Command>,
    watchers: Watchers,
}

/// Why a connection's message loop ended.
enum End {
    /// Every handle is gone: stop.
    Closed,
    /// The connection failed: reconnect.
    Lost,
}

impl HubTask {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await;
            match connected {
                Ok(Ok((sink, stream))) => {
                    let since = tokio::time::Instant::now();
                    if !self.watchers.is_empty() {
                        if let Err(err) = self.mark_watching().await {
                            tracing::warn!(error = %err, "longtask-redis: marking task events as watched failed");
                        }
                    }
                    // Anything published while we were not subscribed is lost: wake workers
                    // and let watchers re-read their task.
                    self.work.send_replace(());
                    for senders in self.watchers.values() {
                        for sender in senders.values() {
                            let _ = sender.send(Delivery::Resync);
                        }
                    }
                    if let End::Closed = self.serve(sink, stream).await {
                        return;
                    }
                    tracing::warn!("longtask-redis: pub/sub connection lost; reconnecting");
                    // A connection that keeps dropping at once is retried with growing pauses.
                    if since.elapsed() > MAX_BACKOFF {
                        backoff = MIN_BACKOFF;
                    }
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "longtask-redis: pub/sub connection failed; retrying in {backoff:?}");
                }
                Err(_) => {
                    tracing::warn!(
                        "longtask-redis: pub/sub connection timed out; retrying in {backoff:?}"
                    );
                }
            }
            if !self.pause(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Waits `backoff` while refusing watch requests (the server is away); returns `false` when
    /// every handle is gone.
    async fn pause(&mut self, backoff: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(command) => self.refuse(command),
                },
            }
        }
    }

    /// Tells the scripts (for [`WATCHING_TTL`]) that task events have listeners.
    async fn mark_watching(&mut self) -> redis::RedisResult<()> {
        let ttl = u64::try_from(WATCHING_TTL.as_millis()).unwrap_or(u64::MAX);
        redis::cmd("SET")
            .arg(&self.watching_key)
            .arg("1")
            .arg("PX")
            .arg(ttl)
            .query_async::<()>(&mut self.conn)
            .await
    }

    async fn connect(&mut self) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
        // Each attempt uses the next server: a failed node does not stop wake-ups in a cluster.
        let client = &self.clients[self.next_client % self.clients.len()];
        self.next_client = self.next_client.wrapping_add(1);
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        sink.subscribe(&self.work_channel).await?;
        let channels: Vec<&String> = self.watchers.keys().collect();
        if !channels.is_empty() {
            sink.subscribe(channels).await?;
        }
        Ok((sink, stream))
    }

    /// Answers a command while disconnected.
    fn refuse(&mut self, command: Command) {
        match command {
            Command::Watch { subscribed, .. } => {
                let _ = subscribed.send(Err(Error::backend(
                    "subscribing to task events",
                    "the pub/sub connection to Redis is down; retry shortly",
                )));
            }
            Command::Unwatch { channel, watcher } => {
                self.remove(&channel, watcher);
            }
        }
    }

    /// Drops a watcher; returns whether its channel has no watchers left.
    fn remove(&mut self, channel: &str, watcher: u64) -> bool {
        let Some(senders) = self.watchers.get_mut(channel) else {
            return false;
        };
        senders.remove(&watcher);
        if senders.is_empty() {
            self.watchers.remove(channel);
            return true;
        }
        false
    }

    async fn serve(&mut self, mut sink: PubSubSink, mut stream: PubSubStream) -> End {
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.reset();
        let mut refresh = tokio::time::interval(WATCHING_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.reset();
        loop {
            tokio::select! {
                _ = refresh.tick(), if !self.watchers.is_empty() => {
                    if let Err(err) = self.mark_watching().await {
                        tracing::warn!(error = %err, "longtask-redis: refreshing the watching marker failed");
                    }
                }
                _ = keepalive.tick() => {
                    let ping = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(ping, Ok(Ok(_))) {
                        return End::Lost;
                    }
                }
                command = self.commands.recv() => match command {
                    None => return End::Closed,
                    Some(Command::Watch { channel, watcher, sender, subscribed }) => {
                        // Mark first, subscribe second, and only then does the watcher read
                        // the status: a change made before the mark shows in that read.
                        if let Err(err) = self.mark_watching().await {
                            let _ = subscribed.send(Err(Error::backend("subscribing to task events", err)));
                            continue;
                        }
                        let fresh = !self.watchers.contains_key(&channel);
                        self.watchers.entry(channel.clone()).or_default().insert(watcher, sender);
                        let result = if fresh { sink.subscribe(&channel).await } else { Ok(()) };
                        let failed = result.is_err();
                        let _ = subscribed.send(
                            result.map_err(|e| Error::backend("subscribing to task events", e)),
                        );
                        if failed {
                            self.remove(&channel, watcher);
                            return End::Lost;
                        }
                    }
                    Some(Command::Unwatch { channel, watcher }) => {
                        if self.remove(&channel, watcher) && sink.unsubscribe(&channel).await.is_err() {
                            return End::Lost;
                        }
                    }
                },
                message = stream.next() => match message {
                    None => return End::Lost,
                    Some(message) => self.dispatch(&message),
                },
            }
        }
    }

    fn dispatch(&mut self, message: &redis::Msg) {
        let channel = message.get_channel_name();
        if channel == self.work_channel {
            self.work.send_replace(());
            return;
        }
        if let Some(senders) = self.watchers.get_mut(channel) {
            let payload = message.get_payload_bytes();
            senders.retain(|_, sender| sender.send(Delivery::Message(payload.to_vec())).is_ok());
        }
    }
}

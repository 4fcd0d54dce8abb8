//! `LISTEN`/`NOTIFY`: the background listener that wakes idle workers and feeds watch streams.
//!
//! Every backend instance (shared by its clones) listens on one channel per schema,
//! `longtask_<schema>`, on one connection of its pool, from a background task started the first
//! time a worker asks for [`work_signal`](longtask_core::Queue::work_signal) or someone watches a
//! task. Statements send at most one work notification (`w`) per batch, in the same statement as
//! the change, so a notification sent inside a transaction arrives only if it commits. Status
//! changes and progress of *watched* tasks (those with a row in `watches`) go out as small JSON
//! payloads: `{"t":id,"s":"running"}`, `{"t":id,"p":progress}`, or `{"t":id,"r":1}` when the
//! progress is too large for a payload and must be read back.
//!
//! Notifications can be missed (a lost connection, a watch that starts while its task
//! changes), so a second task re-reads the status of watched tasks twice a second and fills the
//! gaps; and after a reconnect, workers are woken once.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::{channel::mpsc, Stream, StreamExt};
use longtask_core::{Progress, TaskEvent, TaskId, TaskStatus, WorkSignal};
use serde::Deserialize;
use sqlx::{postgres::PgListener, PgPool};
use tokio::{sync::watch, task::AbortHandle};
use uuid::Uuid;

use super::{
    row::{decode_progress, parse_status},
    sql::Queries,
};

/// How often the statuses of tasks whose watch started lately are re-read (a change that
/// committed while the watch was starting may have found no watcher to notify).
const RESYNC_EVERY: Duration = Duration::from_millis(500);
/// How long after its last stream started a task counts as lately watched.
const RESYNC_NEW_FOR: Duration = Duration::from_secs(2);
/// How often every watched task's status is re-read anyway (a safety net: status changes are
/// notified, and a lost LISTEN connection triggers a full re-read at once).
const RESYNC_ALL_EVERY: Duration = Duration::from_secs(30);

/// How long `watch` waits for the listener to be subscribed before it reads the task.
const READY_WAIT: Duration = Duration::from_secs(5);

/// The listener of one backend instance; stops its background tasks when the last clone of the
/// backend is dropped.
pub(crate) struct Notifier {
    hub: Arc<Hub>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// What the background tasks share with the backend.
struct Hub {
    pool: PgPool,
    sql: Arc<Queries>,
    channel: String,
    /// This backend instance, as a watcher in `watches`.
    watcher: Uuid,
    work: watch::Sender<()>,
    /// Whether the listener is subscribed.
    ready: watch::Sender<bool>,
    watched: Mutex<HashMap<TaskId, Watched>>,
    next_key: AtomicU64,
    /// Signalled when notifications may have been lost (the LISTEN connection was re-made).
    lost: tokio::sync::Notify,
}

/// The local watch streams of one task.
struct Watched {
    /// The last status sent (or read when the first stream started).
    last: Option<TaskStatus>,
    /// Bumped on every status change applied, so that a re-read that raced with a
    /// notification is not applied over it.
    seq: u64,
    /// When the task's latest stream started.
    started: tokio::time::Instant,
    senders: Vec<(u64, mpsc::UnboundedSender<TaskEvent>)>,
}

/// A notification payload about one task.
#[derive(Deserialize)]
struct Event {
    t: Uuid,
    #[serde(default)]
    s: Option<TaskStatus>,
    #[serde(default)]
    p: Option<Progress>,
    #[serde(default)]
    r: Option<u8>,
}

impl Notifier {
    pub(crate) fn new(pool: PgPool, schema: &str, sql: Arc<Queries>) -> Self {
        Self {
            hub: Arc::new(Hub {
                pool,
                sql,
                channel: format!("longtask_{schema}"),
                watcher: Uuid::now_v7(),
                work: watch::Sender::new(()),
                ready: watch::Sender::new(false),
                watched: Mutex::new(HashMap::new()),
                next_key: AtomicU64::new(0),
                lost: tokio::sync::Notify::new(),
            }),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The NOTIFY channel.
    pub(crate) fn channel(&self) -> &str {
        &self.hub.channel
    }

    /// This instance's id in `watches`.
    pub(crate) fn watcher(&self) -> Uuid {
        self.hub.watcher
    }

    /// Starts the listener and the re-reader, once, if a tokio runtime is available (without
    /// one, workers fall back to their poll interval).
    pub(crate) fn start(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if !tasks.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("no tokio runtime: the Postgres listener is not started");
            return;
        };
        tasks.push(runtime.spawn(listen(self.hub.clone())).abort_handle());
        tasks.push(runtime.spawn(resync(self.hub.clone())).abort_handle());
    }

    /// Waits (a few seconds at most) until the listener is subscribed.
    pub(crate) async fn ready(&self) {
        let mut ready = self.hub.ready.subscribe();
        let _ = tokio::time::timeout(READY_WAIT, ready.wait_for(|r| *r)).await;
    }

    /// A signal that changes when work may have become available.
    pub(crate) fn work_signal(&self) -> WorkSignal {
        WorkSignal::new(self.hub.work.subscribe())
    }

    /// Wakes this process's workers at once.
    pub(crate) fn wake_local(&self) {
        self.hub.work.send_replace(());
    }

    /// A new local watch stream of task `id`: it receives the task's events until its final
    /// status.
    pub(crate) fn subscribe(&self, id: TaskId) -> WatchStream {
        let key = self.hub.next_key.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded();
        let now = tokio::time::Instant::now();
        let mut watched = self.hub.lock();
        let entry = watched.entry(id).or_insert_with(|| Watched {
            last: None,
            seq: 0,
            started: now,
            senders: Vec::new(),
        });
        entry.started = now;
        entry.senders.push((key, tx));
        drop(watched);
        WatchStream {
            rx,
            guard: WatchGuard {
                hub: self.hub.clone(),
                id,
                key,
            },
        }
    }

    /// Records the status read when a watch started, unless a change has been seen since.
    pub(crate) fn baseline(&self, id: TaskId, status: TaskStatus) {
        if let Some(watched) = self.hub.lock().get_mut(&id) {
            if watched.last.is_none() {
                watched.last = Some(status);
            }
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, Watched>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles one notification.
    async fn dispatch(&self, payload: &str) {
        if payload == "w" {
            self.work.send_replace(());
            return;
        }
        let event: Event = match serde_json::from_str(payload) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(%err, payload, "ignoring an unknown longtask notification");
                return;
            }
        };
        let id = TaskId::from_uuid(event.t);
        if let Some(progress) = event.p {
            self.progress(id, &progress);
        }
        if event.r.is_some() && self.lock().contains_key(&id) {
            // Too large for a payload: read it back.
            match self.latest(id).await {
                Ok(Some(progress)) => self.progress(id, &progress),
                Ok(None) => {}
                Err(err) => tracing::warn!(%err, %id, "reading progress for watchers failed"),
            }
        }
        if let Some(status) = event.s {
            self.status(id, status, None);
        }
    }

    async fn latest(&self, id: TaskId) -> longtask_core::Result<Option<Progress>> {
        let json: Option<Option<String>> = sqlx::query_scalar(&self.sql.latest)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| longtask_core::Error::backend("reading progress", e))?;
        json.flatten().as_deref().map(decode_progress).transpose()
    }

    /// Sends progress to the task's local watchers.
    fn progress(&self, id: TaskId, progress: &Progress) {
        if let Some(watched) = self.lock().get_mut(&id) {
            watched.senders.retain(|(_, tx)| {
                tx.unbounded_send(TaskEvent::Progress(progress.clone()))
                    .is_ok()
            });
        }
    }

    /// Sends a status change to the task's local watchers (once per change); after a final
    /// status, ends their streams. With `seq`, applies only if nothing changed since `seq` was
    /// read.
    fn status(&self, id: TaskId, status: TaskStatus, seq: Option<u64>) {
        let mut watched = self.lock();
        let Some(entry) = watched.get_mut(&id) else {
            return;
        };
        if seq.is_some_and(|seq| seq != entry.seq) || entry.last == Some(status) {
            return;
        }
        entry.last = Some(status);
        entry.seq += 1;
        let event = TaskEvent::Status { status };
        entry
            .senders
            .retain(|(_, tx)| tx.unbounded_send(event.clone()).is_ok());
        if status.is_final() {
            watched.remove(&id);
            drop(watched);
            self.forget(id);
        }
    }

    /// Removes this instance's `watches` row of task `id`, in the background.
    fn forget(&self, id: TaskId) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.pool.clone();
        let sql = self.sql.clone();
        let watcher = self.watcher;
        runtime.spawn(async move {
            let removed = sqlx::query(&sql.watch_remove)
                .bind(id.as_uuid())
                .bind(watcher)
                .execute(&pool)
                .await;
            if let Err(err) = removed {
                tracing::debug!(%err, %id, "removing a watch failed (it is removed with the task)");
            }
        });
    }

    /// A local stream ended.
    fn unsubscribe(&self, id: TaskId, key: u64) {
        let mut watched = self.lock();
        let Some(entry) = watched.get_mut(&id) else {
            return;
        };
        entry.senders.retain(|(k, _)| *k != key);
        if entry.senders.is_empty() {
            watched.remove(&id);
            drop(watched);
            self.forget(id);
        }
    }

    /// Re-reads the statuses of watched tasks (all of them, or only those whose latest stream
    /// started less than [`RESYNC_NEW_FOR`] ago) and applies what notifications missed.
    async fn resync_once(&self, all: bool) -> Result<(), sqlx::Error> {
        let lately = tokio::time::Instant::now().checked_sub(RESYNC_NEW_FOR);
        // Streams still starting (no status read yet) are left to their own first read.
        let seqs: HashMap<TaskId, u64> = self
            .lock()
            .iter()
            .filter(|(_, w)| w.last.is_some())
            .filter(|(_, w)| all || lately.is_none_or(|since| w.started >= since))
            .map(|(id, w)| (*id, w.seq))
            .collect();
        if seqs.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = seqs.keys().map(|id| id.as_uuid()).collect();
        let rows: Vec<(Uuid, String)> = sqlx::query_as(&self.sql.statuses)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
        let mut found = std::collections::HashSet::with_capacity(rows.len());
        for (id, status) in rows {
            let id = TaskId::from_uuid(id);
            found.insert(id);
            if let (Ok(status), Some(seq)) = (parse_status(&status), seqs.get(&id)) {
                self.status(id, status, Some(*seq));
            }
        }
        // Purged tasks: their streams end, as the task is gone.
        let mut watched = self.lock();
        for (id, seq) in &seqs {
            if !found.contains(id) && watched.get(id).is_some_and(|w| w.seq == *seq) {
                watched.remove(id);
            }
        }
        Ok(())
    }
}

/// The listener task: forwards notifications, reconnecting with backoff when the connection
/// fails.
async fn listen(hub: Arc<Hub>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let mut listener = PgListener::connect_with(&hub.pool).await?;
            listener.listen(&hub.channel).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match subscribed {
            Ok(listener) => listener,
            Err(sqlx::Error::PoolClosed) => return,
            Err(err) => {
                tracing::warn!(%err, channel = %hub.channel, "LISTEN failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        hub.ready.send_replace(true);
        // Changes made while nobody listened were not heard: re-read every watched task.
        hub.lost.notify_one();
        // Work may have been submitted while nobody listened.
        hub.work.send_replace(());
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => hub.dispatch(notification.payload()).await,
                // The connection was lost and re-established: notifications may be lost.
                Ok(None) => {
                    hub.work.send_replace(());
                    hub.lost.notify_one();
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(err) => {
                    tracing::warn!(%err, channel = %hub.channel, "the LISTEN connection failed; reconnecting");
                    break;
                }
            }
        }
        hub.ready.send_replace(false);
        tokio::time::sleep(backoff).await;
    }
}

/// The re-reader task: every [`RESYNC_EVERY`], the tasks whose watch started lately; at once
/// when notifications may have been lost, and every [`RESYNC_ALL_EVERY`] anyway, all of them.
/// Otherwise watching costs the database nothing but the notifications of changed tasks.
async fn resync(hub: Arc<Hub>) {
    let mut every = tokio::time::interval(RESYNC_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full = tokio::time::Instant::now();
    loop {
        let lost = tokio::select! {
            _ = every.tick() => false,
            () = hub.lost.notified() => true,
        };
        let all = lost || last_full.elapsed() >= RESYNC_ALL_EVERY;
        if all {
            last_full = tokio::time::Instant::now();
        }
        if let Err(err) = hub.resync_once(all).await {
            if matches!(err, sqlx::Error::PoolClosed) {
                return;
            }
            tracing::debug!(%err, "re-reading watched tasks failed");
        }
    }
}

/// A live stream of one task's events (see [`ProgressSink::watch`](longtask_core::ProgressSink::watch)).
pub(crate) struct WatchStream {
    rx: mpsc::UnboundedReceiver<TaskEvent>,
    guard: WatchGuard,
}

impl WatchStream {
    /// The task watched.
    pub(crate) fn id(&self) -> TaskId {
        self.guard.id
    }
}

impl Stream for WatchStream {
    type Item = TaskEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TaskEvent>> {
        self.rx.poll_next_unpin(cx)
    }
}

/// Unsubscribes a stream when it is dropped.
struct WatchGuard {
    hub: Arc<Hub>,
    id: TaskId,
    key: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id, self.key);
    }
}

//! [`ProgressSink`] for [`SqliteBackend`]: progress stored in each task's row, and watch streams.
//!
//! A watch stream receives the changes committed through this backend (and its clones) at once,
//! over an in-process channel. Changes made by other processes sharing the database are found by
//! one poller per backend: every [watch interval](SqliteBackend::with_watch_interval) it asks
//! whether another connection has committed (`PRAGMA data_version` on the writer connection,
//! which changes only when a connection other than itself commits), and only then reads the
//! watched tasks that changed, in one statement. Each row carries a change counter (`version`),
//! and every event carries the counter of the commit that made it, so a stream drops what it has
//! already seen: events arrive in order, once, and the stream ends after the final status.
//!
use std::{
    collections::{HashMap, VecDeque},
    sync::{atomic::Ordering, Arc, PoisonError, Weak},
    time::Duration,
};

use futures::{stream::BoxStream, StreamExt};
use longtask_core::{Error, Lease, Progress, Result, TaskEvent, TaskId, TaskStatus};
use serde::Serialize;
use sqlx::SqlitePool;
use tokio::sync::mpsc;

use super::{
    db,
    row::{self, hex, progress_json},
    Batch, Shared, SqliteBackend,
};

const REPORT: &str = include_str!("sql/report.sql");
const LATEST: &str = include_str!("sql/latest.sql");
const STATUS: &str = include_str!("sql/status.sql");
const WATCH_POLL: &str = include_str!("sql/watch_poll.sql");

/// One progress update, as `report.sql` reads it.
#[derive(Serialize)]
struct ReportRow {
    id: String,
    token: u64,
    progress: String,
}

impl SqliteBackend {
    pub(super) async fn direct_report(&self, updates: &[(Lease, Progress)]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        // The last update of each task wins.
        let mut latest: HashMap<TaskId, (u64, &Progress)> = HashMap::with_capacity(updates.len());
        for (lease, progress) in updates {
            latest.insert(lease.task, (lease.token, progress));
        }
        let rows = latest
            .iter()
            .map(|(id, (token, progress))| {
                Ok(ReportRow {
                    id: hex(*id),
                    token: *token,
                    progress: progress_json(progress)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = serde_json::to_string(&rows)
            .map_err(|err| Error::backend("encoding progress reports", err))?;
        let mut tx = self.begin("starting to store progress").await?;
        let stored: Vec<(Vec<u8>, i64)> = sqlx::query_as(REPORT)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("storing progress"))?;
        tx.commit().await.map_err(db("committing progress"))?;
        if self.watched() {
            let mut events = Vec::with_capacity(stored.len());
            for (id, version) in stored {
                let id = row::task_id(&id)?;
                if let Some((_, progress)) = latest.get(&id) {
                    events.push((id, version, vec![TaskEvent::Progress((*progress).clone())]));
                }
            }
            self.emit(events);
        }
        Ok(())
    }

    pub(super) async fn direct_latest(&self, id: TaskId) -> Result<Option<Progress>> {
        let stored: Option<Option<String>> = sqlx::query_scalar(LATEST)
            .bind(id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(db("reading progress"))?;
        row::progress(stored.flatten().as_deref())
    }

    pub(super) async fn direct_watch(&self, id: TaskId) -> Result<BoxStream<'static, TaskEvent>> {
        // Subscribe before reading, so that no commit falls between the read and the channel.
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers().entry(id).or_default().senders.push(tx);
        let subscription = Subscription {
            rx,
            _guard: Unwatch {
                shared: Arc::clone(&self.shared),
                id,
            },
        };
        self.start_poller();
        let Some(seen) = self.read_state(id).await? else {
            return Err(Error::NotFound(id));
        };
        if seen.status.is_final() {
            return Ok(futures::stream::iter([TaskEvent::Status {
                status: seen.status,
            }])
            .boxed());
        }
        if let Some(watched) = self.watchers().get_mut(&id) {
            if watched
                .seen
                .as_ref()
                .is_none_or(|s| s.version < seen.version)
            {
                watched.seen = Some(seen.clone());
            }
        }
        // The next poll reads this task even if no other process commits before it: a commit
        // made between the read above and the poller's last look would go unseen otherwise.
        self.shared.watch_started.store(true, Ordering::SeqCst);
        let watch = Watch {
            subscription,
            version: seen.version,
            pending: VecDeque::new(),
            done: false,
        };
        Ok(futures::stream::unfold(watch, |mut watch| async move {
            watch.next().await.map(|event| (event, watch))
        })
        .boxed())
    }

    /// Starts this backend's poller, once.
    fn start_poller(&self) {
        let mut poller = self
            .shared
            .poller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if poller.is_none() {
            let task = tokio::spawn(poll_changes(
                Arc::downgrade(&self.shared),
                self.writer.clone(),
                self.reader.clone(),
                self.watch_interval,
            ));
            *poller = Some(task.abort_handle());
        }
    }
}

/// What the backend has seen of a watched task.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) status: TaskStatus,
    pub(crate) progress: Option<Progress>,
    pub(crate) version: i64,
}

impl SqliteBackend {
    /// The task's status, progress and change counter, or `None` if it does not exist.
    async fn read_state(&self, id: TaskId) -> Result<Option<Seen>> {
        self.count_watch_read();
        let stored: Option<super::store::StatusRow> = sqlx::query_as(STATUS)
            .bind(id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(db("reading a watched task"))?;
        stored
            .map(|(status, progress, version, _, _)| {
                Ok(Seen {
                    status: row::status(&status)?,
                    progress: row::progress(progress.as_deref())?,
                    version,
                })
            })
            .transpose()
    }
}

/// The receiving end of a watch; the channel closes before the guard runs (fields drop in
/// order), so the guard can drop the closed sender.
struct Subscription {
    rx: mpsc::UnboundedReceiver<Batch>,
    _guard: Unwatch,
}

/// Removes a dropped watch's closed senders.
struct Unwatch {
    shared: Arc<Shared>,
    id: TaskId,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
        let mut watchers = self
            .shared
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(watched) = watchers.get_mut(&self.id) {
            watched.senders.retain(|tx| !tx.is_closed());
            if watched.senders.is_empty() {
                watchers.remove(&self.id);
            }
        }
    }
}

/// A live watch stream's state.
struct Watch {
    subscription: Subscription,
    /// The change counter of the latest commit seen.
    version: i64,
    pending: VecDeque<TaskEvent>,
    /// A final status was queued, or the task is gone: the stream ends once `pending` is drained.
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<TaskEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            match self.subscription.rx.recv().await {
                Some((version, events)) => self.apply(version, events),
                // The task was purged (or the backend dropped): nothing more will come.
                None => self.done = true,
            }
        }
    }

    /// Queues a commit's events, unless the stream has already seen that commit.
    fn apply(&mut self, version: i64, events: Vec<TaskEvent>) {
        if version <= self.version {
            return;
        }
        self.version = version;
        for event in events {
            let last = matches!(&event, TaskEvent::Status { status } if status.is_final());
            self.pending.push_back(event);
            if last {
                self.done = true;
                break;
            }
        }
    }
}

/// One watched task as `watch_poll.sql` takes it: its id (hex) and the change counter seen.
#[derive(Serialize)]
struct Known(String, i64);

/// The poller: every `interval`, while anyone watches, looks for commits by other connections
/// and sends what they changed to the watchers. Ends when the backend is dropped.
async fn poll_changes(
    shared: Weak<Shared>,
    writer: SqlitePool,
    reader: SqlitePool,
    interval: Duration,
) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_version: Option<i64> = None;
    let mut ticks: u32 = 0;
    loop {
        every.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if lock(&shared).is_empty() {
            continue;
        }
        ticks = ticks.wrapping_add(1);
        let started = shared.watch_started.swap(false, Ordering::SeqCst);
        shared.watch_reads.fetch_add(1, Ordering::Relaxed);
        // Stepped to its end (`fetch_all`), so that the statement does not keep a read
        // transaction open on the writer connection.
        let version: Vec<i64> = match sqlx::query_scalar("PRAGMA data_version")
            .fetch_all(&writer)
            .await
        {
            Ok(version) => version,
            Err(err) => {
                tracing::warn!(error = %err, "checking for other processes' commits failed");
                shared.watch_started.fetch_or(started, Ordering::SeqCst);
                continue;
            }
        };
        let version = version.first().copied();
        // Also read now and then whatever the check says: the writer's connection may have
        // been replaced by the pool, and a new connection's counter means nothing to the old.
        let changed = version.is_none() || last_version != version;
        last_version = version;
        if !(changed || started || ticks % FULL_POLL_EVERY == 0) {
            continue;
        }
        if let Err(err) = poll_once(&shared, &reader).await {
            tracing::warn!(error = %err, "reading watched tasks failed; retrying at the next interval");
            // Try again at the next tick whatever the check says.
            last_version = None;
        }
    }
}

/// Polls read every watched task at least this often (in intervals), whatever the check says.
const FULL_POLL_EVERY: u32 = 60;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, super::Watchers> {
    shared
        .watchers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A row of `watch_poll.sql`: id, and status, progress and change counter (`NULL` when purged).
type ChangedRow = (Vec<u8>, Option<String>, Option<String>, Option<i64>);

/// Reads the watched tasks that changed since their last change seen, and sends the changes.
async fn poll_once(shared: &Shared, reader: &SqlitePool) -> Result<()> {
    let known: Vec<Known> = lock(shared)
        .iter()
        .filter_map(|(id, watched)| Some(Known(hex(*id), watched.seen.as_ref()?.version)))
        .collect();
    if known.is_empty() {
        return Ok(());
    }
    let known = serde_json::to_string(&known)
        .map_err(|err| Error::backend("encoding watched tasks", err))?;
    shared.watch_reads.fetch_add(1, Ordering::Relaxed);
    let rows: Vec<ChangedRow> = sqlx::query_as(WATCH_POLL)
        .bind(known)
        .fetch_all(reader)
        .await
        .map_err(db("reading watched tasks"))?;
    let mut watchers = lock(shared);
    for (id, status, progress, version) in rows {
        let id = row::task_id(&id)?;
        let (Some(status), Some(version)) = (status, version) else {
            // Purged: its streams end.
            watchers.remove(&id);
            continue;
        };
        let Some(watched) = watchers.get_mut(&id) else {
            continue;
        };
        let Some(seen) = watched.seen.as_ref() else {
            continue;
        };
        if version <= seen.version {
            continue;
        }
        let status = row::status(&status)?;
        let progress = row::progress(progress.as_deref())?;
        let mut events = Vec::with_capacity(2);
        if let Some(progress) = progress.filter(|p| seen.progress.as_ref() != Some(p)) {
            events.push(TaskEvent::Progress(progress));
        }
        if status != seen.status {
            events.push(TaskEvent::Status { status });
        }
        if watched.send(version, &events) {
            watchers.remove(&id);
        }
    }
    Ok(())
}

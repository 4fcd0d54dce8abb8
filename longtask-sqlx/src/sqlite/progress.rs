//! [`ProgressSink`] for [`SqliteBackend`]: progress stored in each task's row, and watch streams.
//!
//! A watch stream receives the changes committed through this backend (and its clones) at once,
//! over an in-process channel. To see changes made by other processes sharing the database, it
//! also reads the task's row every [watch interval](SqliteBackend::with_watch_interval). Each row
//! carries a change counter (`version`), and every event carries the counter of the commit that
//! made it, so the stream drops what it has already seen: events arrive in order, once, and the
//! stream ends after the final status.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use futures::{stream::BoxStream, StreamExt};
use longtask_core::{Error, Lease, Progress, Result, TaskEvent, TaskId, TaskStatus};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{
    db,
    row::{self, hex, progress_json},
    Batch, Shared, SqliteBackend,
};

const REPORT: &str = include_str!("sql/report.sql");
const LATEST: &str = include_str!("sql/latest.sql");
const STATUS: &str = include_str!("sql/status.sql");

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
        self.watchers().entry(id).or_default().push(tx);
        let subscription = Subscription {
            rx,
            _guard: Unwatch {
                shared: Arc::clone(&self.shared),
                id,
            },
        };
        let Some(seen) = self.read_state(id).await? else {
            return Err(Error::NotFound(id));
        };
        if seen.status.is_final() {
            return Ok(futures::stream::iter([TaskEvent::Status {
                status: seen.status,
            }])
            .boxed());
        }
        let watch = Watch {
            subscription,
            backend: self.clone(),
            id,
            seen,
            pending: VecDeque::new(),
            closed: false,
            done: false,
        };
        Ok(futures::stream::unfold(watch, |mut watch| async move {
            watch.next().await.map(|event| (event, watch))
        })
        .boxed())
    }
}

/// What a watch stream has seen of its task.
#[derive(Debug)]
struct Seen {
    status: TaskStatus,
    progress: Option<Progress>,
    version: i64,
}

impl SqliteBackend {
    /// The task's status, progress and change counter, or `None` if it does not exist.
    async fn read_state(&self, id: TaskId) -> Result<Option<Seen>> {
        let stored: Option<(String, Option<String>, i64, i64)> = sqlx::query_as(STATUS)
            .bind(id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(db("reading a watched task"))?;
        stored
            .map(|(status, progress, version, _)| {
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
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(senders) = watchers.get_mut(&self.id) {
            senders.retain(|tx| !tx.is_closed());
            if senders.is_empty() {
                watchers.remove(&self.id);
            }
        }
    }
}

/// A live watch stream's state.
struct Watch {
    subscription: Subscription,
    backend: SqliteBackend,
    id: TaskId,
    seen: Seen,
    pending: VecDeque<TaskEvent>,
    /// The channel closed: only polls remain.
    closed: bool,
    /// A final status was queued: the stream ends once `pending` is drained.
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
            let interval = self.backend.watch_interval;
            tokio::select! {
                batch = self.subscription.rx.recv(), if !self.closed => match batch {
                    Some((version, events)) => self.apply(version, events),
                    None => self.closed = true,
                },
                () = tokio::time::sleep(interval) => self.poll().await,
            }
        }
    }

    /// Queues a commit's events, unless the stream has already seen that commit.
    fn apply(&mut self, version: i64, events: Vec<TaskEvent>) {
        if version <= self.seen.version {
            return;
        }
        self.seen.version = version;
        for event in events {
            match &event {
                TaskEvent::Status { status } => {
                    self.seen.status = *status;
                    self.done = status.is_final();
                }
                TaskEvent::Progress(progress) => self.seen.progress = Some(progress.clone()),
            }
            self.pending.push_back(event);
            if self.done {
                break;
            }
        }
    }

    /// Reads the row and queues what changed since the last commit seen (changes made by other
    /// processes). A read error is retried at the next interval; a purged task ends the stream.
    async fn poll(&mut self) {
        let state = match self.backend.read_state(self.id).await {
            Ok(Some(state)) => state,
            Ok(None) => {
                self.done = true;
                return;
            }
            Err(err) => {
                tracing::warn!(task_id = %self.id, error = %err, "reading a watched task failed");
                return;
            }
        };
        if state.version <= self.seen.version {
            return;
        }
        let mut events = Vec::with_capacity(2);
        if state.progress.is_some() && state.progress != self.seen.progress {
            if let Some(progress) = state.progress.clone() {
                events.push(TaskEvent::Progress(progress));
            }
        }
        if state.status != self.seen.status {
            events.push(TaskEvent::Status {
                status: state.status,
            });
        }
        self.seen.progress = state.progress;
        self.apply(state.version, events);
    }
}

//! Shared watches: every [`Client::watch`](crate::Client::watch) stream of one task follows a
//! single subscription to the backend.
//!
//! A page left open on a running task is an open stream; a busy site has thousands. Following
//! each of them separately would cost the backend a subscription and a record read per stream
//! per change. Instead each [`Client`](crate::Client) (and its clones) keeps one *follower* per
//! watched task: it subscribes to the task's [`ProgressSink::watch`](crate::ProgressSink::watch)
//! stream, reads the record once at the start and once per status change (progress is applied to
//! the record it holds), and hands each new record to every stream of the task. The cost to the
//! backend grows with the tasks that change, not with the streams that are open.
//!
//! The streams are fed through a small bounded buffer: a stream whose reader is slow skips the
//! records it fell behind on and goes straight to the latest, so it can never hold up the others
//! or grow without bound, and the final record, the last one sent, always reaches it. A follower
//! stops when its task has finished or its last stream is dropped.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use futures::StreamExt;
//! use longtask_core::{Client, MemoryBackend, NewTask, TaskStatus};
//!
//! let client = Client::new(MemoryBackend::new());
//! let id = client.submit_raw(vec![NewTask::new("report", "{}")]).await?[0].id;
//! // Two pages on the same task share one follower.
//! let mut first = client.watch(id).await?;
//! let mut second = client.watch(id).await?;
//! client.cancel(id).await?;
//! assert_eq!(first.next().await.unwrap()?.status, TaskStatus::Queued);
//! assert_eq!(second.next().await.unwrap()?.status, TaskStatus::Queued);
//! assert_eq!(second.next().await.unwrap()?.status, TaskStatus::Cancelled);
//! assert!(second.next().await.is_none());
//! # Ok(()) }
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use futures::{stream::BoxStream, FutureExt, StreamExt};
use tokio::{sync::broadcast, task::AbortHandle};

use crate::{
    backend::Backend,
    error::{Error, Result},
    progress::TaskEvent,
    task::{TaskId, TaskRecord},
};

/// Records buffered per task for streams that are behind; one that falls further behind skips
/// to the latest record.
const BUFFER: usize = 16;
/// How often a follower reads the record when the progress sink cannot report status changes
/// (it is not the task store), or has stopped reporting before the task finished.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Reads of a changed record that fail are retried this many times (with a growing pause)
/// before the task's streams end with the error.
const READ_ATTEMPTS: u32 = 6;

/// What a follower hands to its streams.
#[derive(Clone)]
enum Update {
    Record(Arc<TaskRecord>),
    Failed(Arc<Error>),
}

impl Update {
    fn is_last(&self) -> bool {
        match self {
            Self::Record(record) => record.status.is_final(),
            Self::Failed(_) => true,
        }
    }

    fn into_item(self) -> Result<TaskRecord> {
        match self {
            Self::Record(record) => Ok(Arc::unwrap_or_clone(record)),
            Self::Failed(err) => Err(shared_error(err)),
        }
    }
}

/// The error a follower ended with, for one of its streams.
fn shared_error(err: Arc<Error>) -> Error {
    match &*err {
        Error::NotFound(id) => Error::NotFound(*id),
        _ => Error::backend("following a task", SharedError(err)),
    }
}

/// An error shared by every stream of a task.
#[derive(Debug)]
struct SharedError(Arc<Error>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The followers of one client and its clones.
#[derive(Default)]
pub(crate) struct WatchHub {
    tasks: Mutex<HashMap<TaskId, Arc<Followed>>>,
}

/// One followed task.
struct Followed {
    state: Mutex<FollowState>,
}

struct FollowState {
    /// The latest update, once the follower has read the record.
    latest: Option<Update>,
    sender: broadcast::Sender<Update>,
    /// Streams open on this task.
    streams: usize,
    follower: Option<AbortHandle>,
}

impl Followed {
    fn lock(&self) -> MutexGuard<'_, FollowState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `update` to every stream, as the latest.
    fn publish(&self, update: Update) {
        let mut state = self.lock();
        state.latest = Some(update.clone());
        let _ = state.sender.send(update);
    }
}

impl WatchHub {
    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, Arc<Followed>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stream of task `id`'s records: the current one first, then one per change, ending
    /// after a final status.
    pub(crate) async fn watch(
        self: &Arc<Self>,
        backend: &Backend,
        id: TaskId,
    ) -> Result<BoxStream<'static, Result<TaskRecord>>> {
        let (followed, first, receiver) = {
            let mut tasks = self.lock();
            let followed = tasks
                .entry(id)
                .or_insert_with(|| {
                    let followed = Arc::new(Followed {
                        state: Mutex::new(FollowState {
                            latest: None,
                            sender: broadcast::channel(BUFFER).0,
                            streams: 0,
                            follower: None,
                        }),
                    });
                    let follower = tokio::spawn(follow(
                        backend.clone(),
                        id,
                        Arc::downgrade(self),
                        Arc::clone(&followed),
                    ));
                    followed.lock().follower = Some(follower.abort_handle());
                    followed
                })
                .clone();
            let mut state = followed.lock();
            state.streams += 1;
            let first = state.latest.clone();
            let receiver = state.sender.subscribe();
            drop(state);
            (followed, first, receiver)
        };
        let mut stream = TaskStream {
            first,
            receiver,
            done: false,
            guard: StreamGuard {
                hub: Arc::downgrade(self),
                id,
                followed,
            },
        };
        if stream.first.is_none() {
            // A new follower: wait for its first read, so that an unknown task fails here.
            stream.first = Some(stream.next_update().await.ok_or(Error::NotFound(id))?);
        }
        if let Some(Update::Failed(err)) = &stream.first {
            return Err(shared_error(Arc::clone(err)));
        }
        Ok(stream.boxed())
    }

    /// Forgets `followed` (its task finished, or failed), unless a new follower took its place.
    fn forget(&self, id: TaskId, followed: &Arc<Followed>) {
        let mut tasks = self.lock();
        if tasks.get(&id).is_some_and(|f| Arc::ptr_eq(f, followed)) {
            tasks.remove(&id);
        }
    }
}

impl fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchHub")
            .field("tasks", &self.lock().len())
            .finish()
    }
}

/// One stream of a followed task.
struct TaskStream {
    first: Option<Update>,
    receiver: broadcast::Receiver<Update>,
    done: bool,
    guard: StreamGuard,
}

impl TaskStream {
    async fn next_update(&mut self) -> Option<Update> {
        loop {
            match self.receiver.recv().await {
                Ok(update) => return Some(update),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Behind by more than the buffer: skip to the latest record.
                    let state = self.guard.followed.lock();
                    self.receiver = state.sender.subscribe();
                    if let Some(latest) = state.latest.clone() {
                        return Some(latest);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl TaskStream {
    /// The next item: the first record, then each update, ending after the last.
    async fn next_item(&mut self) -> Option<Result<TaskRecord>> {
        if self.done {
            return None;
        }
        let update = match self.first.take() {
            Some(first) => first,
            None => self.next_update().await?,
        };
        self.done = update.is_last();
        Some(update.into_item())
    }

    fn boxed(self) -> BoxStream<'static, Result<TaskRecord>> {
        futures::stream::unfold(self, |mut stream| async move {
            let item = stream.next_item().await?;
            Some((item, stream))
        })
        .boxed()
    }
}

/// Counts a stream out; the last one out stops the follower.
struct StreamGuard {
    hub: Weak<WatchHub>,
    id: TaskId,
    followed: Arc<Followed>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut tasks = hub.lock();
        let mut state = self.followed.lock();
        state.streams -= 1;
        if state.streams == 0 {
            if let Some(follower) = state.follower.take() {
                follower.abort();
            }
            drop(state);
            if tasks
                .get(&self.id)
                .is_some_and(|f| Arc::ptr_eq(f, &self.followed))
            {
                tasks.remove(&self.id);
            }
        }
    }
}

/// Follows task `id` for the streams of `followed` until it finishes (or fails, or its streams
/// are gone: then this task is aborted).
async fn follow(backend: Backend, id: TaskId, hub: Weak<WatchHub>, followed: Arc<Followed>) {
    let last = follow_until_final(&backend, id, &followed).await;
    if let Err(err) = last {
        followed.publish(Update::Failed(Arc::new(err)));
    }
    if let Some(hub) = hub.upgrade() {
        hub.forget(id, &followed);
    }
}

/// Publishes the task's records until its final one; `Err` when it cannot be followed.
async fn follow_until_final(backend: &Backend, id: TaskId, followed: &Followed) -> Result<()> {
    // Subscribe before reading, so that no change falls between the read and the events.
    let mut events = backend.progress().watch(id).await?;
    let mut record = read(backend, id).await?;
    followed.publish(Update::Record(Arc::new(record.clone())));
    if record.status.is_final() {
        return Ok(());
    }
    // A sink that is not the store sees progress only: poll the store for status changes.
    let mut polling = !same_backend(backend);
    loop {
        let next = if polling {
            tokio::time::timeout(POLL_EVERY, events.next()).await.ok()
        } else {
            Some(events.next().await)
        };
        let mut reread = false;
        let mut progress = None;
        // Whether anything came from the sink (an event, or its end), not just the interval.
        let heard = next.is_some();
        match next {
            // The poll interval passed.
            None => reread = true,
            // The sink's stream ended: the task has finished, or the sink stopped watching it.
            Some(None) => {
                events = futures::stream::pending().boxed();
                polling = true;
                reread = true;
            }
            Some(Some(event)) => {
                // Take every event already waiting, so that a burst costs one read at most.
                let mut event = Some(event);
                while let Some(current) = event {
                    match current {
                        TaskEvent::Progress(p) => progress = Some(p),
                        TaskEvent::Status { .. } => reread = true,
                    }
                    event = match events.next().now_or_never() {
                        Some(Some(next)) => Some(next),
                        Some(None) => {
                            events = futures::stream::pending().boxed();
                            polling = true;
                            reread = true;
                            None
                        }
                        None => None,
                    };
                }
            }
        }
        let changed = if reread {
            let fresh = read(backend, id).await?;
            // After an event (or the sink's end) the record is sent; after a poll, only if it
            // changed in a way a page shows.
            let changed = heard
                || fresh.status != record.status
                || fresh.cancel_requested != record.cancel_requested
                || fresh.progress != record.progress;
            record = fresh;
            changed
        } else if let Some(progress) = progress {
            record.progress = Some(progress);
            true
        } else {
            false
        };
        if changed || record.status.is_final() {
            followed.publish(Update::Record(Arc::new(record.clone())));
        }
        if record.status.is_final() {
            return Ok(());
        }
    }
}

/// Whether the backend's progress sink is its task store (and so reports status changes).
fn same_backend(backend: &Backend) -> bool {
    std::ptr::addr_eq(
        Arc::as_ptr(backend.store()),
        Arc::as_ptr(backend.progress()),
    )
}

/// The task's record, with failed reads retried; a task that is gone is [`Error::NotFound`].
async fn read(backend: &Backend, id: TaskId) -> Result<TaskRecord> {
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match backend.store().get(id).await {
            Ok(Some(record)) => return Ok(record),
            Ok(None) => return Err(Error::NotFound(id)),
            Err(err) if attempt >= READ_ATTEMPTS => return Err(err),
            Err(err) => {
                tracing::debug!(task_id = %id, error = %err, attempt, "reading a watched task failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
        }
    }
}

//! [`ProgressSink`] for [`RedisBackend`]: the latest progress per task, and live watching.
//!
//! Progress is stored in the task's hash (so it goes when the task is purged) and published on
//! the task's channel; the scripts publish status changes on the same channel, so a watcher
//! sees one ordered stream of both.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::{stream::BoxStream, StreamExt};
use longtask_core::{Error, Lease, Progress, Result, TaskEvent, TaskId, TaskStatus};

use crate::{
    backend::RedisBackend,
    hub::{Delivery, Subscription},
    record,
    scripts::SCRIPTS,
};

/// Distinguishes the watchers of one task inside the hub.
static NEXT_WATCHER: AtomicU64 = AtomicU64::new(1);

/// A message on a task's channel, as the scripts publish it.
enum Message {
    /// `p` + progress JSON.
    Progress(Progress),
    /// `s` + status.
    Status(TaskStatus),
    /// `x`: the task was purged.
    Purged,
}

fn parse(payload: &[u8]) -> Option<Message> {
    let (&kind, rest) = payload.split_first()?;
    match kind {
        b'p' => serde_json::from_slice(rest).ok().map(Message::Progress),
        b's' => std::str::from_utf8(rest)
            .ok()?
            .parse()
            .ok()
            .map(Message::Status),
        b'x' => Some(Message::Purged),
        _ => None,
    }
}

impl RedisBackend {
    async fn status_of(&self, id: TaskId) -> Result<Option<TaskStatus>> {
        let status: Option<String> = self
            .query(
                redis::cmd("HGET").arg(self.keys.task(id)).arg("status"),
                "reading a task's status",
            )
            .await?;
        status.as_deref().map(record::status).transpose()
    }
}

/// What a watch stream is doing.
struct Watching {
    backend: RedisBackend,
    id: TaskId,
    subscription: Subscription,
    last: TaskStatus,
    done: bool,
}

impl Watching {
    /// The next event, or `None` when the stream ends.
    async fn next(&mut self) -> Option<TaskEvent> {
        while !self.done {
            match self.subscription.deliveries.recv().await? {
                Delivery::Message(payload) => match parse(&payload) {
                    Some(Message::Progress(progress)) => {
                        return Some(TaskEvent::Progress(progress))
                    }
                    Some(Message::Status(status)) => return Some(self.status(status)),
                    Some(Message::Purged) => return None,
                    None => {
                        tracing::warn!(task = %self.id, "longtask-redis: ignoring a malformed task event");
                    }
                },
                Delivery::Resync => match self.backend.status_of(self.id).await {
                    Ok(Some(status)) if status != self.last => return Some(self.status(status)),
                    Ok(Some(_)) => {}
                    Ok(None) => return None,
                    Err(err) => {
                        tracing::warn!(task = %self.id, error = %err, "longtask-redis: re-reading a watched task failed");
                    }
                },
            }
        }
        None
    }

    fn status(&mut self, status: TaskStatus) -> TaskEvent {
        self.last = status;
        self.done = status.is_final();
        TaskEvent::Status { status }
    }
}

impl RedisBackend {
    pub(crate) async fn direct_report(&self, updates: &[(Lease, Progress)]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut call = self.script(&SCRIPTS.report);
        for (lease, progress) in updates {
            let json = serde_json::to_string(progress)
                .map_err(|e| Error::backend("encoding progress", e))?;
            call.arg(lease.task.to_string()).arg(lease.token).arg(json);
        }
        self.invoke::<i64>(&call, "reporting progress").await?;
        Ok(())
    }

    pub(crate) async fn direct_latest(&self, id: TaskId) -> Result<Option<Progress>> {
        let json: Option<String> = self
            .query(
                redis::cmd("HGET").arg(self.keys.task(id)).arg("progress"),
                "reading progress",
            )
            .await?;
        json.map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| Error::backend(format!("decoding the progress of task {id}"), e))
        })
        .transpose()
    }

    pub(crate) async fn direct_watch(&self, id: TaskId) -> Result<BoxStream<'static, TaskEvent>> {
        // Subscribe first, then read the status: a change in between is then seen either in
        // the status read or as a message, never lost.
        let watcher = NEXT_WATCHER.fetch_add(1, Ordering::Relaxed);
        let subscription = self
            .hub()
            .subscribe(self.keys.task_channel(id), watcher)
            .await?;
        let status = self.status_of(id).await?.ok_or(Error::NotFound(id))?;
        if status.is_final() {
            return Ok(futures::stream::iter([TaskEvent::Status { status }]).boxed());
        }
        let watching = Watching {
            backend: self.clone(),
            id,
            subscription,
            last: status,
            done: false,
        };
        Ok(
            futures::stream::unfold(watching, |mut watching| async move {
                let event = watching.next().await?;
                Some((event, watching))
            })
            .boxed(),
        )
    }
}

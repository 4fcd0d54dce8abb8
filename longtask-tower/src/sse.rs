//! Server-Sent Events: a task's changes as a `text/event-stream`.
//!
//! The stream opens with `retry:` (how long a browser waits before reconnecting) and the current
//! status, then sends one event per change: `event: progress` when only the progress moved,
//! `event: status` when the status (or a cancel request) changed. Each event's `data` is the JSON
//! status document of `GET /{id}`. A comment line keeps idle connections open through proxies.
//! The stream ends after the event carrying a final status, the only event with an `id:` (the
//! status), so a client that reconnects after it sends `Last-Event-ID`, and is then answered
//! `204 No Content`, which tells an `EventSource` to stop reconnecting.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::{stream::BoxStream, StreamExt};
use longtask_core::{Result, TaskRecord, TaskStatus};
use tokio::sync::OwnedSemaphorePermit;

use crate::status::{Links, StatusView};

const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct State {
    updates: BoxStream<'static, Result<TaskRecord>>,
    links: Links,
    last: Option<(TaskStatus, bool)>,
    started: bool,
    done: bool,
    /// The service's permit for this stream, given back when the stream is dropped.
    _permit: OwnedSemaphorePermit,
}

/// Turns a task's watch stream into SSE frames.
pub(crate) fn events(
    updates: BoxStream<'static, Result<TaskRecord>>,
    links: Links,
    permit: OwnedSemaphorePermit,
) -> BoxStream<'static, Bytes> {
    let state = State {
        updates,
        links,
        last: None,
        started: false,
        done: false,
        _permit: permit,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        if !state.started {
            state.started = true;
            return Some((Bytes::from_static(b"retry: 2000\n\n"), state));
        }
        let next = tokio::time::timeout(KEEP_ALIVE, state.updates.next()).await;
        let frame = match next {
            Err(_) => Bytes::from_static(b": keep-alive\n\n"),
            Ok(None) => return None,
            Ok(Some(Err(err))) => {
                state.done = true;
                tracing::warn!(error = %err, "watching a task failed");
                let detail =
                    serde_json::json!({ "detail": "lost track of the task; reload to try again" });
                Bytes::from(format!("event: error\ndata: {detail}\n\n"))
            }
            Ok(Some(Ok(task))) => {
                let key = (task.status, task.cancel_requested);
                let kind = if state.last == Some(key) {
                    "progress"
                } else {
                    "status"
                };
                state.last = Some(key);
                state.done = task.status.is_final();
                let json = StatusView::new(&task, &state.links, Utc::now()).to_json();
                let mut frame = Vec::with_capacity(json.len() + 48);
                if state.done {
                    frame.extend_from_slice(b"id: ");
                    frame.extend_from_slice(task.status.as_str().as_bytes());
                    frame.push(b'\n');
                }
                frame.extend_from_slice(b"event: ");
                frame.extend_from_slice(kind.as_bytes());
                frame.extend_from_slice(b"\ndata: ");
                frame.extend_from_slice(&json);
                frame.extend_from_slice(b"\n\n");
                Bytes::from(frame)
            }
        };
        Some((frame, state))
    })
    .boxed()
}

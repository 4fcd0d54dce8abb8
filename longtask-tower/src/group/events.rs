//! Server-Sent Events of a group: its status document each time it changes.
//!
//! A group changes whenever any member does, and a group may have thousands of members: rather
//! than a watch per member, the stream re-reads the group (one status read and one listing of
//! its members) every poll interval, and sends an event only when something it shows changed
//! (the time left moves with the clock alone, and is not a change). Otherwise it is the task
//! stream's protocol: `retry:` first, then the current status as `event: status`, then
//! `event: status` when the group's state changed and `event: progress` otherwise, a comment
//! every 15 s while idle, and the last event (the group is final) carries an `id:` so that a
//! reconnecting `EventSource` is answered `204`.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::Utc;
use futures::{stream::BoxStream, StreamExt};
use longtask_core::{GroupStatus, TaskId};
use tokio::{sync::OwnedSemaphorePermit, time::MissedTickBehavior};

use super::{
    view::{fingerprint, GroupState},
    GroupConfig, GroupView,
};
use crate::status::Links;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct State {
    config: Arc<GroupConfig>,
    id: TaskId,
    links: Links,
    /// The group as first read, sent as the first event.
    first: Option<GroupStatus>,
    last: Option<(u64, GroupState)>,
    interval: tokio::time::Interval,
    idle: Duration,
    started: bool,
    done: bool,
    /// The service's permit for this stream, given back when the stream is dropped.
    _permit: OwnedSemaphorePermit,
}

fn frame(group: &GroupStatus, state: &mut State) -> Bytes {
    let view = GroupView::new(group, &state.config, &state.links, Utc::now());
    let kind = if state.last.is_none_or(|(_, s)| s != view.state) {
        "status"
    } else {
        "progress"
    };
    state.last = Some((fingerprint(group), view.state));
    state.done = view.is_final;
    let json = view.to_json();
    let mut frame = Vec::with_capacity(json.len() + 48);
    if view.is_final {
        frame.extend_from_slice(b"id: ");
        frame.extend_from_slice(view.state.as_str().as_bytes());
        frame.push(b'\n');
    }
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(kind.as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    frame.extend_from_slice(&json);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// The event stream of group `first` (as just read), re-read every poll interval.
pub(crate) fn events(
    config: Arc<GroupConfig>,
    first: GroupStatus,
    links: Links,
    permit: OwnedSemaphorePermit,
) -> BoxStream<'static, Bytes> {
    let mut interval = tokio::time::interval(config.poll_interval);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = State {
        id: first.id(),
        config,
        links,
        first: Some(first),
        last: None,
        interval,
        idle: Duration::ZERO,
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
            // The interval's first tick is now: the first read is the one already made.
            state.interval.tick().await;
            return Some((Bytes::from_static(b"retry: 2000\n\n"), state));
        }
        if let Some(first) = state.first.take() {
            let bytes = frame(&first, &mut state);
            return Some((bytes, state));
        }
        loop {
            state.interval.tick().await;
            let group = match state.config.client.group_status(state.id).await {
                Ok(group) => group,
                Err(err) => {
                    state.done = true;
                    tracing::warn!(error = %err, group = %state.id, "reading a group failed");
                    let detail = serde_json::json!({
                        "detail": "lost track of the group; reload to try again"
                    });
                    let bytes = Bytes::from(format!("event: error\ndata: {detail}\n\n"));
                    return Some((bytes, state));
                }
            };
            if state.last.map(|(print, _)| print) != Some(fingerprint(&group)) {
                state.idle = Duration::ZERO;
                let bytes = frame(&group, &mut state);
                return Some((bytes, state));
            }
            state.idle += state.config.poll_interval;
            if state.idle >= KEEP_ALIVE {
                state.idle = Duration::ZERO;
                return Some((Bytes::from_static(b": keep-alive\n\n"), state));
            }
        }
    })
    .boxed()
}

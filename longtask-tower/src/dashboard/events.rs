//! `GET /events`: the overview's figures as Server-Sent Events.
//!
//! The stream opens with `retry:` and the current figures (`event: stats`, the JSON of
//! `GET /?format=json`), then reads them again every poll interval (at least a second) and
//! sends them when anything but their time of reading changed. A comment line every 15 s keeps
//! an idle connection open through proxies. A read that fails sends `event: error` once, and
//! the stream goes on trying: it ends only when the client goes. Each open stream reads the
//! figures and the workers once per interval; [`with_max_watchers`] caps how many are open.
//!
//! [`with_max_watchers`]: crate::DashboardBuilder::with_max_watchers

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use longtask_core::{Result, Stats, WorkerInfo};
use serde::Serialize;
use tokio::{sync::OwnedSemaphorePermit, time::MissedTickBehavior};

use super::DashboardConfig;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The overview's figures as JSON: the [`Stats`] fields, and what a page shows from them.
#[derive(Serialize)]
pub(crate) struct OverviewJson<'a> {
    #[serde(flatten)]
    stats: &'a Stats,
    totals: longtask_core::StatusCounts,
    oldest_wait_seconds: Option<u64>,
    workers: &'a [WorkerInfo],
}

impl<'a> OverviewJson<'a> {
    pub(crate) fn new(stats: &'a Stats, workers: &'a [WorkerInfo]) -> Self {
        Self {
            stats,
            totals: stats.totals(),
            oldest_wait_seconds: stats.oldest_wait().map(|w| w.as_secs()),
            workers,
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl DashboardConfig {
    /// The figures and the live workers, read together.
    pub(crate) async fn figures(&self) -> Result<(Stats, Vec<WorkerInfo>)> {
        futures::try_join!(self.client.stats(), self.client.workers())
    }
}

struct State {
    config: Arc<DashboardConfig>,
    interval: tokio::time::Interval,
    /// What was last sent, without its time of reading.
    last: Option<Vec<u8>>,
    idle: Duration,
    started: bool,
    /// Whether the last read failed (and the error was sent).
    failing: bool,
    /// The service's permit for this stream, given back when the stream is dropped.
    _permit: OwnedSemaphorePermit,
}

/// The fingerprint of the figures: everything but when they were read.
fn fingerprint(stats: &Stats, workers: &[WorkerInfo]) -> Vec<u8> {
    serde_json::to_vec(&(&stats.jobs, workers)).unwrap_or_default()
}

pub(crate) fn events(
    config: Arc<DashboardConfig>,
    permit: OwnedSemaphorePermit,
) -> BoxStream<'static, Bytes> {
    let mut interval = tokio::time::interval(config.poll_interval);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = State {
        config,
        interval,
        last: None,
        idle: Duration::ZERO,
        started: false,
        failing: false,
        _permit: permit,
    };
    futures::stream::unfold(state, |mut state| async move {
        if !state.started {
            state.started = true;
            return Some((Bytes::from_static(b"retry: 2000\n\n"), state));
        }
        loop {
            // The first tick is at once: the first figures go out without waiting.
            state.interval.tick().await;
            let frame = match state.config.figures().await {
                Ok((stats, workers)) => {
                    state.failing = false;
                    let print = fingerprint(&stats, &workers);
                    if state.last.as_ref() == Some(&print) {
                        None
                    } else {
                        state.last = Some(print);
                        let json = OverviewJson::new(&stats, &workers).to_json();
                        let mut frame = Vec::with_capacity(json.len() + 24);
                        frame.extend_from_slice(b"event: stats\ndata: ");
                        frame.extend_from_slice(&json);
                        frame.extend_from_slice(b"\n\n");
                        Some(Bytes::from(frame))
                    }
                }
                Err(_) if state.failing => None,
                Err(err) => {
                    tracing::warn!(error = %err, "reading the dashboard's figures failed");
                    // Send the figures again once they can be read.
                    state.last = None;
                    state.failing = true;
                    let detail = serde_json::json!({
                        "detail": "the task store cannot be reached right now; trying again"
                    });
                    Some(Bytes::from(format!("event: error\ndata: {detail}\n\n")))
                }
            };
            if let Some(frame) = frame {
                state.idle = Duration::ZERO;
                return Some((frame, state));
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

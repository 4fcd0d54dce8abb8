//! # longtask-tower
//!
//! HTTP endpoints for [longtask](longtask_core) jobs, as a [`tower::Service`]: a request submits a
//! task and gets a bookmarkable status URL at once; the URL shows a progress bar, a message, the
//! time left and finally the result, as JSON for programs and as an HTML page for people (live
//! over Server-Sent Events with JavaScript, refreshing itself without).
//!
//! - [`JobService<J>`]: the endpoints of one [`Job`](longtask_core::Job), to mount at a path
//!   (axum: `Router::nest_service`; plain hyper: hyper-util's `TowerToHyperService`).
//! - [`JobLayer<J>`]: the same endpoints as middleware, answering under its prefix and passing
//!   every other request to the service it wraps.
//!
//! Routes, relative to the mount point:
//!
//! | request | answer |
//! |---|---|
//! | `POST /` (JSON or HTML form) | `202 Accepted` + `Location` + `{id, status, links}`; a browser form gets `303 See Other` |
//! | `GET /{id}` | the status, as JSON or (for `Accept: text/html`) the status page; `ETag`, `Retry-After` |
//! | `GET /{id}/events` | Server-Sent Events, one per change, ending after a final status |
//! | `GET /{id}/result` | `200` + the output (JSON, or a file: see [`JobService::with_result_file`]); `202` while unfinished; `409` if failed or cancelled |
//! | `DELETE /{id}`, `POST /{id}/cancel` | cancel |
//!
//! Every error is an RFC 9457 `application/problem+json` document whose `detail` says what to do.
//!
//! - [`GroupService`]: the endpoints of [task groups](longtask_core::Client::group), many tasks
//!   followed as one: `GET /{group}` (JSON, or a page with one bar for the whole group and the
//!   list of its tasks), `GET /{group}/events`, `GET /{group}/result` (the completion job's
//!   output) and `DELETE /{group}` / `POST /{group}/cancel` (cancel them all). See its docs.
//!
//! ```
//! use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
//! use longtask_tower::JobService;
//!
//! struct Report;
//! impl Job for Report {
//!     const NAME: &'static str = "report";
//!     type Params = u32;
//!     type Output = String;
//!     async fn run(&self, days: u32, cx: TaskContext) -> Result<String, JobError> {
//!         cx.progress(u64::from(days), Some(u64::from(days)), "done")?;
//!         Ok(format!("{days} days"))
//!     }
//! }
//!
//! let client = Client::new(MemoryBackend::new());
//! // axum: Router::new().nest_service("/reports", JobService::<Report>::new(client).at("/reports"))
//! let service = JobService::<Report>::new(client).at("/reports");
//! ```

mod accept;
mod body;
mod dashboard;
mod future;
mod group;
mod html;
mod layer;
mod problem;
mod render;
mod routes;
mod service;
mod sse;
mod status;

pub use crate::{
    body::ResponseBody,
    dashboard::{Authorized, Dashboard, DashboardBuilder, NeedsAuthorization},
    future::{MiddlewareFuture, ResponseFuture},
    group::GroupService,
    html::escape,
    layer::{JobLayer, JobMiddleware},
    render::ResultFile,
    service::JobService,
};

#[cfg(feature = "prometheus")]
pub mod metrics;
#[cfg(feature = "prometheus")]
pub use crate::metrics::{MetricsService, Prometheus};

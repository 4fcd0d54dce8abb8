//! # longtask-core
//!
//! Durable background tasks for work that takes longer than a web request should. A request
//! submits a task and gets its id (and, with `longtask-tower`, a bookmarkable status URL) at once;
//! workers run it in the background, report progress, retry failures, and store the result.
//!
//! This crate holds the model and the runtime, and no backend or HTTP code:
//! - [`Job`]: the work you write: a stable name, serde parameters and output, an async `run`.
//! - [`Client`]: submit tasks, read their status (with progress and ETA), output, cancel, wait.
//! - [`Scheduler`]: submits the tasks of periodic [`Schedule`]s (cron or fixed period), each
//!   tick once however many processes run one.
//! - [`Worker`]: runs jobs with batching, leases, heartbeats, retries, timeouts, cancellation,
//!   graceful shutdown and a sweeper.
//! - The backend traits [`TaskStore`], [`Queue`], [`ProgressSink`], bundled as [`Backend`], and
//!   [`MemoryBackend`], which implements them in process memory. Durable backends live in
//!   `longtask-sqlx` (SQLite, Postgres) and `longtask-redis`.
//! - With the `testing` feature, [`testing`]: the conformance suite every backend passes.
//!
//! ```
//! use std::time::Duration;
//! use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext, Worker};
//!
//! struct MonthlyReport;
//!
//! impl Job for MonthlyReport {
//!     const NAME: &'static str = "monthly-report";
//!     type Params = u32; // days in the month
//!     type Output = String;
//!
//!     async fn run(&self, days: u32, cx: TaskContext) -> Result<String, JobError> {
//!         let mut invoices = 0;
//!         for day in 1..=days {
//!             invoices += 40; // the real work
//!             cx.progress(day.into(), Some(days.into()), format!("Handling day {day}: {invoices} invoices so far"))?;
//!         }
//!         Ok(format!("{invoices} invoices"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! let backend = MemoryBackend::new();
//! let worker = Worker::builder(backend.clone()).register(MonthlyReport).build()?.spawn();
//!
//! let client = Client::new(backend);
//! let id = client.submit::<MonthlyReport>(30).await?;
//! client.wait(id, Duration::from_secs(10)).await?;
//! assert_eq!(client.output::<MonthlyReport>(id).await?.as_deref(), Some("1200 invoices"));
//! worker.shutdown().await?;
//! # Ok(()) }
//! ```

mod attempt;
mod backend;
mod client;
mod clock;
mod context;
mod detach;
mod error;
mod eta;
mod group;
mod job;
mod memory;
pub mod metrics;
mod progress;
mod queue;
mod registry;
mod schedule;
mod stats;
mod store;
mod task;
mod watch;
mod worker;

#[cfg(feature = "testing")]
pub mod testing;

pub use crate::{
    attempt::{AttemptOutcome, AttemptRecord, ParseAttemptOutcomeError, MAX_ATTEMPT_HISTORY},
    backend::Backend,
    client::{Client, SubmitOptions, MAX_KEY_LEN},
    clock::{saturating_add, Clock, ManualClock, SystemClock},
    context::TaskContext,
    detach::{to_completion, to_completion_or},
    error::{BoxError, Error, Result},
    eta::EtaEstimator,
    group::{GroupCancelled, GroupStatus, NewGroup},
    job::{Backoff, ErrorKind, Job, JobError, JobOptions, ResultExt},
    memory::MemoryBackend,
    metrics::{MetricsSnapshot, WorkerMetrics, RUN_TIME_BUCKETS},
    progress::{ProgressSink, TaskEvent},
    queue::{
        Ack, Checkpoint, CheckpointInfo, ClaimRequest, ClaimedTask, Completion, JobLimits, Lease,
        LeaseState, Outcome, Queue, WorkSignal, WorkerInfo,
    },
    schedule::{
        LastRun, Missed, Schedule, ScheduleBuilder, ScheduleStatus, Scheduler, SchedulerBuilder,
        SchedulerHandle, Tick, MAX_CATCH_UP, MAX_SCHEDULE_NAME_LEN, RETENTION_MARGIN,
    },
    stats::{
        hour_ending, minute_of, FinishedMinute, JobStats, Stats, StatusCounts, MINUTE_MS,
        THROUGHPUT_MINUTES,
    },
    store::{CancelOutcome, DeleteOutcome, RetryOutcome, TaskStore},
    task::{
        group_root_run_at, GroupRole, Inserted, NewTask, ParseStatusError, ParseTaskIdError,
        Progress, RunAt, TaskError, TaskId, TaskQuery, TaskRecord, TaskStatus, GROUP_JOB,
        GROUP_ROOT_RUN_AT_MS,
    },
    worker::{Worker, WorkerBuilder, WorkerHandle},
};

/// Time zones for [`ScheduleBuilder::in_tz`]: the `chrono-tz` crate, re-exported so that its
/// version always matches (`longtask_core::chrono_tz::Europe::Berlin`).
pub use chrono_tz;

#[doc(hidden)]
pub mod __private {
    pub use async_trait;
    pub use futures;
    pub use tokio;
    pub use tracing;
}

//! # longtask
//!
//! Durable background tasks for work that takes longer than a web request should. A request
//! submits a task and gets its id (and, with the `http` feature, a bookmarkable status page) at
//! once; workers run it in the background, report progress with an estimate of the time left,
//! retry failures, survive crashes, and store the result.
//!
//! This is the crate to depend on. It re-exports the application API of [`longtask-core`](core)
//! at its root ([`Job`], [`Client`], [`Worker`], [`TaskContext`], [`TaskRecord`], ...), and, by
//! cargo feature, the backends and the HTTP layer:
//!
//! | feature | what it adds |
//! |---|---|
//! | `sqlite` | `SqliteBackend`, and `sqlite://` URLs in [`connect`] |
//! | `postgres` | `PostgresBackend`, and `postgres://` URLs |
//! | `redis` | `RedisBackend` (one server or a Redis Cluster), and `redis://`, `rediss://`, `redis+cluster://` URLs |
//! | `http` | `longtask::http`: `JobService` / `JobLayer`, the status page, JSON, SSE, result and cancel endpoints |
//!
//! No feature is on by default: [`MemoryBackend`] (`memory://`) always works, and an application
//! that deploys on Postgres or Redis does not compile SQLite for nothing.
//!
//! ```toml
//! [dependencies]
//! longtask = { version = "0.1", features = ["postgres", "http"] }
//! ```
//!
//! ## Connecting
//!
//! [`connect`] opens the backend a URL names, among those compiled in, and applies its
//! migrations, so that one setting (an environment variable, say) picks the backend:
//!
//! ```
//! use std::time::Duration;
//! use longtask::{Client, Job, JobError, TaskContext, Worker};
//!
//! struct MonthlyReport;
//!
//! impl Job for MonthlyReport {
//!     const NAME: &'static str = "monthly-report";
//!     type Params = u32; // days in the month
//!     type Output = String;
//!
//!     async fn run(&self, days: u32, cx: TaskContext) -> Result<String, JobError> {
//!         for day in 1..=days {
//!             cx.progress(day.into(), Some(days.into()), format!("Handling day {day}"))?;
//!         }
//!         Ok(format!("{days} days"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask::Result<()> {
//! let url = std::env::var("LONGTASK_URL").unwrap_or_else(|_| "memory://".to_owned());
//! # let url = "memory://";
//! let backend = longtask::connect(&url).await?;
//! let worker = Worker::builder(backend.clone()).register(MonthlyReport).build()?.spawn();
//!
//! let client = Client::new(backend);
//! let id = client.submit::<MonthlyReport>(30).await?;
//! client.wait(id, Duration::from_secs(10)).await?;
//! assert_eq!(client.output::<MonthlyReport>(id).await?.as_deref(), Some("30 days"));
//! worker.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! A URL whose backend is not compiled in fails with a message naming the feature to enable;
//! see [`connect`] for every scheme and error.
//!
//! The `longtask` command-line tool (crate `longtask-cli`) uses [`connect`] to list, show,
//! watch, cancel and purge tasks on any backend.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;

#[doc(inline)]
pub use longtask_core::*;

/// The core crate, whole: the application API (re-exported at this crate's root), the backend
/// traits and, with its `testing` feature, the backend conformance suite.
pub use longtask_core as core;

pub use crate::connect::{connect, connect_with, ConnectOptions};

/// The SQLite backend (feature `sqlite`).
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use longtask_sqlx::SqliteBackend;

/// The Postgres backend (feature `postgres`).
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use longtask_sqlx::{InTransaction, PostgresBackend};

/// The Redis backend (feature `redis`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use longtask_redis::{RedisBackend, RedisOptions};

/// The HTTP layer (feature `http`): `longtask-tower`'s `JobService` and `JobLayer`, serving a
/// job's submit, status page and JSON, live events, result and cancel endpoints under one
/// mount point, for axum, hyper or any tower server.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use longtask_tower as http;

/// The README's code blocks, compiled as doctests so that they never go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

//! The Redis backend for longtask: tasks, queue and progress in one Redis, fast enough for tens
//! of thousands of short jobs per second.
//!
//! [`RedisBackend`] implements [`TaskStore`](longtask_core::TaskStore),
//! [`Queue`](longtask_core::Queue) and [`ProgressSink`](longtask_core::ProgressSink) with exactly
//! the semantics of longtask's in-memory reference backend. Every state change that touches more
//! than one key runs as one Lua script (the scripts live in `lua/`), so it is atomic; fencing
//! tokens are checked inside the scripts; "now" always comes from the backend's
//! [`Clock`](longtask_core::Clock), never from the server. Idle workers wait on a pub/sub
//! wake-up, watchers get progress and status changes over pub/sub.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use longtask_core::Client;
//! use longtask_redis::RedisBackend;
//!
//! let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1/".to_owned());
//! let backend = RedisBackend::connect(&url).await?.with_prefix("myapp");
//! let client = Client::new(backend);
//! # Ok(()) }
//! ```
//!
//! # Keys
//!
//! Every key of a namespace starts with `{prefix}:` (the braces make it a Redis Cluster hash
//! tag, so one namespace lives in one slot and its scripts run on one node). User strings
//! (job names, idempotency keys) are percent-encoded inside keys, so no name can break the key
//! structure. [`RedisBackend::connect`] talks to one server;
//! [`RedisBackend::connect_cluster`] to a Redis Cluster, where each namespace's scripts run on the
//! node that owns its slot (spread load with several prefixes).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:t:<id>` | hash | the task record |
//! | `{p}:q:<job>:<priority>` | sorted set | the job's due waiting tasks of one priority, by run time |
//! | `{p}:l:<job>:<priority>` | list | the job's tasks of one priority due when submitted: run time, id pairs in claim order |
//! | `{p}:qp:<job>` | sorted set | the job's priorities that may have due tasks, highest first |
//! | `{p}:delayed` | sorted set | waiting tasks not yet due, by run time |
//! | `{p}:running` | sorted set | running tasks, by lease expiry |
//! | `{p}:x:<retention>` | list | finished tasks of one retention period (ms), in finishing order |
//! | `{p}:xr` | sorted set | the retention periods that have such a list |
//! | `{p}:all` | sorted set | every task id, in submission order (for listing) |
//! | `{p}:i:<job>:<key>` | string | the task holding an idempotency key |
//! | `{p}:rn:<job>` | hash | running counts of a job some claim limited, in all and per concurrency key |
//! | `{p}:pk:<job>:<key>` | sorted set | a job's tasks of one concurrency key waiting for it to have room (parked) |
//! | `{p}:g:<root>` | sorted set | the members of a group, in id order |
//! | `{p}:w` | hash | the workers registry: worker id → its last report |
//! | `{p}:wx` | sorted set | worker ids by the time their entries end |
//!
//! Channels: `{p}:work` (wakes idle workers) and `{p}:ev:<id>` (one task's events, published
//! while the key `{p}:watching` shows that someone watches).
//!
//! # Retention and expiry
//!
//! A finished task is kept for its retention, measured on the backend's clock:
//! [`purge`](longtask_core::TaskStore::purge) (which the worker's sweeper calls) deletes the
//! tasks whose `finished_at + retention` has passed, read from the heads of the `{p}:x:<retention>`
//! lists (each is in finishing order, so a purge reads only tasks that are due, plus one per
//! list). As a safety net for deployments where no sweeper runs, the task's keys also carry a
//! Redis expiry (`PEXPIRE`) of the retention plus one minute: Redis counts that on the server's
//! real clock, so it removes abandoned tasks even if nothing ever calls `purge`, while tests that
//! move a [`ManualClock`](longtask_core::ManualClock) see exactly the clock-based behaviour.
//!
//! # Durability
//!
//! Redis keeps data in memory; how much survives a crash depends on the server's persistence
//! settings. See the crate README for `appendonly`/`appendfsync` advice.

mod backend;
mod conn;
mod hub;
mod keys;
mod progress;
mod queue;
mod record;
mod scripts;
mod stats;
mod store;

pub use crate::backend::{RedisBackend, RedisOptions};

//! # longtask-sqlx
//!
//! Durable [longtask](longtask_core) backends over [sqlx]: SQLite (feature `sqlite`: one file, no
//! server, the embedded default) and Postgres (feature `postgres`: many web and worker processes
//! on many machines sharing one queue). Each backend type implements
//! [`TaskStore`](longtask_core::TaskStore), [`Queue`](longtask_core::Queue) and
//! [`ProgressSink`](longtask_core::ProgressSink) and passes the whole conformance suite.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod codec;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use crate::postgres::{InTransaction, PostgresBackend};
#[cfg(feature = "sqlite")]
pub use crate::sqlite::SqliteBackend;

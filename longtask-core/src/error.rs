//! The crate's error type.
//!
//! Every fallible call in `longtask-core` returns [`Result<T>`](crate::Result), whose error is
//! [`Error`]. Backend errors keep their source, so `{:#}`-style reporting (or `anyhow`'s chain)
//! shows the underlying database or network error.
//!
//! ```
//! use longtask_core::{Error, TaskId};
//!
//! let id = TaskId::new();
//! let err = Error::NotFound(id);
//! assert!(err.to_string().starts_with("task "));
//! ```

use std::time::Duration;

use crate::task::TaskId;

/// A boxed error from a backend or codec, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as its default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a longtask call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No task with this id exists (it was never submitted, or it was purged after its retention).
    #[error("task {0} not found (never submitted, or purged after its retention ended)")]
    NotFound(TaskId),

    /// The caller's input cannot be accepted; the message says which part and why.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Parameters or an output could not be encoded or decoded.
    #[error("could not {action} {what}")]
    Codec {
        /// `"encode"` or `"decode"`.
        action: &'static str,
        /// What was being encoded or decoded (`"parameters of job `report`"`).
        what: String,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },

    /// The worker was built without any job, or with two jobs of the same name.
    #[error("worker configuration: {0}")]
    Config(String),

    /// The backend does not offer this capability.
    #[error("`{0}` is not supported by this backend")]
    Unsupported(&'static str),

    /// Waiting for a task ended before the task reached a final state.
    #[error("task {id} did not finish within {timeout:?}")]
    WaitTimeout {
        /// The task waited for.
        id: TaskId,
        /// How long the caller waited.
        timeout: Duration,
    },

    /// The storage behind a backend failed (connection lost, query failed, ...).
    #[error("backend error: {message}")]
    Backend {
        /// What the backend was doing.
        message: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Wraps a backend driver error with a note on what the backend was doing.
    ///
    /// ```
    /// let io = std::io::Error::other("connection reset");
    /// let err = longtask_core::Error::backend("claiming tasks", io);
    /// assert_eq!(err.to_string(), "backend error: claiming tasks");
    /// ```
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            message: message.into(),
            source: source.into(),
        }
    }

    pub(crate) fn codec(
        action: &'static str,
        what: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Codec {
            action,
            what: what.into(),
            source: source.into(),
        }
    }
}

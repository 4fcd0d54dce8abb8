//! Jobs: the work a user writes, and how its failures are reported.
//!
//! A [`Job`] has a stable name, serde parameters and output, and an async `run`. Its
//! [`JobOptions`] set attempts, backoff, timeout, priority and retention; a failed run returns a
//! [`JobError`] that is either retryable (the default) or fatal.
//!
//! ```
//! use longtask_core::{Job, JobError, ResultExt, TaskContext};
//! use serde::{Deserialize, Serialize};
//!
//! struct Resize;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Image { url: String, width: u32 }
//!
//! impl Job for Resize {
//!     const NAME: &'static str = "resize";
//!     type Params = Image;
//!     type Output = String;
//!
//!     async fn run(&self, image: Image, cx: TaskContext) -> Result<String, JobError> {
//!         if image.width == 0 {
//!             return Err(JobError::fatal("width must be positive"));
//!         }
//!         cx.progress(1, Some(2), "downloading")?;
//!         let bytes: Vec<u8> = std::fs::read("/nonexistent").retryable().unwrap_or_default();
//!         cx.progress(2, Some(2), "resizing")?;
//!         Ok(format!("{} bytes", bytes.len()))
//!     }
//! }
//! ```

use std::{fmt, future::Future, time::Duration};

use serde::{de::DeserializeOwned, Serialize};

use crate::context::TaskContext;

/// A kind of background work: a stable name, typed parameters and output, and an async `run`.
///
/// The worker decodes the parameters, calls `run` with a [`TaskContext`] for progress and
/// cancellation, and stores the output. A returned [`JobError`] is retried with backoff up to the
/// job's [`max_attempts`](JobOptions::max_attempts) unless it is [fatal](JobError::fatal); a panic
/// or a timeout counts as a retryable failure with its message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a longtask job",
    label = "this type does not implement `longtask_core::Job`",
    note = "implement `Job` for it: a `const NAME: &str`, `type Params`, `type Output` and `async fn run(&self, params, cx: TaskContext)`"
)]
pub trait Job: Send + Sync + 'static {
    /// The job's stable name: stored with each task and used by workers to find the code to run.
    /// Changing it orphans tasks already submitted under the old name.
    const NAME: &'static str;

    /// The parameters, as submitted (stored as JSON).
    type Params: Serialize + DeserializeOwned + Send + 'static;

    /// The result of a successful run (stored as JSON).
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Runs the task once. Report progress with [`TaskContext::progress`]; return
    /// `Err(JobError::fatal(..))` for failures that a retry cannot fix.
    fn run(
        &self,
        params: Self::Params,
        cx: TaskContext,
    ) -> impl Future<Output = Result<Self::Output, JobError>> + Send;

    /// The job's policy: attempts, backoff, timeout, priority, retention.
    ///
    /// ```
    /// use std::time::Duration;
    /// use longtask_core::{Job, JobError, JobOptions, TaskContext};
    ///
    /// struct Export;
    /// impl Job for Export {
    ///     const NAME: &'static str = "export";
    ///     type Params = ();
    ///     type Output = ();
    ///     async fn run(&self, _: (), _: TaskContext) -> Result<(), JobError> { Ok(()) }
    ///     fn options() -> JobOptions {
    ///         JobOptions::default()
    ///             .max_attempts(3)
    ///             .timeout(Duration::from_secs(600))
    ///             .retention(Duration::from_secs(86_400))
    ///     }
    /// }
    /// assert_eq!(Export::options().max_attempts, 3);
    /// ```
    fn options() -> JobOptions {
        JobOptions::default()
    }
}

/// How long to wait before each retry: exponential with jitter.
///
/// The delay before retry `n` (after `n` failed attempts) is `initial * factor^(n-1)`, capped at
/// `max`, then moved at random by up to `jitter` of itself (so that many tasks failing together
/// do not retry together).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The growth factor per attempt.
    pub factor: f64,
    /// The longest delay.
    pub max: Duration,
    /// The fraction (0 to 1) by which a delay varies at random.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The same delay every time, without jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = longtask_core::Backoff::constant(Duration::from_millis(50));
    /// assert_eq!(b.delay(1), Duration::from_millis(50));
    /// assert_eq!(b.delay(7), Duration::from_millis(50));
    /// ```
    pub const fn constant(delay: Duration) -> Self {
        Self {
            initial: delay,
            factor: 1.0,
            max: delay,
            jitter: 0.0,
        }
    }

    /// The delay after `failed_attempts` failed attempts (1 for the first retry).
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = longtask_core::Backoff { jitter: 0.0, ..Default::default() };
    /// assert_eq!(b.delay(1), Duration::from_secs(1));
    /// assert_eq!(b.delay(3), Duration::from_secs(4));
    /// assert_eq!(b.delay(100), Duration::from_secs(3600));
    /// ```
    pub fn delay(&self, failed_attempts: u32) -> Duration {
        let exp = i32::try_from(failed_attempts.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exp);
        let capped = if base.is_finite() {
            base.min(self.max.as_secs_f64())
        } else {
            self.max.as_secs_f64()
        };
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            1.0 + rand::random::<f64>().mul_add(2.0 * jitter, -jitter)
        } else {
            1.0
        };
        Duration::try_from_secs_f64((capped * factor).max(0.0)).unwrap_or(self.max)
    }
}

/// A job's policy. Build it from [`JobOptions::default()`] with the chained setters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobOptions {
    /// Attempts in all, the first included (default 5; at least 1).
    pub max_attempts: u32,
    /// Delay between attempts (default: 1 s doubling to at most 1 h, 20 % jitter).
    pub backoff: Backoff,
    /// Longest an attempt may run before it is stopped and counted as failed (default: none).
    pub timeout: Option<Duration>,
    /// Higher runs first (default 0).
    pub priority: i32,
    /// How long a finished task, and its output, is kept (default 7 days).
    pub retention: Duration,
    /// How long a running task may take to stop after cancellation is asked for before the
    /// worker stops it (default 10 s).
    pub cancel_grace: Duration,
    /// The largest [checkpoint](crate::TaskContext::checkpoint) state accepted, in bytes of
    /// JSON (default 1 MiB).
    pub max_checkpoint_size: usize,
    /// At most this many tasks of the job run at once, across every worker of every process
    /// (default: no limit). Enforced by the backend when it hands out tasks.
    pub max_running: Option<u32>,
    /// At most this many tasks of the job with the same
    /// [concurrency key](crate::SubmitOptions::concurrency_key) run at once, across every worker
    /// (default: no limit). The other tasks of a busy key wait while tasks of other keys run.
    pub max_running_per_key: Option<u32>,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff::default(),
            timeout: None,
            priority: 0,
            retention: Duration::from_secs(7 * 24 * 3600),
            cancel_grace: Duration::from_secs(10),
            max_checkpoint_size: 1 << 20,
            max_running: None,
            max_running_per_key: None,
        }
    }
}

impl JobOptions {
    /// Sets the attempts in all (values below 1 mean 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the backoff between attempts.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the per-attempt timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the default priority (higher runs first).
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets how long finished tasks are kept.
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets how long a cancelled running task may take to stop by itself.
    #[must_use]
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// At most `n` tasks of this job run at once, across every worker of every process (values
    /// below 1 mean 1). The backend enforces it when it hands out tasks, so it holds however many
    /// workers run; a worker's own [`concurrency`](crate::WorkerBuilder::concurrency) still caps
    /// what that worker runs.
    ///
    /// ```
    /// use longtask_core::JobOptions;
    /// // One export at a time, whatever the number of workers.
    /// let options = JobOptions::default().max_running(1);
    /// assert_eq!(options.max_running, Some(1));
    /// ```
    #[must_use]
    pub fn max_running(mut self, n: u32) -> Self {
        self.max_running = Some(n.max(1));
        self
    }

    /// At most `n` tasks of this job with the same
    /// [concurrency key](crate::SubmitOptions::concurrency_key) run at once (values below 1 mean
    /// 1): ten exports of one customer run one or two at a time while other customers' exports
    /// go ahead. Tasks submitted without a key are not limited by it.
    ///
    /// ```
    /// use longtask_core::JobOptions;
    /// let options = JobOptions::default().max_running(8).max_running_per_key(2);
    /// assert_eq!(options.max_running_per_key, Some(2));
    /// ```
    #[must_use]
    pub fn max_running_per_key(mut self, n: u32) -> Self {
        self.max_running_per_key = Some(n.max(1));
        self
    }

    /// Sets the largest checkpoint state accepted, in bytes of JSON.
    #[must_use]
    pub fn max_checkpoint_size(mut self, bytes: usize) -> Self {
        self.max_checkpoint_size = bytes;
        self
    }
}

/// Whether a failed attempt may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Try again after the backoff, while attempts remain.
    Retryable,
    /// Do not try again: the task fails now (bad parameters, say).
    Fatal,
    /// The job stopped because cancellation was asked for.
    Cancelled,
}

/// Why a run of a job failed: a message a user may read, and whether to retry.
///
/// Any error type converts into a retryable `JobError` with `?`; use [`JobError::fatal`] or
/// [`ResultExt::fatal`] for failures a retry cannot fix.
///
/// ```
/// use longtask_core::{ErrorKind, JobError};
///
/// fn parse(s: &str) -> Result<u32, JobError> {
///     Ok(s.parse::<u32>()?) // a ParseIntError becomes a retryable JobError
/// }
/// let err = parse("x").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Retryable);
/// assert_eq!(err.message(), "invalid digit found in string");
/// ```
pub struct JobError {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl JobError {
    /// A failure worth retrying (a network error, a busy service).
    ///
    /// ```
    /// let err = longtask_core::JobError::retryable("the mail server is busy");
    /// ```
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
            source: None,
        }
    }

    /// A failure no retry can fix: the task fails at once.
    ///
    /// ```
    /// let err = longtask_core::JobError::fatal("month 13 does not exist");
    /// assert_eq!(err.kind(), longtask_core::ErrorKind::Fatal);
    /// ```
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Fatal,
            message: message.into(),
            source: None,
        }
    }

    /// The job stopped because it was cancelled (what [`TaskContext::progress`] returns then).
    pub fn cancelled() -> Self {
        Self {
            kind: ErrorKind::Cancelled,
            message: "cancelled".to_owned(),
            source: None,
        }
    }

    /// Keeps `source` as the cause (for logs; the message is what users see).
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Whether to retry.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message a user may read.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying error, if one was kept.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E> From<E> for JobError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: err.to_string(),
            source: Some(Box::new(err)),
        }
    }
}

/// Marks any `Result`'s error as retryable or fatal: `fetch().await.retryable()?`.
///
/// ```
/// use longtask_core::{ErrorKind, JobError, ResultExt};
///
/// let r: Result<(), JobError> = "x".parse::<u8>().map(drop).fatal();
/// assert_eq!(r.unwrap_err().kind(), ErrorKind::Fatal);
/// ```
pub trait ResultExt<T> {
    /// A failure here is worth retrying.
    fn retryable(self) -> Result<T, JobError>;
    /// A failure here fails the task at once.
    fn fatal(self) -> Result<T, JobError>;
}

impl<T, E> ResultExt<T> for Result<T, E>
where
    E: fmt::Display,
{
    fn retryable(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::retryable(e.to_string()))
    }

    fn fatal(self) -> Result<T, JobError> {
        self.map_err(|e| JobError::fatal(e.to_string()))
    }
}

//! Attempt history: why each earlier attempt of a task ended without success.
//!
//! Every path that ends an attempt without success (a failure reported by the job, a lease that
//! expired and was recovered, a cancellation honoured by the running job) appends an
//! [`AttemptRecord`] to [`TaskRecord::attempts`](crate::TaskRecord::attempts), in the same write
//! as the outcome. A successful attempt adds nothing: the record's `started_at`, `finished_at`
//! and `output` describe it. An attempt released unrun (a worker shutting down gives the task
//! back) adds nothing either, since it is not counted. The history survives an operator's retry,
//! and keeps the last [`MAX_ATTEMPT_HISTORY`] attempts (older ones are dropped).
//!
//! ```
//! use longtask_core::{AttemptOutcome, AttemptRecord};
//!
//! let now = chrono::Utc::now();
//! let attempt = AttemptRecord {
//!     attempt: 1,
//!     started_at: now - chrono::Duration::seconds(3),
//!     ended_at: now,
//!     worker: Some("worker-7".to_owned()),
//!     outcome: AttemptOutcome::Failed,
//!     error: Some("the ledger is locked".to_owned()),
//! };
//! let json = serde_json::to_value(&attempt).unwrap();
//! assert_eq!(json["outcome"], "failed");
//! assert_eq!("lost".parse::<AttemptOutcome>().unwrap(), AttemptOutcome::Lost);
//! ```

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many ended attempts a task keeps in [`TaskRecord::attempts`](crate::TaskRecord::attempts):
/// the last 20; older ones are dropped as new ones are added.
pub const MAX_ATTEMPT_HISTORY: usize = 20;

/// How an attempt ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The job returned an error, panicked or timed out
    /// ([`Outcome::Failed`](crate::Outcome::Failed)).
    Failed,
    /// Its worker stopped renewing the lease (crashed, killed or stalled) and the lease was
    /// recovered ([`Queue::recover_expired`](crate::Queue::recover_expired)).
    Lost,
    /// The job stopped because cancellation was requested
    /// ([`Outcome::Cancelled`](crate::Outcome::Cancelled)).
    Cancelled,
}

impl AttemptOutcome {
    /// Every outcome.
    pub const ALL: [Self; 3] = [Self::Failed, Self::Lost, Self::Cancelled];

    /// The lower-case name used in storage and JSON (`"lost"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Lost => "lost",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not an attempt outcome.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not an attempt outcome (expected one of failed, lost, cancelled)")]
pub struct ParseAttemptOutcomeError(String);

impl FromStr for AttemptOutcome {
    type Err = ParseAttemptOutcomeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == s)
            .ok_or_else(|| ParseAttemptOutcomeError(s.chars().take(64).collect()))
    }
}

/// One attempt of a task that ended without success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Which attempt this was (1-based, as [`TaskRecord::attempt`](crate::TaskRecord::attempt)
    /// counted it).
    pub attempt: u32,
    /// When it was claimed.
    pub started_at: DateTime<Utc>,
    /// When it ended: its outcome was recorded, or its lease was recovered.
    pub ended_at: DateTime<Utc>,
    /// The worker that held its lease.
    pub worker: Option<String>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The job's error (or the cancellation's reason, or why it was lost), for a person to read.
    pub error: Option<String>,
}

impl crate::TaskRecord {
    /// Appends the running attempt to the history as ended at `now` with `outcome`, keeping the
    /// last [`MAX_ATTEMPT_HISTORY`]. Call it before the lease owner is cleared.
    pub(crate) fn push_attempt(
        &mut self,
        outcome: AttemptOutcome,
        error: Option<String>,
        now: DateTime<Utc>,
    ) {
        self.attempts.push(AttemptRecord {
            attempt: self.attempt,
            started_at: self.started_at.unwrap_or(now),
            ended_at: now,
            worker: self.lease_owner.clone(),
            outcome,
            error,
        });
        if self.attempts.len() > MAX_ATTEMPT_HISTORY {
            let excess = self.attempts.len() - MAX_ATTEMPT_HISTORY;
            self.attempts.drain(..excess);
        }
    }
}

//! [`Stats`]: how deep each job's queue is, how long its tasks wait, and how many finish each
//! minute, as one backend answers it ([`TaskStore::stats`](crate::TaskStore::stats)).
//!
//! Every backend answers exactly (see the README's "Operating longtask" for how each keeps it
//! cheap at millions of tasks) and the same way, so that a dashboard or an alert reads the same
//! figures whichever backend runs underneath.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use longtask_core::{MemoryBackend, NewTask, TaskStatus, TaskStore};
//!
//! let store = MemoryBackend::new();
//! store.insert(vec![NewTask::new("report", "{}"), NewTask::new("report", "{}")]).await?;
//! let stats = store.stats().await?;
//! let report = stats.job("report").unwrap();
//! assert_eq!(report.counts.get(TaskStatus::Queued), 2);
//! assert!(report.oldest_due.is_some());
//! # Ok(()) }
//! ```

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::task::TaskStatus;

/// How many minutes of finished-task counts [`JobStats::finished`] holds: the last hour.
pub const THROUGHPUT_MINUTES: usize = 60;

/// Milliseconds in a minute: the width of a [`FinishedMinute`].
pub const MINUTE_MS: i64 = 60_000;

/// Tasks per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    /// Waiting and due (a scheduled task whose time has come counts here).
    pub queued: u64,
    /// Waiting for a time still in the future (group roots waiting for their members too).
    pub scheduled: u64,
    /// Claimed by a worker.
    pub running: u64,
    /// Waiting for their next attempt.
    pub retrying: u64,
    /// Finished with an output and not yet purged.
    pub succeeded: u64,
    /// Finished with an error and not yet purged.
    pub failed: u64,
    /// Cancelled and not yet purged.
    pub cancelled: u64,
}

impl StatusCounts {
    /// The count of one status.
    pub const fn get(&self, status: TaskStatus) -> u64 {
        match status {
            TaskStatus::Queued => self.queued,
            TaskStatus::Scheduled => self.scheduled,
            TaskStatus::Running => self.running,
            TaskStatus::Retrying => self.retrying,
            TaskStatus::Succeeded => self.succeeded,
            TaskStatus::Failed => self.failed,
            TaskStatus::Cancelled => self.cancelled,
        }
    }

    /// Adds `n` to one status's count (saturating).
    pub fn add(&mut self, status: TaskStatus, n: u64) {
        let count = match status {
            TaskStatus::Queued => &mut self.queued,
            TaskStatus::Scheduled => &mut self.scheduled,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Retrying => &mut self.retrying,
            TaskStatus::Succeeded => &mut self.succeeded,
            TaskStatus::Failed => &mut self.failed,
            TaskStatus::Cancelled => &mut self.cancelled,
        };
        *count = count.saturating_add(n);
    }

    /// Tasks not yet finished: queued, scheduled, running and retrying.
    pub const fn open(&self) -> u64 {
        self.queued
            .saturating_add(self.scheduled)
            .saturating_add(self.running)
            .saturating_add(self.retrying)
    }

    /// Every task counted.
    pub const fn total(&self) -> u64 {
        self.open()
            .saturating_add(self.succeeded)
            .saturating_add(self.failed)
            .saturating_add(self.cancelled)
    }

    /// The sum of two counts.
    #[must_use]
    pub fn plus(mut self, other: &Self) -> Self {
        for status in TaskStatus::ALL {
            self.add(status, other.get(status));
        }
        self
    }
}

/// Tasks that finished in one minute, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedMinute {
    /// The minute's start (a whole minute of the backend's clock).
    pub minute: DateTime<Utc>,
    /// Tasks that succeeded in it.
    pub succeeded: u64,
    /// Tasks that failed for good in it.
    pub failed: u64,
    /// Tasks cancelled in it.
    pub cancelled: u64,
}

impl FinishedMinute {
    /// An empty minute starting at `minute` (milliseconds since the epoch, a multiple of
    /// [`MINUTE_MS`]).
    pub fn empty(minute: i64) -> Self {
        Self {
            minute: millis_to_time(minute),
            succeeded: 0,
            failed: 0,
            cancelled: 0,
        }
    }

    /// Tasks finished in the minute, whatever their outcome.
    pub const fn total(&self) -> u64 {
        self.succeeded
            .saturating_add(self.failed)
            .saturating_add(self.cancelled)
    }

    /// Adds `n` tasks that finished with `status` (other statuses are ignored).
    pub fn add(&mut self, status: TaskStatus, n: u64) {
        match status {
            TaskStatus::Succeeded => self.succeeded = self.succeeded.saturating_add(n),
            TaskStatus::Failed => self.failed = self.failed.saturating_add(n),
            TaskStatus::Cancelled => self.cancelled = self.cancelled.saturating_add(n),
            _ => {}
        }
    }
}

/// One job's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStats {
    /// The job's name.
    pub job: String,
    /// Its tasks per status (finished ones until they are purged).
    pub counts: StatusCounts,
    /// The `run_at` of its oldest task that is due and waiting (queued, or retrying with its
    /// backoff over): how far behind its workers are. `None` when no task is due.
    pub oldest_due: Option<DateTime<Utc>>,
    /// Tasks finished in each of the last [`THROUGHPUT_MINUTES`] minutes, oldest first, the
    /// current minute last. Tasks purged since still count: this is throughput, not contents.
    pub finished: Vec<FinishedMinute>,
}

impl JobStats {
    /// No tasks, with an empty hour ending in the minute of `now_ms`.
    pub fn empty(job: impl Into<String>, now_ms: i64) -> Self {
        Self {
            job: job.into(),
            counts: StatusCounts::default(),
            oldest_due: None,
            finished: hour_ending(now_ms).map(FinishedMinute::empty).collect(),
        }
    }

    /// How long its oldest due task has waited at `now`.
    pub fn oldest_wait(&self, now: DateTime<Utc>) -> Option<Duration> {
        let due = self.oldest_due?;
        Some((now - due).to_std().unwrap_or(Duration::ZERO))
    }

    /// Adds `n` tasks finished with `status` at `at_ms` to their minute, if it is in the hour.
    pub fn add_finished(&mut self, at_ms: i64, status: TaskStatus, n: u64) {
        let minute = minute_of(at_ms);
        if let Some(bucket) = self
            .finished
            .iter_mut()
            .find(|bucket| bucket.minute.timestamp_millis() == minute)
        {
            bucket.add(status, n);
        }
    }
}

/// Every job's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// When they were read (the backend's clock).
    pub at: DateTime<Utc>,
    /// One entry per job that has tasks or finished some in the last hour, by name.
    pub jobs: Vec<JobStats>,
}

impl Stats {
    /// One job's figures, if it has any.
    pub fn job(&self, job: &str) -> Option<&JobStats> {
        self.jobs
            .binary_search_by(|stats| stats.job.as_str().cmp(job))
            .ok()
            .map(|at| &self.jobs[at])
    }

    /// The counts of every job together.
    pub fn totals(&self) -> StatusCounts {
        self.jobs
            .iter()
            .fold(StatusCounts::default(), |sum, job| sum.plus(&job.counts))
    }

    /// The longest any due task has waited.
    pub fn oldest_wait(&self) -> Option<Duration> {
        self.jobs
            .iter()
            .filter_map(|job| job.oldest_wait(self.at))
            .max()
    }

    /// Builds the figures from per-job parts a backend read: `counts` per (job, status),
    /// `oldest` due run_at per job (ms), and `finished` per (job, minute ms, status). Minutes
    /// outside the hour ending at `now_ms` are ignored; jobs come out sorted by name.
    pub fn assemble(
        now_ms: i64,
        counts: impl IntoIterator<Item = (String, TaskStatus, u64)>,
        oldest: impl IntoIterator<Item = (String, i64)>,
        finished: impl IntoIterator<Item = (String, i64, TaskStatus, u64)>,
    ) -> Self {
        fn entry(jobs: &mut BTreeMap<String, JobStats>, job: String, now_ms: i64) -> &mut JobStats {
            jobs.entry(job)
                .or_insert_with_key(|job| JobStats::empty(job.clone(), now_ms))
        }
        let mut jobs = BTreeMap::<String, JobStats>::new();
        for (job, status, n) in counts {
            if n > 0 {
                entry(&mut jobs, job, now_ms).counts.add(status, n);
            }
        }
        for (job, run_at) in oldest {
            if run_at <= now_ms {
                let stats = entry(&mut jobs, job, now_ms);
                let earlier = stats
                    .oldest_due
                    .is_none_or(|due| run_at < due.timestamp_millis());
                if earlier {
                    stats.oldest_due = Some(millis_to_time(run_at));
                }
            }
        }
        let first = minute_of(now_ms) - MINUTE_MS * (THROUGHPUT_MINUTES as i64 - 1);
        for (job, at_ms, status, n) in finished {
            if n > 0 && at_ms >= first && at_ms <= now_ms {
                entry(&mut jobs, job, now_ms).add_finished(at_ms, status, n);
            }
        }
        Self {
            at: millis_to_time(now_ms),
            jobs: jobs.into_values().collect(),
        }
    }
}

/// The start of the minute holding `at_ms` (milliseconds since the epoch).
pub const fn minute_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// The starts of the [`THROUGHPUT_MINUTES`] minutes ending with the one holding `now_ms`.
pub fn hour_ending(now_ms: i64) -> impl Iterator<Item = i64> {
    let last = minute_of(now_ms);
    (0..THROUGHPUT_MINUTES as i64)
        .rev()
        .map(move |back| last - back * MINUTE_MS)
}

fn millis_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

//! Time as the backends see it.
//!
//! Backends read the current time from a [`Clock`] rather than from the system directly, so that
//! tests can move time forward: a lease that expires after 30 seconds, or a retry scheduled an hour
//! from now, is tested in microseconds with a [`ManualClock`].
//!
//! ```
//! use std::time::Duration;
//! use longtask_core::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let before = clock.now();
//! clock.advance(Duration::from_secs(90));
//! assert_eq!((clock.now() - before).num_seconds(), 90);
//! ```

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock: the default for every backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

/// A clock that moves only when told to: for tests of leases, backoff, schedules and retention.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at the current system time (truncated to whole milliseconds, the
    /// resolution every backend stores).
    ///
    /// ```
    /// let clock = longtask_core::ManualClock::new();
    /// ```
    pub fn new() -> Self {
        let now = Utc::now();
        let millis = now.timestamp_millis();
        Self::at(DateTime::from_timestamp_millis(millis).unwrap_or(now))
    }

    /// A clock standing at `now`.
    ///
    /// ```
    /// let clock = longtask_core::ManualClock::at(chrono::DateTime::UNIX_EPOCH);
    /// ```
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.checked_add_signed(by).unwrap_or(*now);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `at + d`, saturating at the far future instead of overflowing: for lease expiries and
/// retry times computed from user-supplied durations.
///
/// ```
/// use std::time::Duration;
/// let t = longtask_core::saturating_add(chrono::DateTime::UNIX_EPOCH, Duration::from_secs(60));
/// assert_eq!(t.timestamp(), 60);
/// assert_eq!(longtask_core::saturating_add(t, Duration::MAX), chrono::DateTime::<chrono::Utc>::MAX_UTC);
/// ```
pub fn saturating_add(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

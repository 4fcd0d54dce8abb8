//! How both SQL backends store the core types: times and durations as whole milliseconds, counts
//! as integers, statuses as their lower-case names, progress as JSON text.

use std::time::Duration;

use chrono::{DateTime, Utc};

use longtask_core::{AttemptOutcome, AttemptRecord, Error, Progress, Result, TaskStatus};

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A stored time (milliseconds since the epoch), clamped into chrono's range like every other
/// stored number: the backends only write times they got from a `DateTime`, so only a row
/// edited by hand could be out of range, and its task stays readable.
pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// A stored retention (milliseconds; a negative one reads as zero).
pub(crate) fn retention(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A stored count (attempts), clamped into `u32`.
pub(crate) fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// A stored status.
pub(crate) fn parse_status(text: &str) -> Result<TaskStatus> {
    text.parse()
        .map_err(|err| Error::backend("reading a stored task status", err))
}

/// Progress as stored.
pub(crate) fn encode_progress(progress: &Progress) -> Result<String> {
    serde_json::to_string(progress).map_err(|err| Error::backend("encoding progress", err))
}

/// Stored progress.
pub(crate) fn decode_progress(json: &str) -> Result<Progress> {
    serde_json::from_str(json).map_err(|err| Error::backend("decoding stored progress", err))
}

/// One entry of a stored attempt history, as both engines write it: times in epoch
/// milliseconds.
#[derive(serde::Deserialize)]
struct StoredAttempt {
    attempt: i64,
    started_at: Option<i64>,
    ended_at: i64,
    worker: Option<String>,
    outcome: AttemptOutcome,
    error: Option<String>,
}

/// A stored attempt history (a JSON array, oldest first; NULL when no attempt has failed).
pub(crate) fn decode_attempts(json: Option<&str>) -> Result<Vec<AttemptRecord>> {
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let stored: Vec<StoredAttempt> = serde_json::from_str(json)
        .map_err(|err| Error::backend("decoding a stored attempt history", err))?;
    Ok(stored
        .into_iter()
        .map(|a| AttemptRecord {
            attempt: count(a.attempt),
            started_at: time(a.started_at.unwrap_or(a.ended_at)),
            ended_at: time(a.ended_at),
            worker: a.worker,
            outcome: a.outcome,
            error: a.error,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_numbers_out_of_range_are_clamped() {
        assert_eq!(time(0), DateTime::<Utc>::UNIX_EPOCH);
        assert_eq!(
            time(1_700_000_000_123).timestamp_millis(),
            1_700_000_000_123
        );
        assert_eq!(time(i64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(time(i64::MIN), DateTime::<Utc>::MIN_UTC);
        assert_eq!(retention(-5), Duration::ZERO);
        assert_eq!(retention(1_500), Duration::from_millis(1_500));
        assert_eq!(count(-1), 0);
        assert_eq!(count(i64::MAX), u32::MAX);
    }
}

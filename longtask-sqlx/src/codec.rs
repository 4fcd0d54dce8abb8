//! How both SQL backends store the core types: times and durations as whole milliseconds, counts
//! as integers, statuses as their lower-case names, progress as JSON text.

use std::time::Duration;

use longtask_core::{Error, Progress, Result, TaskStatus};

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

//! Claim cursors: where the last claim of each job stopped, so the next claim need not walk the
//! dead index entries that claimed tasks leave behind.
//!
//! Every claimed task leaves a dead entry at the head of the waiting-tasks index until VACUUM
//! removes it, and a claim that scans the index from its head steps over all of them: claims
//! would get slower the more tasks were claimed since the last vacuum. So the backend remembers,
//! per job, the key (priority, run_at, id) of the last task it claimed, and claims with a scan
//! that starts just after that key (and one over the higher priorities, which are short), never
//! walking the dead region behind it.
//!
//! A task can sort before a cursor and so be missed by that scan: one submitted with an earlier
//! `run_at` (or, within one millisecond, a smaller id) by another process, one released or
//! recovered by another process, or one skipped because another claimer held its lock. Such a
//! task is still claimed, by the full scan from the head of the index, which a claim runs instead
//! when:
//! - the cursor scan finds fewer tasks than asked for (the queue after the cursor is empty);
//! - the job's cursor is older than [`FULL_SCAN_EVERY`] (1 s): so a task sorting before the
//!   cursor waits at most about a second longer than strict claim order would make it;
//! - this backend (or a clone) itself submitted a task sorting before the cursor, released a
//!   lease, recovered expired leases, or scheduled a retry: the cursors are dropped then, so
//!   within one process claim order is exact.
//!
//! Tasks of a higher or lower priority than the cursor's are always found at once (the
//! higher-priority part of the index, and the head of the lower-priority part, are scanned on
//! every claim), so a claim over several jobs never takes one job's task before another job's
//! task of a higher priority, or of the same priority but earlier in claim order.

use std::{
    cmp::{Ordering, Reverse},
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use uuid::Uuid;

/// How often, at least, a claim scans the waiting-tasks index from its head.
pub(crate) const FULL_SCAN_EVERY: Duration = Duration::from_secs(1);

/// A task's place in claim order: priority (higher first), then run_at, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) priority: i32,
    pub(crate) run_at: i64,
    pub(crate) id: Uuid,
}

impl Key {
    fn order(&self) -> (Reverse<i32>, i64, Uuid) {
        (Reverse(self.priority), self.run_at, self.id)
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order().cmp(&other.order())
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One job's cursor: the last key claimed, and when the index was last scanned from its head.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    key: Key,
    full_scan_at: Instant,
}

/// The cursors of one backend (shared by its clones), by job.
#[derive(Debug, Default)]
pub(crate) struct Cursors {
    by_job: Mutex<HashMap<String, Cursor>>,
}

impl Cursors {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Cursor>> {
        // The map holds plain values, always consistent: a panic elsewhere cannot break it.
        self.by_job
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cursor keys of `jobs`, in order, when every one of them has a cursor recent enough
    /// to claim from; `None` when the claim must scan from the head of the index.
    pub(crate) fn keys(&self, jobs: &[&str], now: Instant) -> Option<Vec<Key>> {
        let by_job = self.lock();
        jobs.iter()
            .map(|job| {
                by_job
                    .get(*job)
                    .filter(|c| now.saturating_duration_since(c.full_scan_at) < FULL_SCAN_EVERY)
                    .map(|c| c.key)
            })
            .collect()
    }

    /// Records a claim: `last` holds, per job claimed from, the greatest key claimed. After a
    /// full scan (`full_scan_at` is its start), the jobs in `jobs` that got nothing lose their
    /// cursor (their queues are empty; scanning from the head is as cheap as anything).
    pub(crate) fn claimed(
        &self,
        jobs: &[&str],
        last: &HashMap<&str, Key>,
        full_scan_at: Option<Instant>,
    ) {
        let mut by_job = self.lock();
        for job in jobs {
            match (last.get(job), full_scan_at) {
                (Some(&key), Some(at)) => {
                    by_job.insert(
                        (*job).to_owned(),
                        Cursor {
                            key,
                            full_scan_at: at,
                        },
                    );
                }
                (Some(&key), None) => {
                    if let Some(cursor) = by_job.get_mut(*job) {
                        // Concurrent claims: keep the furthest.
                        cursor.key = cursor.key.max(key);
                    }
                }
                (None, Some(_)) => {
                    by_job.remove(*job);
                }
                (None, None) => {}
            }
        }
    }

    /// A task of `job` with `key` is (or may soon be) waiting: drops the job's cursor if the
    /// task sorts before it.
    pub(crate) fn waiting(&self, job: &str, key: Key) {
        let mut by_job = self.lock();
        if by_job.get(job).is_some_and(|c| key < c.key) {
            by_job.remove(job);
        }
    }

    /// Tasks went back to waiting somewhere in claim order: drops every cursor.
    pub(crate) fn reset(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(priority: i32, run_at: i64, id: u128) -> Key {
        Key {
            priority,
            run_at,
            id: Uuid::from_u128(id),
        }
    }

    #[test]
    fn claim_order() {
        assert!(key(5, 100, 9) < key(0, 1, 1), "higher priority first");
        assert!(key(0, 1, 9) < key(0, 2, 1), "then earlier run_at");
        assert!(key(0, 1, 1) < key(0, 1, 2), "then smaller id");
    }

    #[test]
    fn cursor_lifecycle() {
        let cursors = Cursors::default();
        let start = Instant::now();
        assert_eq!(cursors.keys(&["a"], start), None);
        let last = HashMap::from([("a", key(0, 10, 5))]);
        cursors.claimed(&["a", "b"], &last, Some(start));
        assert_eq!(cursors.keys(&["a"], start), Some(vec![key(0, 10, 5)]));
        assert_eq!(cursors.keys(&["a", "b"], start), None, "b has no cursor");
        // A cursor claim moves it forward, never back.
        cursors.claimed(&["a"], &HashMap::from([("a", key(0, 20, 1))]), None);
        cursors.claimed(&["a"], &HashMap::from([("a", key(0, 15, 1))]), None);
        assert_eq!(cursors.keys(&["a"], start), Some(vec![key(0, 20, 1)]));
        // Too old: scan from the head.
        assert_eq!(cursors.keys(&["a"], start + FULL_SCAN_EVERY), None);
        // A task after the cursor keeps it; one before drops it.
        cursors.waiting("a", key(0, 30, 1));
        assert!(cursors.keys(&["a"], start).is_some());
        cursors.waiting("a", key(0, 20, 0));
        assert_eq!(cursors.keys(&["a"], start), None);
        cursors.claimed(&["a"], &last, Some(start));
        cursors.reset();
        assert_eq!(cursors.keys(&["a"], start), None);
        // A full scan that finds nothing drops the cursor.
        cursors.claimed(&["a"], &last, Some(start));
        cursors.claimed(&["a"], &HashMap::new(), Some(start));
        assert_eq!(cursors.keys(&["a"], start), None);
    }
}

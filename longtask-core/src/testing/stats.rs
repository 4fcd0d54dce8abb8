//! Cases: stats. Tasks per job and status follow every change (submit, claim, outcomes,
//! cancel, an operator's retry and delete, purge); the oldest due task is the one waiting
//! longest whatever its priority; finished tasks count in their minute of the last hour, purged
//! or not. (The model case also compares the counts with the records after every operation.)

use std::time::Duration;

use super::{failed, Harness};
use crate::{
    minute_of, FinishedMinute, JobStats, NewTask, Outcome, RunAt, Stats, StatusCounts, TaskStatus,
    THROUGHPUT_MINUTES,
};

async fn stats(h: &Harness) -> Stats {
    let stats = h.backend.store().stats().await.expect("stats");
    assert_eq!(stats.at, h.now(), "stats are read at the backend's clock");
    assert!(
        stats.jobs.windows(2).all(|w| w[0].job < w[1].job),
        "jobs come sorted by name: {stats:?}"
    );
    for job in &stats.jobs {
        assert_eq!(job.finished.len(), THROUGHPUT_MINUTES, "an hour of minutes");
        assert_eq!(
            job.finished.last().map(|m| m.minute.timestamp_millis()),
            Some(minute_of(h.now().timestamp_millis())),
            "the hour ends with the current minute"
        );
    }
    stats
}

fn counts(stats: &Stats, job: &str) -> StatusCounts {
    stats.job(job).map(|j| j.counts).unwrap_or_default()
}

fn expect(pairs: &[(TaskStatus, u64)]) -> StatusCounts {
    let mut counts = StatusCounts::default();
    for &(status, n) in pairs {
        counts.add(status, n);
    }
    counts
}

fn kept(job: &str, retention: Duration) -> NewTask {
    NewTask {
        retention,
        ..NewTask::new(job, "{}")
    }
}

/// Moves the clock to one second into the next minute, so that a case knows which minute its
/// outcomes land in.
fn to_next_minute(h: &Harness) {
    let now = h.now().timestamp_millis();
    let next = minute_of(now) + 60_000 + 1_000;
    h.advance(Duration::from_millis(
        u64::try_from(next - now).unwrap_or(0),
    ));
}

fn finished_in(job: &JobStats, minutes_ago: usize) -> (u64, u64, u64) {
    let bucket = job.finished[THROUGHPUT_MINUTES - 1 - minutes_ago];
    (bucket.succeeded, bucket.failed, bucket.cancelled)
}

/// Counts per job and status follow submit, a future schedule coming due, claim, success,
/// a failure with a retry, a permanent failure, cancel (waiting and running), an operator's retry
/// and delete, and purge; jobs are counted apart, and a job without tasks left drops out.
pub async fn stats_count_tasks_per_job_and_status(h: Harness) {
    let empty = stats(&h).await;
    assert!(
        empty.jobs.is_empty(),
        "a fresh namespace has no jobs: {empty:?}"
    );

    let hour = Duration::from_secs(3600);
    let later = NewTask {
        run_at: RunAt::At(h.now() + chrono::Duration::minutes(10)),
        ..kept("alpha", hour)
    };
    let ids = h
        .insert(vec![
            kept("alpha", hour),
            kept("alpha", hour),
            kept("alpha", hour),
            later,
            kept("beta", hour),
            kept("beta", hour),
            NewTask {
                max_attempts: 1,
                ..kept("beta", hour)
            },
        ])
        .await;
    let s = stats(&h).await;
    use TaskStatus::*;
    assert_eq!(counts(&s, "alpha"), expect(&[(Queued, 3), (Scheduled, 1)]));
    assert_eq!(counts(&s, "beta"), expect(&[(Queued, 3)]));

    // alpha: one succeeds, one runs, one is cancelled while waiting.
    let first = h.claim_one("alpha").await;
    assert_eq!(first.lease.task, ids[0]);
    h.succeed(first.lease, "1").await;
    let running = h.claim_one("alpha").await;
    h.backend.store().cancel(ids[2]).await.unwrap();
    // beta: one fails with a retry later, one is cancelled while running, one fails for good.
    let retried = h.claim_one("beta").await;
    h.finish(retried.lease, failed("busy", Some(Duration::from_secs(60))))
        .await;
    let cancelled = h.claim_one("beta").await;
    h.backend.store().cancel(ids[5]).await.unwrap();
    h.finish(
        cancelled.lease,
        Outcome::Cancelled {
            reason: "asked to".to_owned(),
        },
    )
    .await;
    let broken = h.claim_one("beta").await;
    assert_eq!(broken.lease.task, ids[6]);
    h.finish(broken.lease, failed("broken", None)).await;
    let s = stats(&h).await;
    assert_eq!(
        counts(&s, "alpha"),
        expect(&[(Scheduled, 1), (Running, 1), (Succeeded, 1), (Cancelled, 1)])
    );
    assert_eq!(
        counts(&s, "beta"),
        expect(&[(Retrying, 1), (Cancelled, 1), (Failed, 1)])
    );
    assert_eq!(s.totals().total(), 7);

    // The scheduled task comes due and counts as queued; the running one succeeds.
    h.advance(Duration::from_secs(11 * 60));
    h.succeed(running.lease, "2").await;
    let s = stats(&h).await;
    assert_eq!(
        counts(&s, "alpha"),
        expect(&[(Queued, 1), (Succeeded, 2), (Cancelled, 1)])
    );

    // An operator retries the failed and the cancelled beta tasks and deletes a succeeded alpha.
    let retried_now = h.backend.store().retry(&[ids[5], ids[6]]).await.unwrap();
    assert!(retried_now
        .iter()
        .all(|o| *o == crate::RetryOutcome::Retried));
    h.backend.store().delete(&[ids[0]]).await.unwrap();
    let s = stats(&h).await;
    assert_eq!(
        counts(&s, "alpha"),
        expect(&[(Queued, 1), (Succeeded, 1), (Cancelled, 1)])
    );
    assert_eq!(
        counts(&s, "beta"),
        expect(&[(Queued, 2), (Retrying, 1)]),
        "the retrying task's backoff is over, but it counts as retrying until claimed"
    );

    // Purge after the retention: the finished tasks are no longer counted.
    h.advance(hour + Duration::from_secs(1));
    let purged = h.backend.store().purge(100).await.unwrap();
    assert_eq!(purged, 2);
    let s = stats(&h).await;
    assert_eq!(counts(&s, "alpha"), expect(&[(Queued, 1)]));

    // Every task of alpha gone: alpha is no longer listed once its finished hour has passed.
    let last = h.claim_one("alpha").await;
    h.succeed(last.lease, "3").await;
    h.advance(hour + Duration::from_secs(61));
    h.backend.store().purge(100).await.unwrap();
    let s = stats(&h).await;
    assert!(s.job("alpha").is_none(), "alpha has no tasks left: {s:?}");
    assert!(s.job("beta").is_some());
}

/// The oldest due task is the one whose run_at is earliest among queued and due retrying tasks,
/// whatever its priority; running tasks, future schedules and other jobs do not count.
pub async fn stats_oldest_due_is_the_longest_waiting_task(h: Harness) {
    h.insert(vec![NewTask::new("other", "{}")]).await;
    h.advance(Duration::from_secs(1));
    let t0 = h.now();
    let low = h.insert(vec![NewTask::new("wait", "{}")]).await[0];
    h.advance(Duration::from_secs(10));
    let high = h
        .insert(vec![NewTask {
            priority: 9,
            ..NewTask::new("wait", "{}")
        }])
        .await[0];
    h.insert(vec![NewTask {
        run_at: RunAt::At(t0 + chrono::Duration::minutes(30)),
        priority: 20,
        ..NewTask::new("wait", "{}")
    }])
    .await;
    let s = stats(&h).await;
    let wait = s.job("wait").unwrap();
    assert_eq!(
        wait.oldest_due,
        Some(t0),
        "the low-priority task waits longest"
    );
    assert_eq!(wait.oldest_wait(s.at), Some(Duration::from_secs(10)));
    assert_eq!(
        s.oldest_wait(),
        Some(Duration::from_secs(11)),
        "the longest wait of any job"
    );

    // Claimed first: the high-priority task; the low one still waits.
    let claimed = h.claim_one("wait").await;
    assert_eq!(claimed.lease.task, high);
    assert_eq!(stats(&h).await.job("wait").unwrap().oldest_due, Some(t0));

    // The low one runs and fails with a retry in 5 s: not due, nothing is.
    let claimed = h.claim_one("wait").await;
    assert_eq!(claimed.lease.task, low);
    h.finish(claimed.lease, failed("later", Some(Duration::from_secs(5))))
        .await;
    let failed_at = h.now();
    assert_eq!(stats(&h).await.job("wait").unwrap().oldest_due, None);

    // Its backoff over, the retrying task is due and the oldest.
    h.advance(Duration::from_secs(7));
    let s = stats(&h).await;
    let wait = s.job("wait").unwrap();
    assert_eq!(
        wait.oldest_due,
        Some(failed_at + chrono::Duration::seconds(5))
    );
    assert_eq!(wait.counts.get(TaskStatus::Retrying), 1);

    // The future schedule comes due: the retrying task is still older.
    h.advance(Duration::from_secs(31 * 60));
    let s = stats(&h).await;
    assert_eq!(
        s.job("wait").unwrap().oldest_due,
        Some(failed_at + chrono::Duration::seconds(5))
    );
}

/// Tasks finished count in the minute they finished in, by outcome (succeeded, failed for
/// good, cancelled while waiting or running; retries are not finishes), per job; purging them
/// does not change the throughput; minutes older than an hour drop out.
pub async fn stats_count_finished_tasks_per_minute(h: Harness) {
    to_next_minute(&h);
    let short = Duration::from_secs(1);
    let ids = h
        .insert(vec![
            kept("flow", short),
            NewTask {
                priority: 5,
                ..kept("flow", short)
            },
            NewTask {
                max_attempts: 1,
                ..kept("flow", short)
            },
            kept("flow", short),
            kept("flow", short),
            kept("side", short),
            kept("keep", Duration::from_secs(24 * 3600)),
        ])
        .await;
    // Minute 0: two succeed (one of them after a retry), the other job's one too.
    let retried = h.claim_one("flow").await;
    assert_eq!(retried.lease.task, ids[1], "the higher priority first");
    h.finish(retried.lease, failed("again", Some(Duration::from_secs(1))))
        .await;
    h.advance(Duration::from_secs(2));
    let again = h.claim_one("flow").await;
    assert_eq!(again.lease.task, ids[1], "the higher priority again");
    h.succeed(again.lease, "1").await;
    let first = h.claim_one("flow").await;
    assert_eq!(first.lease.task, ids[0]);
    h.succeed(first.lease, "2").await;
    let side = h.claim_one("side").await;
    h.succeed(side.lease, "3").await;
    let keep = h.claim_one("keep").await;
    h.succeed(keep.lease, "4").await;
    // Minute 1: one fails for good, one is cancelled while waiting.
    h.advance(Duration::from_secs(60));
    let broken = h.claim_one("flow").await;
    assert_eq!(broken.lease.task, ids[2]);
    h.finish(broken.lease, failed("broken", None)).await;
    h.backend.store().cancel(ids[3]).await.unwrap();
    // Minute 3: one is cancelled while running.
    h.advance(Duration::from_secs(120));
    let running = h.claim_one("flow").await;
    h.backend.store().cancel(ids[4]).await.unwrap();
    h.finish(
        running.lease,
        Outcome::Cancelled {
            reason: "asked to".to_owned(),
        },
    )
    .await;

    let s = stats(&h).await;
    let flow = s.job("flow").unwrap();
    assert_eq!(finished_in(flow, 3), (2, 0, 0), "minute 0: {flow:?}");
    assert_eq!(finished_in(flow, 2), (0, 1, 1), "minute 1");
    assert_eq!(finished_in(flow, 1), (0, 0, 0), "minute 2");
    assert_eq!(finished_in(flow, 0), (0, 0, 1), "minute 3");
    let total: u64 = flow.finished.iter().map(FinishedMinute::total).sum();
    assert_eq!(total, 5);
    assert_eq!(finished_in(s.job("side").unwrap(), 3), (1, 0, 0));

    // Purged, the tasks are no longer counted, but their minutes still are.
    h.advance(Duration::from_secs(5));
    assert_eq!(h.backend.store().purge(100).await.unwrap(), 6);
    let s = stats(&h).await;
    let flow = s.job("flow").unwrap();
    assert_eq!(flow.counts, StatusCounts::default());
    assert_eq!(finished_in(flow, 3), (2, 0, 0));
    assert_eq!(finished_in(flow, 0), (0, 0, 1));

    // An hour on, minutes 0 and 1 have dropped out; minute 3 is the oldest still in the hour.
    h.advance(Duration::from_secs(59 * 60));
    let s = stats(&h).await;
    let flow = s.job("flow").unwrap();
    let total: u64 = flow.finished.iter().map(FinishedMinute::total).sum();
    assert_eq!(total, 1, "only minute 3 is left in the hour: {flow:?}");
    assert_eq!(flow.finished[0].cancelled, 1);
    h.advance(Duration::from_secs(60));
    let s = stats(&h).await;
    assert!(s.job("flow").is_none(), "nothing left in the hour: {s:?}");

    // Hours later, after purges, the task still kept is still counted, though its minute has
    // long left the hour.
    h.advance(Duration::from_secs(3 * 3600));
    assert_eq!(h.backend.store().purge(100).await.unwrap(), 0);
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.backend.store().purge(100).await.unwrap(), 0);
    let s = stats(&h).await;
    let keep = s.job("keep").expect("a job with a task kept");
    assert_eq!(keep.counts.get(TaskStatus::Succeeded), 1, "{keep:?}");
    assert_eq!(
        keep.finished.iter().map(FinishedMinute::total).sum::<u64>(),
        0
    );
}

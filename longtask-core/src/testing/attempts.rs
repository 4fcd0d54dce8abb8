//! Cases: attempt history. Every attempt that ends without success (failed, lost, cancelled) is
//! kept with the task, with its number, worker, start, end and error, in the same write as its
//! outcome; a success, a released attempt and a stale lease's outcome add nothing; an operator's
//! retry keeps the history; only the last [`MAX_ATTEMPT_HISTORY`] are kept.

use std::time::Duration;

use super::{failed as fail, Harness, LEASE};
use crate::{
    Ack, AttemptOutcome, AttemptRecord, CancelOutcome, NewTask, Outcome, RetryOutcome, TaskStatus,
    MAX_ATTEMPT_HISTORY,
};

/// An error message with quotes, markup, a line break, a slash and non-ASCII text: every
/// backend must keep it exactly.
const LOCKED: &str = "the ledger is \"locked\" </td>\n\\ by Zoë ✓";

/// Two failed attempts are kept in order, each with its number, the worker that claimed it, its
/// start and end and its error; the successful third attempt adds nothing.
pub async fn failed_attempts_are_kept_in_order(h: Harness) {
    let id = h.submit("history", "{}").await;
    let started_1 = h.now();
    let first = h.claim_as("worker-a", &["history"], 1).await.remove(0);
    h.advance(Duration::from_secs(3));
    let ended_1 = h.now();
    let ack = h
        .finish(first.lease, fail(LOCKED, Some(Duration::ZERO)))
        .await;
    assert_eq!(ack, Ack::Applied);
    let after_one = h.get(id).await;
    assert_eq!(
        after_one.attempts,
        [AttemptRecord {
            attempt: 1,
            started_at: started_1,
            ended_at: ended_1,
            worker: Some("worker-a".to_owned()),
            outcome: AttemptOutcome::Failed,
            error: Some(LOCKED.to_owned()),
        }],
        "the failed attempt is recorded with its outcome"
    );

    h.advance(Duration::from_secs(1));
    let started_2 = h.now();
    let second = h.claim_as("worker-b", &["history"], 1).await.remove(0);
    assert_eq!(second.attempt, 2);
    h.advance(Duration::from_secs(2));
    let ended_2 = h.now();
    h.finish(
        second.lease,
        fail("timed out after 2 s", Some(Duration::from_secs(5))),
    )
    .await;
    let expected = vec![
        after_one.attempts[0].clone(),
        AttemptRecord {
            attempt: 2,
            started_at: started_2,
            ended_at: ended_2,
            worker: Some("worker-b".to_owned()),
            outcome: AttemptOutcome::Failed,
            error: Some("timed out after 2 s".to_owned()),
        },
    ];
    let retrying = h.get(id).await;
    assert_eq!(retrying.status, TaskStatus::Retrying);
    assert_eq!(retrying.attempts, expected, "oldest first");

    h.advance(Duration::from_secs(5));
    let third = h.claim_as("worker-c", &["history"], 1).await.remove(0);
    assert_eq!(third.attempt, 3);
    assert_eq!(h.get(id).await.attempts, expected, "a claim adds nothing");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.succeed(third.lease, "\"done\"").await, Ack::Applied);
    let done = h.get(id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.attempts, expected, "a success adds no entry");
}

/// A lease that expired and was recovered is kept as `lost`; a running attempt that stops on a
/// cancellation request as `cancelled`. A stale lease's outcome and a released attempt add
/// nothing; an operator's retry keeps the history.
pub async fn lost_and_cancelled_attempts_are_kept(h: Harness) {
    let id = h
        .insert(vec![NewTask {
            max_attempts: 3,
            ..NewTask::new("history", "{}")
        }])
        .await[0];
    let started_1 = h.now();
    let lost = h.claim_as("worker-a", &["history"], 1).await.remove(0);
    h.advance(LEASE + Duration::from_secs(1));
    let ended_1 = h.now();
    assert_eq!(h.backend.queue().recover_expired(10).await.unwrap(), 1);
    let record = h.get(id).await;
    assert_eq!(record.attempts.len(), 1, "got {:?}", record.attempts);
    let entry = &record.attempts[0];
    assert_eq!(
        (
            entry.attempt,
            entry.started_at,
            entry.ended_at,
            entry.worker.as_deref(),
            entry.outcome
        ),
        (
            1,
            started_1,
            ended_1,
            Some("worker-a"),
            AttemptOutcome::Lost
        )
    );
    let message = entry.error.as_deref().unwrap_or_default();
    assert!(
        message.contains("attempt 1 was lost"),
        "the lost attempt says so: {message:?}"
    );

    // The worker that lost its lease reports late: nothing is added.
    let late = h.finish(lost.lease, fail("late failure", Some(Duration::ZERO)));
    assert_eq!(late.await, Ack::Stale);
    let late = Outcome::Cancelled {
        reason: "late cancel".to_owned(),
    };
    assert_eq!(h.finish(lost.lease, late).await, Ack::Stale);
    assert_eq!(h.get(id).await.attempts, record.attempts, "stale outcomes");

    // A released attempt was not counted, and adds nothing.
    let released = h.claim_as("worker-b", &["history"], 1).await.remove(0);
    let acks = h.backend.queue().release(&[released.lease]).await.unwrap();
    assert_eq!(acks, [Ack::Applied]);
    assert_eq!(h.get(id).await.attempts, record.attempts, "a release");

    h.advance(Duration::from_secs(1));
    let started_2 = h.now();
    let cancelled = h.claim_as("worker-c", &["history"], 1).await.remove(0);
    assert_eq!(cancelled.attempt, 2);
    let asked = h.backend.store().cancel(id).await.unwrap();
    assert_eq!(asked, CancelOutcome::Requested);
    h.advance(Duration::from_secs(2));
    let ended_2 = h.now();
    let stop = Outcome::Cancelled {
        reason: "stopped on request".to_owned(),
    };
    assert_eq!(h.finish(cancelled.lease, stop).await, Ack::Applied);
    let record = h.get(id).await;
    assert_eq!(record.status, TaskStatus::Cancelled);
    assert_eq!(record.attempts.len(), 2, "got {:?}", record.attempts);
    assert_eq!(
        record.attempts[1],
        AttemptRecord {
            attempt: 2,
            started_at: started_2,
            ended_at: ended_2,
            worker: Some("worker-c".to_owned()),
            outcome: AttemptOutcome::Cancelled,
            error: Some("stopped on request".to_owned()),
        }
    );

    // An operator's retry keeps the history; the new attempts are added after it.
    let retried = h.backend.store().retry(&[id]).await.unwrap();
    assert_eq!(retried, [RetryOutcome::Retried]);
    assert_eq!(h.get(id).await.attempts, record.attempts, "history is kept");
    let started_3 = h.now();
    let again = h.claim_as("worker-d", &["history"], 1).await.remove(0);
    assert_eq!(again.attempt, 1, "a fresh attempt budget");
    h.advance(Duration::from_secs(1));
    let ended_3 = h.now();
    h.finish(again.lease, fail("bad parameters", None)).await;
    let failed = h.get(id).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    let mut expected = record.attempts;
    expected.push(AttemptRecord {
        attempt: 1,
        started_at: started_3,
        ended_at: ended_3,
        worker: Some("worker-d".to_owned()),
        outcome: AttemptOutcome::Failed,
        error: Some("bad parameters".to_owned()),
    });
    assert_eq!(failed.attempts, expected);
}

/// After 25 failed attempts, the last 20 (attempts 6 to 25) are kept, oldest first.
pub async fn attempt_history_keeps_the_last_twenty(h: Harness) {
    let id = h
        .insert(vec![NewTask {
            max_attempts: 25,
            ..NewTask::new("history", "{}")
        }])
        .await[0];
    for n in 1..=25_u32 {
        let claimed = h
            .claim_as(&format!("worker-{n}"), &["history"], 1)
            .await
            .remove(0);
        assert_eq!(claimed.attempt, n);
        h.advance(Duration::from_secs(1));
        let ack = h
            .finish(
                claimed.lease,
                fail(&format!("failure {n}"), Some(Duration::ZERO)),
            )
            .await;
        assert_eq!(ack, Ack::Applied);
    }
    let record = h.get(id).await;
    assert_eq!(
        record.status,
        TaskStatus::Failed,
        "its attempts are used up"
    );
    assert_eq!(record.attempts.len(), MAX_ATTEMPT_HISTORY);
    let numbers: Vec<u32> = record.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(
        numbers,
        (6..=25).collect::<Vec<u32>>(),
        "the last 20, oldest first"
    );
    for entry in &record.attempts {
        let n = entry.attempt;
        assert_eq!(
            entry.error.as_deref(),
            Some(format!("failure {n}").as_str())
        );
        assert_eq!(
            entry.worker.as_deref(),
            Some(format!("worker-{n}").as_str())
        );
        assert_eq!(entry.outcome, AttemptOutcome::Failed);
        assert_eq!(
            entry.ended_at - entry.started_at,
            chrono::Duration::seconds(1)
        );
    }
}

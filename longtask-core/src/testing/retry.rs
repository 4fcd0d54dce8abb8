//! Cases: failed attempts, backoff, retry limits.

use std::time::Duration;

use super::{failed as fail, Harness};
use crate::{Ack, NewTask, TaskStatus};

/// A retryable failure waits out its backoff as `retrying`, with the error recorded.
pub async fn failure_schedules_retry_after_backoff(h: Harness) {
    let id = h.submit("flaky", "{}").await;
    let claimed = h.claim_one("flaky").await;
    let ack = h
        .finish(
            claimed.lease,
            fail("service busy", Some(Duration::from_secs(10))),
        )
        .await;
    assert_eq!(ack, Ack::Applied);
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Retrying);
    assert_eq!(got.run_at, h.now() + chrono::Duration::seconds(10));
    assert_eq!(got.attempt, 1);
    assert_eq!(got.finished_at, None);
    assert_eq!(got.lease_owner, None);
    let error = got.last_error.unwrap();
    assert_eq!(error.message, "service busy");
    assert_eq!(error.attempt, 1);
    assert_eq!(error.at, h.now());

    assert!(
        h.claim(&["flaky"], 1).await.is_empty(),
        "not before the backoff"
    );
    let retry_at = got.run_at;
    h.advance(Duration::from_secs(12));
    let again = h.claim_one("flaky").await;
    assert_eq!(again.lease.task, id);
    assert_eq!(again.attempt, 2);
    assert_eq!(again.due_at, retry_at, "due since its backoff ended");
    assert_eq!(h.get(id).await.status, TaskStatus::Running);
}

/// Two failures then a success: the task succeeds on attempt 3 with its output.
pub async fn retry_then_success(h: Harness) {
    let id = h.submit("twice", "{}").await;
    for attempt in 1..=2 {
        let claimed = h.claim_one("twice").await;
        assert_eq!(claimed.attempt, attempt);
        h.finish(
            claimed.lease,
            fail(&format!("failure {attempt}"), Some(Duration::ZERO)),
        )
        .await;
        let got = h.get(id).await;
        assert_eq!(got.status, TaskStatus::Retrying);
        assert_eq!(
            got.last_error.unwrap().message,
            format!("failure {attempt}")
        );
    }
    let claimed = h.claim_one("twice").await;
    assert_eq!(claimed.attempt, 3);
    h.succeed(claimed.lease, "\"ok\"").await;
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Succeeded);
    assert_eq!(got.attempt, 3);
    super::assert_json_eq(got.output.as_deref().unwrap(), "\"ok\"");
}

/// Once attempts are used up, a retryable failure fails the task.
pub async fn retry_until_failed(h: Harness) {
    let task = NewTask {
        max_attempts: 2,
        ..NewTask::new("doomed", "{}")
    };
    let id = h.insert(vec![task]).await[0];
    let claimed = h.claim_one("doomed").await;
    h.finish(claimed.lease, fail("first", Some(Duration::from_secs(1))))
        .await;
    assert_eq!(h.get(id).await.status, TaskStatus::Retrying);
    h.advance(Duration::from_secs(1));
    let claimed = h.claim_one("doomed").await;
    assert_eq!(claimed.attempt, 2);
    h.finish(claimed.lease, fail("second", Some(Duration::from_secs(1))))
        .await;
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Failed);
    assert_eq!(got.finished_at, Some(h.now()));
    let error = got.last_error.unwrap();
    assert_eq!((error.message.as_str(), error.attempt), ("second", 2));
    h.advance(Duration::from_secs(60));
    assert!(h.claim(&["doomed"], 1).await.is_empty());
}

/// A permanent failure fails the task at once, whatever attempts remain.
pub async fn permanent_failure_fails_at_once(h: Harness) {
    let id = h.submit("fatal", "{}").await;
    let claimed = h.claim_one("fatal").await;
    h.finish(claimed.lease, fail("bad parameters", None)).await;
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Failed);
    assert_eq!(got.attempt, 1);
    assert_eq!(got.last_error.unwrap().message, "bad parameters");
}

/// A failure after cancellation was requested ends the task cancelled, not retried.
pub async fn retry_after_cancel_request_is_cancelled(h: Harness) {
    let id = h.submit("cancel-retry", "{}").await;
    let claimed = h.claim_one("cancel-retry").await;
    assert_eq!(
        h.backend.store().cancel(id).await.unwrap(),
        crate::CancelOutcome::Requested
    );
    h.finish(claimed.lease, fail("interrupted", Some(Duration::ZERO)))
        .await;
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Cancelled);
    assert!(got.finished_at.is_some());
    assert!(h.claim(&["cancel-retry"], 1).await.is_empty());
}

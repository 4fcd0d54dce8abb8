//! Cases: cancellation of waiting, running and finished tasks.

use std::time::Duration;

use super::{Harness, LEASE};
use crate::{Ack, CancelOutcome, Error, LeaseState, NewTask, Outcome, RunAt, TaskId, TaskStatus};

/// Queued, scheduled and retrying tasks are cancelled at once and never run.
pub async fn cancel_waiting_tasks(h: Harness) {
    let queued = h.submit("wait", "1").await;
    let scheduled = h
        .insert(vec![NewTask {
            run_at: RunAt::After(Duration::from_secs(60)),
            ..NewTask::new("wait", "2")
        }])
        .await[0];
    let retrying = h.submit("wait-retry", "3").await;
    let claimed = h.claim_one("wait-retry").await;
    h.finish(
        claimed.lease,
        Outcome::Failed {
            error: "busy".to_owned(),
            retry_after: Some(Duration::from_secs(30)),
        },
    )
    .await;
    assert_eq!(h.get(retrying).await.status, TaskStatus::Retrying);

    for id in [queued, scheduled, retrying] {
        assert_eq!(
            h.backend.store().cancel(id).await.unwrap(),
            CancelOutcome::Cancelled
        );
        let got = h.get(id).await;
        assert_eq!(got.status, TaskStatus::Cancelled);
        assert_eq!(got.finished_at, Some(h.now()));
    }
    h.advance(Duration::from_secs(3600));
    assert!(h.claim(&["wait", "wait-retry"], 10).await.is_empty());
}

/// Cancelling a running task requests it; the worker learns at its heartbeat and reports the
/// task cancelled.
pub async fn cancel_running_task_is_requested(h: Harness) {
    let id = h.submit("run-cancel", "{}").await;
    let claimed = h.claim_one("run-cancel").await;
    assert_eq!(
        h.backend.store().cancel(id).await.unwrap(),
        CancelOutcome::Requested
    );
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Running);
    assert!(got.cancel_requested);
    let states = h
        .backend
        .queue()
        .heartbeat(&[claimed.lease], LEASE)
        .await
        .unwrap();
    assert_eq!(
        states,
        vec![LeaseState::Held {
            cancel_requested: true
        }]
    );
    // Asking again changes nothing.
    assert_eq!(
        h.backend.store().cancel(id).await.unwrap(),
        CancelOutcome::Requested
    );
    let ack = h
        .finish(
            claimed.lease,
            Outcome::Cancelled {
                reason: "stopped by request".to_owned(),
            },
        )
        .await;
    assert_eq!(ack, Ack::Applied);
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Cancelled);
    assert_eq!(got.finished_at, Some(h.now()));
}

/// Cancelling a finished task changes nothing and says how it finished.
pub async fn cancel_finished_task_changes_nothing(h: Harness) {
    let id = h.submit("done", "{}").await;
    let claimed = h.claim_one("done").await;
    h.succeed(claimed.lease, "42").await;
    assert_eq!(
        h.backend.store().cancel(id).await.unwrap(),
        CancelOutcome::AlreadyFinished(TaskStatus::Succeeded)
    );
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Succeeded);
    super::assert_json_eq(got.output.as_deref().unwrap(), "42");
    let cancelled = h.submit("done", "{}").await;
    h.backend.store().cancel(cancelled).await.unwrap();
    assert_eq!(
        h.backend.store().cancel(cancelled).await.unwrap(),
        CancelOutcome::AlreadyFinished(TaskStatus::Cancelled)
    );
}

/// Cancelling an unknown id is a not-found error.
pub async fn cancel_unknown_task_is_not_found(h: Harness) {
    let id = TaskId::new();
    match h.backend.store().cancel(id).await {
        Err(Error::NotFound(missing)) => assert_eq!(missing, id),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

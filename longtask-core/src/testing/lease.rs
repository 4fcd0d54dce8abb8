//! Cases: leases, fencing, heartbeats, recovery after a worker dies, release.

use std::time::Duration;

use super::{Harness, LEASE};
use crate::{Ack, CancelOutcome, Lease, LeaseState, NewTask, Outcome, TaskStatus};

const PAST_LEASE: Duration = Duration::from_secs(31);

/// Completing under a live lease stores the output and finishes the task; completing twice is
/// refused.
pub async fn complete_records_output(h: Harness) {
    let id = h.submit("complete", "{}").await;
    let claimed = h.claim_one("complete").await;
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.succeed(claimed.lease, r#"{"rows":3}"#).await,
        Ack::Applied
    );
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Succeeded);
    super::assert_json_eq(got.output.as_deref().unwrap(), r#"{"rows":3}"#);
    assert_eq!(got.finished_at, Some(h.now()));
    assert_eq!(got.lease_owner, None);
    assert_eq!(got.lease_expires_at, None);
    assert_eq!(got.attempt, 1);
    assert_eq!(h.succeed(claimed.lease, "2").await, Ack::Stale);
    super::assert_json_eq(h.get(id).await.output.as_deref().unwrap(), r#"{"rows":3}"#);
}

/// Fencing: a worker whose lease expired and whose task was claimed again cannot complete,
/// fail or extend the newer attempt.
pub async fn stale_lease_changes_nothing(h: Harness) {
    let id = h.submit("fence", "{}").await;
    let first = h.claim_as("old", &["fence"], 1).await.remove(0);
    h.advance(PAST_LEASE);
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 1);
    let second = h.claim_as("new", &["fence"], 1).await.remove(0);
    assert_eq!(second.lease.task, id);
    assert_ne!(second.lease.token, first.lease.token);
    assert_eq!(second.attempt, 2);

    assert_eq!(h.succeed(first.lease, "\"old\"").await, Ack::Stale);
    let failed = h
        .finish(
            first.lease,
            Outcome::Failed {
                error: "old".to_owned(),
                retry_after: None,
            },
        )
        .await;
    assert_eq!(failed, Ack::Stale);
    let beat = h
        .backend
        .queue()
        .heartbeat(&[first.lease], LEASE)
        .await
        .unwrap();
    assert_eq!(beat, vec![LeaseState::Lost]);
    let release = h.backend.queue().release(&[first.lease]).await.unwrap();
    assert_eq!(release, vec![Ack::Stale]);

    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Running);
    assert_eq!(got.attempt, 2);
    assert_eq!(got.lease_owner.as_deref(), Some("new"));
    assert_eq!(h.succeed(second.lease, "\"new\"").await, Ack::Applied);
    super::assert_json_eq(h.get(id).await.output.as_deref().unwrap(), "\"new\"");
}

/// A heartbeat extends the lease from now, so a live worker's task is not recovered.
pub async fn heartbeat_extends_lease(h: Harness) {
    let id = h.submit("beat", "{}").await;
    let claimed = h.claim_one("beat").await;
    h.advance(Duration::from_secs(20));
    let states = h
        .backend
        .queue()
        .heartbeat(&[claimed.lease], LEASE)
        .await
        .unwrap();
    assert_eq!(
        states,
        vec![LeaseState::Held {
            cancel_requested: false
        }]
    );
    assert_eq!(
        h.get(id).await.lease_expires_at,
        Some(h.now() + chrono::Duration::from_std(LEASE).unwrap())
    );
    h.advance(Duration::from_secs(20)); // 40 s after the claim, 20 s after the heartbeat
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 0);
    assert_eq!(h.get(id).await.status, TaskStatus::Running);
    assert_eq!(h.succeed(claimed.lease, "1").await, Ack::Applied);
}

/// Heartbeats for unknown, finished or forged leases report them lost, and change nothing.
pub async fn heartbeat_with_stale_lease_is_lost(h: Harness) {
    let id = h.submit("lost", "{}").await;
    let claimed = h.claim_one("lost").await;
    let forged = Lease {
        task: id,
        token: claimed.lease.token.wrapping_add(1000),
    };
    let unknown = Lease {
        task: crate::TaskId::new(),
        token: 1,
    };
    let states = h
        .backend
        .queue()
        .heartbeat(&[forged, claimed.lease, unknown], LEASE)
        .await
        .unwrap();
    assert_eq!(
        states,
        vec![
            LeaseState::Lost,
            LeaseState::Held {
                cancel_requested: false
            },
            LeaseState::Lost
        ]
    );
    h.succeed(claimed.lease, "1").await;
    let states = h
        .backend
        .queue()
        .heartbeat(&[claimed.lease], LEASE)
        .await
        .unwrap();
    assert_eq!(states, vec![LeaseState::Lost]);
    assert_eq!(h.get(id).await.status, TaskStatus::Succeeded);
}

/// At-least-once: a task whose worker died (lease expired) is recovered and completed by another
/// worker; its record says what happened.
pub async fn expired_lease_is_recovered_and_run_again(h: Harness) {
    let id = h.submit("dies", "{}").await;
    let first = h.claim_as("dead-worker", &["dies"], 1).await.remove(0);
    assert!(h.claim(&["dies"], 1).await.is_empty());
    h.advance(PAST_LEASE);
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 1);
    let got = h.get(id).await;
    assert!(
        matches!(got.status, TaskStatus::Retrying | TaskStatus::Queued),
        "a recovered task waits to run again, got {}",
        got.status
    );
    let error = got.last_error.expect("the lost attempt is recorded");
    assert_eq!(error.attempt, 1);
    assert!(error.message.contains("lost"), "{}", error.message);
    assert_eq!(got.lease_owner, None);

    let second = h.claim_as("live-worker", &["dies"], 1).await.remove(0);
    assert_eq!(second.lease.task, id);
    assert_eq!(second.attempt, 2);
    assert_eq!(h.succeed(second.lease, "\"done\"").await, Ack::Applied);
    assert_eq!(h.succeed(first.lease, "\"late\"").await, Ack::Stale);
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Succeeded);
    assert_eq!(got.attempt, 2);
    super::assert_json_eq(got.output.as_deref().unwrap(), "\"done\"");
}

/// A lost lease on the last attempt fails the task.
pub async fn expired_lease_on_last_attempt_fails(h: Harness) {
    let task = NewTask {
        max_attempts: 1,
        ..NewTask::new("once", "{}")
    };
    let id = h.insert(vec![task]).await[0];
    h.claim_one("once").await;
    h.advance(PAST_LEASE);
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 1);
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Failed);
    assert_eq!(got.finished_at, Some(h.now()));
    assert!(got.last_error.unwrap().message.contains("lost"));
    assert!(h.claim(&["once"], 1).await.is_empty());
}

/// Recovery touches only expired leases, and at most `limit` of them.
pub async fn live_leases_are_not_recovered(h: Harness) {
    h.insert((0..5).map(|_| NewTask::new("live", "{}")).collect())
        .await;
    let claimed = h.claim(&["live"], 5).await;
    h.advance(Duration::from_secs(29));
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 0);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.backend.queue().recover_expired(2).await.unwrap(), 2);
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 3);
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 0);
    for c in claimed {
        assert_ne!(h.get(c.lease.task).await.status, TaskStatus::Running);
    }
}

/// Releasing gives a task back unrun: queued, due now, its attempt not counted, old lease dead.
pub async fn release_returns_task_unrun(h: Harness) {
    let id = h.submit("release", "{}").await;
    let first = h.claim_one("release").await;
    h.advance(Duration::from_secs(5));
    let acks = h.backend.queue().release(&[first.lease]).await.unwrap();
    assert_eq!(acks, vec![Ack::Applied]);
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Queued);
    assert_eq!(got.attempt, 0);
    assert_eq!(got.run_at, h.now());
    assert_eq!(got.lease_owner, None);

    let second = h.claim_one("release").await;
    assert_eq!(second.attempt, 1);
    assert_ne!(second.lease.token, first.lease.token);
    assert_eq!(h.succeed(first.lease, "1").await, Ack::Stale);
    assert_eq!(h.succeed(second.lease, "2").await, Ack::Applied);
}

/// Fencing between recovery and the next claim: once an expired lease was recovered, the old
/// lease can neither succeed, fail (with a retry or without), cancel, extend nor release the
/// task, which waits unchanged to run again; the next claim runs it normally.
pub async fn stale_lease_after_recovery_changes_nothing(h: Harness) {
    let task = NewTask {
        max_attempts: 3,
        ..NewTask::new("zombie", "{}")
    };
    let id = h.insert(vec![task]).await[0];
    let old = h.claim_as("zombie-worker", &["zombie"], 1).await.remove(0);
    h.advance(PAST_LEASE);
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 1);
    let recovered = h.get(id).await;
    assert!(
        matches!(recovered.status, TaskStatus::Retrying | TaskStatus::Queued),
        "a recovered task waits to run again, got {}",
        recovered.status
    );

    let outcomes = [
        Outcome::Succeeded {
            output: "\"zombie\"".to_owned(),
        },
        Outcome::Failed {
            error: "zombie failure".to_owned(),
            retry_after: Some(Duration::from_secs(60)),
        },
        Outcome::Failed {
            error: "zombie fatal".to_owned(),
            retry_after: None,
        },
        Outcome::Cancelled {
            reason: "zombie cancel".to_owned(),
        },
    ];
    for outcome in outcomes {
        let what = format!("{outcome:?}");
        assert_eq!(h.finish(old.lease, outcome).await, Ack::Stale, "{what}");
        assert_eq!(h.get(id).await, recovered, "{what} changed the task");
    }
    let beat = h
        .backend
        .queue()
        .heartbeat(&[old.lease], LEASE)
        .await
        .unwrap();
    assert_eq!(beat, vec![LeaseState::Lost]);
    let release = h.backend.queue().release(&[old.lease]).await.unwrap();
    assert_eq!(release, vec![Ack::Stale]);
    assert_eq!(
        h.get(id).await,
        recovered,
        "a stale heartbeat or release changed the task"
    );
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 0);

    let again = h.claim_one("zombie").await;
    assert_eq!(again.lease.task, id);
    assert_eq!(again.attempt, 2);
    assert_ne!(again.lease.token, old.lease.token);
    assert_eq!(h.succeed(again.lease, "\"live\"").await, Ack::Applied);
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Succeeded);
    super::assert_json_eq(got.output.as_deref().unwrap(), "\"live\"");
}

/// Recovering an expired lease of a task whose cancellation was requested ends it cancelled
/// (never retried), and its old lease stays dead.
pub async fn recovering_cancel_requested_task_cancels_it(h: Harness) {
    let id = h.submit("cancel-lost", "{}").await;
    let old = h.claim_one("cancel-lost").await;
    assert_eq!(
        h.backend.store().cancel(id).await.unwrap(),
        CancelOutcome::Requested
    );
    h.advance(PAST_LEASE);
    assert_eq!(h.backend.queue().recover_expired(100).await.unwrap(), 1);
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Cancelled);
    assert_eq!(got.finished_at, Some(h.now()));
    assert_eq!(got.lease_owner, None);
    assert_eq!(h.succeed(old.lease, "1").await, Ack::Stale);
    assert_eq!(
        h.backend
            .queue()
            .heartbeat(&[old.lease], LEASE)
            .await
            .unwrap(),
        vec![LeaseState::Lost]
    );
    h.advance(Duration::from_secs(3600));
    assert!(h.claim(&["cancel-lost"], 1).await.is_empty());
    assert_eq!(h.get(id).await.status, TaskStatus::Cancelled);
}

/// One batch of outcomes holding an older lease's outcome before the live lease's, for the same
/// task (a worker flushing outcomes it could not write earlier): the old one is stale, the live
/// one applies, and a repeat of the live one is stale. (Found by the model-based case on SQLite,
/// where the stale outcome used to hide the live one.)
pub async fn stale_outcome_before_live_one_in_a_batch(h: Harness) {
    let id = h.submit("batch", "{}").await;
    let first = h.claim_one("batch").await;
    let released = h.backend.queue().release(&[first.lease]).await.unwrap();
    assert_eq!(released, vec![Ack::Applied]);
    let second = h.claim_one("batch").await;
    assert_eq!(second.lease.task, id);
    assert_ne!(second.lease.token, first.lease.token);
    let succeed = |lease, output: &str| {
        crate::Completion::new(
            lease,
            Outcome::Succeeded {
                output: output.to_owned(),
            },
        )
    };
    let acks = h
        .backend
        .queue()
        .finish(vec![
            succeed(first.lease, "\"old\""),
            succeed(second.lease, "\"new\""),
            succeed(second.lease, "\"again\""),
        ])
        .await
        .unwrap();
    assert_eq!(acks, vec![Ack::Stale, Ack::Applied, Ack::Stale]);
    let record = h.get(id).await;
    assert_eq!(record.status, TaskStatus::Succeeded);
    super::assert_json_eq(record.output.as_deref().unwrap(), "\"new\"");
}

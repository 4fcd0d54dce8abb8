//! Cases: purging finished tasks after their retention, and nothing else.

use std::time::Duration;

use super::Harness;
use crate::{Completion, NewTask, Outcome, Progress, RunAt, TaskStatus};

fn kept(job: &str, secs: u64) -> NewTask {
    NewTask {
        retention: Duration::from_secs(secs),
        ..NewTask::new(job, "{}")
    }
}

/// Finished tasks go after finished_at + retention; waiting and running tasks never do.
pub async fn purge_removes_only_expired_finished_tasks(h: Harness) {
    let ids = h
        .insert(vec![
            kept("succeed", 60),
            kept("fail", 120),
            kept("cancel", 60),
        ])
        .await;
    let (succeeded, failed, cancelled) = (ids[0], ids[1], ids[2]);
    // Each finished task has progress: reported while running, or sent with its outcome.
    let lease = h.claim_one("succeed").await.lease;
    h.backend
        .progress()
        .report(&[(lease, Progress::new(1, Some(2)))])
        .await
        .unwrap();
    h.succeed(lease, "1").await;
    let lease = h.claim_one("fail").await.lease;
    h.backend
        .queue()
        .finish(vec![Completion {
            lease,
            outcome: Outcome::Failed {
                error: "no".to_owned(),
                retry_after: None,
            },
            progress: Some(Progress::new(3, Some(4))),
        }])
        .await
        .unwrap();
    let lease = h.claim_one("cancel").await.lease;
    h.backend.store().cancel(cancelled).await.unwrap();
    h.backend
        .queue()
        .finish(vec![Completion {
            lease,
            outcome: Outcome::Cancelled {
                reason: "asked to".to_owned(),
            },
            progress: Some(Progress::new(5, None)),
        }])
        .await
        .unwrap();
    for id in [succeeded, failed, cancelled] {
        assert!(h.get(id).await.status.is_final());
        assert!(
            h.backend.progress().latest(id).await.unwrap().is_some(),
            "progress is kept until the task is purged"
        );
    }

    let queued = h.insert(vec![kept("queued", 0)]).await[0];
    let running = h.insert(vec![kept("running", 0)]).await[0];
    h.claim_one("running").await;
    let scheduled = h
        .insert(vec![NewTask {
            run_at: RunAt::After(Duration::from_secs(100_000)),
            ..kept("scheduled", 0)
        }])
        .await[0];

    assert_eq!(h.backend.store().purge(100).await.unwrap(), 0);
    h.advance(Duration::from_secs(59));
    assert_eq!(h.backend.store().purge(100).await.unwrap(), 0);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.backend.store().purge(100).await.unwrap(), 2);
    for gone in [succeeded, cancelled] {
        assert_eq!(
            h.backend.progress().latest(gone).await.unwrap(),
            None,
            "a purged task's progress is gone"
        );
        assert!(h.backend.store().get(gone).await.unwrap().is_none());
    }
    assert_eq!(h.get(failed).await.status, TaskStatus::Failed);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.backend.store().purge(100).await.unwrap(), 1);
    assert_eq!(h.backend.progress().latest(failed).await.unwrap(), None);
    assert!(h.backend.store().get(failed).await.unwrap().is_none());

    h.advance(Duration::from_secs(1_000_000));
    assert_eq!(h.backend.store().purge(100).await.unwrap(), 0);
    assert_eq!(h.get(queued).await.status, TaskStatus::Queued);
    assert_eq!(h.get(running).await.status, TaskStatus::Running);
    assert!(h.get(scheduled).await.status.is_waiting());
}

/// Purge deletes at most `limit` tasks per call.
pub async fn purge_respects_limit(h: Harness) {
    let ids = h.insert((0..5).map(|_| kept("many", 0)).collect()).await;
    for id in &ids {
        h.backend.store().cancel(*id).await.unwrap();
    }
    h.advance(Duration::from_millis(1));
    assert_eq!(h.backend.store().purge(2).await.unwrap(), 2);
    assert_eq!(h.backend.store().purge(10).await.unwrap(), 3);
    assert_eq!(h.backend.store().purge(10).await.unwrap(), 0);
}

/// Once a task is purged, its idempotency key may be used again.
pub async fn purged_idempotency_key_is_free_again(h: Harness) {
    let task = NewTask {
        idempotency_key: Some("monthly-2026-10".to_owned()),
        ..kept("keyed", 10)
    };
    let first = h.insert(vec![task.clone()]).await[0];
    h.backend.store().cancel(first).await.unwrap();
    h.advance(Duration::from_secs(10));
    assert_eq!(h.backend.store().purge(10).await.unwrap(), 1);
    let again = h
        .backend
        .store()
        .insert(vec![NewTask {
            id: crate::TaskId::new(),
            ..task
        }])
        .await
        .unwrap();
    assert!(again[0].created);
    assert_ne!(again[0].id, first);
}

/// One purge call finds the due tasks whatever their mix of retention periods (here 150
/// different ones, finished at different times), and keeps the rest.
pub async fn purge_spans_many_retention_periods(h: Harness) {
    let ids = h
        .insert(
            (0..300)
                .map(|i| kept("spans", 10 + (i % 150) * 2))
                .collect(),
        )
        .await;
    for (i, id) in ids.iter().enumerate() {
        h.backend.store().cancel(*id).await.unwrap();
        if i == 149 {
            h.advance(Duration::from_secs(1)); // the second half finishes a second later
        }
    }
    // Each step, the tasks still present must be exactly those whose retention has not ended.
    for step in 1..=40_u64 {
        h.advance(Duration::from_secs(10));
        let elapsed = 1 + step * 10; // seconds since the first half finished
        let due = (0..300_u64)
            .filter(|i| {
                let retention = 10 + (i % 150) * 2;
                let since = if *i < 150 { elapsed } else { elapsed - 1 };
                retention <= since
            })
            .count();
        let kept_now = ids.len() - due;
        h.backend.store().purge(100_000).await.unwrap();
        let mut present = 0;
        for id in &ids {
            if h.backend.store().get(*id).await.unwrap().is_some() {
                present += 1;
            }
        }
        assert_eq!(present, kept_now, "after {elapsed} s");
    }
}

//! Cases: progress reports, the latest value, and live watching.

use std::time::Duration;

use futures::{stream::BoxStream, StreamExt};

use super::{Harness, LEASE};
use crate::{
    Completion, Error, Lease, Outcome, Progress, TaskEvent, TaskId, TaskQuery, TaskStatus,
};

fn progress(h: &Harness, step: u64, total: Option<u64>, message: Option<&str>) -> Progress {
    Progress {
        step,
        total,
        message: message.map(str::to_owned),
        rate: Some(1.5),
        updated_at: h.now(),
    }
}

/// Reported progress is stored per task and read back whole.
pub async fn progress_latest_round_trip(h: Harness) {
    let id = h.submit("prog", "{}").await;
    let other = h.submit("prog", "{}").await;
    let claimed = h.claim(&["prog"], 2).await;
    let lease_of = |task: TaskId| {
        claimed
            .iter()
            .find(|c| c.lease.task == task)
            .expect("both tasks are claimed")
            .lease
    };
    let (lease, other_lease) = (lease_of(id), lease_of(other));
    assert_eq!(h.backend.progress().latest(id).await.unwrap(), None);
    let first = progress(
        &h,
        3,
        Some(10),
        Some("Handling 2026-10-03: 120 invoices so far ✓"),
    );
    let unknown_total = progress(&h, 7, None, None);
    h.backend
        .progress()
        .report(&[(lease, first.clone()), (other_lease, unknown_total.clone())])
        .await
        .unwrap();
    assert_eq!(
        h.backend.progress().latest(id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        h.backend.progress().latest(other).await.unwrap(),
        Some(unknown_total)
    );
    assert_eq!(h.get(id).await.progress, Some(first));
    h.advance(Duration::from_secs(1));
    let second = progress(&h, 4, Some(10), Some("next"));
    h.backend
        .progress()
        .report(&[(lease, second.clone())])
        .await
        .unwrap();
    assert_eq!(h.backend.progress().latest(id).await.unwrap(), Some(second));
    assert_eq!(
        h.backend.progress().latest(TaskId::new()).await.unwrap(),
        None
    );
}

/// Progress reported for a finished task (a late write) is ignored; so is progress for an id
/// that names no task, which must not leave a stray record or progress behind.
pub async fn progress_of_finished_task_is_ignored(h: Harness) {
    let id = h.submit("late", "{}").await;
    let claimed = h.claim_one("late").await;
    h.succeed(claimed.lease, "1").await;
    h.backend
        .progress()
        .report(&[(claimed.lease, progress(&h, 1, Some(2), None))])
        .await
        .unwrap();
    assert_eq!(h.backend.progress().latest(id).await.unwrap(), None);
    assert_eq!(h.get(id).await.progress, None);

    let unknown = TaskId::new();
    h.backend
        .progress()
        .report(&[(
            Lease {
                task: unknown,
                token: claimed.lease.token,
            },
            progress(&h, 1, None, Some("stray")),
        )])
        .await
        .unwrap();
    assert_eq!(
        h.backend.progress().latest(unknown).await.unwrap(),
        None,
        "a report for an unknown id stored progress"
    );
    assert_eq!(
        h.backend.store().get(unknown).await.unwrap(),
        None,
        "a report for an unknown id created a task"
    );
    let all = h
        .backend
        .store()
        .list(&TaskQuery {
            limit: 100,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![id],
        "a report for an unknown id left a record behind"
    );
    assert!(
        matches!(
            h.backend.progress().watch(unknown).await,
            Err(Error::NotFound(_))
        ),
        "a report for an unknown id made it watchable"
    );
}

/// A watcher sees each progress report in order, then the progress sent with the outcome and
/// the final status, and the stream ends.
pub async fn watch_streams_progress_and_final_status(h: Harness) {
    let id = h.submit("watch", "{}").await;
    let claimed = h.claim_one("watch").await;
    let mut events = h.backend.progress().watch(id).await.unwrap();
    for step in 1..=3 {
        let sent = progress(&h, step, Some(4), Some(&format!("step {step}")));
        h.backend
            .progress()
            .report(&[(claimed.lease, sent.clone())])
            .await
            .unwrap();
        // Each report is seen before the next is sent: none may be lost or reordered.
        assert_eq!(
            next(&mut events).await,
            Some(TaskEvent::Progress(sent)),
            "step {step}"
        );
    }
    let last = progress(&h, 4, Some(4), Some("done"));
    h.backend
        .queue()
        .finish(vec![Completion {
            lease: claimed.lease,
            outcome: Outcome::Succeeded {
                output: "1".to_owned(),
            },
            progress: Some(last.clone()),
        }])
        .await
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), events.collect::<Vec<_>>())
        .await
        .expect("the watch stream did not end within 10 s of the final status");
    assert_eq!(
        rest,
        vec![
            TaskEvent::Progress(last.clone()),
            TaskEvent::Status {
                status: TaskStatus::Succeeded
            },
        ],
        "the outcome's progress, then the final status, then the end"
    );
    assert_eq!(h.backend.progress().latest(id).await.unwrap(), Some(last));
}

async fn next(events: &mut BoxStream<'static, TaskEvent>) -> Option<TaskEvent> {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no watch event within 10 s")
}

/// Watching a finished task yields its final status and ends at once.
pub async fn watch_finished_task_ends_at_once(h: Harness) {
    let id = h.submit("watched", "{}").await;
    h.backend.store().cancel(id).await.unwrap();
    let events = h.backend.progress().watch(id).await.unwrap();
    let collected: Vec<TaskEvent> = tokio::time::timeout(Duration::from_secs(5), events.collect())
        .await
        .expect("the stream of a finished task must end at once");
    assert_eq!(
        collected,
        vec![TaskEvent::Status {
            status: TaskStatus::Cancelled
        }]
    );
}

/// Watching an unknown id is a not-found error.
pub async fn watch_unknown_task_is_not_found(h: Harness) {
    let id = TaskId::new();
    match h.backend.progress().watch(id).await {
        Err(Error::NotFound(missing)) => assert_eq!(missing, id),
        Err(other) => panic!("expected NotFound, got {other:?}"),
        Ok(_) => panic!("expected NotFound, got a stream"),
    }
}

/// Progress sent with an outcome is stored with it.
pub async fn completion_stores_progress(h: Harness) {
    let id = h.submit("final-progress", "{}").await;
    let claimed = h.claim_one("final-progress").await;
    let last = progress(&h, 9, Some(9), Some("all done"));
    h.backend
        .queue()
        .finish(vec![Completion {
            lease: claimed.lease,
            outcome: Outcome::Failed {
                error: "at the very end".to_owned(),
                retry_after: None,
            },
            progress: Some(last.clone()),
        }])
        .await
        .unwrap();
    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Failed);
    assert_eq!(got.progress, Some(last));
}

/// Progress is fenced: a worker whose lease expired and whose task was claimed again cannot
/// move the newer attempt's progress (nor its watchers' view) backwards; a report under a
/// queued or retrying task's old lease changes nothing either.
pub async fn stale_lease_progress_changes_nothing(h: Harness) {
    let id = h.submit("fenced-progress", "{}").await;
    let old = h.claim_as("old", &["fenced-progress"], 1).await.remove(0);
    let before = progress(&h, 9, Some(10), Some("old attempt, nearly done"));
    h.backend
        .progress()
        .report(&[(old.lease, before.clone())])
        .await
        .unwrap();
    h.advance(LEASE + Duration::from_secs(1));
    assert_eq!(h.backend.queue().recover_expired(10).await.unwrap(), 1);
    // Retrying, not yet claimed again: the old lease writes nothing.
    let stale = progress(&h, 10, Some(10), Some("zombie"));
    h.backend
        .progress()
        .report(&[(old.lease, stale.clone())])
        .await
        .unwrap();
    assert_eq!(h.get(id).await.progress, Some(before.clone()));

    let new = h.claim_as("new", &["fenced-progress"], 1).await.remove(0);
    assert_eq!(new.lease.task, id);
    let mut events = h.backend.progress().watch(id).await.unwrap();
    let current = progress(&h, 2, Some(10), Some("new attempt"));
    h.backend
        .progress()
        .report(&[(new.lease, current.clone())])
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await,
        Some(TaskEvent::Progress(current.clone()))
    );
    // The zombie reports again, alone and in a batch with the live lease's next report.
    h.backend
        .progress()
        .report(&[(old.lease, stale.clone())])
        .await
        .unwrap();
    assert_eq!(
        h.backend.progress().latest(id).await.unwrap(),
        Some(current.clone())
    );
    let later = progress(&h, 3, Some(10), Some("new attempt, later"));
    h.backend
        .progress()
        .report(&[(old.lease, stale.clone()), (new.lease, later.clone())])
        .await
        .unwrap();
    assert_eq!(
        h.backend.progress().latest(id).await.unwrap(),
        Some(later.clone())
    );
    assert_eq!(h.get(id).await.progress, Some(later.clone()));
    // The watcher saw the live lease's reports only, in order.
    assert_eq!(next(&mut events).await, Some(TaskEvent::Progress(later)));
    assert_eq!(h.succeed(new.lease, "1").await, crate::Ack::Applied);
    assert_eq!(
        next(&mut events).await,
        Some(TaskEvent::Status {
            status: TaskStatus::Succeeded
        })
    );
}

//! Cases: operators' actions and the workers registry. Retrying a failed or cancelled task puts
//! it back with a fresh attempt budget (and never lets a stale lease complete it); deleting
//! removes finished tasks only; workers register, refresh, age out and leave.

use std::time::Duration;

use super::{Harness, LEASE};
use crate::{
    Ack, Client, DeleteOutcome, GroupRole, NewTask, Outcome, RetryOutcome, RunAt, TaskId,
    TaskStatus, Worker, WorkerInfo,
};

/// A failed task and a cancelled one go back to `queued` with a fresh attempt budget, their last
/// error kept; the old lease stays stale; the old retention no longer applies; tasks that are
/// waiting, running, succeeded, unknown or in a group are not retried.
pub async fn retry_puts_failed_and_cancelled_tasks_back(h: Harness) {
    let failed = h.submit("admin", "1").await;
    let cancelled = h.submit("admin", "2").await;
    let waiting = h.submit("other", "3").await;
    let first = h.claim_one("admin").await;
    assert_eq!(first.lease.task, failed);
    let ended = h
        .finish(
            first.lease,
            Outcome::Failed {
                error: "the ledger is locked".to_owned(),
                retry_after: None,
            },
        )
        .await;
    assert_eq!(ended, Ack::Applied);
    h.backend.store().cancel(cancelled).await.unwrap();
    assert_eq!(h.get(failed).await.status, TaskStatus::Failed);

    h.advance(Duration::from_secs(5));
    let outcomes = h
        .backend
        .store()
        .retry(&[failed, cancelled, waiting, TaskId::new()])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            RetryOutcome::Retried,
            RetryOutcome::Retried,
            RetryOutcome::NotRetryable(TaskStatus::Queued),
            RetryOutcome::NotFound,
        ]
    );
    let record = h.get(failed).await;
    assert_eq!(record.status, TaskStatus::Queued);
    assert_eq!(record.attempt, 0, "a fresh attempt budget");
    assert_eq!(record.run_at, h.now(), "due now");
    assert_eq!(record.finished_at, None);
    let error = record.last_error.expect("the last error is kept");
    assert_eq!(
        (error.message.as_str(), error.attempt),
        ("the ledger is locked", 1)
    );
    assert_eq!(h.get(cancelled).await.status, TaskStatus::Queued);

    // The old lease cannot complete the retried task, before or after it is claimed again.
    assert_eq!(h.succeed(first.lease, "\"stale\"").await, Ack::Stale);
    let again = h.claim(&["admin"], 10).await;
    assert_eq!(again.len(), 2);
    let second = again.iter().find(|c| c.lease.task == failed).unwrap();
    assert_eq!(second.attempt, 1);
    assert_eq!(h.succeed(first.lease, "\"stale\"").await, Ack::Stale);
    let running = h.backend.store().retry(&[failed]).await.unwrap();
    assert_eq!(running, [RetryOutcome::NotRetryable(TaskStatus::Running)]);
    assert_eq!(h.succeed(second.lease, "\"fresh\"").await, Ack::Applied);
    let done = h.backend.store().retry(&[failed]).await.unwrap();
    assert_eq!(done, [RetryOutcome::NotRetryable(TaskStatus::Succeeded)]);

    // The retention counted from the first failure no longer applies: the task is kept until
    // its retention after its new end.
    let other = again.iter().find(|c| c.lease.task == cancelled).unwrap();
    let retention = h.get(cancelled).await.retention;
    h.advance(retention - Duration::from_secs(1));
    assert_eq!(h.succeed(other.lease, "2").await, Ack::Applied);
    h.advance(Duration::from_secs(2));
    h.backend.store().purge(100).await.unwrap();
    assert!(
        h.backend.store().get(cancelled).await.unwrap().is_some(),
        "purged at the retention of its first end"
    );

    let root = NewTask {
        run_at: RunAt::At(crate::group_root_run_at()),
        group: Some(GroupRole::Root),
        ..NewTask::new(crate::GROUP_JOB, "null")
    };
    let member = NewTask {
        group: Some(GroupRole::Member(root.id)),
        ..NewTask::new("grouped", "1")
    };
    let ids = h.insert(vec![root, member]).await;
    h.backend.store().cancel(ids[1]).await.unwrap();
    // The root succeeded when its only member was cancelled; the member stays cancelled.
    let grouped = h.backend.store().retry(&ids).await.unwrap();
    assert_eq!(
        grouped,
        [
            RetryOutcome::NotRetryable(TaskStatus::Succeeded),
            RetryOutcome::InGroup
        ]
    );
}

/// Deleting removes a finished task now (its idempotency key is free again, its checkpoint
/// gone); a task that has not finished, or an unknown id, is left alone and says why.
pub async fn delete_removes_finished_tasks_only(h: Harness) {
    let keyed = NewTask {
        idempotency_key: Some("monthly".to_owned()),
        ..NewTask::new("admin", "1")
    };
    let done = h.insert(vec![keyed.clone()]).await[0];
    let waiting = h.submit("other", "2").await;
    let claimed = h.claim_one("admin").await;
    let checkpoint = crate::Checkpoint {
        lease: claimed.lease,
        attempt: 1,
        state: "[1]".to_owned(),
        progress: None,
    };
    h.backend.queue().save_checkpoint(checkpoint).await.unwrap();
    assert_eq!(
        h.backend.store().delete(&[done]).await.unwrap(),
        [DeleteOutcome::NotFinished(TaskStatus::Running)]
    );
    assert_eq!(h.succeed(claimed.lease, "1").await, Ack::Applied);
    let outcomes = h
        .backend
        .store()
        .delete(&[done, waiting, TaskId::new()])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            DeleteOutcome::Deleted,
            DeleteOutcome::NotFinished(TaskStatus::Queued),
            DeleteOutcome::NotFound,
        ]
    );
    assert!(h.backend.store().get(done).await.unwrap().is_none());
    assert_eq!(h.backend.queue().load_checkpoint(done).await.unwrap(), None);
    assert!(h.backend.store().get(waiting).await.unwrap().is_some());
    let again = h
        .backend
        .store()
        .insert(vec![NewTask {
            id: TaskId::new(),
            ..keyed
        }])
        .await
        .unwrap();
    assert!(
        again[0].created,
        "the deleted task's idempotency key is free"
    );
    assert_ne!(again[0].id, done);
    assert_eq!(
        h.backend.store().delete(&[done]).await.unwrap(),
        [DeleteOutcome::NotFound]
    );
}

fn info(id: &str, busy: u32) -> WorkerInfo {
    WorkerInfo {
        id: id.to_owned(),
        host: "host-ä \"1\"".to_owned(),
        pid: 4242,
        jobs: vec!["export".to_owned(), "mail".to_owned()],
        concurrency: 8,
        busy,
        started_at: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
        last_seen: chrono::DateTime::from_timestamp_millis(0).unwrap(),
    }
}

/// Workers register from any instance and are listed from any other, with what they said and
/// the backend's time of their last report; an entry refreshed lives on, one not refreshed
/// within its time to live ages out, one unregistered is gone.
pub async fn workers_register_refresh_and_age_out(h: Harness) {
    let other = h.open_instance().await;
    let ttl = Duration::from_secs(30);
    h.backend
        .queue()
        .register_worker(&info("w1", 1), ttl)
        .await
        .unwrap();
    other
        .queue()
        .register_worker(&info("w2", 2), ttl)
        .await
        .unwrap();
    let listed = other.queue().workers().await.unwrap();
    let mut expected = vec![info("w1", 1), info("w2", 2)];
    for worker in &mut expected {
        worker.last_seen = h.now();
    }
    assert_eq!(listed, expected);

    h.advance(Duration::from_secs(20));
    h.backend
        .queue()
        .register_worker(&info("w1", 5), ttl)
        .await
        .unwrap();
    h.advance(Duration::from_secs(15));
    let listed = h.backend.queue().workers().await.unwrap();
    assert_eq!(listed.len(), 1, "w2 aged out: {listed:?}");
    assert_eq!((listed[0].id.as_str(), listed[0].busy), ("w1", 5));
    assert_eq!(listed[0].last_seen, h.now() - chrono::Duration::seconds(15));

    other.queue().unregister_worker("w1").await.unwrap();
    other
        .queue()
        .unregister_worker("never-registered")
        .await
        .unwrap();
    assert!(h.backend.queue().workers().await.unwrap().is_empty());
}

/// A running worker is in the registry, with its jobs and concurrency, seen from another
/// instance; after it stops it is not.
pub async fn worker_registers_itself(h: Harness) {
    let worker = Worker::builder(h.backend.clone())
        .register(super::worker::Echo)
        .concurrency(3)
        .lease(LEASE)
        .build()
        .expect("worker builds")
        .spawn();
    let client = Client::new(h.open_instance().await);
    let started = std::time::Instant::now();
    let listed = loop {
        let listed = client.workers().await.unwrap();
        if !listed.is_empty() {
            break listed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].jobs, ["conformance-echo"]);
    assert_eq!(listed[0].concurrency, 3);
    assert_eq!(listed[0].pid, std::process::id());
    worker.shutdown().await.unwrap();
    assert!(client.workers().await.unwrap().is_empty());
}

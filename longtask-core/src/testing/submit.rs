//! Cases: inserting and reading tasks.

use std::time::Duration;

use super::{assert_json_eq, numbered, Harness};
use crate::{NewTask, Outcome, RunAt, TaskId, TaskQuery, TaskStatus};

/// A submitted task reads back with every field as submitted and a fresh state.
pub async fn submit_and_get(h: Harness) {
    let task = NewTask {
        priority: 3,
        max_attempts: 4,
        retention: Duration::from_secs(60),
        owner: Some("alice".to_owned()),
        ..NewTask::new("report", r#"{"month":"2026-10","n":[1,2]}"#)
    };
    let id = task.id;
    let inserted = h.backend.store().insert(vec![task]).await.unwrap();
    assert_eq!(inserted.len(), 1);
    assert_eq!(inserted[0].id, id);
    assert!(inserted[0].created);

    let got = h.get(id).await;
    assert_eq!(got.id, id);
    assert_eq!(got.job, "report");
    assert_json_eq(&got.params, r#"{"month":"2026-10","n":[1,2]}"#);
    assert_eq!(got.status, TaskStatus::Queued);
    assert_eq!(got.priority, 3);
    assert_eq!(got.attempt, 0);
    assert_eq!(got.max_attempts, 4);
    assert_eq!(got.retention, Duration::from_secs(60));
    assert_eq!(got.owner.as_deref(), Some("alice"));
    assert_eq!(got.idempotency_key, None);
    assert_eq!(got.created_at, h.now());
    assert_eq!(got.run_at, h.now());
    assert_eq!(got.started_at, None);
    assert_eq!(got.finished_at, None);
    assert_eq!(got.lease_owner, None);
    assert_eq!(got.lease_expires_at, None);
    assert!(!got.cancel_requested);
    assert_eq!(got.last_error, None);
    assert_eq!(got.progress, None);
    assert_eq!(got.output, None);
}

/// Reading an id that was never submitted gives `None`, not an error.
pub async fn get_unknown_is_none(h: Harness) {
    assert!(h
        .backend
        .store()
        .get(TaskId::new())
        .await
        .unwrap()
        .is_none());
}

/// A batch insert returns one entry per task, in order, and stores each.
pub async fn batch_submit_keeps_order(h: Harness) {
    let tasks: Vec<NewTask> = (0..500)
        .map(|i| NewTask::new("batch", numbered(i)))
        .collect();
    let expected: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let inserted = h.backend.store().insert(tasks).await.unwrap();
    assert_eq!(inserted.iter().map(|i| i.id).collect::<Vec<_>>(), expected);
    assert!(inserted.iter().all(|i| i.created));
    for (i, id) in expected.iter().enumerate().step_by(37) {
        assert_json_eq(&h.get(*id).await.params, &numbered(i));
    }
    let listed = h
        .backend
        .store()
        .list(&TaskQuery {
            job: Some("batch".to_owned()),
            limit: 1000,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|t| t.id).collect::<Vec<_>>(), expected);
    // An empty batch is fine and inserts nothing.
    assert!(h
        .backend
        .store()
        .insert(Vec::new())
        .await
        .unwrap()
        .is_empty());
}

/// A batch containing an id already in use fails as a whole: nothing of it is stored.
pub async fn batch_insert_is_atomic(h: Harness) {
    let existing = h.submit("atomic", "1").await;
    let fresh = NewTask::new("atomic", "2");
    let fresh_id = fresh.id;
    let duplicate = NewTask {
        id: existing,
        ..NewTask::new("atomic", "3")
    };
    let result = h.backend.store().insert(vec![fresh, duplicate]).await;
    assert!(result.is_err(), "inserting a task id twice must fail");
    assert!(h.backend.store().get(fresh_id).await.unwrap().is_none());
    assert_json_eq(&h.get(existing).await.params, "1");
}

/// Unicode, empty, large and deeply nested payloads (and odd job names) round-trip unchanged.
pub async fn awkward_payloads_round_trip(h: Harness) {
    let large = serde_json::to_string(&"x".repeat(1 << 20)).unwrap();
    let mut nested = String::from("1");
    for i in 0..40 {
        nested = format!(r#"{{"level{i}":[{nested}, "\u0000\n\"\\"]}}"#);
    }
    let payloads = [
        r#""héllo wörld ✓ 😀 日本語 \u0000 \"quoted\" back\\slash""#.to_owned(),
        r#""""#.to_owned(),
        "null".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        r#"{"key with spaces":"value","👍":-1.5e10}"#.to_owned(),
        large,
        nested,
    ];
    let jobs = [
        "plain",
        "réport: {weird} *job* [x]",
        "a:b:c",
        "{braces}",
        "job with spaces",
    ];
    for (i, params) in payloads.iter().enumerate() {
        let job = jobs[i % jobs.len()];
        let id = h.submit(job, params).await;
        let got = h.get(id).await;
        assert_eq!(got.job, job);
        assert_json_eq(&got.params, params);

        let claimed = h.claim_one(job).await;
        assert_eq!(claimed.lease.task, id);
        assert_eq!(claimed.job, job);
        assert_json_eq(&claimed.params, params);
        assert_eq!(h.succeed(claimed.lease, params).await, crate::Ack::Applied);
        assert_json_eq(h.get(id).await.output.as_deref().unwrap(), params);
    }
    // A failure message with awkward text round-trips too.
    let id = h.submit("plain", "1").await;
    let claimed = h.claim_one("plain").await;
    let message = "💥 <script>alert('x')</script> \"quoted\"\nline two";
    h.finish(
        claimed.lease,
        Outcome::Failed {
            error: message.to_owned(),
            retry_after: None,
        },
    )
    .await;
    assert_eq!(h.get(id).await.last_error.unwrap().message, message);
}

/// A task with a future run time is `scheduled` until then; a past run time means now.
pub async fn delayed_task_is_scheduled(h: Harness) {
    let later = NewTask {
        run_at: RunAt::After(Duration::from_secs(60)),
        ..NewTask::new("delayed", "1")
    };
    let at = NewTask {
        run_at: RunAt::At(h.now() + chrono::Duration::seconds(120)),
        ..NewTask::new("delayed", "2")
    };
    let past = NewTask {
        run_at: RunAt::At(h.now() - chrono::Duration::seconds(120)),
        ..NewTask::new("delayed", "3")
    };
    let ids = h.insert(vec![later, at, past]).await;
    let later = h.get(ids[0]).await;
    assert_eq!(later.status, TaskStatus::Scheduled);
    assert_eq!(later.run_at, h.now() + chrono::Duration::seconds(60));
    let at = h.get(ids[1]).await;
    assert_eq!(at.status, TaskStatus::Scheduled);
    assert_eq!(at.run_at, h.now() + chrono::Duration::seconds(120));
    let past = h.get(ids[2]).await;
    assert_eq!(past.status, TaskStatus::Queued);
    assert_eq!(past.run_at, h.now());
}

/// Listing filters by job, status and owner, and pages in submission order.
pub async fn list_filters_and_pages(h: Harness) {
    let owned = |job: &str, owner: &str| NewTask {
        owner: Some(owner.to_owned()),
        ..NewTask::new(job, "{}")
    };
    let ids = h
        .insert(vec![
            owned("a", "x"),
            owned("a", "y"),
            owned("a", "x"),
            owned("b", "x"),
            owned("b", "y"),
        ])
        .await;
    h.backend.store().cancel(ids[1]).await.unwrap();
    let list = |query: TaskQuery| {
        let store = h.backend.store().clone();
        async move {
            store
                .list(&query)
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    let job_a = TaskQuery {
        job: Some("a".to_owned()),
        ..TaskQuery::default()
    };
    assert_eq!(list(job_a.clone()).await, ids[..3].to_vec());
    assert_eq!(
        list(TaskQuery {
            statuses: vec![TaskStatus::Cancelled],
            ..TaskQuery::default()
        })
        .await,
        vec![ids[1]]
    );
    assert_eq!(
        list(TaskQuery {
            statuses: vec![TaskStatus::Queued, TaskStatus::Cancelled],
            job: Some("a".to_owned()),
            ..TaskQuery::default()
        })
        .await,
        ids[..3].to_vec()
    );
    assert_eq!(
        list(TaskQuery {
            owner: Some("x".to_owned()),
            ..TaskQuery::default()
        })
        .await,
        vec![ids[0], ids[2], ids[3]]
    );
    assert_eq!(
        list(TaskQuery {
            after: Some(ids[0]),
            limit: 1,
            ..job_a
        })
        .await,
        vec![ids[1]]
    );
    assert_eq!(list(TaskQuery::default()).await, ids);
}

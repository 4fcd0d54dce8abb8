//! Cases: claiming due tasks.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::FutureExt;

use super::{numbered, Harness, WakeUps, LEASE};
use crate::{Ack, ClaimRequest, Completion, NewTask, Outcome, RunAt, TaskId, TaskStatus};

/// A claimed task becomes `running` under a lease, with its attempt counted; the claim says
/// since when the task was due.
pub async fn claim_marks_running(h: Harness) {
    let task = NewTask {
        max_attempts: 7,
        ..NewTask::new("claim", r#"{"x":1}"#)
    };
    let id = h.insert(vec![task]).await[0];
    let submitted = h.now();
    h.advance(Duration::from_secs(3));
    let claimed = h.claim_one("claim").await;
    assert_eq!(claimed.lease.task, id);
    assert_eq!(claimed.due_at, submitted, "due since its submission");
    assert_eq!(claimed.job, "claim");
    assert_eq!(claimed.attempt, 1);
    assert_eq!(claimed.max_attempts, 7);
    super::assert_json_eq(&claimed.params, r#"{"x":1}"#);

    let got = h.get(id).await;
    assert_eq!(got.status, TaskStatus::Running);
    assert_eq!(got.attempt, 1);
    assert_eq!(got.lease_owner.as_deref(), Some("w1"));
    assert_eq!(
        got.lease_expires_at,
        Some(h.now() + chrono::Duration::from_std(LEASE).unwrap())
    );
    assert_eq!(got.started_at, Some(h.now()));
    assert!(
        h.claim(&["claim"], 10).await.is_empty(),
        "a running task is not claimed twice"
    );
}

/// Higher priority first; equal priorities in submission order.
pub async fn claim_respects_priority(h: Harness) {
    let with = |priority: i32| NewTask {
        priority,
        ..NewTask::new("prio", "{}")
    };
    let ids = h
        .insert(vec![with(0), with(5), with(-1), with(5), with(10)])
        .await;
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(h.claim_one("prio").await.lease.task);
    }
    assert_eq!(order, vec![ids[4], ids[1], ids[3], ids[0], ids[2]]);
    // A batch claim follows the same order.
    let ids = h.insert(vec![with(1), with(3), with(2)]).await;
    let batch: Vec<TaskId> = h
        .claim(&["prio"], 3)
        .await
        .iter()
        .map(|c| c.lease.task)
        .collect();
    assert_eq!(batch, vec![ids[1], ids[2], ids[0]]);
}

/// Within a priority, earlier run_at first, then earlier submission.
pub async fn claim_orders_by_run_at_then_submission(h: Harness) {
    let late = NewTask {
        run_at: RunAt::After(Duration::from_secs(10)),
        ..NewTask::new("order", "1")
    };
    let ids = h
        .insert(vec![
            late,
            NewTask::new("order", "2"),
            NewTask::new("order", "3"),
        ])
        .await;
    h.advance(Duration::from_secs(20));
    let later = h.submit("order", "4").await;
    let batch: Vec<TaskId> = h
        .claim(&["order"], 10)
        .await
        .iter()
        .map(|c| c.lease.task)
        .collect();
    assert_eq!(batch, vec![ids[1], ids[2], ids[0], later]);
}

/// A scheduled task is not claimed before its run_at, and is claimed from then on.
pub async fn scheduled_task_is_not_claimed_early(h: Harness) {
    let task = NewTask {
        run_at: RunAt::After(Duration::from_secs(60)),
        ..NewTask::new("sched", "{}")
    };
    let id = h.insert(vec![task]).await[0];
    assert!(h.claim(&["sched"], 10).await.is_empty());
    h.advance(Duration::from_secs(59));
    assert!(h.claim(&["sched"], 10).await.is_empty());
    h.advance(Duration::from_secs(1));
    let claimed = h.claim(&["sched"], 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].lease.task, id);
}

/// Only tasks of the requested jobs are claimed.
pub async fn claim_takes_only_requested_jobs(h: Harness) {
    let a = h.submit("job-a", "{}").await;
    let b = h.submit("job-b", "{}").await;
    let c = h.submit("job-c", "{}").await;
    let claimed = h.claim(&["job-b"], 10).await;
    assert_eq!(
        claimed.iter().map(|c| c.lease.task).collect::<Vec<_>>(),
        vec![b]
    );
    let claimed = h.claim(&["job-a", "job-c"], 10).await;
    assert_eq!(
        claimed.iter().map(|c| c.lease.task).collect::<Vec<_>>(),
        vec![a, c]
    );
    assert!(h
        .claim(&["job-a", "job-b", "job-c", "job-d"], 10)
        .await
        .is_empty());
}

/// A claim takes at most `limit` tasks.
pub async fn claim_respects_limit(h: Harness) {
    h.insert(
        (0..10)
            .map(|i| NewTask::new("limit", numbered(i)))
            .collect(),
    )
    .await;
    assert!(h.claim(&["limit"], 0).await.is_empty());
    assert_eq!(h.claim(&["limit"], 3).await.len(), 3);
    assert_eq!(h.claim(&["limit"], 100).await.len(), 7);
}

/// Claiming from an empty queue, or for no jobs, returns nothing.
pub async fn claim_from_empty_queue(h: Harness) {
    assert!(h.claim(&["nothing"], 10).await.is_empty());
    h.submit("something", "{}").await;
    assert!(h.claim(&[], 10).await.is_empty());
}

/// Many concurrent claimers over thousands of tasks: each task is claimed and completed exactly
/// once.
pub async fn concurrent_claimers_one_winner(h: Harness) {
    const TASKS: usize = 3_000;
    const CLAIMERS: usize = 8;
    for chunk in (0..TASKS).collect::<Vec<_>>().chunks(500) {
        h.insert(
            chunk
                .iter()
                .map(|i| NewTask::new("race", numbered(*i)))
                .collect(),
        )
        .await;
    }
    let jobs = Arc::new(vec!["race".to_owned()]);
    let mut handles = Vec::new();
    for worker in 0..CLAIMERS {
        let queue = h.backend.queue().clone();
        let jobs = jobs.clone();
        handles.push(tokio::spawn(async move {
            let name = format!("w{worker}");
            let mut mine = Vec::new();
            loop {
                let claimed = queue
                    .claim(ClaimRequest {
                        jobs: &jobs,
                        worker: &name,
                        limit: 16,
                        lease: LEASE,
                        limits: &[],
                    })
                    .await
                    .expect("claim failed");
                if claimed.is_empty() {
                    break;
                }
                let completions = claimed
                    .iter()
                    .map(|c| {
                        Completion::new(
                            c.lease,
                            Outcome::Succeeded {
                                output: c.params.clone(),
                            },
                        )
                    })
                    .collect();
                let acks = queue.finish(completions).await.expect("finish failed");
                assert!(
                    acks.iter().all(|a| *a == Ack::Applied),
                    "a live lease was refused"
                );
                mine.extend(claimed.into_iter().map(|c| c.lease.task));
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut seen: HashMap<TaskId, usize> = HashMap::new();
    for handle in handles {
        for id in handle.await.expect("claimer panicked") {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), TASKS, "every task is claimed");
    assert!(seen.values().all(|n| *n == 1), "no task is claimed twice");
    let succeeded = h
        .backend
        .store()
        .list(&crate::TaskQuery {
            statuses: vec![TaskStatus::Succeeded],
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(succeeded.len(), TASKS);
    assert!(succeeded.iter().all(|t| t.attempt == 1));
}

/// Submitting a due task wakes idle workers through the work signal, in every process that
/// shares the namespace.
///
/// The task is submitted through a second instance, so a backend that only wakes its own
/// workers fails; and it is done in several rounds, each waiting for a wake-up of its own, so a
/// wake-up that does not come from a submit (Postgres and Redis bump the signal when their
/// listener connects or reconnects) can satisfy at most one round.
///
/// [`WakeUps::Poll`] backends (SQLite) promise no cross-process wake-up: there, a submit wakes
/// the submitting instance's own workers, and another instance's claim finds the task at once
/// (its workers find it at their next poll).
pub async fn work_signal_fires_on_submit(h: Harness) {
    const ROUNDS: usize = 3;
    let other = h.open_instance().await;
    let mut signal = h.backend.queue().work_signal();
    let submitter = match h.wake_ups() {
        WakeUps::Push | WakeUps::Shared => &other,
        WakeUps::Poll => &h.backend,
    };
    for round in 1..=ROUNDS {
        // Forget wake-ups that have already arrived (connecting, the previous round).
        while signal.changed().now_or_never().is_some() {}
        let id = submitter
            .store()
            .insert(vec![NewTask::new("signal", numbered(round))])
            .await
            .expect("insert failed")[0]
            .id;
        tokio::time::timeout(Duration::from_secs(10), signal.changed())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "round {round}: no wake-up within 10 s of a submit ({:?})",
                    h.wake_ups()
                )
            });
        let claimed = h.claim(&["signal"], 10).await;
        assert_eq!(
            claimed.iter().map(|c| c.lease.task).collect::<Vec<_>>(),
            vec![id],
            "round {round}: the woken instance claims the new task"
        );
    }
    if h.wake_ups() == WakeUps::Poll {
        // What the contract promises across processes without push: the work is there for
        // the other instance's next claim (its workers' next poll).
        let id = h.submit("signal-poll", "{}").await;
        let jobs = ["signal-poll".to_owned()];
        let claimed = other
            .queue()
            .claim(ClaimRequest {
                jobs: &jobs,
                worker: "other",
                limit: 1,
                lease: LEASE,
                limits: &[],
            })
            .await
            .expect("claim failed");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].lease.task, id);
    }
}

/// Priority comes before `run_at`: among due tasks, a higher-priority task whose `run_at` is
/// later is claimed first, whether it was submitted scheduled or is a retry waiting out its
/// backoff; within a priority, earlier `run_at` first; a task not yet due is never claimed.
pub async fn claim_orders_priority_before_run_at(h: Harness) {
    let at = |priority: i32, after: u64, params: &str| NewTask {
        priority,
        run_at: RunAt::After(Duration::from_secs(after)),
        ..NewTask::new("mixed", params)
    };
    // A retrying task of priority 5, due 10 s from now.
    let retry = h.insert(vec![at(5, 0, "retry")]).await[0];
    let first = h.claim_one("mixed").await;
    h.finish(
        first.lease,
        Outcome::Failed {
            error: "busy".to_owned(),
            retry_after: Some(Duration::from_secs(10)),
        },
    )
    .await;
    assert_eq!(h.get(retry).await.status, TaskStatus::Retrying);
    let ids = h
        .insert(vec![
            at(0, 0, "low, due first"),
            at(10, 20, "high, due last"),
            at(5, 5, "middle, due before the retry"),
            at(100, 1_000, "highest, not due"),
            at(0, 15, "low, due later"),
        ])
        .await;
    let (low, high, middle, not_due, low_later) = (ids[0], ids[1], ids[2], ids[3], ids[4]);
    h.advance(Duration::from_secs(30));
    let mut order = vec![h.claim_one("mixed").await.lease.task];
    order.push(h.claim_one("mixed").await.lease.task);
    order.extend(h.claim(&["mixed"], 10).await.iter().map(|c| c.lease.task));
    assert_eq!(
        order,
        vec![high, middle, retry, low, low_later],
        "expected high, middle, retry, low, low-later"
    );
    assert!(h.get(not_due).await.status.is_waiting());
}

/// Waiting tasks cancelled ahead of live ones do not make a claim come back short: it returns
/// the live ones, in order, up to its limit.
pub async fn cancelled_tasks_do_not_shorten_claims(h: Harness) {
    let ids = h
        .insert((0..6).map(|i| NewTask::new("short", numbered(i))).collect())
        .await;
    for id in &ids[..3] {
        h.backend.store().cancel(*id).await.unwrap();
    }
    let claimed: Vec<TaskId> = h
        .claim(&["short"], 3)
        .await
        .iter()
        .map(|c| c.lease.task)
        .collect();
    assert_eq!(claimed, ids[3..]);
}

/// A claim over several jobs keeps claim order after earlier claims of each job: a lower
/// priority task of one job that sorts before another job's task is claimed first, even when
/// the other job alone could fill the claim (found by the model-based case on Postgres, whose
/// claim cursors skipped the lower priorities of a job).
pub async fn claim_over_several_jobs_keeps_order_after_earlier_claims(h: Harness) {
    let b_low = h.insert(vec![NewTask::new("order-b", "{}")]).await[0];
    let a_first = h.insert(vec![NewTask::new("order-a", "{}")]).await[0];
    let b_high = h
        .insert(vec![NewTask {
            priority: 7,
            ..NewTask::new("order-b", "{}")
        }])
        .await[0];
    assert_eq!(h.claim_one("order-b").await.lease.task, b_high);
    assert_eq!(h.claim_one("order-a").await.lease.task, a_first);
    let a_later = h.insert(vec![NewTask::new("order-a", "{}")]).await[0];
    let both: Vec<TaskId> = h
        .claim(&["order-a", "order-b"], 1)
        .await
        .iter()
        .map(|c| c.lease.task)
        .collect();
    assert_eq!(
        both,
        vec![b_low],
        "the earlier task of the lower-priority job comes first"
    );
    let next: Vec<TaskId> = h
        .claim(&["order-a", "order-b"], 1)
        .await
        .iter()
        .map(|c| c.lease.task)
        .collect();
    assert_eq!(next, vec![a_later]);
}

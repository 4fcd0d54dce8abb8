//! Cases: concurrency limits. A claim never makes more tasks of a job run at once than its
//! `max_running`, nor more tasks of one concurrency key than its `max_running_per_key`, across
//! every instance; tasks over a limit wait in their place while the next ones go ahead.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{Harness, LEASE};
use crate::{
    Ack, Backend, ClaimRequest, ClaimedTask, Client, Job, JobError, JobLimits, JobOptions, NewTask,
    Outcome, SubmitOptions, TaskContext, TaskStatus, Worker,
};

fn limits(job: &str, max_running: Option<u32>, per_key: Option<u32>) -> JobLimits {
    JobLimits {
        job: job.to_owned(),
        max_running,
        max_running_per_key: per_key,
    }
}

fn keyed(job: &str, n: u32, key: Option<&str>) -> NewTask {
    NewTask {
        concurrency_key: key.map(str::to_owned),
        ..NewTask::new(job, n.to_string())
    }
}

async fn claim_limited(
    backend: &Backend,
    jobs: &[&str],
    limit: usize,
    limits: &[JobLimits],
) -> Vec<ClaimedTask> {
    let jobs: Vec<String> = jobs.iter().map(|j| (*j).to_owned()).collect();
    backend
        .queue()
        .claim(ClaimRequest {
            jobs: &jobs,
            worker: "w1",
            limit,
            lease: LEASE,
            limits,
        })
        .await
        .expect("claim failed")
}

fn params(claimed: &[ClaimedTask]) -> Vec<String> {
    claimed.iter().map(|c| c.params.clone()).collect()
}

/// `max_running` caps the running tasks of its job, counting those claimed earlier (by any
/// instance); other jobs of the same claim are not held back; a finished, failed or released
/// task frees its place, and the next task in claim order takes it.
pub async fn claim_respects_max_running(h: Harness) {
    let tasks: Vec<NewTask> = (1..=6).map(|n| keyed("export", n, None)).collect();
    h.insert(tasks).await;
    h.insert((1..=3).map(|n| keyed("mail", 10 + n, None)).collect())
        .await;
    let other = h.open_instance().await;
    let cap = [limits("export", Some(2), None)];

    let first = claim_limited(&h.backend, &["export", "mail"], 10, &cap).await;
    assert_eq!(
        params(&first),
        ["1", "2", "11", "12", "13"],
        "two exports and every mail"
    );
    let none = claim_limited(&other, &["export"], 10, &cap).await;
    assert!(none.is_empty(), "another instance got {:?}", params(&none));

    let lease = first[0].lease;
    assert_eq!(h.succeed(lease, "0").await, Ack::Applied);
    let next = claim_limited(&other, &["export"], 10, &cap).await;
    assert_eq!(
        params(&next),
        ["3"],
        "one place freed, the next task takes it"
    );

    let failed = h
        .finish(
            first[1].lease,
            Outcome::Failed {
                error: "retry me".to_owned(),
                retry_after: Some(Duration::from_secs(60)),
            },
        )
        .await;
    assert_eq!(failed, Ack::Applied);
    let released = h.backend.queue().release(&[next[0].lease]).await.unwrap();
    assert_eq!(released, vec![Ack::Applied]);
    let again = claim_limited(&h.backend, &["export"], 10, &cap).await;
    assert_eq!(
        params(&again),
        ["3", "4"],
        "the released task first, in claim order"
    );

    // Without limits in the request, nothing is held back.
    let free = claim_limited(&h.backend, &["export"], 10, &[]).await;
    assert_eq!(params(&free), ["5", "6"]);
}

/// `max_running_per_key` caps the running tasks of each concurrency key; the tasks of a busy key
/// wait in their place while later tasks of other keys (and tasks without a key) run: no
/// head-of-line blocking. With `max_running` too, both hold.
pub async fn claim_respects_per_key_limit_without_head_of_line_blocking(h: Harness) {
    let plan = [
        (1, Some("acme")),
        (2, Some("acme")),
        (3, Some("acme")),
        (4, Some("globex")),
        (5, None),
        (6, Some("acme")),
        (7, Some("initech")),
        (8, Some("globex")),
    ];
    h.insert(plan.iter().map(|(n, k)| keyed("export", *n, *k)).collect())
        .await;
    let other = h.open_instance().await;
    let per_key = [limits("export", None, Some(1))];

    let first = claim_limited(&h.backend, &["export"], 10, &per_key).await;
    assert_eq!(params(&first), ["1", "4", "5", "7"]);
    let nothing = claim_limited(&other, &["export"], 10, &per_key).await;
    assert!(nothing.is_empty(), "got {:?}", params(&nothing));

    assert_eq!(h.succeed(first[0].lease, "0").await, Ack::Applied); // acme 1 done
    assert_eq!(h.succeed(first[1].lease, "0").await, Ack::Applied); // globex 4 done
    let next = claim_limited(&other, &["export"], 10, &per_key).await;
    assert_eq!(
        params(&next),
        ["2", "8"],
        "acme's next and globex's next, in order"
    );
    let record = h.get(next[0].lease.task).await;
    assert_eq!(record.concurrency_key.as_deref(), Some("acme"));

    // Both limits: at most 3 running in all, at most 1 per key. Running now: 5, 7, 2, 8.
    let both = [limits("export", Some(3), Some(1))];
    assert_eq!(h.succeed(next[0].lease, "0").await, Ack::Applied); // acme 2 done: 3 running
    let capped = claim_limited(&h.backend, &["export"], 10, &both).await;
    assert!(
        capped.is_empty(),
        "3 run already: got {:?}",
        params(&capped)
    );
    assert_eq!(h.succeed(first[2].lease, "0").await, Ack::Applied); // 5 done: 2 running
    let last = claim_limited(&h.backend, &["export"], 10, &both).await;
    assert_eq!(
        params(&last),
        ["3"],
        "acme's last but one; acme 6 waits for it"
    );
}

/// Many claimers on separate instances, claiming and finishing at random, never run more tasks
/// at once than the limits allow, and every task runs exactly once.
pub async fn concurrent_claimers_never_exceed_limits(h: Harness) {
    const TASKS: u32 = 48;
    const MAX_RUNNING: usize = 3;
    let keys = ["a", "b", "c", "d"];
    h.insert(
        (0..TASKS)
            .map(|n| keyed("limited", n, Some(keys[n as usize % keys.len()])))
            .collect(),
    )
    .await;
    let cap = [limits("limited", Some(MAX_RUNNING as u32), Some(1))];
    // What the claimers hold right now, by key: a task leaves before it is finished, so the
    // count never includes a task the backend has let go of.
    let held: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let done: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut claimers = Vec::new();
    for c in 0..4 {
        let backend = h.open_instance().await;
        let (held, done, cap) = (held.clone(), done.clone(), cap.clone());
        claimers.push(tokio::spawn(async move {
            let mut idle = 0;
            while idle < 200 {
                let claimed = claim_limited(&backend, &["limited"], 2, &cap).await;
                if claimed.is_empty() {
                    idle += 1;
                    if done.lock().unwrap().len() == TASKS as usize {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                idle = 0;
                let keys_of: Vec<String> = claimed
                    .iter()
                    .map(|t| keys[t.params.parse::<usize>().unwrap() % keys.len()].to_owned())
                    .collect();
                {
                    let mut held = held.lock().unwrap();
                    for key in &keys_of {
                        *held.entry(key.clone()).or_default() += 1;
                    }
                    let total: usize = held.values().sum();
                    assert!(
                        total <= MAX_RUNNING,
                        "claimer {c}: {total} running: {held:?}"
                    );
                    assert!(held.values().all(|n| *n <= 1), "claimer {c}: {held:?}");
                }
                tokio::task::yield_now().await;
                for (task, key) in claimed.iter().zip(keys_of) {
                    *held.lock().unwrap().get_mut(&key).unwrap() -= 1;
                    let ack = backend
                        .queue()
                        .finish(vec![crate::Completion::new(
                            task.lease,
                            Outcome::Succeeded {
                                output: "0".to_owned(),
                            },
                        )])
                        .await
                        .unwrap();
                    assert_eq!(ack, vec![Ack::Applied]);
                    done.lock().unwrap().push(task.params.clone());
                }
            }
        }));
    }
    for claimer in claimers {
        claimer.await.expect("a claimer panicked");
    }
    let mut done = done.lock().unwrap().clone();
    done.sort_by_key(|p| p.parse::<u32>().unwrap());
    let expected: Vec<String> = (0..TASKS).map(|n| n.to_string()).collect();
    assert_eq!(done, expected, "every task ran exactly once");
}

/// Counts how many of its runs overlap.
#[derive(Debug, Default)]
pub struct Overlap {
    now: Mutex<HashMap<String, usize>>,
    most: Mutex<(usize, usize)>,
}

/// Parameters of [`Limited`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitedParams {
    /// The task's customer (also its concurrency key).
    pub customer: String,
}

/// Runs a while, recording how many of its runs overlap, in all and per customer.
#[derive(Debug)]
pub struct Limited(Arc<Overlap>);

impl Job for Limited {
    const NAME: &'static str = "conformance-limited";
    type Params = LimitedParams;
    type Output = ();

    async fn run(&self, params: LimitedParams, _cx: TaskContext) -> Result<(), JobError> {
        {
            let mut now = self.0.now.lock().unwrap();
            *now.entry(params.customer.clone()).or_default() += 1;
            let total: usize = now.values().sum();
            let mut most = self.0.most.lock().unwrap();
            most.0 = most.0.max(total);
            most.1 = most.1.max(now[&params.customer]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        *self
            .0
            .now
            .lock()
            .unwrap()
            .get_mut(&params.customer)
            .unwrap() -= 1;
        Ok(())
    }

    fn options() -> JobOptions {
        JobOptions::default().max_running(3).max_running_per_key(1)
    }
}

/// Two workers of concurrency 8 each, on separate instances, run a job limited to 3 at once
/// and 1 per customer: the limits hold across them and every task succeeds.
pub async fn workers_respect_limits(h: Harness) {
    let overlap = Arc::new(Overlap::default());
    let mut workers = Vec::new();
    for _ in 0..2 {
        let backend = h.open_instance().await;
        workers.push(
            Worker::builder(backend)
                .register(Limited(overlap.clone()))
                .concurrency(8)
                .poll_interval(Duration::from_millis(20))
                .build()
                .expect("worker builds")
                .spawn(),
        );
    }
    let client = Client::new(h.backend.clone());
    let mut ids = Vec::new();
    for n in 0..30 {
        let customer = format!("customer-{}", n % 5);
        let options = SubmitOptions::new().concurrency_key(customer.clone());
        ids.push(
            client
                .submit_with::<Limited>(LimitedParams { customer }, options)
                .await
                .unwrap(),
        );
    }
    for id in ids {
        let task = client.wait(id.id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
    }
    for worker in workers {
        worker.shutdown().await.unwrap();
    }
    let (total, per_customer) = *overlap.most.lock().unwrap();
    assert!(total <= 3, "{total} ran at once; the limit is 3");
    assert!(
        total >= 2,
        "the workers never ran two at once: the test proves nothing"
    );
    assert_eq!(per_customer, 1, "one customer had {per_customer} at once");
}

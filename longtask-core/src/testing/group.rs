//! Cases: task groups. A group's root counts its members that have not finished; each member
//! reaching a final status (by an outcome, a recovery or a cancellation) discounts itself in the
//! same change; the last one fires the root exactly once (a plain root succeeds, a completion
//! job's root becomes due). Members join open groups only.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{Harness, LEASE};
use crate::{
    group_root_run_at, Ack, ClaimRequest, Client, Error, GroupRole, Job, JobError, JobOptions,
    NewTask, Outcome, RunAt, TaskContext, TaskId, TaskQuery, TaskStatus, Worker, GROUP_JOB,
};

const PAST_LEASE: Duration = Duration::from_secs(31);

fn root(job: &str) -> NewTask {
    NewTask {
        run_at: RunAt::At(group_root_run_at()),
        group: Some(GroupRole::Root),
        ..NewTask::new(job, "null")
    }
}

fn member(job: &str, group: TaskId, n: u32) -> NewTask {
    NewTask {
        group: Some(GroupRole::Member(group)),
        ..NewTask::new(job, n.to_string())
    }
}

/// A plain group's root waits (`scheduled`, never claimed) while members are open, counts them
/// down as they end by every path (success, permanent failure, recovery of a lost last attempt,
/// cancellation while waiting), and succeeds when the last one ends; the members are listed by
/// group, in order, without the root.
pub async fn group_root_succeeds_when_the_last_member_ends(h: Harness) {
    let group = root(GROUP_JOB);
    let id = group.id;
    let (first, second) = (member("part", id, 1), member("part", id, 2));
    let mut lost = member("part", id, 3);
    lost.max_attempts = 1;
    let tasks = vec![group, first, second, lost, member("part", id, 4)];
    let ids = h.insert(tasks).await;
    h.submit("part", "\"not in the group\"").await;
    let record = h.get(id).await;
    assert_eq!(record.status, TaskStatus::Scheduled);
    assert_eq!(record.open_members, Some(4));
    assert_eq!(record.group, None);
    assert_eq!(h.get(ids[1]).await.group, Some(id));

    let listed = h
        .backend
        .store()
        .list(&TaskQuery {
            group: Some(id),
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    let listed: Vec<TaskId> = listed.into_iter().map(|t| t.id).collect();
    assert_eq!(
        listed,
        ids[1..].to_vec(),
        "the members, in order, without the root"
    );
    let page = h
        .backend
        .store()
        .list(&TaskQuery {
            group: Some(id),
            after: Some(ids[2]),
            limit: 1,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|t| t.id).collect::<Vec<_>>(), [ids[3]]);

    let claimed = h.claim(&["part", GROUP_JOB], 3).await;
    assert_eq!(claimed.len(), 3, "the root is never claimed while it waits");
    assert!(claimed.iter().all(|c| c.lease.task != id));
    assert_eq!(h.succeed(claimed[0].lease, "1").await, Ack::Applied);
    assert_eq!(h.get(id).await.open_members, Some(3));
    let failed = h
        .finish(
            claimed[1].lease,
            Outcome::Failed {
                error: "broken".to_owned(),
                retry_after: None,
            },
        )
        .await;
    assert_eq!(failed, Ack::Applied);
    assert_eq!(h.get(id).await.open_members, Some(2));
    // The third member's worker dies on its only attempt: recovery fails it.
    h.advance(PAST_LEASE);
    assert_eq!(h.backend.queue().recover_expired(10).await.unwrap(), 1);
    assert_eq!(h.get(ids[3]).await.status, TaskStatus::Failed);
    assert_eq!(h.get(id).await.open_members, Some(1));
    assert_eq!(h.get(id).await.status, TaskStatus::Scheduled);
    // The last one is cancelled while it waits (it and the outside task were never claimed).
    let last = ids[4];
    h.backend.store().cancel(last).await.unwrap();
    let record = h.get(id).await;
    assert_eq!(record.open_members, Some(0));
    assert_eq!(record.status, TaskStatus::Succeeded, "{record:?}");
    assert_eq!(record.finished_at, Some(h.now()));
    assert!(
        h.claim(&[GROUP_JOB], 10).await.is_empty(),
        "a plain root is never claimed"
    );
}

/// A group with a completion job: its root becomes due (`queued`) when the last member ends,
/// is claimed once, and runs like any task; members can join while it waits (fan-out), and
/// then it waits for them too; once it fired, no member can join, and a batch naming a
/// finished or unknown group is refused whole.
pub async fn completion_becomes_due_once_and_closes_the_group(h: Harness) {
    let group = root("summary");
    let id = group.id;
    h.insert(vec![group, member("part", id, 1)]).await;
    let first = h.claim_one("part").await;
    // The running member fans out: the group grows before it ends.
    let more = h.insert(vec![member("part", id, 2)]).await;
    assert_eq!(h.get(id).await.open_members, Some(2));
    assert_eq!(h.succeed(first.lease, "1").await, Ack::Applied);
    assert_eq!(
        h.get(id).await.status,
        TaskStatus::Scheduled,
        "one member is open"
    );
    assert!(h.claim(&["summary"], 10).await.is_empty());

    let second = h.claim_one("part").await;
    assert_eq!(second.lease.task, more[0]);
    assert_eq!(h.succeed(second.lease, "2").await, Ack::Applied);
    let record = h.get(id).await;
    assert_eq!(record.status, TaskStatus::Queued, "{record:?}");
    assert_eq!(record.open_members, Some(0));
    assert!(record.run_at <= h.now(), "due now");

    let other = h.open_instance().await;
    let jobs = ["summary".to_owned()];
    let request = ClaimRequest {
        jobs: &jobs,
        worker: "w2",
        limit: 10,
        lease: LEASE,
        limits: &[],
    };
    let claimed = other.queue().claim(request).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].lease.task, id);
    assert!(other.queue().claim(request).await.unwrap().is_empty());

    let late = h
        .backend
        .store()
        .insert(vec![NewTask::new("part", "0"), member("part", id, 3)])
        .await;
    assert!(
        matches!(late, Err(Error::InvalidInput(_))),
        "a member of a fired group: {late:?}"
    );
    let unknown = h
        .backend
        .store()
        .insert(vec![member("part", TaskId::new(), 4)])
        .await;
    assert!(
        matches!(unknown, Err(Error::InvalidInput(_))),
        "{unknown:?}"
    );
    // A root that would be due before its members end is refused, with its members.
    let due_root = NewTask {
        group: Some(GroupRole::Root),
        ..NewTask::new("summary", "null")
    };
    let early = member("part", due_root.id, 5);
    let refused = h.backend.store().insert(vec![due_root, early]).await;
    assert!(
        matches!(refused, Err(Error::InvalidInput(_))),
        "{refused:?}"
    );
    let parts = h
        .backend
        .store()
        .list(&TaskQuery {
            job: Some("part".to_owned()),
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        parts.len(),
        2,
        "nothing of the refused batches was inserted"
    );
    assert_eq!(h.succeed(claimed[0].lease, "\"done\"").await, Ack::Applied);
    assert_eq!(h.get(id).await.status, TaskStatus::Succeeded);
}

/// Many groups whose last two members end at the same moment on two instances: every root
/// fires exactly once.
pub async fn racing_last_members_fire_each_root_once(h: Harness) {
    const GROUPS: usize = 24;
    let mut tasks = Vec::new();
    let mut roots = Vec::new();
    for g in 0..GROUPS {
        let group = root("summary");
        roots.push(group.id);
        let id = group.id;
        tasks.push(group);
        tasks.push(member("pair", id, u32::try_from(2 * g).unwrap()));
        tasks.push(member("pair", id, u32::try_from(2 * g + 1).unwrap()));
    }
    h.insert(tasks).await;
    let claimed = h.claim(&["pair"], 2 * GROUPS).await;
    assert_eq!(claimed.len(), 2 * GROUPS);
    let instances = [h.open_instance().await, h.open_instance().await];
    let mut finishers = Vec::new();
    for (i, backend) in instances.iter().enumerate() {
        let backend = backend.clone();
        // Instance 0 finishes the first member of each group, instance 1 the second.
        let leases: Vec<_> = claimed
            .iter()
            .filter(|c| c.params.parse::<usize>().unwrap() % 2 == i)
            .map(|c| c.lease)
            .collect();
        finishers.push(tokio::spawn(async move {
            for lease in leases {
                let done = crate::Completion::new(
                    lease,
                    Outcome::Succeeded {
                        output: "0".to_owned(),
                    },
                );
                let acks = backend.queue().finish(vec![done]).await.unwrap();
                assert_eq!(acks, vec![Ack::Applied]);
            }
        }));
    }
    for finisher in finishers {
        finisher.await.expect("a finisher panicked");
    }
    let summaries = h.claim(&["summary"], 10 * GROUPS).await;
    let mut fired: Vec<TaskId> = summaries.iter().map(|c| c.lease.task).collect();
    fired.sort();
    roots.sort();
    assert_eq!(fired, roots, "every root fired, once");
    for id in roots {
        assert_eq!(h.get(id).await.open_members, Some(0));
    }
}

/// Parameters of [`Part`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartParams {
    /// The number this part adds.
    pub n: u64,
    /// Whether the part adds another part to its group as it runs.
    pub fan_out: bool,
}

/// A group member that returns its number, and can add another member as it runs.
#[derive(Debug)]
pub struct Part;

impl Job for Part {
    const NAME: &'static str = "conformance-part";
    type Params = PartParams;
    type Output = u64;

    async fn run(&self, params: PartParams, cx: TaskContext) -> Result<u64, JobError> {
        if params.fan_out {
            cx.submit_to_group::<Part>(&PartParams {
                n: 100,
                fan_out: false,
            })
            .await?;
        }
        Ok(params.n)
    }
}

/// A group's completion job: adds up the members' outputs.
#[derive(Debug)]
pub struct Sum(Arc<Mutex<u32>>);

impl Job for Sum {
    const NAME: &'static str = "conformance-sum";
    type Params = ();
    type Output = u64;

    async fn run(&self, (): (), cx: TaskContext) -> Result<u64, JobError> {
        *self.0.lock().unwrap() += 1;
        let members = cx.group_members().await?;
        if members.iter().any(|m| !m.status.is_final()) {
            return Err(JobError::fatal(
                "the completion ran before its members ended",
            ));
        }
        Ok(members
            .iter()
            .filter_map(|m| m.output.as_deref()?.parse::<u64>().ok())
            .sum())
    }

    fn options() -> JobOptions {
        JobOptions::default().max_attempts(1)
    }
}

/// Through workers on two instances: a group of five parts, one of which adds a sixth as it
/// runs, and a completion job that adds up their outputs: the completion runs once, after all
/// six, and sees every outcome; the group's status adds up.
pub async fn workers_run_a_group_and_its_completion_once(h: Harness) {
    let runs = Arc::new(Mutex::new(0));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let backend = h.open_instance().await;
        workers.push(
            Worker::builder(backend)
                .register(Part)
                .register(Sum(runs.clone()))
                .concurrency(4)
                .poll_interval(Duration::from_millis(20))
                .build()
                .expect("worker builds")
                .spawn(),
        );
    }
    let client = Client::new(h.backend.clone());
    let mut group = client.group();
    for n in 1..=5 {
        group
            .add::<Part>(&PartParams { n, fan_out: n == 3 })
            .unwrap();
    }
    group.on_complete::<Sum>(&()).unwrap();
    let id = group.submit().await.unwrap();
    let root = client.wait(id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(root.status, TaskStatus::Succeeded, "{root:?}");
    assert_eq!(client.output::<Sum>(id).await.unwrap(), Some(115));
    assert_eq!(*runs.lock().unwrap(), 1, "the completion ran once");
    let status = client.group_status(id).await.unwrap();
    assert_eq!(status.members.len(), 6);
    assert_eq!(status.count(TaskStatus::Succeeded), 6);
    assert!(status.is_final() && status.has_completion());
    assert!((status.percent() - 100.0).abs() < f64::EPSILON);
    let cancelled = client.cancel_group(id).await.unwrap();
    assert_eq!(cancelled.finished, 6, "nothing left to cancel");
    for worker in workers {
        worker.shutdown().await.unwrap();
    }
}

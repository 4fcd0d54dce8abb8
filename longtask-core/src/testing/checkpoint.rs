//! Cases: checkpoints. A running attempt saves its state under its lease; a later attempt
//! resumes from the last committed one, whatever ended the earlier attempt; a stale lease's
//! checkpoint changes nothing; checkpoints go with the task at purge.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Harness, LEASE};
use crate::{
    Ack, Checkpoint, Client, Job, JobError, JobOptions, Lease, Outcome, Progress, TaskContext,
    TaskEvent, TaskId, TaskStatus, Worker,
};

const PAST_LEASE: Duration = Duration::from_secs(31);

fn progress(h: &Harness, step: u64, message: &str) -> Progress {
    Progress {
        step,
        total: Some(31),
        message: Some(message.to_owned()),
        rate: Some(0.5),
        updated_at: h.now(),
    }
}

async fn save(
    h: &Harness,
    lease: Lease,
    attempt: u32,
    state: &str,
    progress: Option<Progress>,
) -> Ack {
    h.backend
        .queue()
        .save_checkpoint(Checkpoint {
            lease,
            attempt,
            state: state.to_owned(),
            progress,
        })
        .await
        .expect("save_checkpoint failed")
}

async fn load(h: &Harness, id: TaskId) -> Option<String> {
    h.backend
        .queue()
        .load_checkpoint(id)
        .await
        .expect("load_checkpoint failed")
}

/// A checkpoint saved under a live lease is committed with its progress, survives the lease's
/// expiry and the task's recovery, and is what the next attempt (on another instance) loads;
/// the record says that attempt resumed, and from where.
pub async fn checkpoint_survives_lease_expiry_and_reclaim(h: Harness) {
    let id = h.submit("export", "{}").await;
    let first = h.claim_one("export").await;
    assert_eq!(load(&h, id).await, None, "a first run has no checkpoint");
    assert_eq!(h.get(id).await.checkpoint, None);
    assert_eq!(h.get(id).await.resumed_from(), None);

    h.advance(Duration::from_secs(3));
    let at_day_17 = progress(&h, 17, "day 17");
    let saved_at = h.now();
    let ack = save(&h, first.lease, 1, r#"{"day":17}"#, Some(at_day_17.clone())).await;
    assert_eq!(ack, Ack::Applied);
    let record = h.get(id).await;
    assert_eq!(
        record.progress.as_ref(),
        Some(&at_day_17),
        "one write: the page shows it"
    );
    let info = record
        .checkpoint
        .clone()
        .expect("the record shows the checkpoint");
    assert_eq!((info.attempt, info.at), (1, saved_at));
    assert_eq!(info.progress.as_ref(), Some(&at_day_17));
    assert_eq!(
        record.resumed_from(),
        None,
        "the attempt that saved it did not resume"
    );

    // The worker dies: its lease expires and the task is recovered for a retry.
    h.advance(PAST_LEASE);
    assert_eq!(h.backend.queue().recover_expired(10).await.unwrap(), 1);
    assert_eq!(h.get(id).await.status, TaskStatus::Retrying);
    let other = h.open_instance().await;
    h.advance(Duration::from_secs(1));
    let jobs = ["export".to_owned()];
    let second = other
        .queue()
        .claim(crate::ClaimRequest {
            jobs: &jobs,
            worker: "w2",
            limit: 1,
            lease: LEASE,
            limits: &[],
        })
        .await
        .unwrap()
        .remove(0);
    assert_eq!((second.lease.task, second.attempt), (id, 2));
    let loaded = other.queue().load_checkpoint(id).await.unwrap();
    super::assert_json_eq(
        loaded
            .as_deref()
            .expect("the next attempt finds the checkpoint"),
        r#"{"day":17}"#,
    );
    let record = h.get(id).await;
    let resumed = record
        .resumed_from()
        .expect("the record says the running attempt resumed");
    assert_eq!((resumed.attempt, resumed.at), (1, saved_at));
    assert_eq!(resumed.progress.as_ref(), Some(&at_day_17));
    assert_eq!(
        record.progress.as_ref(),
        Some(&at_day_17),
        "the bar does not go back to 0"
    );
}

/// A checkpoint under a stale lease (expired and claimed again) changes nothing: not the state,
/// not the record, not the progress; the live attempt's checkpoints still apply.
pub async fn stale_lease_checkpoint_changes_nothing(h: Harness) {
    let id = h.submit("fenced", "{}").await;
    let old = h.claim_as("old", &["fenced"], 1).await.remove(0);
    assert_eq!(save(&h, old.lease, 1, r#""a""#, None).await, Ack::Applied);
    h.advance(PAST_LEASE);
    assert_eq!(h.backend.queue().recover_expired(10).await.unwrap(), 1);
    let live = h.claim_as("new", &["fenced"], 1).await.remove(0);
    let before = h.get(id).await;

    h.advance(Duration::from_secs(1));
    let zombie = progress(&h, 30, "zombie");
    let ack = save(&h, old.lease, 1, r#""zombie""#, Some(zombie)).await;
    assert_eq!(ack, Ack::Stale);
    super::assert_json_eq(load(&h, id).await.as_deref().unwrap(), r#""a""#);
    let after = h.get(id).await;
    assert_eq!(after.checkpoint, before.checkpoint);
    assert_eq!(after.progress, before.progress);

    let day_2 = progress(&h, 2, "day 2");
    let ack = save(&h, live.lease, 2, r#""b""#, Some(day_2.clone())).await;
    assert_eq!(ack, Ack::Applied);
    assert_eq!(save(&h, old.lease, 1, r#""c""#, None).await, Ack::Stale);
    super::assert_json_eq(load(&h, id).await.as_deref().unwrap(), r#""b""#);
    assert_eq!(h.get(id).await.progress, Some(day_2));

    // After the task finishes, its last lease is stale too.
    assert_eq!(h.succeed(live.lease, "1").await, Ack::Applied);
    assert_eq!(save(&h, live.lease, 2, r#""late""#, None).await, Ack::Stale);
    super::assert_json_eq(load(&h, id).await.as_deref().unwrap(), r#""b""#);
    // A lease for a task that does not exist changes nothing and creates nothing.
    let unknown = Lease {
        task: TaskId::new(),
        token: live.lease.token,
    };
    assert_eq!(save(&h, unknown, 1, r#""ghost""#, None).await, Ack::Stale);
    assert_eq!(load(&h, unknown.task).await, None);
    assert!(h.backend.store().get(unknown.task).await.unwrap().is_none());
}

/// Within one lease the last checkpoint wins; one without progress leaves the task's progress
/// as it was; a watcher sees the progress a checkpoint carries.
pub async fn last_checkpoint_wins_within_a_lease(h: Harness) {
    let id = h.submit("steps", "{}").await;
    let claimed = h.claim_one("steps").await;
    let mut events = h.backend.progress().watch(id).await.unwrap();
    let mut last = None;
    for day in 1..=5 {
        h.advance(Duration::from_millis(250));
        let at = progress(&h, day, &format!("day {day}"));
        let state = format!(r#"{{"day":{day},"rows":[{day},{day}]}}"#);
        let ack = save(&h, claimed.lease, 1, &state, Some(at.clone())).await;
        assert_eq!(ack, Ack::Applied, "day {day}");
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("no watch event within 10 s for a checkpoint's progress");
        assert_eq!(event, Some(TaskEvent::Progress(at.clone())), "day {day}");
        last = Some(at);
    }
    super::assert_json_eq(
        load(&h, id).await.as_deref().unwrap(),
        r#"{"day":5,"rows":[5,5]}"#,
    );
    h.advance(Duration::from_secs(1));
    let ack = save(&h, claimed.lease, 1, r#"{"day":5,"rows":[]}"#, None).await;
    assert_eq!(ack, Ack::Applied);
    let record = h.get(id).await;
    assert_eq!(
        record.progress, last,
        "a checkpoint without progress keeps the progress"
    );
    let info = record.checkpoint.unwrap();
    assert_eq!((info.at, info.progress), (h.now(), None));
    super::assert_json_eq(
        load(&h, id).await.as_deref().unwrap(),
        r#"{"day":5,"rows":[]}"#,
    );
}

/// A checkpoint survives a failed attempt that is retried, a release at shutdown (which does
/// not count the attempt), and the task's end; it goes with the task at purge.
pub async fn checkpoint_survives_retry_and_release_until_purge(h: Harness) {
    let id = h.submit("long", "{}").await;
    let first = h.claim_one("long").await;
    assert_eq!(save(&h, first.lease, 1, "[1]", None).await, Ack::Applied);
    let failed = h
        .finish(
            first.lease,
            Outcome::Failed {
                error: "the ledger service timed out".to_owned(),
                retry_after: Some(Duration::ZERO),
            },
        )
        .await;
    assert_eq!(failed, Ack::Applied);
    h.advance(Duration::from_secs(1));
    let second = h.claim_one("long").await;
    assert_eq!(second.attempt, 2);
    super::assert_json_eq(load(&h, id).await.as_deref().unwrap(), "[1]");
    assert_eq!(save(&h, second.lease, 2, "[1,2]", None).await, Ack::Applied);
    assert_eq!(
        h.backend.queue().release(&[second.lease]).await.unwrap(),
        vec![Ack::Applied]
    );
    h.advance(Duration::from_secs(1));
    let third = h.claim_one("long").await;
    assert_eq!(third.attempt, 2, "a release does not count the attempt");
    super::assert_json_eq(load(&h, id).await.as_deref().unwrap(), "[1,2]");
    let resumed = h.get(id).await;
    assert_eq!(resumed.resumed_from().map(|c| c.attempt), Some(2));

    assert_eq!(h.succeed(third.lease, "3").await, Ack::Applied);
    let done = h.get(id).await;
    super::assert_json_eq(load(&h, id).await.as_deref().unwrap(), "[1,2]");
    let retention = done.retention;
    h.advance(retention + Duration::from_secs(1));
    assert_eq!(h.backend.store().purge(100).await.unwrap(), 1);
    assert_eq!(
        load(&h, id).await,
        None,
        "the checkpoint is purged with its task"
    );

    // A new task under the same id space starts clean: a checkpoint never leaks across tasks.
    let fresh = h.submit("long", "{}").await;
    let claimed = h.claim_one("long").await;
    assert_eq!(claimed.lease.task, fresh);
    assert_eq!(load(&h, fresh).await, None);
}

/// A checkpoint of 1 MiB (the default limit) of JSON with every kind of character is stored
/// and loaded back byte for byte.
pub async fn large_checkpoint_round_trips(h: Harness) {
    let id = h.submit("big", "{}").await;
    let claimed = h.claim_one("big").await;
    let piece = "päivä \"17\" \\ ✓ \u{1F600} <b>&amp;</b> \u{7f}\n";
    let escaped = serde_json::to_string(piece).unwrap().len() - 2;
    let text = piece.repeat(((1 << 20) - 2) / escaped);
    let state = serde_json::to_string(&text).unwrap();
    assert!(state.len() <= 1 << 20);
    assert_eq!(save(&h, claimed.lease, 1, &state, None).await, Ack::Applied);
    let loaded = load(&h, id).await.expect("the checkpoint was stored");
    let back: String = serde_json::from_str(&loaded).expect("stored JSON is JSON");
    assert_eq!(back, text);
}

/// Counts to 10, saving a checkpoint after each step; its first attempt fails after step 4
/// and its second succeeds, so the output says which attempt did which steps.
#[derive(Debug)]
pub struct Resumable;

/// The state [`Resumable`] saves.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Steps {
    /// The attempt that did each step, in order.
    pub done_by: Vec<u32>,
}

impl Job for Resumable {
    const NAME: &'static str = "conformance-resumable";
    type Params = ();
    type Output = Steps;

    async fn run(&self, (): (), cx: TaskContext) -> Result<Steps, JobError> {
        let mut steps: Steps = cx.resume().await?.unwrap_or_default();
        let start = steps.done_by.len() as u64;
        for step in start + 1..=10 {
            steps.done_by.push(cx.attempt());
            cx.progress(step, Some(10), format!("step {step}"))?;
            cx.checkpoint(&steps).await?;
            if cx.attempt() == 1 && step == 4 {
                return Err(JobError::retryable("the ledger service went away"));
            }
        }
        Ok(steps)
    }

    fn options() -> JobOptions {
        JobOptions::default()
            .backoff(crate::Backoff::constant(Duration::ZERO))
            .max_checkpoint_size(64)
    }
}

/// Saves a checkpoint larger than its job's limit.
#[derive(Debug)]
pub struct Oversized;

impl Job for Oversized {
    const NAME: &'static str = "conformance-oversized";
    type Params = ();
    type Output = ();

    async fn run(&self, (): (), cx: TaskContext) -> Result<(), JobError> {
        cx.checkpoint(&"x".repeat(65)).await
    }

    fn options() -> JobOptions {
        JobOptions::default().max_checkpoint_size(64)
    }
}

/// Through a worker: an attempt that fails resumes from its last checkpoint (it does not redo
/// the steps before it), and the final progress follows on; a checkpoint over the job's size
/// limit fails the task at once with an error saying so, and stores nothing.
pub async fn worker_resumes_from_last_checkpoint(h: Harness) {
    let worker = Worker::builder(h.backend.clone())
        .register(Resumable)
        .register(Oversized)
        .poll_interval(Duration::from_millis(50))
        .build()
        .expect("worker builds")
        .spawn();
    let client = Client::new(h.backend.clone());
    let id = client.submit::<Resumable>(()).await.unwrap();
    let task = client.wait(id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(task.status, TaskStatus::Succeeded, "{task:?}");
    assert_eq!(task.attempt, 2);
    let steps = client.output::<Resumable>(id).await.unwrap().unwrap();
    assert_eq!(steps.done_by, [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
    let progress = task.progress.unwrap();
    assert_eq!((progress.step, progress.total), (10, Some(10)));
    let checkpoint = task
        .checkpoint
        .expect("the record shows the last checkpoint");
    assert_eq!(checkpoint.attempt, 2);
    assert_eq!(checkpoint.progress.map(|p| p.step), Some(10));

    let id = client.submit::<Oversized>(()).await.unwrap();
    let task = client.wait(id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(task.status, TaskStatus::Failed, "{task:?}");
    assert_eq!(task.attempt, 1, "a checkpoint too large is not retried");
    let error = task.last_error.unwrap().message;
    assert!(
        error.contains("67 bytes") && error.contains("limit of 64"),
        "the error says why: {error}"
    );
    assert_eq!(task.checkpoint, None);
    assert_eq!(h.backend.queue().load_checkpoint(id).await.unwrap(), None);
    worker.shutdown().await.unwrap();
}

//! Task groups: many tasks submitted at once, one status, and an optional completion job that
//! runs once when every member has finished.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext, TaskStatus};
//!
//! struct Month;
//! impl Job for Month {
//!     const NAME: &'static str = "month";
//!     type Params = u32;
//!     type Output = u32;
//!     async fn run(&self, month: u32, _cx: TaskContext) -> Result<u32, JobError> { Ok(month) }
//! }
//!
//! let client = Client::new(MemoryBackend::new());
//! let mut year = client.group();
//! for month in 1..=12 {
//!     year.add::<Month>(&month)?;
//! }
//! let id = year.submit().await?;
//! let status = client.group_status(id).await?;
//! assert_eq!(status.members.len(), 12);
//! assert_eq!(status.count(TaskStatus::Queued), 12);
//! # Ok(()) }
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    client::{Client, SubmitOptions},
    error::{Error, Result},
    job::Job,
    store::CancelOutcome,
    task::{GroupRole, NewTask, RunAt, TaskId, TaskQuery, TaskRecord, TaskStatus, GROUP_JOB},
};

/// A group being put together: members added with [`add`](Self::add), an optional completion
/// job with [`on_complete`](Self::on_complete), then [`submit`](Self::submit) inserts all of it
/// in one atomic batch. Made by [`Client::group`].
#[derive(Debug)]
#[must_use = "a group is submitted only by `submit`"]
pub struct NewGroup {
    client: Client,
    root: NewTask,
    members: Vec<NewTask>,
}

impl NewGroup {
    pub(crate) fn new(client: Client) -> Self {
        let root = NewTask {
            run_at: RunAt::At(crate::task::group_root_run_at()),
            group: Some(GroupRole::Root),
            ..NewTask::new(GROUP_JOB, "null")
        };
        Self {
            client,
            root,
            members: Vec::new(),
        }
    }

    /// The group's id (its root task's id), known before it is submitted.
    pub fn id(&self) -> TaskId {
        self.root.id
    }

    /// Adds a member: a task of job `J` with `params` and the job's default options.
    ///
    /// # Errors
    /// The parameters cannot be encoded as JSON.
    pub fn add<J: Job>(&mut self, params: &J::Params) -> Result<&mut Self> {
        self.add_with::<J>(params, SubmitOptions::new())
    }

    /// Adds a member with options (priority, delay, concurrency key, ...). A member's idempotency
    /// key is refused: a group is submitted whole or not at all.
    ///
    /// # Errors
    /// The parameters cannot be encoded, or the options are invalid.
    pub fn add_with<J: Job>(
        &mut self,
        params: &J::Params,
        options: SubmitOptions,
    ) -> Result<&mut Self> {
        let mut task = options.into_task::<J>(params)?;
        if task.idempotency_key.is_some() {
            return Err(Error::InvalidInput(
                "a member of a group cannot have an idempotency key".to_owned(),
            ));
        }
        if task.owner.is_none() {
            task.owner.clone_from(&self.root.owner);
        }
        task.group = Some(GroupRole::Member(self.root.id));
        self.members.push(task);
        Ok(self)
    }

    /// Runs `J` with `params` once every member has reached a final status (succeeded, failed or
    /// cancelled), exactly once however many workers run. Its task's id is the group's id: its
    /// job reads the members' outcomes with [`TaskContext::group_members`]. Without a
    /// completion job, the group's root succeeds by itself when the last member ends.
    ///
    /// # Errors
    /// The parameters cannot be encoded as JSON.
    ///
    /// [`TaskContext::group_members`]: crate::TaskContext::group_members
    pub fn on_complete<J: Job>(&mut self, params: &J::Params) -> Result<&mut Self> {
        let task = SubmitOptions::new().into_task::<J>(params)?;
        self.root.job = task.job;
        self.root.params = task.params;
        self.root.max_attempts = task.max_attempts;
        self.root.priority = task.priority;
        self.root.retention = self.root.retention.max(task.retention);
        Ok(self)
    }

    /// Stamps the group and its members with their owner, for authorization.
    pub fn owner(&mut self, owner: impl Into<String>) -> &mut Self {
        let owner = owner.into();
        for member in &mut self.members {
            member.owner.get_or_insert_with(|| owner.clone());
        }
        self.root.owner = Some(owner);
        self
    }

    /// How long the group's root (its status and the completion job's output) is kept after it
    /// finishes (default: the completion job's retention, or 7 days).
    pub fn retention(&mut self, retention: Duration) -> &mut Self {
        self.root.retention = retention;
        self
    }

    /// Inserts the root and every member in one batch: all of them, or none.
    ///
    /// # Errors
    /// The group has no member (it would never start), or the backend failed.
    pub async fn submit(self) -> Result<TaskId> {
        if self.members.is_empty() {
            return Err(Error::InvalidInput(
                "a group needs at least one member".to_owned(),
            ));
        }
        let id = self.root.id;
        let mut batch = Vec::with_capacity(self.members.len() + 1);
        batch.push(self.root);
        batch.extend(self.members);
        self.client.submit_raw(batch).await?;
        Ok(id)
    }
}

/// A group's status: its root, its members, and what they add up to. From
/// [`Client::group_status`].
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStatus {
    /// The group's root: the completion job's task (its id is the group's), or a task of job
    /// [`GROUP_JOB`] that succeeds when the last member ends.
    pub root: TaskRecord,
    /// Every member, in submission order.
    pub members: Vec<TaskRecord>,
}

impl GroupStatus {
    /// The group's id.
    pub fn id(&self) -> TaskId {
        self.root.id
    }

    /// How many members are in `status`.
    pub fn count(&self, status: TaskStatus) -> usize {
        self.members.iter().filter(|m| m.status == status).count()
    }

    /// Whether every member has finished and the completion job (if any) too.
    pub fn is_final(&self) -> bool {
        self.root.status.is_final()
    }

    /// Whether the group has a completion job.
    pub fn has_completion(&self) -> bool {
        self.root.job != GROUP_JOB
    }

    /// The members' steps done and the steps in all: a member with a known total counts its
    /// steps (all of them once it succeeded), a member without one counts as one step, done
    /// once it ended.
    pub fn steps(&self) -> (u64, u64) {
        self.members.iter().fold((0, 0), |(done, total), member| {
            let (d, t) = member_steps(member);
            (done.saturating_add(d), total.saturating_add(t))
        })
    }

    /// The share done, 0 to 100.
    pub fn percent(&self) -> f64 {
        let (done, total) = self.steps();
        if total == 0 {
            return if self.is_final() { 100.0 } else { 0.0 };
        }
        #[allow(clippy::cast_precision_loss)]
        let percent = done as f64 * 100.0 / total as f64;
        percent.min(100.0)
    }

    /// The time left, from the running members' rates, while members run.
    pub fn eta(&self, now: DateTime<Utc>) -> Option<Duration> {
        let rate: f64 = self
            .members
            .iter()
            .filter(|m| m.status == TaskStatus::Running)
            .filter_map(|m| m.progress.as_ref()?.rate)
            .filter(|r| r.is_finite() && *r > 0.0)
            .sum();
        if rate <= 0.0 {
            return None;
        }
        let (done, total) = self.steps();
        #[allow(clippy::cast_precision_loss)]
        let left = total.saturating_sub(done) as f64 / rate;
        let oldest = self
            .members
            .iter()
            .filter(|m| m.status == TaskStatus::Running)
            .filter_map(|m| m.progress.as_ref().map(|p| p.updated_at))
            .min()?;
        let since = (now - oldest).to_std().unwrap_or_default();
        Some(Duration::from_secs_f64(left.min(1e9)).saturating_sub(since))
    }
}

fn member_steps(member: &TaskRecord) -> (u64, u64) {
    let progress = member.progress.as_ref();
    match progress.and_then(|p| p.total) {
        Some(total) if member.status == TaskStatus::Succeeded => (total, total),
        Some(total) => (progress.map_or(0, |p| p.step.min(total)), total),
        None => (u64::from(member.status.is_final()), 1),
    }
}

/// What [`Client::cancel_group`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCancelled {
    /// Members cancelled at once (they were waiting).
    pub cancelled: usize,
    /// Running members asked to stop.
    pub requested: usize,
    /// Members that had finished already.
    pub finished: usize,
}

impl Client {
    /// Starts a group of tasks: see [`NewGroup`].
    pub fn group(&self) -> NewGroup {
        NewGroup::new(self.clone())
    }

    /// The group's root and members.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no group has this id (never submitted, purged, or the id of a task
    /// that is not a group's root).
    pub async fn group_status(&self, group: TaskId) -> Result<GroupStatus> {
        let root = self.status(group).await?;
        if root.open_members.is_none() {
            return Err(Error::NotFound(group));
        }
        let members = self.group_members(group).await?;
        Ok(GroupStatus { root, members })
    }

    /// Every member of the group, in submission order.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn group_members(&self, group: TaskId) -> Result<Vec<TaskRecord>> {
        let mut members = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .list(&TaskQuery {
                    group: Some(group),
                    after,
                    limit: 10_000,
                    ..TaskQuery::default()
                })
                .await?;
            let full = page.len() == 10_000;
            after = page.last().map(|t| t.id);
            members.extend(page);
            if !full {
                return Ok(members);
            }
        }
    }

    /// Cancels the whole group: its completion job first (so that it never runs), then every
    /// member (waiting ones at once; running ones are asked to stop).
    ///
    /// # Errors
    /// [`Error::NotFound`] if no group has this id; the backend failed.
    pub async fn cancel_group(&self, group: TaskId) -> Result<GroupCancelled> {
        let root = self.status(group).await?;
        if root.open_members.is_none() {
            return Err(Error::NotFound(group));
        }
        self.cancel(group).await?;
        let mut done = GroupCancelled::default();
        for member in self.group_members(group).await? {
            match self.cancel(member.id).await {
                Ok(CancelOutcome::Cancelled) => done.cancelled += 1,
                Ok(CancelOutcome::Requested) => done.requested += 1,
                Ok(CancelOutcome::AlreadyFinished(_)) | Err(Error::NotFound(_)) => {
                    done.finished += 1;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(done)
    }
}

//! [`Client`]: the application's handle for submitting tasks and following them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! use std::{sync::Arc, time::Duration};
//! use longtask_core::{Client, Job, JobError, MemoryBackend, SubmitOptions, TaskContext, TaskStatus};
//!
//! struct Email;
//! impl Job for Email {
//!     const NAME: &'static str = "email";
//!     type Params = String;
//!     type Output = ();
//!     async fn run(&self, _to: String, _cx: TaskContext) -> Result<(), JobError> { Ok(()) }
//! }
//!
//! let client = Client::new(MemoryBackend::new());
//! let id = client.submit::<Email>("ada@example.com".into()).await?;
//! assert_eq!(client.status(id).await?.status, TaskStatus::Queued);
//!
//! let later = client
//!     .submit_with::<Email>(
//!         "bob@example.com".into(),
//!         SubmitOptions::new().delay(Duration::from_secs(3600)).idempotency_key("welcome-bob"),
//!     )
//!     .await?;
//! assert_eq!(client.status(later.id).await?.status, TaskStatus::Scheduled);
//! # Ok(()) }
//! ```

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::{stream::BoxStream, StreamExt};

use crate::{
    backend::Backend,
    error::{Error, Result},
    job::{Job, JobOptions},
    metrics,
    queue::WorkerInfo,
    store::{CancelOutcome, DeleteOutcome, RetryOutcome},
    task::{Inserted, NewTask, RunAt, TaskId, TaskQuery, TaskRecord, TaskStatus},
    watch::WatchHub,
};

/// Longest accepted idempotency key or owner, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// Options for one submission; unset fields take the job's [`JobOptions`](crate::JobOptions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct SubmitOptions {
    run_at: RunAt,
    priority: Option<i32>,
    max_attempts: Option<u32>,
    retention: Option<Duration>,
    idempotency_key: Option<String>,
    owner: Option<String>,
    concurrency_key: Option<String>,
}

impl SubmitOptions {
    /// Options taking every default from the job.
    pub fn new() -> Self {
        Self::default()
    }

    /// Run no earlier than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.run_at = RunAt::After(delay);
        self
    }

    /// Run no earlier than `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = RunAt::At(at);
        self
    }

    /// Overrides the job's priority (higher runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Overrides the job's attempts (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Overrides the job's retention.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Submitting again with the same key (for the same job) returns the first task instead of
    /// creating another, for as long as the first task is kept.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Stamps the task with its owner (a user or tenant id), for authorization.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Puts the task under a concurrency key (a customer, an account, a resource): at most
    /// [`JobOptions::max_running_per_key`] tasks of the job with the same key run at once.
    /// 1 to [`MAX_KEY_LEN`] bytes of printable text.
    ///
    /// ```
    /// let options = longtask_core::SubmitOptions::new().concurrency_key("customer-42");
    /// ```
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    /// The task these options make for job `J` with `params`: the parameters encoded, unset
    /// options taken from the job, and the result validated as [`Client::submit_with`] does.
    /// For backends that insert tasks their own way (inside an application's transaction, say).
    ///
    /// ```
    /// # use longtask_core::{Job, JobError, SubmitOptions, TaskContext};
    /// # struct Email;
    /// # impl Job for Email {
    /// #     const NAME: &'static str = "email";
    /// #     type Params = String;
    /// #     type Output = ();
    /// #     async fn run(&self, _to: String, _cx: TaskContext) -> Result<(), JobError> { Ok(()) }
    /// # }
    /// let task = SubmitOptions::new().priority(5).into_task::<Email>(&"ada@example.com".into())?;
    /// assert_eq!((task.job.as_str(), task.priority), ("email", 5));
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    pub fn into_task<J: Job>(self, params: &J::Params) -> Result<NewTask> {
        new_task::<J>(params, self)
    }
}

/// Submits tasks and follows them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    backend: Backend,
    /// The followers of watched tasks, shared by clones.
    watchers: Arc<WatchHub>,
}

impl Client {
    /// A client over `backend`.
    ///
    /// ```
    /// let client = longtask_core::Client::new(longtask_core::MemoryBackend::new());
    /// ```
    pub fn new(backend: impl Into<Backend>) -> Self {
        Self {
            backend: backend.into(),
            watchers: Arc::default(),
        }
    }

    /// The backend this client uses.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Submits a task of job `J` with default options; returns its id.
    pub async fn submit<J: Job>(&self, params: J::Params) -> Result<TaskId> {
        Ok(self
            .submit_with::<J>(params, SubmitOptions::default())
            .await?
            .id)
    }

    /// Submits a task with options. With an idempotency key that was used before (for this job),
    /// returns the existing task with `created: false`.
    pub async fn submit_with<J: Job>(
        &self,
        params: J::Params,
        options: SubmitOptions,
    ) -> Result<Inserted> {
        let task = new_task::<J>(&params, options)?;
        let mut inserted = self.backend.store().insert(vec![task]).await?;
        metrics::submitted([J::NAME], &inserted);
        inserted
            .pop()
            .ok_or_else(|| Error::InvalidInput("the backend inserted nothing".to_owned()))
    }

    /// Submits many tasks of job `J` at once (atomically: all or none); returns their ids in order.
    pub async fn submit_many<J: Job>(
        &self,
        params: impl IntoIterator<Item = J::Params>,
    ) -> Result<Vec<TaskId>> {
        let defaults = J::options();
        let tasks = params
            .into_iter()
            .map(|p| task_with::<J>(&p, SubmitOptions::default(), &defaults))
            .collect::<Result<Vec<_>>>()?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let count = tasks.len();
        let inserted = self.backend.store().insert(tasks).await?;
        metrics::submitted(std::iter::repeat_n(J::NAME, count), &inserted);
        Ok(inserted.into_iter().map(|i| i.id).collect())
    }

    /// Submits prepared tasks (for callers that encode parameters themselves).
    pub async fn submit_raw(&self, tasks: Vec<NewTask>) -> Result<Vec<Inserted>> {
        for task in &tasks {
            validate(task)?;
        }
        let jobs: Vec<String> = tasks.iter().map(|task| task.job.clone()).collect();
        let inserted = self.backend.store().insert(tasks).await?;
        metrics::submitted(jobs.iter().map(String::as_str), &inserted);
        Ok(inserted)
    }

    /// The task's record. Fails with [`Error::NotFound`] for an unknown (or purged) id.
    pub async fn status(&self, id: TaskId) -> Result<TaskRecord> {
        self.backend
            .store()
            .get(id)
            .await?
            .ok_or(Error::NotFound(id))
    }

    /// The task's output, decoded, once it has succeeded; `None` before.
    pub async fn output<J: Job>(&self, id: TaskId) -> Result<Option<J::Output>> {
        let task = self.status(id).await?;
        match task.output {
            Some(json) if task.status == TaskStatus::Succeeded => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| Error::codec("decode", format!("output of job `{}`", J::NAME), e)),
            _ => Ok(None),
        }
    }

    /// Cancels the task: at once if it is waiting, else at its worker's next heartbeat.
    pub async fn cancel(&self, id: TaskId) -> Result<CancelOutcome> {
        self.backend.store().cancel(id).await
    }

    /// Lists tasks.
    pub async fn list(&self, query: &TaskQuery) -> Result<Vec<TaskRecord>> {
        self.backend.store().list(query).await
    }

    /// An operator's retry of a failed or cancelled task: queued again now, with a fresh
    /// attempt budget (see [`TaskStore::retry`](crate::TaskStore::retry)).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn retry(&self, id: TaskId) -> Result<RetryOutcome> {
        let outcome = self.backend.store().retry(&[id]).await?;
        Ok(outcome.into_iter().next().unwrap_or(RetryOutcome::NotFound))
    }

    /// Retries every failed task of `job`, `batch` at a time (at most 10,000 per call to the
    /// backend), and returns how many were retried.
    ///
    /// # Errors
    /// The backend failed (the tasks retried before stay retried).
    pub async fn retry_failed(&self, job: &str, batch: usize) -> Result<u64> {
        let batch = batch.clamp(1, 10_000);
        let mut retried = 0;
        let mut after = None;
        loop {
            let failed = self
                .list(&TaskQuery {
                    job: Some(job.to_owned()),
                    statuses: vec![TaskStatus::Failed],
                    after,
                    limit: batch,
                    ..TaskQuery::default()
                })
                .await?;
            let Some(last) = failed.last() else {
                return Ok(retried);
            };
            after = Some(last.id);
            let ids: Vec<TaskId> = failed.iter().map(|t| t.id).collect();
            let outcomes = self.backend.store().retry(&ids).await?;
            retried += outcomes
                .iter()
                .filter(|o| **o == RetryOutcome::Retried)
                .count() as u64;
            if ids.len() < batch {
                return Ok(retried);
            }
        }
    }

    /// An operator's delete of a finished task (see
    /// [`TaskStore::delete`](crate::TaskStore::delete)).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn delete(&self, id: TaskId) -> Result<DeleteOutcome> {
        let outcome = self.backend.store().delete(&[id]).await?;
        Ok(outcome
            .into_iter()
            .next()
            .unwrap_or(DeleteOutcome::NotFound))
    }

    /// Every job's figures: tasks per status, the oldest due task, and tasks finished per minute
    /// over the last hour (see [`TaskStore::stats`](crate::TaskStore::stats)).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn stats(&self) -> Result<crate::Stats> {
        self.backend.store().stats().await
    }

    /// The live workers, from the backend's registry (see
    /// [`Queue::workers`](crate::Queue::workers)).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.backend.queue().workers().await
    }

    /// A live stream of the task's record: the current one first, then one per change (progress
    /// or status), ending after a final status.
    ///
    /// Every stream of one task opened through this client (or its clones) shares one
    /// subscription to the backend, which reads the record once per status change of the task,
    /// however many streams are open (see [`ProgressSink::watch`](crate::ProgressSink::watch) for
    /// what the backend pays per change). A stream that is read slowly skips the records it fell
    /// behind on and goes on from the latest; the final record always arrives. When the backend's
    /// progress sink is not its task store (see [`Backend::with_progress`]), status changes are
    /// read once a second per watched task.
    ///
    /// Cancel-safe: dropping the returned future or stream leaves nothing behind; the last stream
    /// of a task to go stops its subscription.
    pub async fn watch(&self, id: TaskId) -> Result<BoxStream<'static, Result<TaskRecord>>> {
        self.watchers.watch(&self.backend, id).await
    }

    /// Waits until the task reaches a final status, for at most `timeout`; returns its record.
    pub async fn wait(&self, id: TaskId, timeout: Duration) -> Result<TaskRecord> {
        let wait = async {
            let mut updates = self.watch(id).await?;
            let mut last = None;
            while let Some(update) = updates.next().await {
                let record = update?;
                if record.status.is_final() {
                    return Ok(record);
                }
                last = Some(record);
            }
            last.ok_or(Error::NotFound(id))
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::WaitTimeout { id, timeout })?
    }
}

fn new_task<J: Job>(params: &J::Params, options: SubmitOptions) -> Result<NewTask> {
    task_with::<J>(params, options, &J::options())
}

/// A task of job `J` with `options` over the job's `defaults` (read once per batch).
fn task_with<J: Job>(
    params: &J::Params,
    options: SubmitOptions,
    defaults: &JobOptions,
) -> Result<NewTask> {
    let params = serde_json::to_string(params)
        .map_err(|e| Error::codec("encode", format!("parameters of job `{}`", J::NAME), e))?;
    let task = NewTask {
        id: TaskId::new(),
        job: J::NAME.to_owned(),
        params,
        priority: options.priority.unwrap_or(defaults.priority),
        run_at: options.run_at,
        max_attempts: options.max_attempts.unwrap_or(defaults.max_attempts).max(1),
        retention: options.retention.unwrap_or(defaults.retention),
        owner: options.owner,
        idempotency_key: options.idempotency_key,
        concurrency_key: options.concurrency_key,
        group: None,
    };
    validate(&task)?;
    Ok(task)
}

fn validate(task: &NewTask) -> Result<()> {
    task.validate()
}

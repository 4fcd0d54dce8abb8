//! Submitting inside the application's transaction: [`InTransaction`].
//!
//! A task submitted with [`PostgresBackend::enqueue_in`] is inserted on the caller's connection,
//! so it exists if and only if the caller's transaction commits; the notification that wakes
//! workers is sent in the same statement, and Postgres delivers it only on commit. An order and
//! the task that emails its receipt are saved together, or not at all.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use longtask_core::{Job, JobError, TaskContext};
//! use longtask_sqlx::PostgresBackend;
//!
//! struct Receipt;
//! impl Job for Receipt {
//!     const NAME: &'static str = "receipt";
//!     type Params = i64; // order id
//!     type Output = ();
//!     async fn run(&self, _order: i64, _cx: TaskContext) -> Result<(), JobError> { Ok(()) }
//! }
//!
//! let backend = PostgresBackend::connect(&std::env::var("DATABASE_URL")?).await?;
//! let mut tx = backend.pool().begin().await?;
//! let order: i64 = sqlx::query_scalar("INSERT INTO orders (total) VALUES (42) RETURNING id")
//!     .fetch_one(&mut *tx)
//!     .await?;
//! backend.enqueue_in(&mut tx).submit::<Receipt>(order).await?;
//! tx.commit().await?; // the order and its receipt task, together
//! # Ok(()) }
//! ```

use std::fmt;

use longtask_core::{Error, Inserted, Job, NewTask, Result, SubmitOptions, TaskId};
use sqlx::PgConnection;

use super::PostgresBackend;

impl PostgresBackend {
    /// Submits tasks on `conn`, typically the application's open transaction
    /// (`&mut tx` for a `sqlx::Transaction<'_, Postgres>`): they are stored, and workers are woken,
    /// only if that transaction commits.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let backend = longtask_sqlx::PostgresBackend::connect(&std::env::var("DATABASE_URL")?).await?;
    /// let mut tx = backend.pool().begin().await?;
    /// let inserted = backend
    ///     .enqueue_in(&mut tx)
    ///     .insert(vec![longtask_core::NewTask::new("report", "{}")])
    ///     .await?;
    /// tx.rollback().await?; // and the task never existed
    /// # Ok(()) }
    /// ```
    pub fn enqueue_in<'a>(&'a self, conn: &'a mut PgConnection) -> InTransaction<'a> {
        InTransaction {
            backend: self,
            conn,
        }
    }
}

/// Submits tasks on the application's connection or transaction; made by
/// [`PostgresBackend::enqueue_in`]. The methods mirror [`Client`](longtask_core::Client)'s.
pub struct InTransaction<'a> {
    backend: &'a PostgresBackend,
    conn: &'a mut PgConnection,
}

impl InTransaction<'_> {
    /// Submits a task of job `J` with default options; returns its id.
    pub async fn submit<J: Job>(&mut self, params: J::Params) -> Result<TaskId> {
        Ok(self
            .submit_with::<J>(params, SubmitOptions::new())
            .await?
            .id)
    }

    /// Submits a task with options; with an idempotency key used before (for this job), returns
    /// the existing task with `created: false`.
    pub async fn submit_with<J: Job>(
        &mut self,
        params: J::Params,
        options: SubmitOptions,
    ) -> Result<Inserted> {
        let task = options.into_task::<J>(&params)?;
        self.insert(vec![task])
            .await?
            .pop()
            .ok_or_else(|| Error::InvalidInput("the backend inserted nothing".to_owned()))
    }

    /// Submits many tasks of job `J` with one statement; returns their ids in order.
    pub async fn submit_many<J: Job>(
        &mut self,
        params: impl IntoIterator<Item = J::Params>,
    ) -> Result<Vec<TaskId>> {
        let tasks = params
            .into_iter()
            .map(|p| SubmitOptions::new().into_task::<J>(&p))
            .collect::<Result<Vec<_>>>()?;
        Ok(self
            .insert(tasks)
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect())
    }

    /// Inserts prepared tasks with one statement, as [`TaskStore::insert`](longtask_core::TaskStore::insert)
    /// does.
    pub async fn insert(&mut self, tasks: Vec<NewTask>) -> Result<Vec<Inserted>> {
        let tasks = tasks
            .into_iter()
            .map(NewTask::into_stored)
            .collect::<Result<Vec<_>>>()?;
        let (inserted, _) = self.backend.insert_on(self.conn, tasks).await?;
        Ok(inserted)
    }
}

impl fmt::Debug for InTransaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InTransaction")
            .field("backend", self.backend)
            .finish_non_exhaustive()
    }
}

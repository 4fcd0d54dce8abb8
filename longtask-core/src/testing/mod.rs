//! The backend conformance suite: every rule of the backend contract as its own test case.
//!
//! Every backend runs all of it against a real server, with one line and a factory:
//!
//! ```text
//! // tests/conformance.rs of a backend crate
//! use std::sync::Arc;
//! use longtask_core::{testing::{Namespace, WakeUps}, Clock};
//!
//! async fn namespace(clock: Arc<dyn Clock>) -> Namespace {
//!     let name = fresh_namespace_name();                     // a new schema, file or key prefix
//!     Namespace::new(WakeUps::Push, move || {
//!         let (name, clock) = (name.clone(), clock.clone());
//!         async move { MyBackend::connect(&name).await.with_clock(clock) }  // its own connections
//!     })
//! }
//!
//! longtask_core::conformance_suite!(mybackend, namespace);
//! ```
//!
//! The macro expands to one `#[tokio::test]` per case, at paths such as
//! `mybackend::conformance::claim_respects_priority`, so a test run shows at a glance which backend
//! passed what. The factory must return a fresh, isolated [`Namespace`] (its own schema, file or key
//! prefix) whose instances read every time from the given clock: cases move a [`ManualClock`] to
//! expire leases, make retries due and end retention, so they run in milliseconds. A case gets
//! one instance in [`Harness::backend`] and opens more with [`Harness::open_instance`]: each is
//! what another process would open on the same namespace (its own connections, pools and
//! in-process wake-up signal), so cases test what crosses between processes.
//!
//! A new rule of the contract is a new case here, never a test in one backend.
//!
//! For applications, [`run_job`] runs one job in place and [`submitted`] lists what was submitted,
//! for tests of their own jobs and handlers.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::{future::BoxFuture, FutureExt};

use crate::{
    Backend, ClaimRequest, ClaimedTask, Clock, Completion, Lease, ManualClock, NewTask, Outcome,
    TaskId, TaskRecord,
};

pub mod admin;
pub mod attempts;
pub mod cancel;
pub mod cancel_safety;
pub mod checkpoint;
pub mod claim;
mod counted;
pub mod group;
pub mod idempotency;
pub mod lease;
pub mod limits;
pub mod model;
pub mod progress;
pub mod race;
pub mod retention;
pub mod retry;
pub mod schedule;
pub mod stats;
pub mod submit;
pub mod worker;

pub use counted::CountedReads;

/// The lease every case claims with.
pub const LEASE: Duration = Duration::from_secs(30);

/// How an instance of a backend learns of work submitted through another instance on the same
/// namespace: what [`claim::work_signal_fires_on_submit`] and the worker cases may expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeUps {
    /// By push: every instance's [`work_signal`](crate::Queue::work_signal) fires when another
    /// instance submits due work (Postgres NOTIFY, Redis pub/sub).
    Push,
    /// Instances share one in-process signal: a "second instance" is a clone of the first (the
    /// memory backend, which has no second process to reach). Cross-instance cases then test a
    /// clone, and say so.
    Shared,
    /// Only the submitting instance's signal fires; other instances find the work at their next
    /// poll ([`WorkerBuilder::poll_interval`](crate::WorkerBuilder::poll_interval); SQLite, which
    /// has no cross-process notification).
    Poll,
}

type Open = dyn Fn() -> BoxFuture<'static, Backend> + Send + Sync;

/// A fresh, isolated namespace of a backend under test (a schema, a database file, a key
/// prefix) that opens any number of independent instances on it: what the conformance
/// factory returns.
#[derive(Clone)]
pub struct Namespace {
    open: Arc<Open>,
    wake_ups: WakeUps,
}

impl Namespace {
    /// A namespace whose instances `open` makes: each call must return a new instance on the same
    /// namespace, with its own connections and in-process wake-up signal (as another process
    /// would have), reading time from the suite's clock. `wake_ups` says how instances hear of
    /// each other's work.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use longtask_core::{testing::{Namespace, WakeUps}, Clock, MemoryBackend};
    ///
    /// async fn namespace(clock: Arc<dyn Clock>) -> Namespace {
    ///     let shared = MemoryBackend::new().with_clock(clock);
    ///     Namespace::new(WakeUps::Shared, move || {
    ///         let backend = shared.clone();
    ///         async move { backend }
    ///     })
    /// }
    /// ```
    pub fn new<F, Fut, B>(wake_ups: WakeUps, open: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = B> + Send + 'static,
        B: Into<Backend> + 'static,
    {
        Self {
            open: Arc::new(move || open().map(Into::into).boxed()),
            wake_ups,
        }
    }

    /// Opens another instance on this namespace.
    pub async fn open(&self) -> Backend {
        (self.open)().await
    }

    /// How instances hear of each other's work.
    pub fn wake_ups(&self) -> WakeUps {
        self.wake_ups
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("wake_ups", &self.wake_ups)
            .finish_non_exhaustive()
    }
}

/// A backend under test with the clock it reads.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The backend under test: the first instance on the case's namespace.
    pub backend: Backend,
    /// The clock it reads; cases move it.
    pub clock: Arc<ManualClock>,
    /// The case's namespace, which opens more instances.
    pub namespace: Namespace,
}

impl Harness {
    /// Creates a fresh namespace with `factory`, on a new [`ManualClock`], and opens its first
    /// instance.
    pub async fn new<F, Fut>(factory: F) -> Self
    where
        F: FnOnce(Arc<dyn Clock>) -> Fut,
        Fut: Future<Output = Namespace>,
    {
        let clock = Arc::new(ManualClock::new());
        let namespace = factory(clock.clone()).await;
        let backend = namespace.open().await;
        Self {
            backend,
            clock,
            namespace,
        }
    }

    /// Opens another, independent instance on the same namespace, reading the same clock: what
    /// another process would open.
    pub async fn open_instance(&self) -> Backend {
        self.namespace.open().await
    }

    /// How instances hear of each other's work.
    pub fn wake_ups(&self) -> WakeUps {
        self.namespace.wake_ups()
    }

    /// The clock's current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Inserts tasks, panicking on error.
    pub async fn insert(&self, tasks: Vec<NewTask>) -> Vec<TaskId> {
        self.backend
            .store()
            .insert(tasks)
            .await
            .expect("insert failed")
            .into_iter()
            .map(|i| i.id)
            .collect()
    }

    /// Inserts one task of `job` with JSON `params`.
    pub async fn submit(&self, job: &str, params: &str) -> TaskId {
        self.insert(vec![NewTask::new(job, params)]).await[0]
    }

    /// Reads a task, panicking if it is missing.
    pub async fn get(&self, id: TaskId) -> TaskRecord {
        self.backend
            .store()
            .get(id)
            .await
            .expect("get failed")
            .unwrap_or_else(|| panic!("task {id} is missing"))
    }

    /// Claims up to `limit` tasks of `jobs` as worker `w1` with [`LEASE`].
    pub async fn claim(&self, jobs: &[&str], limit: usize) -> Vec<ClaimedTask> {
        self.claim_as("w1", jobs, limit).await
    }

    /// Claims as a named worker.
    pub async fn claim_as(&self, worker: &str, jobs: &[&str], limit: usize) -> Vec<ClaimedTask> {
        let jobs: Vec<String> = jobs.iter().map(|j| (*j).to_owned()).collect();
        self.backend
            .queue()
            .claim(ClaimRequest {
                jobs: &jobs,
                worker,
                limit,
                lease: LEASE,
                limits: &[],
            })
            .await
            .expect("claim failed")
    }

    /// Claims exactly one task of `job`, panicking otherwise.
    pub async fn claim_one(&self, job: &str) -> ClaimedTask {
        let mut claimed = self.claim(&[job], 1).await;
        assert_eq!(claimed.len(), 1, "expected one task of `{job}` to claim");
        claimed.remove(0)
    }

    /// Reports one outcome, returning whether it was applied.
    pub async fn finish(&self, lease: Lease, outcome: Outcome) -> crate::Ack {
        self.backend
            .queue()
            .finish(vec![Completion::new(lease, outcome)])
            .await
            .expect("finish failed")[0]
    }

    /// Reports success with `output`.
    pub async fn succeed(&self, lease: Lease, output: &str) -> crate::Ack {
        self.finish(
            lease,
            Outcome::Succeeded {
                output: output.to_owned(),
            },
        )
        .await
    }
}

/// Runs one job once, in place, with a [`TaskContext::detached`](crate::TaskContext::detached)
/// context: for unit tests of a job's own logic, without a backend or a worker.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use longtask_core::{Job, JobError, TaskContext};
///
/// struct Double;
/// impl Job for Double {
///     const NAME: &'static str = "double";
///     type Params = u32;
///     type Output = u32;
///     async fn run(&self, n: u32, _cx: TaskContext) -> Result<u32, JobError> { Ok(n * 2) }
/// }
///
/// assert_eq!(longtask_core::testing::run_job(&Double, 21).await.unwrap(), 42);
/// # }
/// ```
pub async fn run_job<J: crate::Job>(
    job: &J,
    params: J::Params,
) -> Result<J::Output, crate::JobError> {
    job.run(params, crate::TaskContext::detached()).await
}

/// The tasks of job `J` submitted through `client` (in submission order, up to 10,000), with
/// their decoded parameters: for asserting that application code submitted what it should.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
/// use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
///
/// struct Welcome;
/// impl Job for Welcome {
///     const NAME: &'static str = "welcome";
///     type Params = String;
///     type Output = ();
///     async fn run(&self, _: String, _cx: TaskContext) -> Result<(), JobError> { Ok(()) }
/// }
///
/// let client = Client::new(MemoryBackend::new());
/// client.submit::<Welcome>("ada@example.com".into()).await?;    // the code under test
/// let submitted = longtask_core::testing::submitted::<Welcome>(&client).await?;
/// assert_eq!(submitted.len(), 1);
/// assert_eq!(submitted[0].1, "ada@example.com");
/// # Ok(()) }
/// ```
pub async fn submitted<J: crate::Job>(
    client: &crate::Client,
) -> crate::Result<Vec<(TaskRecord, J::Params)>> {
    let tasks = client
        .list(&crate::TaskQuery {
            job: Some(J::NAME.to_owned()),
            limit: 10_000,
            ..crate::TaskQuery::default()
        })
        .await?;
    tasks
        .into_iter()
        .map(|task| {
            let params = serde_json::from_str(&task.params).map_err(|e| crate::Error::Codec {
                action: "decode",
                what: format!("parameters of job `{}`", J::NAME),
                source: Box::new(e),
            })?;
            Ok((task, params))
        })
        .collect()
}

/// A failed attempt's outcome: retried after `retry_after` if attempts remain, else final.
pub fn failed(error: &str, retry_after: Option<Duration>) -> Outcome {
    Outcome::Failed {
        error: error.to_owned(),
        retry_after,
    }
}

/// `{"n": i}` as params.
pub fn numbered(i: usize) -> String {
    format!("{{\"n\":{i}}}")
}

/// Asserts two JSON texts are equal as JSON values.
#[track_caller]
pub fn assert_json_eq(actual: &str, expected: &str) {
    let a: serde_json::Value = serde_json::from_str(actual).expect("stored JSON is invalid");
    let e: serde_json::Value = serde_json::from_str(expected).expect("expected JSON is invalid");
    assert_eq!(a, e, "JSON differs");
}

/// Expands to one `#[tokio::test]` per conformance case, in `mod $backend::conformance`.
///
/// `$factory` is an `async fn(Arc<dyn Clock>) -> Namespace` visible where the macro is invoked;
/// it must return a fresh, isolated [`Namespace`](crate::testing::Namespace) whose instances read
/// time from the clock.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:ident, $factory:path) => {
        $crate::__conformance_cases! { $backend, $factory;
            submit::submit_and_get,
            submit::get_unknown_is_none,
            submit::batch_submit_keeps_order,
            submit::batch_insert_is_atomic,
            submit::awkward_payloads_round_trip,
            submit::delayed_task_is_scheduled,
            submit::list_filters_and_pages,
            claim::claim_marks_running,
            claim::claim_respects_priority,
            claim::claim_over_several_jobs_keeps_order_after_earlier_claims,
            claim::cancelled_tasks_do_not_shorten_claims,
            claim::claim_orders_by_run_at_then_submission,
            claim::claim_orders_priority_before_run_at,
            claim::scheduled_task_is_not_claimed_early,
            claim::claim_takes_only_requested_jobs,
            claim::claim_respects_limit,
            claim::claim_from_empty_queue,
            claim::concurrent_claimers_one_winner,
            claim::work_signal_fires_on_submit,
            lease::complete_records_output,
            lease::stale_lease_changes_nothing,
            lease::heartbeat_extends_lease,
            lease::heartbeat_with_stale_lease_is_lost,
            lease::expired_lease_is_recovered_and_run_again,
            lease::expired_lease_on_last_attempt_fails,
            lease::live_leases_are_not_recovered,
            lease::release_returns_task_unrun,
            lease::stale_lease_after_recovery_changes_nothing,
            lease::recovering_cancel_requested_task_cancels_it,
            lease::stale_outcome_before_live_one_in_a_batch,
            retry::failure_schedules_retry_after_backoff,
            retry::retry_then_success,
            retry::retry_until_failed,
            retry::permanent_failure_fails_at_once,
            retry::retry_after_cancel_request_is_cancelled,
            cancel::cancel_waiting_tasks,
            cancel::cancel_running_task_is_requested,
            cancel::cancel_finished_task_changes_nothing,
            cancel::cancel_unknown_task_is_not_found,
            cancel_safety::dropped_operations_leave_the_backend_consistent,
            progress::progress_latest_round_trip,
            progress::progress_of_finished_task_is_ignored,
            progress::watch_streams_progress_and_final_status,
            progress::watch_finished_task_ends_at_once,
            progress::watch_unknown_task_is_not_found,
            progress::completion_stores_progress,
            progress::stale_lease_progress_changes_nothing,
            admin::retry_puts_failed_and_cancelled_tasks_back,
            admin::delete_removes_finished_tasks_only,
            admin::workers_register_refresh_and_age_out,
            admin::worker_registers_itself,
            attempts::failed_attempts_are_kept_in_order,
            attempts::lost_and_cancelled_attempts_are_kept,
            attempts::attempt_history_keeps_the_last_twenty,
            stats::stats_count_tasks_per_job_and_status,
            stats::stats_oldest_due_is_the_longest_waiting_task,
            stats::stats_count_finished_tasks_per_minute,
            group::group_root_succeeds_when_the_last_member_ends,
            group::completion_becomes_due_once_and_closes_the_group,
            group::racing_last_members_fire_each_root_once,
            group::workers_run_a_group_and_its_completion_once,
            limits::claim_respects_max_running,
            limits::claim_respects_per_key_limit_without_head_of_line_blocking,
            limits::concurrent_claimers_never_exceed_limits,
            limits::workers_respect_limits,
            checkpoint::checkpoint_survives_lease_expiry_and_reclaim,
            checkpoint::stale_lease_checkpoint_changes_nothing,
            checkpoint::last_checkpoint_wins_within_a_lease,
            checkpoint::checkpoint_survives_retry_and_release_until_purge,
            checkpoint::large_checkpoint_round_trips,
            checkpoint::worker_resumes_from_last_checkpoint,
            retention::purge_removes_only_expired_finished_tasks,
            retention::purge_respects_limit,
            retention::purge_spans_many_retention_periods,
            retention::purged_idempotency_key_is_free_again,
            idempotency::idempotency_key_returns_first_task,
            idempotency::idempotency_key_is_per_job,
            idempotency::idempotency_within_one_batch,
            idempotency::idempotency_key_outlives_completion,
            idempotency::idempotency_key_is_per_owner,
            idempotency::idempotency_key_and_owner_are_checked,
            idempotency::concurrent_idempotent_submits_create_one_task,
            race::racing_instances_finish_each_task_once,
            model::random_operations_match_the_model,
            worker::worker_runs_tasks_end_to_end,
            worker::worker_retries_then_succeeds,
            worker::worker_wakes_promptly_without_busy_polling,
            worker::worker_cancels_running_job_promptly,
            schedule::three_schedulers_submit_each_tick_once,
            schedule::missed_ticks_follow_the_policy,
            schedule::purged_tick_is_never_submitted_again,
            schedule::daylight_saving_changes_tick_once,
            schedule::schedules_list_next_run_and_last_task,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($backend:ident, $factory:path; $($area:ident :: $case:ident),* $(,)?) => {
        mod $backend {
            mod conformance {
                #[allow(unused_imports)]
                use super::super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let harness = $crate::testing::Harness::new($factory).await;
                        $crate::testing::$area::$case(harness).await;
                    }
                )*
            }
        }
    };
}

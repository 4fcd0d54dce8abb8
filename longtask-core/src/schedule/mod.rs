//! Periodic schedules: submit a job's task at every tick of a cron expression or a fixed period.
//!
//! A [`Schedule`] has a stable name, a cadence ([`Schedule::cron`] on a time zone's wall clock,
//! or [`Schedule::every`]), a job with its parameters, and a policy for ticks [`Missed`] while no
//! scheduler ran. A [`Scheduler`] submits the tasks; any number of processes may run one for
//! the same schedules, and each tick is still submitted once:
//!
//! ```
//! use std::time::Duration;
//! use longtask_core::{
//!     chrono_tz::Europe::Berlin, Job, JobError, MemoryBackend, Missed, Schedule, Scheduler,
//!     TaskContext,
//! };
//!
//! struct Export;
//! impl Job for Export {
//!     const NAME: &'static str = "export";
//!     type Params = String;
//!     type Output = ();
//!     async fn run(&self, _format: String, _cx: TaskContext) -> Result<(), JobError> { Ok(()) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! let nightly = Schedule::cron("nightly-export", "0 3 * * *")?
//!     .in_tz(Berlin)
//!     .missed(Missed::CatchUp(3))
//!     .job(Export, "csv".to_owned());
//! let often = Schedule::every("refresh", Duration::from_secs(15 * 60))?.job(Export, "json".into());
//!
//! let scheduler = Scheduler::builder(MemoryBackend::new())
//!     .schedule(nightly)
//!     .schedule(often)
//!     .build()?;
//! let running = scheduler.clone().spawn();
//! for schedule in scheduler.schedules().await? {
//!     println!("{} ({}): next at {:?}", schedule.name, schedule.cadence, schedule.next_run);
//! }
//! running.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! The rules (each tick once, missed ticks, time zones) are told on [`Schedule`].

use std::{fmt, sync::Arc, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::{
    error::{Error, Result},
    job::Job,
    task::{NewTask, RunAt, TaskId},
};

mod cadence;
mod scheduler;

use self::cadence::Cadence;
pub use self::scheduler::{
    LastRun, ScheduleStatus, Scheduler, SchedulerBuilder, SchedulerHandle, Tick,
};

/// Longest schedule name accepted, in bytes.
pub const MAX_SCHEDULE_NAME_LEN: usize = 200;

/// Most ticks a [`Missed::CatchUp`] policy submits late.
pub const MAX_CATCH_UP: u32 = 1000;

/// How much longer than its policy strictly needs a scheduled task is kept (see
/// [missed ticks](Schedule#missed-ticks)).
pub const RETENTION_MARGIN: Duration = Duration::from_secs(3600);

/// The retention of a tick with no later tick to wait for.
const FOREVER: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// What a scheduler does with ticks that passed while no scheduler was running (or while it was
/// held up): see [missed ticks](Schedule#missed-ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    /// Submit nothing from before the scheduler started; a scheduler held up past several ticks
    /// submits only the latest.
    Skip,
    /// Submit the latest missed tick, once (the default): a nightly job that was down over
    /// night runs when a scheduler comes back.
    #[default]
    RunOnce,
    /// Submit the last `n` missed ticks (at most [`MAX_CATCH_UP`]), each as its own task.
    /// `CatchUp(0)` is `Skip` and `CatchUp(1)` is `RunOnce`.
    CatchUp(u32),
}

impl Missed {
    /// How many ticks at or before now a starting scheduler submits.
    fn look_back(self) -> usize {
        match self {
            Self::Skip => 0,
            Self::RunOnce => 1,
            Self::CatchUp(n) => n.min(MAX_CATCH_UP) as usize,
        }
    }
}

type ParamsFn = dyn Fn(DateTime<Utc>) -> Result<String> + Send + Sync;

#[derive(Clone)]
enum Params {
    /// The same encoded parameters at every tick.
    Fixed(String),
    /// Parameters made from the tick's time.
    PerTick(Arc<ParamsFn>),
}

/// A periodic schedule: a stable name, when it ticks, the job (and its parameters) each tick
/// submits, and what happens to missed ticks. A [`Scheduler`] submits its ticks' tasks.
///
/// Build one with [`Schedule::cron`] or [`Schedule::every`], set options on the
/// [`ScheduleBuilder`], and finish with [`job`](ScheduleBuilder::job).
///
/// # Each tick once
///
/// A tick's identity is its schedule's name and its time: the task of a tick is submitted with
/// the idempotency key `schedule:<name>:<tick in UTC>` (see [`Schedule::idempotency_key`]), so
/// however many schedulers submit it, the backend keeps one task. Its id is derived from the
/// same identity ([`Schedule::task_id`]: a UUIDv7 whose timestamp is the tick), so that anyone
/// can find a tick's task with a plain `get`, and a scheduler can tell that a task it could not
/// insert is the one another scheduler inserted first. All schedulers of one schedule name must
/// agree on its definition: the first to submit a tick decides its parameters.
///
/// These ids can be computed by anyone who knows the schedule's name, job and owner: they are
/// not secret, unlike the random ids of submitted tasks. When the output of a scheduled job is
/// served to people over HTTP (`longtask-tower`), give the schedule an
/// [`owner`](ScheduleBuilder::owner), so that the owner hook hides its tasks from other users.
///
/// # Missed ticks
///
/// Schedulers keep no state in the backend. A scheduler that starts looks back only as far as its
/// schedule's policy needs: with [`Missed::Skip`] it submits nothing from before it started,
/// with [`Missed::RunOnce`] (the default) the latest tick at or before now, with
/// [`Missed::CatchUp(n)`](Missed::CatchUp) the last `n`. A tick that already has its task is
/// not submitted again. While it runs, a scheduler submits each tick as it comes; a scheduler
/// that was held up past several ticks (a stalled process, a backend outage) applies the same
/// policy to the ticks it passed, submitting at least the latest one.
///
/// That look-back must never find a tick whose task ran and was purged, or the tick would run
/// twice. So a scheduled task is kept (its retention) at least until the tick `m` ticks after
/// its own, plus an hour ([`RETENTION_MARGIN`]), where `m` is how many ticks the policy looks
/// back (one for `Skip` and `RunOnce`, `n` for `CatchUp(n)`), or longer if the job's own
/// retention is longer. A scheduler looks back at most `m` ticks from its clock's now, so the
/// tick `m` after any tick it looks back to is still to come, and that tick's task is kept. The
/// margin covers clocks that disagree between machines and a scheduler delayed between reading
/// its clock and inserting; a scheduler frozen for longer than that between the two could
/// submit a purged tick again. A tick with no `m`-th successor (a cron expression that ends) is
/// kept a century. The cost: a job whose retention is shorter than its schedule's period keeps
/// about `m` finished tasks of that schedule at a time.
///
/// # Time zones and daylight saving
///
/// Cron expressions are read on the wall clock of the schedule's time zone ([`in_tz`], UTC by
/// default), with the [croner](https://docs.rs/croner) rules for daylight-saving changes:
/// - a *fixed-time* expression (one second, minute and hour, such as `30 2 * * *`) whose time
///   falls in a skipped hour runs once, at the first instant after the gap (03:00 on the day
///   Berlin moves its clocks forward); in a repeated hour it runs once, at the first pass;
/// - an expression with ranges, lists, steps or wildcards in those fields (`0 * * * *`,
///   `*/15 2 * * *`) follows real time: instants that the gap skips do not exist, and the
///   repeated hour is two real hours, each with its ticks.
///
/// [`Schedule::every`] counts real time from the Unix epoch (every 15 minutes ticks at :00, :15,
/// :30 and :45 UTC) and ignores time zones.
///
/// [`in_tz`]: ScheduleBuilder::in_tz
pub struct Schedule {
    name: String,
    cadence: Cadence,
    missed: Missed,
    job: &'static str,
    params: Params,
    priority: i32,
    max_attempts: u32,
    retention: Duration,
    owner: Option<String>,
    /// An error found while building, reported by [`SchedulerBuilder::build`].
    defect: Option<Error>,
}

impl Schedule {
    /// A schedule named `name` that ticks when the cron `expression` matches: five fields
    /// (`minute hour day-of-month month day-of-week`, such as `0 3 * * *` for 03:00 every day),
    /// or six with seconds first; `L`, `W`, `#` and the nicknames `@daily`, `@hourly`, … work as
    /// in [croner](https://docs.rs/croner). Read in UTC unless [`in_tz`](ScheduleBuilder::in_tz)
    /// says otherwise.
    ///
    /// Fails with [`Error::InvalidInput`] for an invalid name (empty, longer than
    /// [`MAX_SCHEDULE_NAME_LEN`] bytes, or with control characters), or an expression that is
    /// not cron or never matches.
    ///
    /// ```
    /// use longtask_core::Schedule;
    ///
    /// let builder = Schedule::cron("nightly", "0 3 * * *")?;
    /// let err = Schedule::cron("nightly", "0 3 * *").unwrap_err();
    /// assert!(err.to_string().contains("is not a cron expression"));
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    pub fn cron(name: impl Into<String>, expression: &str) -> Result<ScheduleBuilder> {
        let name = valid_name(name.into())?;
        let cadence = Cadence::cron(expression)
            .map_err(|e| Error::InvalidInput(format!("schedule `{name}`: {}", bare(&e))))?;
        Ok(ScheduleBuilder::new(name, cadence))
    }

    /// A schedule named `name` that ticks every `period` (at least 1 s, in whole milliseconds),
    /// at whole multiples of it since the Unix epoch: every hour ticks on the hour (UTC), on
    /// every machine alike.
    ///
    /// ```
    /// use std::time::Duration;
    /// use longtask_core::Schedule;
    ///
    /// let builder = Schedule::every("refresh", Duration::from_secs(900))?;
    /// assert!(Schedule::every("refresh", Duration::ZERO).is_err());
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    pub fn every(name: impl Into<String>, period: Duration) -> Result<ScheduleBuilder> {
        let name = valid_name(name.into())?;
        let cadence = Cadence::every(period)
            .map_err(|e| Error::InvalidInput(format!("schedule `{name}`: {}", bare(&e))))?;
        Ok(ScheduleBuilder::new(name, cadence))
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the job its ticks submit.
    pub fn job(&self) -> &str {
        self.job
    }

    /// Its missed-tick policy.
    pub fn missed(&self) -> Missed {
        self.missed
    }

    /// Its first tick strictly after `at`, or `None` when it has no more (a cron expression
    /// whose years have all passed).
    ///
    /// ```
    /// use longtask_core::{chrono_tz::Europe::Berlin, Job, JobError, Schedule, TaskContext};
    /// # struct Export;
    /// # impl Job for Export { const NAME: &'static str = "export"; type Params = (); type Output = ();
    /// #   async fn run(&self, _: (), _: TaskContext) -> Result<(), JobError> { Ok(()) } }
    /// let schedule = Schedule::cron("nightly", "0 3 * * *")?.in_tz(Berlin).job(Export, ());
    /// let at = "2027-01-10T12:00:00Z".parse()?;
    /// assert_eq!(schedule.next_after(at).unwrap().to_rfc3339(), "2027-01-11T02:00:00+00:00");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cadence.next_after(at)
    }

    /// The idempotency key of the task of `tick`: `schedule:<name>:<tick in UTC, RFC 3339 with
    /// milliseconds>`.
    ///
    /// ```
    /// # use longtask_core::{Job, JobError, Schedule, TaskContext};
    /// # struct Export;
    /// # impl Job for Export { const NAME: &'static str = "export"; type Params = (); type Output = ();
    /// #   async fn run(&self, _: (), _: TaskContext) -> Result<(), JobError> { Ok(()) } }
    /// let schedule = Schedule::cron("nightly", "0 3 * * *")?.job(Export, ());
    /// let tick = "2027-01-11T03:00:00Z".parse()?;
    /// assert_eq!(schedule.idempotency_key(tick), "schedule:nightly:2027-01-11T03:00:00.000Z");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn idempotency_key(&self, tick: DateTime<Utc>) -> String {
        format!(
            "schedule:{}:{}",
            self.name,
            tick.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }

    /// The id of the task of `tick`: a UUIDv7 whose timestamp is the tick and whose other bits
    /// are a hash of the job, the owner, the schedule's name and the tick. Every scheduler
    /// computes the same id, so the task of a tick can be looked up with
    /// [`Client::status`](crate::Client::status). Not secret (see [each tick once](Schedule#each-tick-once)).
    ///
    /// ```
    /// # use longtask_core::{Job, JobError, Schedule, TaskContext};
    /// # struct Export;
    /// # impl Job for Export { const NAME: &'static str = "export"; type Params = (); type Output = ();
    /// #   async fn run(&self, _: (), _: TaskContext) -> Result<(), JobError> { Ok(()) } }
    /// let schedule = Schedule::cron("nightly", "0 3 * * *")?.job(Export, ());
    /// let tick: chrono::DateTime<chrono::Utc> = "2027-01-11T03:00:00Z".parse()?;
    /// let id = schedule.task_id(tick);
    /// assert_eq!(id, schedule.task_id(tick));
    /// assert_eq!(id.as_uuid().get_version_num(), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn task_id(&self, tick: DateTime<Utc>) -> TaskId {
        let millis = tick.timestamp_millis();
        let mut hash = Sha256::new();
        hash.update(b"longtask schedule tick v1\0");
        for part in [self.job, &self.name] {
            hash.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            hash.update(part.as_bytes());
        }
        match &self.owner {
            Some(owner) => {
                hash.update([1]);
                hash.update(u64::try_from(owner.len()).unwrap_or(u64::MAX).to_be_bytes());
                hash.update(owner.as_bytes());
            }
            None => hash.update([0]),
        }
        hash.update(millis.to_be_bytes());
        let digest = hash.finalize();
        let mut rest = [0_u8; 10];
        rest.copy_from_slice(&digest[..10]);
        let millis = u64::try_from(millis).unwrap_or(0);
        TaskId::from_uuid(uuid::Builder::from_unix_timestamp_millis(millis, &rest).into_uuid())
    }

    /// The task of `tick`, kept at least `retention` after it finishes.
    fn task(&self, tick: DateTime<Utc>, retention: Duration) -> Result<NewTask> {
        let params = match &self.params {
            Params::Fixed(params) => params.clone(),
            Params::PerTick(make) => make(tick)?,
        };
        Ok(NewTask {
            id: self.task_id(tick),
            job: self.job.to_owned(),
            params,
            priority: self.priority,
            run_at: RunAt::At(tick),
            max_attempts: self.max_attempts,
            retention: retention.max(self.retention),
            owner: self.owner.clone(),
            idempotency_key: Some(self.idempotency_key(tick)),
            concurrency_key: None,
            group: None,
        })
    }

    /// Checks what [`ScheduleBuilder::job`] could not report: the parameters' encoding, and the
    /// owner and key against the rules every backend applies.
    fn check(&mut self) -> Result<()> {
        if let Some(defect) = self.defect.take() {
            return Err(defect);
        }
        if let Params::Fixed(_) = self.params {
            self.task(DateTime::UNIX_EPOCH, Duration::ZERO)?
                .validate()
                .map_err(|e| {
                    Error::InvalidInput(format!("schedule `{}`: {}", self.name, bare(&e)))
                })?;
        }
        Ok(())
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("name", &self.name)
            .field("cadence", &self.cadence)
            .field("missed", &self.missed)
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

/// A [`Schedule`] being built: set its time zone, missed-tick policy and task options, then give
/// it its job with [`job`](Self::job) or [`job_with`](Self::job_with).
#[derive(Debug)]
#[must_use]
pub struct ScheduleBuilder {
    name: String,
    cadence: Cadence,
    missed: Missed,
    priority: Option<i32>,
    max_attempts: Option<u32>,
    retention: Option<Duration>,
    owner: Option<String>,
}

impl ScheduleBuilder {
    fn new(name: String, cadence: Cadence) -> Self {
        Self {
            name,
            cadence,
            missed: Missed::default(),
            priority: None,
            max_attempts: None,
            retention: None,
            owner: None,
        }
    }

    /// Reads the cron expression on the wall clock of `tz` (default UTC); see
    /// [daylight saving](Schedule#time-zones-and-daylight-saving). No effect on
    /// [`Schedule::every`], which counts real time.
    ///
    /// ```
    /// use longtask_core::{chrono_tz::Europe::Berlin, Schedule};
    /// let builder = Schedule::cron("nightly", "0 3 * * *")?.in_tz(Berlin);
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    pub fn in_tz(mut self, tz: Tz) -> Self {
        self.cadence.set_tz(tz);
        self
    }

    /// [`in_tz`](Self::in_tz) with an IANA time zone name, as read from configuration.
    ///
    /// ```
    /// use longtask_core::Schedule;
    /// let builder = Schedule::cron("nightly", "0 3 * * *")?.in_tz_named("Europe/Berlin")?;
    /// assert!(Schedule::cron("nightly", "0 3 * * *")?.in_tz_named("Mars/Olympus").is_err());
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    pub fn in_tz_named(self, tz: &str) -> Result<Self> {
        let tz = cadence::parse_tz(tz)
            .map_err(|e| Error::InvalidInput(format!("schedule `{}`: {}", self.name, bare(&e))))?;
        Ok(self.in_tz(tz))
    }

    /// What to do with missed ticks (default [`Missed::RunOnce`]).
    ///
    /// ```
    /// use longtask_core::{Missed, Schedule};
    /// let builder = Schedule::cron("nightly", "0 3 * * *")?.missed(Missed::CatchUp(7));
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    pub fn missed(mut self, policy: Missed) -> Self {
        self.missed = policy;
        self
    }

    /// The tasks' priority (default: the job's).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The tasks' attempts (default: the job's; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// How long the tasks are kept after they finish (default: the job's), raised where the
    /// missed-tick policy needs longer (see [missed ticks](Schedule#missed-ticks)).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Stamps the tasks with an owner, for authorization (see
    /// [`SubmitOptions::owner`](crate::SubmitOptions::owner)).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Finishes the schedule: each tick submits a task of `job` with `params`. Only the job's
    /// type is used (its name and options); the worker that runs the tasks registers its own.
    ///
    /// ```
    /// use longtask_core::{Job, JobError, Schedule, TaskContext};
    /// # struct Export;
    /// # impl Job for Export { const NAME: &'static str = "export"; type Params = String; type Output = ();
    /// #   async fn run(&self, _: String, _: TaskContext) -> Result<(), JobError> { Ok(()) } }
    /// let schedule = Schedule::cron("nightly", "0 3 * * *")?.job(Export, "csv".to_owned());
    /// assert_eq!(schedule.job(), "export");
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    // By value, as `Client::submit` takes them: `.job(Export, params)` reads as a submission.
    #[allow(clippy::needless_pass_by_value)]
    pub fn job<J: Job>(self, job: J, params: J::Params) -> Schedule {
        drop(job);
        match serde_json::to_string(&params) {
            Ok(params) => self.finish::<J>(Params::Fixed(params), None),
            Err(e) => {
                let defect = Error::codec("encode", format!("parameters of job `{}`", J::NAME), e);
                self.finish::<J>(Params::Fixed(String::new()), Some(defect))
            }
        }
    }

    /// Finishes the schedule with parameters made from each tick's time (in UTC): a nightly
    /// export that catches up on missed nights can tell which night each task is for.
    ///
    /// ```
    /// use longtask_core::{Job, JobError, Schedule, TaskContext};
    /// # struct Export;
    /// # impl Job for Export { const NAME: &'static str = "export"; type Params = String; type Output = ();
    /// #   async fn run(&self, _: String, _: TaskContext) -> Result<(), JobError> { Ok(()) } }
    /// let schedule = Schedule::cron("nightly", "0 3 * * *")?
    ///     .job_with(Export, |tick| tick.date_naive().pred_opt().unwrap().to_string());
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    pub fn job_with<J, F>(self, job: J, params: F) -> Schedule
    where
        J: Job,
        F: Fn(DateTime<Utc>) -> J::Params + Send + Sync + 'static,
    {
        drop(job);
        let make = move |tick: DateTime<Utc>| {
            serde_json::to_string(&params(tick))
                .map_err(|e| Error::codec("encode", format!("parameters of job `{}`", J::NAME), e))
        };
        self.finish::<J>(Params::PerTick(Arc::new(make)), None)
    }

    fn finish<J: Job>(self, params: Params, defect: Option<Error>) -> Schedule {
        let defaults = J::options();
        Schedule {
            name: self.name,
            cadence: self.cadence,
            missed: self.missed,
            job: J::NAME,
            params,
            priority: self.priority.unwrap_or(defaults.priority),
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts).max(1),
            retention: self.retention.unwrap_or(defaults.retention),
            owner: self.owner,
            defect,
        }
    }
}

fn valid_name(name: String) -> Result<String> {
    if name.is_empty() {
        return Err(Error::InvalidInput("the schedule name is empty".to_owned()));
    }
    if name.len() > MAX_SCHEDULE_NAME_LEN {
        return Err(Error::InvalidInput(format!(
            "the schedule name is {} bytes long; at most {MAX_SCHEDULE_NAME_LEN} are allowed",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidInput(
            "the schedule name contains a control character; use printable text".to_owned(),
        ));
    }
    Ok(name)
}

/// The message of an [`Error::InvalidInput`] without its prefix, to wrap in another.
fn bare(err: &Error) -> String {
    match err {
        Error::InvalidInput(message) => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;

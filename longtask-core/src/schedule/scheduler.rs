//! [`Scheduler`]: submits the tasks of its schedules' ticks, in any number of processes at once.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::{sync::Mutex, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{Missed, Schedule, FOREVER, RETENTION_MARGIN};
use crate::{
    backend::Backend,
    clock::{Clock, SystemClock},
    error::{Error, Result},
    store::TaskStore,
    task::{NewTask, TaskId, TaskRecord},
};

/// Builds a [`Scheduler`]: add schedules, then [`build`](Self::build).
#[derive(Debug)]
#[must_use]
pub struct SchedulerBuilder {
    backend: Backend,
    clock: Arc<dyn Clock>,
    schedules: Vec<Schedule>,
    poll_interval: Duration,
}

impl SchedulerBuilder {
    /// Adds a schedule.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedules.push(schedule);
        self
    }

    /// Reads the time from `clock` instead of the system's (for tests, with a
    /// [`ManualClock`](crate::ManualClock)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use longtask_core::{ManualClock, MemoryBackend, Scheduler};
    /// let clock = Arc::new(ManualClock::new());
    /// let builder = Scheduler::builder(MemoryBackend::new().with_clock(clock.clone())).with_clock(clock);
    /// ```
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The longest a running scheduler waits before it reads the clock again (default 60 s):
    /// a scheduler sleeps until its next tick, and this bounds how late it notices that the
    /// clock jumped (a machine that slept, a corrected clock).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// Builds the scheduler. Fails when no schedule was added, two share a name, or a schedule's
    /// parameters, owner or name cannot be submitted.
    pub fn build(self) -> Result<Scheduler> {
        if self.schedules.is_empty() {
            return Err(Error::Config(
                "no schedule added: call `.schedule(schedule)` before `.build()`".to_owned(),
            ));
        }
        let mut schedules = self.schedules;
        for (i, schedule) in schedules.iter().enumerate() {
            if schedules[..i].iter().any(|s| s.name == schedule.name) {
                return Err(Error::Config(format!(
                    "two schedules are named `{}`; schedule names must be unique",
                    schedule.name
                )));
            }
        }
        for schedule in &mut schedules {
            schedule.check()?;
        }
        let cursors = vec![None; schedules.len()];
        Ok(Scheduler {
            inner: Arc::new(Inner {
                backend: self.backend,
                clock: self.clock,
                schedules,
                cursors: Mutex::new(cursors),
                poll_interval: self.poll_interval,
            }),
        })
    }
}

/// Submits the tasks of its schedules' ticks. Cheap to clone (clones share their state).
///
/// Run it with [`spawn`](Self::spawn) (or [`run`](Self::run)), or from a worker with
/// [`WorkerBuilder::schedule`](crate::WorkerBuilder::schedule); any number of processes may run
/// one for the same schedules. [`submit_due`](Self::submit_due) does one round by hand, and
/// [`schedules`](Self::schedules) lists the schedules with their next and last runs. The rules
/// are in the [module docs](crate::Schedule#each-tick-once).
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    clock: Arc<dyn Clock>,
    schedules: Vec<Schedule>,
    /// Per schedule, the clock's time when its ticks were last all submitted: `None` until the
    /// first round succeeds. Held through a round, so that rounds do not overlap.
    cursors: Mutex<Vec<Option<DateTime<Utc>>>>,
    poll_interval: Duration,
}

/// One tick that [`Scheduler::submit_due`] handled, and its task.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tick {
    /// The schedule's name.
    pub schedule: String,
    /// The tick's time.
    pub at: DateTime<Utc>,
    /// Its task's id.
    pub id: TaskId,
    /// `false` when the task existed already (another scheduler, or this one before a restart,
    /// submitted it).
    pub created: bool,
}

/// A schedule as [`Scheduler::schedules`] lists it, for a dashboard or a command line.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScheduleStatus {
    /// The schedule's name.
    pub name: String,
    /// The job its ticks submit.
    pub job: String,
    /// When it ticks, for people: "cron `0 3 * * *` in Europe/Berlin", "every 900s".
    pub cadence: String,
    /// Its missed-tick policy.
    pub missed: Missed,
    /// Its next tick after now, if it has one.
    pub next_run: Option<DateTime<Utc>>,
    /// The task of its latest tick, if that task (or the previous tick's) exists.
    pub last: Option<LastRun>,
}

/// The latest task of a schedule.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LastRun {
    /// The tick it was submitted for.
    pub tick: DateTime<Utc>,
    /// The task, as stored now (its id, status, progress, ...).
    pub task: TaskRecord,
}

impl Scheduler {
    /// Starts building a scheduler that submits to `backend`.
    ///
    /// ```
    /// # use longtask_core::{Job, JobError, TaskContext};
    /// # struct Export;
    /// # impl Job for Export { const NAME: &'static str = "export"; type Params = (); type Output = ();
    /// #   async fn run(&self, _: (), _: TaskContext) -> Result<(), JobError> { Ok(()) } }
    /// use longtask_core::{MemoryBackend, Schedule, Scheduler};
    ///
    /// let scheduler = Scheduler::builder(MemoryBackend::new())
    ///     .schedule(Schedule::cron("nightly", "0 3 * * *")?.job(Export, ()))
    ///     .build()?;
    /// # Ok::<(), longtask_core::Error>(())
    /// ```
    pub fn builder(backend: impl Into<Backend>) -> SchedulerBuilder {
        SchedulerBuilder {
            backend: backend.into(),
            clock: Arc::new(SystemClock),
            schedules: Vec::new(),
            poll_interval: Duration::from_secs(60),
        }
    }

    /// Submits the task of every tick that is due at the clock's now, following each schedule's
    /// [missed-tick policy](crate::Schedule#missed-ticks), and returns the ticks it handled (those
    /// whose task existed already with `created: false`). The running scheduler calls this at
    /// every tick; tests call it after moving a [`ManualClock`](crate::ManualClock).
    ///
    /// A schedule whose tasks could not be submitted (the backend failed) is tried again in full
    /// at the next call; the first such error is returned after every other schedule had its
    /// turn. Cancel-safe: dropped midway, the ticks it did not finish are handled by the next
    /// call.
    pub async fn submit_due(&self) -> Result<Vec<Tick>> {
        let inner = &*self.inner;
        let mut cursors = inner.cursors.lock().await;
        let now = inner.clock.now();
        let mut handled = Vec::new();
        let mut failed = None;
        for (schedule, cursor) in inner.schedules.iter().zip(cursors.iter_mut()) {
            match submit_schedule(&**inner.backend.store(), schedule, *cursor, now).await {
                Ok(ticks) => {
                    *cursor = Some(cursor.map_or(now, |c| c.max(now)));
                    handled.extend(ticks);
                }
                Err(err) => {
                    tracing::warn!(schedule = %schedule.name, error = %err, "could not submit scheduled tasks");
                    failed.get_or_insert(err);
                }
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(handled),
        }
    }

    /// Each schedule with its next run and its latest task, read from the backend (so any
    /// process can list them, whether or not it runs the scheduler).
    pub async fn schedules(&self) -> Result<Vec<ScheduleStatus>> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let mut listed = Vec::with_capacity(inner.schedules.len());
        for schedule in &inner.schedules {
            let mut last = None;
            for tick in schedule.cadence.last(now, 2).into_iter().rev() {
                if let Some(task) = inner.backend.store().get(schedule.task_id(tick)).await? {
                    last = Some(LastRun { tick, task });
                    break;
                }
            }
            listed.push(ScheduleStatus {
                name: schedule.name.clone(),
                job: schedule.job.to_owned(),
                cadence: schedule.cadence.to_string(),
                missed: schedule.missed,
                next_run: schedule.cadence.next_after(now),
                last,
            });
        }
        Ok(listed)
    }

    /// Submits due ticks until `shutdown` completes: at start (the look-back of each schedule's
    /// policy), then at every tick. A failed round is logged and tried again after a backoff
    /// (1 s, doubling up to a minute), never fatal.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        loop {
            let round = tokio::select! {
                () = &mut shutdown => return Ok(()),
                round = self.submit_due() => round,
            };
            let wait = match round {
                Ok(_) => {
                    failures = 0;
                    self.until_next_tick()
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_secs(1 << failures.min(6).saturating_sub(1));
                    backoff.min(Duration::from_secs(60))
                }
            };
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Runs the scheduler on a tokio task; the handle shuts it down.
    pub fn spawn(self) -> SchedulerHandle {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let scheduler = self.clone();
        let join = tokio::spawn(async move { scheduler.run(token.cancelled_owned()).await });
        SchedulerHandle {
            stop,
            join,
            scheduler: self,
        }
    }

    /// How long to sleep until the next tick of any schedule, at most the poll interval.
    fn until_next_tick(&self) -> Duration {
        let inner = &*self.inner;
        let now = inner.clock.now();
        inner
            .schedules
            .iter()
            .filter_map(|s| s.cadence.next_after(now))
            .min()
            .and_then(|next| (next - now).to_std().ok())
            .unwrap_or(inner.poll_interval)
            .clamp(Duration::from_millis(1), inner.poll_interval)
    }
}

/// A scheduler running on its own tokio task (from [`Scheduler::spawn`]).
#[derive(Debug)]
pub struct SchedulerHandle {
    stop: CancellationToken,
    join: JoinHandle<Result<()>>,
    scheduler: Scheduler,
}

impl SchedulerHandle {
    /// The running scheduler (to list its schedules).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Stops the scheduler and waits until it has: a round under way is dropped (the next
    /// scheduler to run does what it left undone).
    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        match self.join.await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Ok(()),
        }
    }
}

/// Submits the ticks of `schedule` due at `now`, given the time its ticks were last all submitted
/// (`None`: this scheduler just started).
async fn submit_schedule(
    store: &dyn TaskStore,
    schedule: &Schedule,
    cursor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Vec<Tick>> {
    let look_back = schedule.missed.look_back();
    // How many ticks back any scheduler of this schedule may submit: what its tasks must outlive.
    let reach = look_back.max(1);
    let ticks = match cursor {
        None => schedule.cadence.last(now, look_back),
        Some(cursor) => {
            let mut ticks = schedule.cadence.last(now, reach);
            ticks.retain(|tick| *tick > cursor);
            ticks
        }
    };
    let Some(&latest) = ticks.last() else {
        return Ok(Vec::new());
    };
    // The ticks, then the `reach` ticks after them: the task of ticks[i] must be kept until
    // line[i + reach], the first tick at which no scheduler looks back to ticks[i] any more.
    let mut line = ticks.clone();
    line.extend(schedule.cadence.following(latest, reach));
    let tasks = ticks
        .iter()
        .enumerate()
        .map(|(i, tick)| {
            let retention = line
                .get(i + reach)
                .and_then(|until| (*until - *tick).to_std().ok())
                .map_or(FOREVER, |gap| gap.saturating_add(RETENTION_MARGIN));
            schedule.task(*tick, retention)
        })
        .collect::<Result<Vec<_>>>()?;
    let created = insert_once(store, tasks).await?;
    Ok(ticks
        .into_iter()
        .zip(created)
        .map(|(at, (id, created))| {
            if created {
                tracing::info!(schedule = %schedule.name, tick = %at, task = %id, "submitted a scheduled task");
            }
            Tick {
                schedule: schedule.name.clone(),
                at,
                id,
                created,
            }
        })
        .collect())
}

/// Inserts the tasks of ticks, each once: a task whose id already holds the tick's task (found
/// before inserting, or after an insert that failed because another scheduler got there first) is
/// reported with `created: false`. Backends match idempotency keys, but some check that an id is
/// free before they do, and so refuse a tick's task that another scheduler inserted first.
async fn insert_once(store: &dyn TaskStore, tasks: Vec<NewTask>) -> Result<Vec<(TaskId, bool)>> {
    let mut done: Vec<Option<(TaskId, bool)>> = vec![None; tasks.len()];
    let mut missing = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        if let Some(existing) = store.get(task.id).await? {
            done[i] = Some((task.id, holds(&existing, task)?));
        } else {
            missing.push(i);
        }
    }
    if !missing.is_empty() {
        let batch: Vec<NewTask> = missing.iter().map(|&i| tasks[i].clone()).collect();
        match store.insert(batch).await {
            Ok(inserted) => {
                for (&i, inserted) in missing.iter().zip(inserted) {
                    done[i] = Some((inserted.id, inserted.created));
                }
            }
            // One of them was taken meanwhile (or the backend failed): one by one.
            Err(_) => {
                for &i in &missing {
                    done[i] = Some(insert_one(store, &tasks[i]).await?);
                }
            }
        }
    }
    Ok(done.into_iter().flatten().collect())
}

async fn insert_one(store: &dyn TaskStore, task: &NewTask) -> Result<(TaskId, bool)> {
    match store.insert(vec![task.clone()]).await {
        Ok(mut inserted) => {
            let inserted = inserted
                .pop()
                .ok_or_else(|| Error::InvalidInput("the backend inserted nothing".to_owned()))?;
            Ok((inserted.id, inserted.created))
        }
        Err(err) => match store.get(task.id).await {
            Ok(Some(existing)) => Ok((task.id, holds(&existing, task)?)),
            _ => Err(err),
        },
    }
}

/// `false` (not created) when `existing`, found under the id of a tick's `task`, is that tick's
/// task; an error otherwise (a hash collision, or a task inserted under that id by hand).
fn holds(existing: &TaskRecord, task: &NewTask) -> Result<bool> {
    if existing.job == task.job
        && existing.owner == task.owner
        && existing.idempotency_key == task.idempotency_key
    {
        Ok(false)
    } else {
        Err(Error::InvalidInput(format!(
            "task {} exists but is not the task of {}; a scheduled task's id is taken",
            task.id,
            task.idempotency_key.as_deref().unwrap_or_default()
        )))
    }
}

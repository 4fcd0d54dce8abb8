//! Cases: periodic schedules. Each tick's task is submitted once however many schedulers run
//! (each on its own instance, racing), missed ticks follow the schedule's policy, a finished
//! tick's task outlives every scheduler's look-back, and daylight-saving changes tick once.
//! Schedulers read the harness's [`ManualClock`](crate::ManualClock), which the cases move.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc, Weekday};

use super::Harness;
use crate::{
    chrono_tz::Europe::Berlin, Backend, Job, JobError, Missed, Schedule, Scheduler,
    SchedulerBuilder, TaskContext, TaskQuery, TaskStatus, Tick,
};

/// The job the cases' schedules submit.
struct Tock;

impl Job for Tock {
    const NAME: &'static str = "schedule-tock";
    type Params = ();
    type Output = ();
    async fn run(&self, (): (), _: TaskContext) -> Result<(), JobError> {
        Ok(())
    }
}

const MINUTE: Duration = Duration::from_secs(60);

fn every(name: &str, period: Duration, missed: Missed) -> Schedule {
    Schedule::every(name, period)
        .expect("a valid schedule")
        .missed(missed)
        .job(Tock, ())
}

fn cron(name: &str, expression: &str, missed: Missed) -> Schedule {
    Schedule::cron(name, expression)
        .expect("a valid schedule")
        .in_tz(Berlin)
        .missed(missed)
        .job(Tock, ())
}

fn scheduler(h: &Harness, backend: Backend, schedules: Vec<Schedule>) -> Scheduler {
    schedules
        .into_iter()
        .fold(Scheduler::builder(backend), SchedulerBuilder::schedule)
        .with_clock(h.clock.clone())
        .build()
        .expect("a valid scheduler")
}

/// Moves the clock forward to `minute:second` past the next hour (minutes within the hour).
fn start_at(h: &Harness, minute: u32, second: u32) -> DateTime<Utc> {
    let now = h.now();
    let hour = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .expect("a whole hour")
        + chrono::Duration::hours(1);
    let at =
        hour + chrono::Duration::minutes(minute.into()) + chrono::Duration::seconds(second.into());
    h.clock.set(at);
    at
}

/// The ticks whose tasks exist, per schedule name, from the tasks' idempotency keys.
async fn submitted(h: &Harness) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    let tasks = h
        .backend
        .store()
        .list(&TaskQuery {
            job: Some(Tock::NAME.to_owned()),
            limit: 10_000,
            ..TaskQuery::default()
        })
        .await
        .expect("list failed");
    let mut ticks: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    for task in tasks {
        let key = task.idempotency_key.expect("a scheduled task has a key");
        let rest = key.strip_prefix("schedule:").expect("a schedule key");
        // The tick is the last 24 characters (2026-12-02T03:00:00.000Z), after a colon.
        let split = rest.len().checked_sub(24).expect("a key with a tick");
        let (name, at) = (&rest[..split - 1], &rest[split..]);
        let at: DateTime<Utc> = at.parse().expect("a tick time");
        ticks.entry(name.to_owned()).or_default().push(at);
    }
    for list in ticks.values_mut() {
        list.sort();
        let before = list.len();
        list.dedup();
        assert_eq!(list.len(), before, "a tick has two tasks");
    }
    ticks
}

fn ticks_of(submitted: &BTreeMap<String, Vec<DateTime<Utc>>>, name: &str) -> Vec<DateTime<Utc>> {
    submitted.get(name).cloned().unwrap_or_default()
}

/// `count` ticks `period` apart, the first at `first`.
fn series(first: DateTime<Utc>, period: Duration, count: i32) -> Vec<DateTime<Utc>> {
    let period = chrono::Duration::from_std(period).expect("a period");
    (0..count).map(|k| first + period * k).collect()
}

/// Runs one round on every scheduler at once, each on its own tokio task.
async fn round(schedulers: &[Scheduler]) -> Vec<Tick> {
    let running: Vec<_> = schedulers
        .iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move { s.submit_due().await })
        })
        .collect();
    let mut ticks = Vec::new();
    for run in running {
        ticks.extend(
            run.await
                .expect("a round panicked")
                .expect("a round failed"),
        );
    }
    ticks
}

/// Three schedulers, each on its own instance, racing through many ticks of two schedules,
/// submit exactly one task per tick, and exactly one of them reports creating it.
pub async fn three_schedulers_submit_each_tick_once(h: Harness) {
    let start = start_at(&h, 0, 30);
    let schedules = || {
        vec![
            every("minutely", MINUTE, Missed::RunOnce),
            cron("five", "*/5 * * * *", Missed::CatchUp(2)),
        ]
    };
    let schedulers = [
        scheduler(&h, h.backend.clone(), schedules()),
        scheduler(&h, h.open_instance().await, schedules()),
        scheduler(&h, h.open_instance().await, schedules()),
    ];
    let mut created: BTreeMap<(String, DateTime<Utc>), usize> = BTreeMap::new();
    for step in 0..40 {
        if step > 0 {
            h.advance(Duration::from_secs(37));
        }
        for tick in round(&schedulers).await {
            *created.entry((tick.schedule, tick.at)).or_default() += usize::from(tick.created);
        }
    }
    let end = h.now();
    let submitted = submitted(&h).await;
    let minute0 = start - chrono::Duration::seconds(30);
    let minutes = (end - minute0).num_minutes();
    assert_eq!(
        ticks_of(&submitted, "minutely"),
        series(minute0, MINUTE, i32::try_from(minutes).unwrap() + 1),
        "one task per minute, from the latest tick at start (RunOnce) to the last"
    );
    // CatchUp(2) at start: the hour's :55 of the previous hour and :00.
    let fives = ticks_of(&submitted, "five");
    assert_eq!(fives[0], minute0 - chrono::Duration::minutes(5));
    assert_eq!(
        fives,
        series(fives[0], MINUTE * 5, i32::try_from(fives.len()).unwrap())
    );
    assert_eq!(
        *fives.last().unwrap(),
        minute0 + chrono::Duration::minutes(minutes / 5 * 5)
    );
    for ((schedule, at), n) in &created {
        assert_eq!(
            *n, 1,
            "{schedule} at {at}: {n} schedulers reported creating its task"
        );
    }
    assert_eq!(
        created.len(),
        submitted.values().map(Vec::len).sum::<usize>(),
        "every submitted tick was reported"
    );
}

/// Ticks missed while no scheduler ran, or while one was held up, follow each schedule's
/// policy: Skip submits none from before a start, RunOnce the latest, CatchUp(n) the last n;
/// a restart submits nothing twice.
pub async fn missed_ticks_follow_the_policy(h: Harness) {
    let start = start_at(&h, 10, 30); // 30 s after tick T0 = hh:10
    let t = |k: i64| start - chrono::Duration::seconds(30) + chrono::Duration::minutes(k);
    let schedules = || {
        vec![
            every("skip", MINUTE, Missed::Skip),
            every("once", MINUTE, Missed::RunOnce),
            every("three", MINUTE, Missed::CatchUp(3)),
            every("zero", MINUTE, Missed::CatchUp(0)),
        ]
    };
    let expect =
        |submitted: &BTreeMap<String, Vec<DateTime<Utc>>>, name: &str, ks: &[i64], when: &str| {
            let expected: Vec<_> = ks.iter().map(|k| t(*k)).collect();
            assert_eq!(ticks_of(submitted, name), expected, "{name} {when}");
        };

    // Everything was down until now: each policy looks back as far as it says.
    let first = scheduler(&h, h.backend.clone(), schedules());
    first.submit_due().await.unwrap();
    let s = submitted(&h).await;
    expect(&s, "skip", &[], "at first start");
    expect(&s, "once", &[0], "at first start");
    expect(&s, "three", &[-2, -1, 0], "at first start");
    expect(&s, "zero", &[], "at first start");

    // Running: every schedule submits the next tick.
    h.advance(MINUTE);
    first.submit_due().await.unwrap();
    let s = submitted(&h).await;
    expect(&s, "skip", &[1], "while running");
    expect(&s, "once", &[0, 1], "while running");
    expect(&s, "three", &[-2, -1, 0, 1], "while running");
    expect(&s, "zero", &[1], "while running");

    // Held up for five ticks: the policy applies to the ticks it passed, at least the latest.
    h.advance(MINUTE * 5);
    first.submit_due().await.unwrap();
    let s = submitted(&h).await;
    expect(&s, "skip", &[1, 6], "after a stall");
    expect(&s, "once", &[0, 1, 6], "after a stall");
    expect(&s, "three", &[-2, -1, 0, 1, 4, 5, 6], "after a stall");
    expect(&s, "zero", &[1, 6], "after a stall");
    drop(first);

    // Down for ten ticks, then another process starts.
    h.advance(MINUTE * 10);
    let second = scheduler(&h, h.open_instance().await, schedules());
    second.submit_due().await.unwrap();
    let s = submitted(&h).await;
    expect(&s, "skip", &[1, 6], "after downtime");
    expect(&s, "once", &[0, 1, 6, 16], "after downtime");
    expect(
        &s,
        "three",
        &[-2, -1, 0, 1, 4, 5, 6, 14, 15, 16],
        "after downtime",
    );
    expect(&s, "zero", &[1, 6], "after downtime");

    // A restart with no downtime finds every tick's task and creates nothing.
    let third = scheduler(&h, h.open_instance().await, schedules());
    let again = third.submit_due().await.unwrap();
    assert_eq!(again.len(), 4, "once's and three's look-back: {again:?}");
    assert!(again.iter().all(|tick| !tick.created), "{again:?}");
    assert_eq!(submitted(&h).await, s, "nothing new after a restart");
}

/// A tick's task is kept until no scheduler can look back to its tick any more, even when its
/// job keeps nothing: a scheduler that starts after the task ran and a purge passed does not
/// submit the tick again.
pub async fn purged_tick_is_never_submitted_again(h: Harness) {
    let start = start_at(&h, 10, 0);
    let t0 = start - chrono::Duration::minutes(10);
    let hourly = || {
        Schedule::every("hourly", Duration::from_secs(3600))
            .expect("a valid schedule")
            .retention(Duration::ZERO)
            .job(Tock, ())
    };
    let first = scheduler(&h, h.backend.clone(), vec![hourly()]);
    let ticks = first.submit_due().await.unwrap();
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].at, t0);
    let task = h.claim_one(Tock::NAME).await;
    assert_eq!(task.lease.task, ticks[0].id);
    assert_eq!(h.succeed(task.lease, "null").await, crate::Ack::Applied);

    // Before the next tick, a sweeper purges and another scheduler starts (RunOnce looks back
    // to t0): the task must still be there, and be found.
    h.advance(Duration::from_secs(40 * 60));
    let purged = h.backend.store().purge(100).await.unwrap();
    assert_eq!(
        purged, 0,
        "a tick's task is kept while schedulers may look back to its tick"
    );
    let second = scheduler(&h, h.open_instance().await, vec![hourly()]);
    let again = second.submit_due().await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].at, again[0].created), (t0, false));
    assert_eq!(h.get(ticks[0].id).await.status, TaskStatus::Succeeded);

    // Once the next tick has passed (and the margin), it is purged, and no look-back finds it.
    h.advance(Duration::from_secs(2 * 3600));
    let purged = h.backend.store().purge(100).await.unwrap();
    assert_eq!(
        purged, 1,
        "kept until the next tick and the margin, then purged"
    );
    let third = scheduler(&h, h.open_instance().await, vec![hourly()]);
    let latest = third.submit_due().await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(
        latest[0].at,
        t0 + chrono::Duration::hours(2),
        "the latest tick, not t0"
    );
    assert!(h.backend.store().get(ticks[0].id).await.unwrap().is_none());
}

/// The last Sunday of `month` in `year`: when the European Union changes its clocks, at
/// 01:00 UTC.
fn last_sunday(year: i32, month: u32) -> DateTime<Utc> {
    let mut day = NaiveDate::from_ymd_opt(year, month + 1, 1)
        .expect("a date")
        .pred_opt()
        .expect("a date");
    while day.weekday() != Weekday::Sun {
        day = day.pred_opt().expect("a date");
    }
    Utc.from_utc_datetime(&day.and_hms_opt(1, 0, 0).expect("a time"))
}

/// Across both daylight-saving changes in Berlin, three schedulers submit a fixed-time
/// schedule's tick in the skipped hour once (at 03:00 CEST) and in the repeated hour once (at
/// the first pass), while an hourly schedule ticks every real hour (23 and 25 in those days).
pub async fn daylight_saving_changes_tick_once(h: Harness) {
    let year = h.now().year() + 1; // the clock only moves forward
    for (change, fixed_tick, hours) in [
        (last_sunday(year, 3), chrono::Duration::zero(), 23), // 02:30 CET is skipped: 03:00 CEST
        (last_sunday(year, 10), -chrono::Duration::minutes(30), 25), // 02:30 CEST, first pass
    ] {
        // From 21:00 UTC the evening before (local midnight is 22:00 or 23:00 UTC).
        let from = change - chrono::Duration::hours(4);
        h.clock.set(from);
        let schedules = || {
            vec![
                cron("fixed", "30 2 * * *", Missed::Skip),
                cron("hourly", "0 * * * *", Missed::Skip),
            ]
        };
        let schedulers = [
            scheduler(&h, h.open_instance().await, schedules()),
            scheduler(&h, h.open_instance().await, schedules()),
            scheduler(&h, h.open_instance().await, schedules()),
        ];
        let until = from + chrono::Duration::hours(27);
        while h.now() < until {
            round(&schedulers).await;
            h.advance(Duration::from_secs(20 * 60));
        }
        let submitted = submitted(&h).await;
        let in_day = |name: &str| -> Vec<DateTime<Utc>> {
            ticks_of(&submitted, name)
                .into_iter()
                .filter(|t| *t > from && *t < from + chrono::Duration::hours(24))
                .collect()
        };
        assert_eq!(
            in_day("fixed"),
            [change + fixed_tick],
            "the day of the change at {change}"
        );
        let local_day: Vec<_> = ticks_of(&submitted, "hourly")
            .into_iter()
            .filter(|t| {
                t.with_timezone(&Berlin).date_naive() == change.with_timezone(&Berlin).date_naive()
            })
            .collect();
        assert_eq!(
            local_day.len(),
            hours,
            "hourly ticks on the local day of {change}: {local_day:?}"
        );
        assert_eq!(
            local_day,
            series(
                local_day[0],
                Duration::from_secs(3600),
                i32::try_from(hours).unwrap()
            ),
            "one tick per real hour"
        );
    }
}

/// Listing shows each schedule's next run and its latest task with its status, to any
/// process, whether or not it runs the scheduler.
pub async fn schedules_list_next_run_and_last_task(h: Harness) {
    let start = start_at(&h, 5, 0);
    let hour = start - chrono::Duration::minutes(5);
    let schedules = || {
        vec![
            every("quarterly", Duration::from_secs(15 * 60), Missed::Skip),
            every("hourly", Duration::from_secs(3600), Missed::RunOnce),
        ]
    };
    let runner = scheduler(&h, h.backend.clone(), schedules());
    let viewer = scheduler(&h, h.open_instance().await, schedules());

    let listed = viewer.schedules().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].job.as_str()),
        ("quarterly", Tock::NAME)
    );
    assert_eq!(
        listed[0].next_run,
        Some(hour + chrono::Duration::minutes(15))
    );
    assert_eq!(listed[1].next_run, Some(hour + chrono::Duration::hours(1)));
    assert!(
        listed.iter().all(|s| s.last.is_none()),
        "nothing submitted yet"
    );

    runner.submit_due().await.unwrap();
    let task = h.claim_one(Tock::NAME).await;
    let listed = viewer.schedules().await.unwrap();
    assert!(listed[0].last.is_none(), "Skip submitted nothing at start");
    let last = listed[1].last.as_ref().expect("hourly's latest task");
    assert_eq!((last.tick, last.task.id), (hour, task.lease.task));
    assert_eq!(last.task.status, TaskStatus::Running);

    h.advance(Duration::from_secs(15 * 60));
    runner.submit_due().await.unwrap();
    let listed = viewer.schedules().await.unwrap();
    let last = listed[0].last.as_ref().expect("quarterly's latest task");
    assert_eq!(last.tick, hour + chrono::Duration::minutes(15));
    assert_eq!(last.task.status, TaskStatus::Queued);
    assert_eq!(
        listed[0].next_run,
        Some(hour + chrono::Duration::minutes(30))
    );

    // With two ticks' tasks there, the later is the last.
    h.advance(Duration::from_secs(15 * 60));
    runner.submit_due().await.unwrap();
    let listed = viewer.schedules().await.unwrap();
    let last = listed[0].last.as_ref().expect("quarterly's latest task");
    assert_eq!(last.tick, hour + chrono::Duration::minutes(30));
    assert_eq!(
        listed[0].next_run,
        Some(hour + chrono::Duration::minutes(45))
    );
}

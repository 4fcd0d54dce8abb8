use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use chrono_tz::Europe::Berlin;

use super::*;
use crate::{
    JobError, JobOptions, ManualClock, MemoryBackend, Scheduler, TaskContext, TaskStatus, TaskStore,
};

struct Export;
impl Job for Export {
    const NAME: &'static str = "export";
    type Params = String;
    type Output = ();
    async fn run(&self, _: String, _: TaskContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// A job kept one day after it finishes.
struct Brief;
impl Job for Brief {
    const NAME: &'static str = "brief";
    type Params = HashMap<(u8, u8), u8>;
    type Output = ();
    async fn run(&self, _: Self::Params, _: TaskContext) -> Result<(), JobError> {
        Ok(())
    }
    fn options() -> JobOptions {
        JobOptions::default().retention(Duration::from_secs(86_400))
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("a test time")
}

fn cron(expression: &str) -> Cadence {
    let mut cadence = Cadence::cron(expression).expect("a valid expression");
    cadence.set_tz(Berlin);
    cadence
}

/// Every tick in `(from, until]`, found one after another from `from`.
fn walk(cadence: &Cadence, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut ticks = Vec::new();
    let mut at = from;
    while let Some(next) = cadence.next_after(at).filter(|t| *t <= until) {
        ticks.push(next);
        at = next;
    }
    ticks
}

#[test]
fn hostile_cron_expressions_are_refused_with_a_message() {
    let long = "1,".repeat(600) + "1 * * * *";
    let cases = [
        "",
        "   ",
        "* * * *",
        "* * * * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "*/0 * * * *",
        "5-1 * * * *",
        "1-99999999999999999999999 * * * *",
        "0 0 31 2 *",
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
        "@reboot",
        "@never",
        "ä * * * *",
        "\0 * * * *",
        "0 3 * * *\n0 4 * * *",
        "0 0 * * 5#9",
        "-1 * * * *",
        "0x10 * * * *",
        "1e3 * * * *",
        ", * * * *",
        "* , * * *",
        "0 , 0 * * * *",
        "* * * * * * 1969",
        "* * * * MON-",
        "%%%%%",
        &long,
    ];
    for expression in cases {
        let err = Schedule::cron("hostile", expression).expect_err(expression);
        let message = err.to_string();
        assert!(
            matches!(err, Error::InvalidInput(_)),
            "{expression:?}: {message}"
        );
        assert!(message.contains("schedule `hostile`"), "{message}");
        assert!(
            message.contains("cron expression") || message.contains("bytes long"),
            "{expression:?}: {message}"
        );
        assert!(
            !message.contains('\n') && !message.contains('\0'),
            "{message:?}"
        );
    }
    // Valid, for contrast: seconds, nicknames, L, W and #.
    for expression in [
        "0 3 * * *",
        "*/10 * * * * *",
        "@daily",
        "0 0 L * *",
        "0 0 1W * *",
        "0 0 * * 5#L",
        "0 0 29 2 *",
        "0 0 29 2 +1",
        "0 0 1 1 * * 2030",
    ] {
        let _ = Schedule::cron("fine", expression).expect(expression);
    }
}

#[test]
fn names_periods_and_zones_are_checked() {
    assert!(Schedule::cron("", "0 3 * * *").is_err());
    assert!(Schedule::cron("a\nb", "0 3 * * *").is_err());
    assert!(Schedule::cron("x".repeat(MAX_SCHEDULE_NAME_LEN + 1), "0 3 * * *").is_err());
    let _ =
        Schedule::cron("x".repeat(MAX_SCHEDULE_NAME_LEN), "0 3 * * *").expect("the longest name");
    let _ = Schedule::cron("nächtlich: export", "0 3 * * *").expect("printable text");

    for period in [
        Duration::ZERO,
        Duration::from_millis(999),
        Duration::from_nanos(1_000_000_001),
        Duration::from_secs(11 * 366 * 24 * 3600),
        Duration::MAX,
    ] {
        let err = Schedule::every("p", period).expect_err("a bad period");
        assert!(
            err.to_string()
                .contains("schedule `p`: a schedule's period"),
            "{err}"
        );
    }
    let _ = Schedule::every("p", Duration::from_millis(1500)).expect("whole milliseconds");

    let err = Schedule::cron("z", "0 3 * * *")
        .and_then(|b| b.in_tz_named("Europe/Nowhere\n"))
        .expect_err("an unknown zone");
    assert!(
        err.to_string().contains("not an IANA time zone name"),
        "{err}"
    );
}

#[test]
fn scheduler_build_reports_bad_schedules() {
    let backend = MemoryBackend::new();
    let err = Scheduler::builder(backend.clone())
        .build()
        .expect_err("no schedule");
    assert!(err.to_string().contains("no schedule added"), "{err}");

    let twice = |name: &str| {
        Schedule::every(name, Duration::from_secs(60))
            .unwrap()
            .job(Export, String::new())
    };
    let err = Scheduler::builder(backend.clone())
        .schedule(twice("a"))
        .schedule(twice("a"))
        .build()
        .expect_err("two schedules named a");
    assert!(
        err.to_string().contains("two schedules are named `a`"),
        "{err}"
    );

    let unencodable = Schedule::every("b", Duration::from_secs(60))
        .unwrap()
        .job(Brief, HashMap::from([((1, 2), 3)]));
    let err = Scheduler::builder(backend.clone())
        .schedule(unencodable)
        .build()
        .expect_err("parameters JSON cannot hold");
    assert!(matches!(err, Error::Codec { .. }), "{err}");

    let owner = Schedule::every("c", Duration::from_secs(60))
        .unwrap()
        .owner("tab\there")
        .job(Export, String::new());
    let err = Scheduler::builder(backend)
        .schedule(owner)
        .build()
        .expect_err("an owner with a control character");
    assert!(err.to_string().contains("schedule `c`: the owner"), "{err}");
}

#[test]
fn a_fixed_time_in_the_skipped_hour_runs_once_after_the_gap() {
    // Berlin moves from 02:00 CET to 03:00 CEST on 2027-03-28 (01:00 UTC).
    let from = utc("2027-03-27T12:00:00Z");
    let until = utc("2027-03-29T12:00:00Z");
    assert_eq!(
        walk(&cron("30 2 * * *"), from, until),
        [utc("2027-03-28T01:00:00Z"), utc("2027-03-29T00:30:00Z")],
        "02:30 does not exist on the 28th: it runs once, at 03:00 CEST"
    );
    // Hourly follows real time: the local day has 23 hours, so 23 ticks.
    let day = walk(
        &cron("0 * * * *"),
        utc("2027-03-27T22:59:59Z"),
        utc("2027-03-28T21:59:59Z"),
    );
    assert_eq!(day.len(), 23, "{day:?}");
}

#[test]
fn a_fixed_time_in_the_repeated_hour_runs_once() {
    // Berlin moves from 03:00 CEST back to 02:00 CET on 2027-10-31 (01:00 UTC).
    let from = utc("2027-10-30T12:00:00Z");
    let until = utc("2027-11-01T12:00:00Z");
    assert_eq!(
        walk(&cron("30 2 * * *"), from, until),
        [utc("2027-10-31T00:30:00Z"), utc("2027-11-01T01:30:00Z")],
        "02:30 happens twice on the 31st: it runs once, at the first pass"
    );
    // Hourly follows real time: the local day has 25 hours, so 25 ticks.
    let day = walk(
        &cron("0 * * * *"),
        utc("2027-10-30T21:59:59Z"),
        utc("2027-10-31T22:59:59Z"),
    );
    assert_eq!(day.len(), 25, "{day:?}");
}

#[test]
fn ticks_do_not_depend_on_where_a_search_starts() {
    // Schedulers start at any time and must agree on every tick, across both changes.
    for expression in [
        "30 2 * * *",
        "0 2 * * *",
        "0 * * * *",
        "*/20 * * * *",
        "15,45 2 * * *",
        "30 1-3 * * *",
    ] {
        let cadence = cron(expression);
        for (from, until) in [
            (utc("2027-03-27T20:00:00Z"), utc("2027-03-28T06:00:00Z")),
            (utc("2027-10-30T20:00:00Z"), utc("2027-10-31T06:00:00Z")),
        ] {
            let reference = walk(
                &cadence,
                from - chrono::Duration::days(5),
                until + chrono::Duration::days(2),
            );
            let mut at = from;
            while at < until {
                let expected = reference.iter().copied().find(|t| *t > at);
                assert_eq!(cadence.next_after(at), expected, "{expression} after {at}");
                let before: Vec<_> = reference.iter().copied().filter(|t| *t <= at).collect();
                for n in [1, 3] {
                    let last = cadence.last(at, n);
                    assert_eq!(
                        last,
                        before[before.len().saturating_sub(n)..],
                        "{expression}: last {n} at {at}"
                    );
                }
                at += chrono::Duration::seconds(7 * 60 + 13);
            }
        }
    }
}

#[test]
fn every_counts_from_the_epoch() {
    let cadence = Cadence::every(Duration::from_secs(900)).unwrap();
    let at = utc("2027-01-10T12:07:31.250Z");
    assert_eq!(cadence.next_after(at), Some(utc("2027-01-10T12:15:00Z")));
    assert_eq!(
        cadence.last(at, 3),
        [
            utc("2027-01-10T11:30:00Z"),
            utc("2027-01-10T11:45:00Z"),
            utc("2027-01-10T12:00:00Z")
        ]
    );
    assert_eq!(
        cadence.last(utc("2027-01-10T12:00:00Z"), 1),
        [utc("2027-01-10T12:00:00Z")]
    );
    assert_eq!(
        cadence.following(utc("2027-01-10T12:00:00Z"), 2),
        [utc("2027-01-10T12:15:00Z"), utc("2027-01-10T12:30:00Z")]
    );
}

#[test]
fn sparse_schedules_are_found_far_back() {
    // Every 29 February: the last one before 2027 is in 2024, three years back.
    let leap = Cadence::cron("0 12 29 2 *").unwrap();
    assert_eq!(
        leap.last(utc("2027-01-01T00:00:00Z"), 2),
        [utc("2020-02-29T12:00:00Z"), utc("2024-02-29T12:00:00Z")]
    );
    // Ticks older than the look-back limit are never found.
    let yearly = Cadence::cron("0 0 1 1 *").unwrap();
    assert_eq!(yearly.last(utc("2027-06-01T00:00:00Z"), 100).len(), 10);
}

#[test]
fn a_ticks_id_and_key_name_it() {
    let schedule = Schedule::cron("nightly", "0 3 * * *")
        .unwrap()
        .job(Export, String::new());
    let tick = utc("2027-01-11T03:00:00Z");
    let id = schedule.task_id(tick);
    assert_eq!(id, schedule.task_id(tick), "the same on every call");
    let (secs, nanos) = id
        .as_uuid()
        .get_timestamp()
        .expect("a v7 timestamp")
        .to_unix();
    assert_eq!((secs, nanos), (tick.timestamp().unsigned_abs(), 0));
    assert_eq!(id.as_uuid().get_version_num(), 7);

    let other_tick = schedule.task_id(tick + chrono::Duration::milliseconds(1));
    let other_name = Schedule::cron("nightly2", "0 3 * * *")
        .unwrap()
        .job(Export, String::new());
    let other_owner = Schedule::cron("nightly", "0 3 * * *")
        .unwrap()
        .owner("u1")
        .job(Export, String::new());
    let other_job = Schedule::cron("nightly", "0 3 * * *")
        .unwrap()
        .job(Brief, HashMap::new());
    let ids = [
        id,
        other_tick,
        other_name.task_id(tick),
        other_owner.task_id(tick),
        Schedule::cron("nightly", "0 3 * * *")
            .unwrap()
            .owner("u2")
            .job(Export, String::new())
            .task_id(tick),
        other_job.task_id(tick),
    ];
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(
        schedule.idempotency_key(tick),
        "schedule:nightly:2027-01-11T03:00:00.000Z"
    );
}

#[tokio::test]
async fn retention_outlives_the_policys_look_back() {
    let clock = Arc::new(ManualClock::at(utc("2027-01-10T12:00:00Z")));
    let backend = MemoryBackend::new().with_clock(clock.clone());
    let daily = |name: &str, missed| {
        Schedule::every(name, Duration::from_secs(86_400 * 30))
            .unwrap()
            .missed(missed)
            .job(Brief, HashMap::new())
    };
    let scheduler = Scheduler::builder(backend.clone())
        .with_clock(clock.clone())
        .schedule(daily("once", Missed::RunOnce))
        .schedule(daily("three", Missed::CatchUp(3)))
        .schedule(
            Schedule::every("hourly", Duration::from_secs(3600))
                .unwrap()
                .job(Brief, HashMap::new()),
        )
        .build()
        .unwrap();
    let ticks = scheduler.submit_due().await.unwrap();
    assert_eq!(ticks.len(), 5, "{ticks:?}");
    let period = Duration::from_secs(86_400 * 30);
    for tick in ticks {
        let task = backend.get(tick.id).await.unwrap().expect("submitted");
        let expected = match tick.schedule.as_str() {
            "once" => period + RETENTION_MARGIN,
            "three" => period * 3 + RETENTION_MARGIN,
            _ => Duration::from_secs(86_400), // the job's own day is longer than an hour + margin
        };
        assert_eq!(task.retention, expected, "{}", tick.schedule);
        assert_eq!(task.status, TaskStatus::Queued);
    }
}

#[tokio::test]
async fn job_with_makes_parameters_per_tick() {
    let clock = Arc::new(ManualClock::at(utc("2027-01-10T12:00:00Z")));
    let backend = MemoryBackend::new().with_clock(clock.clone());
    let scheduler = Scheduler::builder(backend.clone())
        .with_clock(clock.clone())
        .schedule(
            Schedule::cron("nightly", "0 3 * * *")
                .unwrap()
                .missed(Missed::CatchUp(2))
                .job_with(Export, |tick| tick.date_naive().to_string()),
        )
        .build()
        .unwrap();
    let ticks = scheduler.submit_due().await.unwrap();
    let mut params = Vec::new();
    for tick in ticks {
        params.push(backend.get(tick.id).await.unwrap().unwrap().params);
    }
    assert_eq!(params, ["\"2027-01-09\"", "\"2027-01-10\""]);
}

/// The running scheduler submits at start, then at each tick, and stops promptly.
#[tokio::test(start_paused = true)]
async fn spawned_scheduler_submits_at_each_tick() {
    let clock = Arc::new(ManualClock::at(utc("2027-01-10T12:00:30Z")));
    let backend = MemoryBackend::new().with_clock(clock.clone());
    let schedule = || {
        Schedule::every("minutely", Duration::from_secs(60))
            .unwrap()
            .job(Export, String::new())
    };
    let handle = Scheduler::builder(backend.clone())
        .with_clock(clock.clone())
        .poll_interval(Duration::from_secs(5))
        .schedule(schedule())
        .build()
        .unwrap()
        .spawn();
    let count = || count(&backend);
    // Paused time: a sleep ends when every other task waits, so the loop has had its turn.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count().await, 1, "the latest tick (12:00) at start");
    for minute in 1..=3 {
        clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_secs(6)).await; // past the poll interval
        assert_eq!(count().await, 1 + minute, "one task per tick");
    }
    let listed = handle.scheduler().schedules().await.unwrap();
    let last = listed[0].last.as_ref().expect("a last run");
    assert_eq!(last.tick, utc("2027-01-10T12:03:00Z"));
    assert_eq!(last.task.id, schedule().task_id(last.tick));
    assert_eq!(listed[0].next_run, Some(utc("2027-01-10T12:04:00Z")));
    handle.shutdown().await.unwrap();
    clock.advance(Duration::from_secs(600));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(count().await, 4, "nothing after shutdown");
}

async fn count(backend: &MemoryBackend) -> usize {
    let query = crate::TaskQuery {
        job: Some(Export::NAME.to_owned()),
        ..crate::TaskQuery::default()
    };
    backend.list(&query).await.unwrap().len()
}

/// A job that says when it ran.
struct Ping(Arc<tokio::sync::Notify>);
impl Job for Ping {
    const NAME: &'static str = "ping";
    type Params = ();
    type Output = ();
    async fn run(&self, (): (), _: TaskContext) -> Result<(), JobError> {
        self.0.notify_one();
        Ok(())
    }
}

/// `WorkerBuilder::schedule` submits the look-back at start, and the worker runs it.
#[tokio::test]
async fn worker_runs_its_schedules() {
    let backend = MemoryBackend::new();
    let ran = Arc::new(tokio::sync::Notify::new());
    let yearly = || {
        Schedule::cron("new-year", "0 0 1 1 *")
            .unwrap()
            .job(Ping(Arc::default()), ())
    };
    let worker = crate::Worker::builder(backend.clone())
        .register(Ping(ran.clone()))
        .schedule(yearly())
        .build()
        .unwrap()
        .spawn();
    tokio::time::timeout(Duration::from_secs(30), ran.notified())
        .await
        .expect("the latest new year's task ran");
    worker.shutdown().await.unwrap();
    let tick = yearly().cadence.last(Utc::now(), 1)[0];
    let task = backend
        .get(yearly().task_id(tick))
        .await
        .unwrap()
        .expect("the tick's task");
    assert_eq!(task.status, TaskStatus::Succeeded);

    let err = crate::Worker::builder(backend)
        .register(Ping(ran))
        .schedule(yearly())
        .schedule(yearly())
        .build()
        .expect_err("two schedules of one name");
    assert!(err.to_string().contains("two schedules are named"), "{err}");
}

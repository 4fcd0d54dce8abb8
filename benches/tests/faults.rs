//! Fault injection at the size CI can afford: 2,000 tasks per backend on three worker processes
//! that are SIGKILLed at random, one frozen past its lease and resumed, the server restarted
//! abruptly (Postgres, Redis). The `faults` program does the work and the checking (see its
//! docs); these tests run it and require a clean report. One more run plants errors and requires
//! the verifier to name each of them, so that a verifier that passes everything cannot pass here.
//!
//! The runs take the machine's two cores each, so they take turns.

use std::{
    io::Read,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `faults run <args>` and returns its exit code and standard output.
fn faults(args: &[&str]) -> (Option<i32>, String) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_faults"))
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the faults program");
    let deadline = started + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the faults program") {
            break status;
        }
        if Instant::now() > deadline {
            // Its watchdog stops the server; its workers stop when their stdin closes.
            let _ = child.kill();
            let _ = child.wait();
            panic!("faults {args:?} did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut out)
        .expect("reading the report");
    println!("{out}(faults {args:?}: {:.1?} in all)", started.elapsed());
    (status.code(), out)
}

fn survives(backend: &str) {
    let (code, report) = faults(&[backend, "--tasks", "2000", "--timeout-s", "240"]);
    assert_eq!(code, Some(0), "faults {backend} failed:\n{report}");
    assert!(report.contains("0 lost, 0 not succeeded, 0 wrong outputs, 0 without their side effect, 0 attempts run twice"), "{report}");
    assert!(report.contains("PASSED"), "{report}");
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_loses_no_task_and_keeps_no_stale_output_under_kills_and_a_freeze() {
    survives("sqlite");
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_loses_no_task_and_keeps_no_stale_output_under_kills_a_freeze_and_a_crash() {
    survives("postgres");
}

#[cfg(feature = "redis")]
#[test]
fn redis_loses_no_task_and_keeps_no_stale_output_under_kills_a_freeze_and_a_crash() {
    survives("redis");
}

#[cfg(feature = "sqlite")]
#[test]
fn the_verifier_names_every_planted_error() {
    let (code, report) = faults(&[
        "sqlite",
        "--tasks",
        "400",
        "--no-faults",
        "--plant",
        "wrong-attempt,lose-task,skip-effect,rerun",
    ]);
    assert_eq!(code, Some(1), "planted errors went unnoticed:\n{report}");
    for failure in [
        "FAILED lost: task",
        "FAILED wrong output: task",
        "FAILED side effect missing: task",
        "FAILED re-runs:",
    ] {
        assert!(report.contains(failure), "no `{failure}` in:\n{report}");
    }
    // 400 tasks: 5 name the wrong attempt (0, 97, ...), 5 have no side effect (1, 90, ...),
    // 57 fail once after their side effect (3, 10, ...), the last one is purged.
    assert!(
        report.contains("1 lost, 0 not succeeded, 5 wrong outputs, 5 without their side effect"),
        "{report}"
    );
    assert!(report.contains("57 re-runs, at most 0 allowed"), "{report}");
}

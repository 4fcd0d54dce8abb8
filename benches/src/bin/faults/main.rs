//! Fault injection: runs thousands of tasks on several worker processes while killing them,
//! freezing one past its lease and restarting the database server abruptly, then checks that no
//! task was lost, every output belongs to the attempt its record names, and the jobs' side effects
//! ran again no more often than the faults allow.
//!
//! ```text
//! cargo run -p longtask-benches --features sqlite,postgres,redis --bin faults -- run sqlite
//! cargo run --release -p longtask-benches --all-features --bin faults -- run postgres --tasks 10000
//! ```
//!
//! One binary, two modes. `run <sqlite|postgres|redis>` is the supervisor: it starts a throwaway
//! server of its own (initdb + postgres, as the `postgres` user when run as root; redis-server
//! with `--appendonly yes --appendfsync always`; a SQLite file), submits the tasks, starts the
//! worker processes (this binary in `worker` mode), and meanwhile
//!
//! - SIGKILLs a random worker at random intervals and starts a new one in its place,
//! - freezes one worker with SIGSTOP for longer than its lease, then resumes it with SIGCONT,
//! - restarts the server abruptly once (Postgres `pg_ctl stop -m immediate`, redis-server
//!   SIGKILL; both restarted on the same data directory; SQLite has no server),
//!
//! until every task is final. Each job appends `task attempt worker` to its process's own file
//! (O_APPEND, fsync) before it returns an output naming the same attempt and worker: the side
//! effect outside the queue. The verifier then checks every task (see `verify.rs`) and the
//! program exits with status 1 when a check fails, keeping its folder for a post-mortem (unless
//! errors were planted).
//!
//! Settings (each `--name value`): `--tasks` (2000), `--workers` (3), `--concurrency` (4),
//! `--prefetch` (4), `--lease-ms` (2000), `--job-ms` (100: each run sleeps 0.5–1.5× that),
//! `--long-every` / `--long-ms` (one task in 100 runs 1.5 leases instead, kept by heartbeats; 0:
//! none),
//! `--kill-min-ms` / `--kill-max-ms` (500 / 2500), `--freeze-ms` (2.5 leases), `--outage-ms`
//! (1000), `--timeout-s` (300), `--seed` (random), `--no-faults` (kill, freeze and restart
//! nothing), `--keep` (keep the folder), and `--plant wrong-attempt,lose-task,skip-effect,rerun`
//! to plant errors the verifier must catch (outputs naming the next attempt, a task purged
//! before the check, runs without their side effect, first attempts that fail after their side
//! effect).

mod server;
mod supervisor;
mod verify;
mod worker;

use std::{process::ExitCode, str::FromStr, time::Duration};

/// Which backend a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
    Redis,
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" => Ok(Self::Postgres),
            "redis" => Ok(Self::Redis),
            other => Err(format!(
                "`{other}` is not a backend: use sqlite, postgres or redis"
            )),
        }
    }
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        }
    }
}

/// Errors planted on purpose, to show that the verifier catches them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Plants {
    /// Some outputs name the attempt after the one that ran.
    wrong_attempt: bool,
    /// One task is submitted with no retention, so a worker's sweeper purges it once finished.
    lose_task: bool,
    /// Some runs record no side effect.
    skip_effect: bool,
    /// Some first attempts fail after their side effect: re-runs that no fault explains.
    rerun: bool,
}

impl FromStr for Plants {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut plants = Self::default();
        for name in s.split(',').filter(|n| !n.is_empty()) {
            match name {
                "wrong-attempt" => plants.wrong_attempt = true,
                "lose-task" => plants.lose_task = true,
                "skip-effect" => plants.skip_effect = true,
                "rerun" => plants.rerun = true,
                other => {
                    return Err(format!(
                    "`{other}` is not a plant: use wrong-attempt, lose-task, skip-effect or rerun"
                ))
                }
            }
        }
        Ok(plants)
    }
}

impl Plants {
    fn to_arg(self) -> String {
        let mut names = Vec::new();
        if self.wrong_attempt {
            names.push("wrong-attempt");
        }
        if self.lose_task {
            names.push("lose-task");
        }
        if self.skip_effect {
            names.push("skip-effect");
        }
        if self.rerun {
            names.push("rerun");
        }
        names.join(",")
    }
}

/// `--name value` options after the mode (and, for `run`, the backend).
struct Args {
    pairs: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!(
                    "unexpected argument `{arg}` (options are `--name value`)"
                ));
            };
            let value = match args.peek() {
                Some(next) if !next.starts_with("--") => args.next(),
                _ => None,
            };
            pairs.push((name.to_owned(), value));
        }
        Ok(Self { pairs })
    }

    fn flag(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.pairs.iter().rev().find(|(n, _)| n == name) {
            None => Ok(default),
            Some((_, None)) => Err(format!("--{name} needs a value")),
            Some((_, Some(value))) => value.parse().map_err(|e| format!("--{name} {value}: {e}")),
        }
    }

    fn required(&self, name: &str) -> Result<String, String> {
        self.get(name, String::new()).and_then(|v| {
            if v.is_empty() {
                Err(format!("--{name} is required"))
            } else {
                Ok(v)
            }
        })
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn run() -> Result<bool, String> {
    let mut argv = std::env::args().skip(1);
    let usage = "usage: faults run <sqlite|postgres|redis> [--tasks N] [--workers K] ... \
                 (see the program's documentation)";
    match argv.next().as_deref() {
        Some("run") => {
            let kind: Kind = argv.next().ok_or(usage)?.parse()?;
            let args = Args::parse(argv)?;
            let lease_ms = args.get("lease-ms", 2000)?;
            let settings = supervisor::Settings {
                kind,
                tasks: args.get("tasks", 2000)?,
                workers: args.get::<usize>("workers", 3)?.max(1),
                concurrency: args.get::<usize>("concurrency", 4)?.max(1),
                prefetch: args.get("prefetch", 4)?,
                lease: ms(lease_ms),
                job_ms: args.get("job-ms", 100)?,
                long_every: args.get("long-every", 100)?,
                long_ms: args.get("long-ms", lease_ms * 3 / 2)?,
                kill_every: (
                    ms(args.get("kill-min-ms", 500)?),
                    ms(args.get("kill-max-ms", 2500)?),
                ),
                freeze_for: ms(args.get("freeze-ms", lease_ms * 5 / 2)?),
                outage: ms(args.get("outage-ms", 1000)?),
                timeout: Duration::from_secs(args.get("timeout-s", 300)?),
                seed: args.get("seed", rand::random::<u64>())?,
                faults: !args.flag("no-faults"),
                keep: args.flag("keep"),
                plants: args.get("plant", Plants::default())?,
            };
            supervisor::run(&settings)
        }
        Some("worker") => {
            let args = Args::parse(argv)?;
            let lease_ms = args.get("lease-ms", 2000)?;
            let settings = worker::Settings {
                url: args.required("url")?,
                id: args.required("id")?,
                effects: args.required("effects")?.into(),
                concurrency: args.get("concurrency", 4)?,
                prefetch: args.get("prefetch", 4)?,
                lease: ms(lease_ms),
                job_ms: args.get("job-ms", 100)?,
                long_every: args.get("long-every", 100)?,
                long_ms: args.get("long-ms", lease_ms * 3 / 2)?,
                plants: args.get("plant", Plants::default())?,
            };
            worker::run(&settings).map(|()| true)
        }
        _ => Err(usage.to_owned()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("faults: {message}");
            ExitCode::from(2)
        }
    }
}

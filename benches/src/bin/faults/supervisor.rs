//! Supervisor mode: the server, the tasks, the worker processes and the faults.
//!
//! After submitting every task it starts the workers and, until every task is final, injects
//! faults: a SIGKILL of a random worker at random intervals (a new worker takes the slot at
//! once), one SIGSTOP of a worker for longer than its lease followed by SIGCONT (once 15 % of the
//! tasks have run), and one abrupt restart of the server (once 45 % have run). Right after each
//! fault it reads which tasks were in flight (running under a lease) — a killed or frozen process
//! changes nothing any more, so the count is exact — since only those can run twice because of it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use longtask_core::{Backend, Client, SubmitOptions, TaskQuery, TaskStatus};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{
    server::{self, Server},
    verify::{self, Report},
    worker::{is_long, planted, EffectJob},
    Kind, Plants,
};

/// Settings of a run (see the program's documentation for the defaults).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) kind: Kind,
    pub(crate) tasks: u64,
    pub(crate) workers: usize,
    pub(crate) concurrency: usize,
    pub(crate) prefetch: usize,
    pub(crate) lease: Duration,
    pub(crate) job_ms: u64,
    pub(crate) long_every: u64,
    pub(crate) long_ms: u64,
    pub(crate) kill_every: (Duration, Duration),
    pub(crate) freeze_for: Duration,
    pub(crate) outage: Duration,
    pub(crate) timeout: Duration,
    pub(crate) seed: u64,
    pub(crate) faults: bool,
    pub(crate) keep: bool,
    pub(crate) plants: Plants,
}

/// One fault injected, and what was in flight when it struck.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) what: FaultKind,
    /// The worker killed or frozen.
    pub(crate) worker: Option<String>,
    /// Tasks leased by the killed or frozen worker (for a restart: by every worker).
    pub(crate) own: usize,
    /// Tasks leased by every worker.
    pub(crate) all: usize,
}

/// The kinds of fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Kill,
    Freeze,
    Restart { outage: Duration },
}

/// One worker process.
struct Proc {
    id: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

struct Workers<'a> {
    settings: &'a Settings,
    url: String,
    effects: PathBuf,
    procs: Vec<Proc>,
    generation: u32,
}

impl Workers<'_> {
    fn spawn(&mut self, slot: usize) -> Result<Proc, String> {
        self.generation += 1;
        let id = format!("w{slot}-g{}", self.generation);
        let s = self.settings;
        let dir = self.effects.parent().unwrap_or(&self.effects).to_owned();
        let out = fs::File::create(dir.join(format!("{id}.out")))
            .map_err(|e| format!("creating {id}.out: {e}"))?;
        let mut child = Command::new(
            std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?,
        )
        .arg("worker")
        .args(["--url", &self.url, "--id", &id])
        .arg("--effects")
        .arg(self.effects.join(format!("{id}.log")))
        .args(["--concurrency", &s.concurrency.to_string()])
        .args(["--prefetch", &s.prefetch.to_string()])
        .args(["--lease-ms", &s.lease.as_millis().to_string()])
        .args(["--job-ms", &s.job_ms.to_string()])
        .args(["--long-every", &s.long_every.to_string()])
        .args(["--long-ms", &s.long_ms.to_string()])
        .args(["--plant", &s.plants.to_arg()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .map_err(|e| format!("starting worker {id}: {e}"))?;
        let stdin = child.stdin.take();
        Ok(Proc { id, child, stdin })
    }

    /// Closes every worker's standard input (a graceful shutdown) and waits a while; kills those
    /// still there.
    fn stop_all(&mut self) {
        for proc in &mut self.procs {
            proc.stdin = None;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for proc in &mut self.procs {
            while matches!(proc.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}

fn signal(child: &Child, signal: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .map_err(|e| format!("running kill -{signal}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{signal} {} failed", child.id()))
    }
}

/// Connects to the run's backend, trying for a while (a server just started or restarted).
async fn connect(url: &str) -> Result<Backend, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match longtask_examples::backend_from_url(url).await {
            Ok(backend) => return Ok(backend),
            Err(err) if Instant::now() > deadline => {
                return Err(format!("connecting to {url}: {err}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The leases held now: the lease owner and the parameters (the index) of each running task.
/// Retries through a short outage.
async fn leased(backend: &Backend) -> Vec<(Option<String>, u64)> {
    let query = TaskQuery {
        statuses: vec![TaskStatus::Running],
        limit: 10_000,
        ..TaskQuery::default()
    };
    for _ in 0..150 {
        match backend.store().list(&query).await {
            Ok(tasks) => {
                return tasks
                    .into_iter()
                    .map(|t| (t.lease_owner, t.params.parse().unwrap_or(u64::MAX)))
                    .collect()
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Vec::new()
}

/// How many of `leases` `owner` holds.
fn held_by(leases: &[(Option<String>, u64)], owner: &str) -> usize {
    leases
        .iter()
        .filter(|(o, _)| o.as_deref() == Some(owner))
        .count()
}

/// Whether every task is final (`false` while the backend cannot answer).
async fn all_final(backend: &Backend) -> bool {
    let query = TaskQuery {
        statuses: TaskStatus::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .collect(),
        limit: 1,
        ..TaskQuery::default()
    };
    matches!(backend.store().list(&query).await, Ok(tasks) if tasks.is_empty())
}

/// Side effects recorded so far (lines in the workers' files): the run's progress.
fn effects_so_far(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| fs::read(entry.path()).ok())
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count() as u64)
        .sum()
}

/// Runs the scenario; `Ok(true)` when every check passed.
pub(crate) fn run(settings: &Settings) -> Result<bool, String> {
    let dir = server::run_dir()?;
    let mut server = Server::start(settings.kind, &dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting tokio: {e}"))?;
    let result = runtime.block_on(scenario(settings, &dir, &mut server));
    server.stop();
    let passed = match result {
        Ok(report) => {
            println!("{report}");
            report.passed()
        }
        Err(message) => {
            eprintln!("faults: {message}");
            false
        }
    };
    // A failed run keeps its files for a post-mortem, unless it was meant to fail.
    let planted = settings.plants != Plants::default();
    if !settings.keep && (passed || planted) {
        let _ = fs::remove_dir_all(&dir);
    } else {
        let _ = fs::write(dir.join("keep"), b"");
        println!(
            "the run's files (server logs, workers' side effects and stderr) are kept in {}",
            dir.display()
        );
    }
    Ok(passed)
}

#[allow(clippy::too_many_lines)] // one linear scenario reads best in one place
async fn scenario(settings: &Settings, dir: &Path, server: &mut Server) -> Result<Report, String> {
    let s = settings;
    let mut rng = StdRng::seed_from_u64(s.seed);
    let url = server.url();
    let backend = connect(&url).await?;
    let client = Client::new(backend.clone());
    println!(
        "faults {}: {} tasks, {} workers × concurrency {} + prefetch {}, lease {:?}, jobs {} ms ± 50 %, \
         seed {}",
        s.kind.name(),
        s.tasks,
        s.workers,
        s.concurrency,
        s.prefetch,
        s.lease,
        s.job_ms,
        s.seed
    );

    let mut ids = Vec::new();
    let planted_loss = s.plants.lose_task && s.tasks > 0;
    let plain = if planted_loss { s.tasks - 1 } else { s.tasks };
    let mut next = 0;
    while next < plain {
        let end = (next + 500).min(plain);
        let batch = client
            .submit_many::<EffectJob>(next..end)
            .await
            .map_err(|e| format!("submitting tasks: {e}"))?;
        ids.extend(batch);
        next = end;
    }
    if planted_loss {
        // Finished, it is past its retention at once: the purge after the run deletes it.
        let options = SubmitOptions::new().retention(Duration::ZERO);
        let inserted = client
            .submit_with::<EffectJob>(plain, options)
            .await
            .map_err(|e| format!("submitting the planted task: {e}"))?;
        ids.push(inserted.id);
    }
    debug_assert!(!s.plants.wrong_attempt || planted(0, 97, 0));

    let effects = dir.join("effects");
    fs::create_dir(&effects).map_err(|e| format!("creating {}: {e}", effects.display()))?;
    let mut workers = Workers {
        settings: s,
        url: url.clone(),
        effects: effects.clone(),
        procs: Vec::new(),
        generation: 0,
    };
    for slot in 0..s.workers {
        let proc = workers.spawn(slot)?;
        workers.procs.push(proc);
    }

    let started = Instant::now();
    let deadline = started + s.timeout;
    let mut faults: Vec<Fault> = Vec::new();
    let kill_gap = |rng: &mut StdRng| {
        let (min, max) = s.kill_every;
        Duration::from_millis(
            rng.gen_range(min.as_millis()..=max.as_millis().max(min.as_millis())) as u64,
        )
    };
    let mut next_kill = Instant::now() + kill_gap(&mut rng);
    let mut frozen: Option<(usize, Instant)> = None;
    let mut froze = false;
    let mut restarted = false;
    let mut next_check = Instant::now();
    let mut timed_out = false;
    #[allow(clippy::cast_precision_loss)]
    let progress = |effects: &Path| effects_so_far(effects) as f64 / s.tasks.max(1) as f64;

    loop {
        if let Some((slot, until)) = frozen {
            if Instant::now() >= until {
                signal(&workers.procs[slot].child, "CONT")?;
                frozen = None;
            }
        }
        if Instant::now() >= next_check {
            if all_final(&backend).await {
                break;
            }
            next_check = Instant::now() + Duration::from_millis(500);
        }
        if Instant::now() > deadline {
            timed_out = true;
            break;
        }
        if s.faults {
            let done = progress(&effects);
            // Freeze a worker that runs a long task if there is one (from 15 %; any worker from
            // 30 %): that task is run again by another worker while the frozen one sleeps, and
            // the frozen one finishes it after SIGCONT, under a lease it has lost.
            let freeze = if !froze && done >= 0.15 {
                let leases = leased(&backend).await;
                let long = workers.procs.iter().position(|p| {
                    leases.iter().any(|(owner, index)| {
                        owner.as_deref() == Some(&p.id) && is_long(*index, s.long_every)
                    })
                });
                long.or_else(|| (done >= 0.3).then(|| rng.gen_range(0..workers.procs.len())))
            } else {
                None
            };
            if let Some(slot) = freeze {
                signal(&workers.procs[slot].child, "STOP")?;
                let leases = leased(&backend).await;
                faults.push(Fault {
                    what: FaultKind::Freeze,
                    worker: Some(workers.procs[slot].id.clone()),
                    own: held_by(&leases, &workers.procs[slot].id),
                    all: leases.len(),
                });
                frozen = Some((slot, Instant::now() + s.freeze_for));
                froze = true;
            } else if !restarted
                && frozen.is_none()
                && server.crash_name().is_some()
                && done >= 0.45
            {
                let leases = leased(&backend).await;
                let down = Instant::now();
                server.crash()?;
                tokio::time::sleep(s.outage).await;
                server.restart()?;
                faults.push(Fault {
                    what: FaultKind::Restart {
                        outage: down.elapsed(),
                    },
                    worker: None,
                    own: leases.len(),
                    all: leases.len(),
                });
                restarted = true;
            } else if Instant::now() >= next_kill {
                let live: Vec<usize> = (0..workers.procs.len())
                    .filter(|&slot| frozen.is_none_or(|(f, _)| f != slot))
                    .collect();
                let slot = live[rng.gen_range(0..live.len())];
                let proc = &mut workers.procs[slot];
                proc.child
                    .kill()
                    .map_err(|e| format!("killing {}: {e}", proc.id))?;
                let _ = proc.child.wait();
                let leases = leased(&backend).await;
                faults.push(Fault {
                    what: FaultKind::Kill,
                    worker: Some(workers.procs[slot].id.clone()),
                    own: held_by(&leases, &workers.procs[slot].id),
                    all: leases.len(),
                });
                workers.procs[slot] = workers.spawn(slot)?;
                next_kill = Instant::now() + kill_gap(&mut rng);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    if planted_loss {
        // The planted task has no retention: purging now deletes it (and no other task).
        backend
            .store()
            .purge(100)
            .await
            .map_err(|e| format!("purging the planted task: {e}"))?;
    }
    if let Some((slot, _)) = frozen {
        signal(&workers.procs[slot].child, "CONT")?;
    }
    tokio::task::block_in_place(|| workers.stop_all());

    let mut missing_faults = Vec::new();
    if s.faults {
        if !faults.iter().any(|f| f.what == FaultKind::Kill) {
            missing_faults.push("a kill");
        }
        if !froze {
            missing_faults.push("the freeze");
        }
        if server.crash_name().is_some() && !restarted {
            missing_faults.push("the server restart");
        }
    }
    verify::verify(verify::Run {
        settings: s,
        backend: &backend,
        ids: &ids,
        effects: &effects,
        faults,
        crash: server.crash_name(),
        elapsed,
        timed_out,
        missing_faults,
    })
    .await
}

//! The verifier: reads every task back and every side effect the workers recorded, and checks
//!
//! - **none lost**: every submitted task is still there, and every one succeeded;
//! - **right outputs**: each stored output names its own task and the attempt its record says
//!   (`record.attempt`): an outcome from an older attempt, written under a stale lease, fails it;
//! - **side effects**: that attempt's side effect is in the workers' files (same task, attempt
//!   and worker), no attempt ran twice, and no side effect belongs to a task never submitted;
//! - **bounded re-runs**: runs beyond one per task are at most the tasks in flight at the faults
//!   (for a kill, the killed worker's leased tasks; for a freeze, the frozen worker's, or on
//!   SQLite every worker's, since a process frozen inside a write transaction holds the one write
//!   lock and stalls every other worker's heartbeats with it; for a server restart, every
//!   worker's).

use std::{
    collections::{HashMap, HashSet},
    fmt, fs,
    path::Path,
    time::Duration,
};

use longtask_core::{Backend, TaskId, TaskQuery, TaskRecord, TaskStatus};

use crate::{
    supervisor::{Fault, FaultKind, Settings},
    worker::{RunOutput, JOB},
    Kind,
};

/// What the supervisor hands over for checking.
pub(crate) struct Run<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) backend: &'a Backend,
    pub(crate) ids: &'a [TaskId],
    pub(crate) effects: &'a Path,
    pub(crate) faults: Vec<Fault>,
    pub(crate) crash: Option<&'static str>,
    pub(crate) elapsed: Duration,
    pub(crate) timed_out: bool,
    pub(crate) missing_faults: Vec<&'static str>,
}

/// The figures and the verdict of a run.
#[derive(Debug)]
pub(crate) struct Report {
    kind: Kind,
    tasks: usize,
    elapsed: Duration,
    timed_out: bool,
    kills: usize,
    kills_in_flight: usize,
    /// Per freeze: how long, tasks in flight, and the frozen worker's runs that a later attempt
    /// superseded (their outcomes, written under a lost lease, must have been refused).
    freezes: Vec<(Duration, usize, usize)>,
    restarts: Vec<(Duration, usize)>,
    crash: Option<&'static str>,
    runs: usize,
    reruns: usize,
    bound: usize,
    lost: Vec<String>,
    unfinished: Vec<String>,
    wrong: Vec<String>,
    missing_effect: Vec<String>,
    twice: Vec<String>,
    strangers: usize,
    torn: usize,
    missing_faults: Vec<&'static str>,
}

impl Report {
    /// Whether every check passed.
    pub(crate) fn passed(&self) -> bool {
        !self.timed_out
            && self.lost.is_empty()
            && self.unfinished.is_empty()
            && self.wrong.is_empty()
            && self.missing_effect.is_empty()
            && self.twice.is_empty()
            && self.strangers == 0
            && self.reruns <= self.bound
            && self.missing_faults.is_empty()
    }
}

fn examples(list: &[String]) -> String {
    let shown: Vec<&str> = list.iter().take(5).map(String::as_str).collect();
    let more = list.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} (and {more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: &Duration| format!("{:.1} s", d.as_secs_f64());
        writeln!(
            f,
            "faults {}: {} tasks final in {}{}",
            self.kind.name(),
            self.tasks,
            secs(&self.elapsed),
            if self.timed_out { " (TIMED OUT)" } else { "" }
        )?;
        writeln!(
            f,
            "  faults: {} SIGKILLs ({} tasks in flight); {} freezes{}; {}",
            self.kills,
            self.kills_in_flight,
            self.freezes.len(),
            self.freezes
                .iter()
                .map(|(d, n, stale)| format!(
                    " of {} ({n} in flight; {stale} of its runs superseded by a later attempt)",
                    secs(d)
                ))
                .collect::<String>(),
            match self.crash {
                None => "no server to restart".to_owned(),
                Some(how) => format!(
                    "{} server restarts by {how}{}",
                    self.restarts.len(),
                    self.restarts
                        .iter()
                        .map(|(d, n)| format!(" (down {}, {n} in flight)", secs(d)))
                        .collect::<String>()
                ),
            }
        )?;
        writeln!(
            f,
            "  runs: {} side effects for {} tasks: {} re-runs, at most {} allowed (tasks in flight at the faults)",
            self.runs, self.tasks, self.reruns, self.bound
        )?;
        writeln!(
            f,
            "  checks: {} lost, {} not succeeded, {} wrong outputs, {} without their side effect, \
             {} attempts run twice, {} side effects of unknown tasks, {} torn lines",
            self.lost.len(),
            self.unfinished.len(),
            self.wrong.len(),
            self.missing_effect.len(),
            self.twice.len(),
            self.strangers,
            self.torn
        )?;
        for (what, list) in [
            ("lost", &self.lost),
            ("not succeeded", &self.unfinished),
            ("wrong output", &self.wrong),
            ("side effect missing", &self.missing_effect),
            ("attempt run twice", &self.twice),
        ] {
            if !list.is_empty() {
                writeln!(f, "  FAILED {what}: {}", examples(list))?;
            }
        }
        if self.reruns > self.bound {
            writeln!(
                f,
                "  FAILED re-runs: {} runs beyond one per task, more than the {} tasks in flight at the faults",
                self.reruns, self.bound
            )?;
        }
        if self.strangers > 0 {
            writeln!(
                f,
                "  FAILED {} side effects of tasks never submitted",
                self.strangers
            )?;
        }
        if !self.missing_faults.is_empty() {
            writeln!(
                f,
                "  FAILED the tasks were done before {}: use more tasks (--tasks) or longer jobs (--job-ms)",
                self.missing_faults.join(" and ")
            )?;
        }
        write!(f, "{}", if self.passed() { "PASSED" } else { "FAILED" })
    }
}

/// Every task of the run's job, read page by page (retrying through a short outage).
async fn all_tasks(backend: &Backend) -> Result<Vec<TaskRecord>, String> {
    let mut tasks = Vec::new();
    let mut after = None;
    loop {
        let query = TaskQuery {
            job: Some(JOB.to_owned()),
            after,
            limit: 10_000,
            ..TaskQuery::default()
        };
        let mut attempt = 0;
        let page = loop {
            match backend.store().list(&query).await {
                Ok(page) => break page,
                Err(err) if attempt >= 50 => return Err(format!("listing the tasks: {err}")),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let Some(last) = page.last() else {
            return Ok(tasks);
        };
        after = Some(last.id);
        tasks.extend(page);
    }
}

/// One recorded side effect: task, attempt, worker.
type Effect = (TaskId, u32, String);

/// Every side effect in the workers' files; the count of lines that do not parse (a torn write
/// would show here).
fn read_effects(dir: &Path) -> Result<(Vec<Effect>, usize), String> {
    let mut effects = Vec::new();
    let mut torn = 0;
    for entry in fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let path = entry
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .path();
        let text =
            fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        for line in text.split_inclusive('\n') {
            let mut fields = line.trim_end_matches('\n').split(' ');
            let parsed = match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some(task), Some(attempt), Some(worker), None) if line.ends_with('\n') => task
                    .parse::<TaskId>()
                    .ok()
                    .zip(attempt.parse::<u32>().ok())
                    .map(|(task, attempt)| (task, attempt, worker.to_owned())),
                _ => None,
            };
            match parsed {
                Some(effect) => effects.push(effect),
                None => torn += 1,
            }
        }
    }
    Ok((effects, torn))
}

/// Checks the run (see the module docs).
pub(crate) async fn verify(run: Run<'_>) -> Result<Report, String> {
    let records = all_tasks(run.backend).await?;
    let (effects, torn) = read_effects(run.effects)?;
    let records: HashMap<TaskId, TaskRecord> = records.into_iter().map(|r| (r.id, r)).collect();
    let submitted: HashSet<TaskId> = run.ids.iter().copied().collect();

    let mut seen: HashMap<(TaskId, u32), Vec<&str>> = HashMap::new();
    let mut strangers = 0;
    for (task, attempt, worker) in &effects {
        if submitted.contains(task) {
            seen.entry((*task, *attempt)).or_default().push(worker);
        } else {
            strangers += 1;
        }
    }
    let twice: Vec<String> = seen
        .iter()
        .filter(|(_, workers)| workers.len() > 1)
        .map(|((task, attempt), workers)| {
            format!(
                "task {task} attempt {attempt} ran on {}",
                workers.join(", ")
            )
        })
        .collect();

    let (mut lost, mut unfinished, mut wrong, mut missing_effect) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in run.ids {
        let Some(record) = records.get(id) else {
            lost.push(format!("task {id} is gone"));
            continue;
        };
        if record.status != TaskStatus::Succeeded {
            unfinished.push(format!(
                "task {id} is {} after attempt {} ({})",
                record.status,
                record.attempt,
                record
                    .last_error
                    .as_ref()
                    .map_or("no error", |e| e.message.as_str())
            ));
            continue;
        }
        let output = record
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str::<RunOutput>(o).ok());
        let Some(output) = output else {
            wrong.push(format!(
                "task {id} has no readable output: {:?}",
                record.output
            ));
            continue;
        };
        if output.task != *id || output.attempt != record.attempt {
            wrong.push(format!(
                "task {id} (attempt {}) holds the output of task {} attempt {} on {}",
                record.attempt, output.task, output.attempt, output.worker
            ));
            continue;
        }
        let recorded = seen
            .get(&(*id, output.attempt))
            .is_some_and(|workers| workers.contains(&output.worker.as_str()));
        if !recorded {
            missing_effect.push(format!(
                "task {id} attempt {} on {}: no side effect recorded",
                output.attempt, output.worker
            ));
        }
    }

    let runs = effects.len() - strangers;
    let distinct = seen
        .keys()
        .map(|(task, _)| task)
        .collect::<HashSet<_>>()
        .len();
    let sqlite = run.settings.kind == Kind::Sqlite;
    let mut bound = 0;
    let (mut kills, mut kills_in_flight, mut freezes, mut restarts) =
        (0, 0, Vec::new(), Vec::new());
    for fault in &run.faults {
        match fault.what {
            FaultKind::Kill => {
                kills += 1;
                kills_in_flight += fault.own;
                bound += fault.own;
            }
            FaultKind::Freeze => {
                let in_flight = if sqlite { fault.all } else { fault.own };
                let stale = effects
                    .iter()
                    .filter(|(task, attempt, worker)| {
                        Some(worker) == fault.worker.as_ref()
                            && records.get(task).is_some_and(|r| *attempt < r.attempt)
                    })
                    .count();
                freezes.push((run.settings.freeze_for, in_flight, stale));
                bound += in_flight;
            }
            FaultKind::Restart { outage } => {
                restarts.push((outage, fault.all));
                bound += fault.all;
            }
        }
    }
    Ok(Report {
        kind: run.settings.kind,
        tasks: run.ids.len(),
        elapsed: run.elapsed,
        timed_out: run.timed_out,
        kills,
        kills_in_flight,
        freezes,
        restarts,
        crash: run.crash,
        runs,
        reruns: runs - distinct,
        bound,
        lost,
        unfinished,
        wrong,
        missing_effect,
        twice,
        strangers,
        torn,
        missing_faults: run.missing_faults,
    })
}

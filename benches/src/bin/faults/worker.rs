//! Worker mode: one worker process, started (and killed, frozen, resumed) by the supervisor.
//!
//! Each run of the job sleeps a while (work in flight when a fault strikes; one task in a hundred
//! outlives its lease, kept by heartbeats), appends
//! `task attempt worker` to this process's own file with O_APPEND and fsync (the side effect
//! outside the queue), then returns an output naming the same task, attempt and worker. The
//! process shuts down gracefully when its standard input closes: when the supervisor ends the
//! run, or dies.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use longtask_core::{Backoff, Job, JobError, JobOptions, TaskContext, TaskId, Worker};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::Plants;

/// The job's name, as stored with every task.
pub(crate) const JOB: &str = "faults-effect";

/// Settings of one worker process (from the supervisor's arguments).
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) id: String,
    pub(crate) effects: PathBuf,
    pub(crate) concurrency: usize,
    pub(crate) prefetch: usize,
    pub(crate) lease: Duration,
    pub(crate) job_ms: u64,
    pub(crate) long_every: u64,
    pub(crate) long_ms: u64,
    pub(crate) plants: Plants,
}

/// What a run returns: the attempt that produced it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunOutput {
    pub(crate) task: TaskId,
    pub(crate) attempt: u32,
    pub(crate) worker: String,
}

/// Whether a planted error applies to the task with this index (a few tasks in every hundred).
pub(crate) fn planted(index: u64, every: u64, offset: u64) -> bool {
    index % every == offset
}

/// Whether the task with this index is one of the long ones (it outlives its lease unless
/// heartbeats keep it).
pub(crate) fn is_long(index: u64, every: u64) -> bool {
    every > 0 && index % every == every / 2
}

/// The job: sleeps, records its side effect, returns its attempt.
#[derive(Debug)]
pub(crate) struct EffectJob {
    effects: Arc<Mutex<File>>,
    worker: String,
    job_ms: u64,
    long_every: u64,
    long_ms: u64,
    plants: Plants,
}

impl Job for EffectJob {
    const NAME: &'static str = JOB;
    type Params = u64;
    type Output = RunOutput;

    async fn run(&self, index: u64, cx: TaskContext) -> Result<RunOutput, JobError> {
        let sleep = if is_long(index, self.long_every) {
            self.long_ms
        } else {
            rand::thread_rng().gen_range(self.job_ms / 2..=self.job_ms * 3 / 2)
        };
        tokio::time::sleep(Duration::from_millis(sleep)).await;
        let attempt = cx.attempt();
        if !(self.plants.skip_effect && planted(index, 89, 1)) {
            let line = format!("{} {attempt} {}\n", cx.task_id(), self.worker);
            let effects = self.effects.clone();
            // One write(2) per line on an O_APPEND file, then fsync: a line is in the file
            // whole, or not at all, before the output is returned.
            tokio::task::spawn_blocking(move || {
                let mut file = effects
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                file.write_all(line.as_bytes())?;
                file.sync_data()
            })
            .await
            .map_err(|e| JobError::retryable(format!("recording the side effect: {e}")))?
            .map_err(|e| JobError::retryable(format!("recording the side effect: {e}")))?;
        }
        if self.plants.rerun && planted(index, 7, 3) && attempt == 1 {
            return Err(JobError::retryable(
                "planted: failing after the side effect",
            ));
        }
        let named = if self.plants.wrong_attempt && planted(index, 97, 0) {
            attempt + 1
        } else {
            attempt
        };
        Ok(RunOutput {
            task: cx.task_id(),
            attempt: named,
            worker: self.worker.clone(),
        })
    }

    fn options() -> JobOptions {
        // Attempts are never used up by the faults; a recovered task runs again at once.
        JobOptions::default()
            .max_attempts(1000)
            .backoff(Backoff::constant(Duration::from_millis(100)))
    }
}

/// Runs one worker until standard input closes.
pub(crate) fn run(settings: &Settings) -> Result<(), String> {
    let effects = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&settings.effects)
        .map_err(|e| format!("opening {}: {e}", settings.effects.display()))?;
    let job = EffectJob {
        effects: Arc::new(Mutex::new(effects)),
        worker: settings.id.clone(),
        job_ms: settings.job_ms.max(2),
        long_every: settings.long_every,
        long_ms: settings.long_ms,
        plants: settings.plants,
    };

    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = closed_tx.send(());
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting tokio: {e}"))?;
    runtime.block_on(async move {
        let mut closed = closed_rx;
        // The server may be down (the supervisor restarts it): keep trying.
        let backend = loop {
            tokio::select! {
                connected = longtask_examples::backend_from_url(&settings.url) => match connected {
                    Ok(backend) => break backend,
                    Err(err) => eprintln!("{}: connecting: {err}; trying again", settings.id),
                },
                _ = &mut closed => return Ok(()),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let worker = Worker::builder(backend)
            .register(job)
            .id(settings.id.clone())
            .concurrency(settings.concurrency)
            .prefetch(settings.prefetch)
            .lease(settings.lease)
            .poll_interval(Duration::from_millis(250))
            .sweep_interval(settings.lease / 2)
            .shutdown_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("building the worker: {e}"))?;
        worker
            .run(async move {
                let _ = closed.await;
            })
            .await
            .map_err(|e| format!("worker {}: {e}", settings.id))
    })
}

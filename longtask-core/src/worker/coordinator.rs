//! The coordinator: claims, heartbeats, progress, outcomes, sweeping and shutdown.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    future::Future,
    pin::pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures::FutureExt;
use tokio::{
    sync::Notify,
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};

use crate::{
    backend::Backend,
    error::Result,
    metrics::{Ended, Instruments},
    queue::{
        Ack, ClaimRequest, ClaimedTask, Completion, JobLimits, Lease, LeaseState, Outcome,
        WorkerInfo,
    },
};

use super::{
    slot::{lock, run_slot, Buffered, Kill, Shared, Slot},
    Config, Worker,
};

/// Writes of a kind (outcomes, or give-backs) that failed: when to try again, and how long to
/// wait after the next failure.
#[derive(Debug)]
struct Retry {
    at: Instant,
    backoff: Duration,
}

impl Retry {
    const FIRST: Duration = Duration::from_millis(50);
    const MOST: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self {
            at: Instant::now(),
            backoff: Self::FIRST,
        }
    }

    fn due(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// Schedules the next try after a failure: exponential backoff with jitter, at most `most`.
    fn failed(&mut self, now: Instant, most: Duration) -> Duration {
        let most = most.min(Self::MOST).max(Self::FIRST);
        let wait = self
            .backoff
            .min(most)
            .mul_f64(0.5 + rand::random::<f64>() / 2.0);
        self.backoff = (self.backoff * 2).min(most);
        self.at = now + wait;
        wait
    }

    fn succeeded(&mut self) {
        self.backoff = Self::FIRST;
    }
}

/// A lease-fenced write (an outcome, or a give-back) on its way, tried again after a failure
/// while its lease is known to be held.
struct Unwritten<T> {
    item: T,
    lease: Lease,
    /// Until when the lease is known to be held; heartbeats move it on.
    valid_until: Instant,
    /// When the write first failed.
    failed_since: Option<Instant>,
}

/// The completions of a batch of outcomes, for the backend (the batch keeps its own copy for a
/// retry).
fn completions(batch: &[Unwritten<Completion>]) -> Vec<Completion> {
    batch.iter().map(|u| u.item.clone()).collect()
}

/// Keeps the writes of a failed `batch` in `pending` for another try, except those to give up:
/// their lease may have expired (it was not confirmed in time), or they have kept failing for a
/// whole lease while heartbeats got through (a write that fails for good must not hold its task
/// forever). Returns those given up.
fn keep_for_retry<T>(
    pending: &mut Vec<Unwritten<T>>,
    batch: Vec<Unwritten<T>>,
    now: Instant,
    lease: Duration,
) -> Vec<Unwritten<T>> {
    let mut given_up = Vec::new();
    for mut write in batch {
        let since = *write.failed_since.get_or_insert(now);
        if now >= write.valid_until || now >= since + lease {
            given_up.push(write);
        } else {
            pending.push(write);
        }
    }
    given_up
}

pub(super) struct Coordinator {
    backend: Backend,
    shared: Arc<Shared>,
    slots: Vec<Arc<Slot>>,
    jobs: Vec<String>,
    /// The concurrency limits of the jobs that have them, sent with every claim.
    limits: Vec<JobLimits>,
    config: Config,
    heartbeat_every: Duration,
    /// The last claim found less than it asked for: wait for a signal or the poll interval.
    exhausted: bool,
    stopping: Option<Instant>,
    /// Outcomes whose write failed, tried again with backoff while their leases are held.
    unwritten: Vec<Unwritten<Completion>>,
    outcome_retry: Retry,
    /// Tasks whose give-back failed, tried again with backoff while their leases are held (with
    /// their job's name, for the metrics).
    unreleased: Vec<Unwritten<&'static str>>,
    release_retry: Retry,
    /// When buffered tasks waiting for confirmation may next be confirmed (a heartbeat failed).
    confirm_at: Instant,
    next_heartbeat: Instant,
    next_sweep: Instant,
    next_poll: Instant,
    /// When this worker started, as the registry shows it.
    started_at: chrono::DateTime<chrono::Utc>,
    /// When the registry entry is next refreshed.
    next_register: Instant,
}

impl Coordinator {
    pub(super) fn new(worker: Worker) -> Self {
        let heartbeat_every = worker
            .config
            .heartbeat
            .unwrap_or(worker.config.lease / 3)
            .max(Duration::from_millis(1));
        let now = Instant::now();
        let limits = worker.registry.limits();
        let instruments = Instruments::new(worker.registry.names());
        let shared = Arc::new(Shared {
            registry: worker.registry,
            backend: worker.backend.clone(),
            queue: Mutex::new(VecDeque::new()),
            unconfirmed: Mutex::new(Vec::new()),
            margin: worker.config.lease / 3,
            work: Notify::new(),
            coordinator: Notify::new(),
            coordinator_woken: AtomicBool::new(false),
            outcomes: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            low_water: worker.config.prefetch / 2,
            metrics: worker.metrics,
            instruments,
        });
        Self {
            backend: worker.backend,
            shared,
            slots: (0..worker.config.concurrency)
                .map(|_| Arc::new(Slot::default()))
                .collect(),
            limits,
            jobs: worker.jobs,
            heartbeat_every,
            next_heartbeat: now + heartbeat_every,
            next_sweep: now + Duration::from_millis(100).min(worker.config.sweep_interval),
            next_poll: now + worker.config.poll_interval,
            config: worker.config,
            exhausted: false,
            stopping: None,
            unwritten: Vec::new(),
            outcome_retry: Retry::new(),
            unreleased: Vec::new(),
            release_retry: Retry::new(),
            confirm_at: now,
            started_at: chrono::Utc::now(),
            next_register: now,
        }
    }

    /// How long a registry entry lives unless refreshed: three refreshes.
    fn registry_ttl(&self) -> Duration {
        (self.heartbeat_every * 3).max(Duration::from_secs(3))
    }

    /// Registers the worker, or refreshes its entry (best effort: the registry is for operators).
    async fn register(&mut self) {
        self.next_register = Instant::now() + self.heartbeat_every;
        let info = WorkerInfo {
            id: self.config.id.clone(),
            host: host_name(),
            pid: std::process::id(),
            jobs: self.jobs.clone(),
            concurrency: u32::try_from(self.config.concurrency).unwrap_or(u32::MAX),
            busy: u32::try_from(self.shared.busy.load(Ordering::Acquire)).unwrap_or(u32::MAX),
            started_at: self.started_at,
            last_seen: chrono::Utc::now(),
        };
        let ttl = self.registry_ttl();
        if let Err(err) = self.backend.queue().register_worker(&info, ttl).await {
            tracing::debug!(error = %err, "refreshing this worker's registry entry failed");
        }
    }

    pub(super) async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        tracing::info!(worker = %self.config.id, jobs = ?self.jobs, "worker started");
        let _slots = self.shared.instruments.slots(self.config.concurrency);
        self.register().await;
        let mut shutdown = pin!(shutdown.fuse());
        let mut signal = self.backend.queue().work_signal();
        let tick_every = self
            .config
            .progress_interval
            .min(self.heartbeat_every)
            .min(self.config.poll_interval);
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut slots = JoinSet::new();
        for slot in &self.slots {
            slots.spawn(run_slot(Arc::clone(&self.shared), Arc::clone(slot)));
        }

        loop {
            self.shared
                .coordinator_woken
                .store(false, Ordering::Release);
            if self.should_confirm() {
                self.heartbeat().await;
                continue;
            }
            if self.should_claim() {
                // Claim the next batch and write the finished ones at once: on a network
                // backend the two round trips overlap instead of adding up.
                self.claim_and_flush().await;
                continue;
            }
            self.flush_outcomes().await;
            self.flush_releases().await;
            if self.stopping.is_some() && slots.is_empty() {
                self.flush_outcomes().await;
                if self.unwritten.is_empty() && self.unreleased.is_empty() {
                    break;
                }
            }
            let retry_at = self.next_retry();
            tokio::select! {
                biased;
                () = self.shared.coordinator.notified() => {}
                Some(joined) = slots.join_next(), if !slots.is_empty() => {
                    if let Err(err) = joined {
                        if err.is_panic() {
                            tracing::error!("a worker slot panicked; the worker goes on with one slot fewer");
                        }
                    }
                }
                () = signal.changed(), if self.exhausted && self.stopping.is_none() => {
                    self.exhausted = false;
                }
                () = &mut shutdown, if self.stopping.is_none() => {
                    self.begin_shutdown().await;
                }
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {}
                _ = tick.tick() => {
                    self.on_tick().await;
                }
            }
        }
        if let Err(err) = self
            .backend
            .queue()
            .unregister_worker(&self.config.id)
            .await
        {
            tracing::debug!(error = %err, "removing this worker's registry entry failed; it ages out");
        }
        tracing::info!(worker = %self.config.id, "worker stopped");
        Ok(())
    }

    fn capacity(&self) -> usize {
        let queued = lock(&self.shared.queue).len();
        if queued > self.shared.low_water {
            return 0;
        }
        let waiting = queued + lock(&self.shared.unconfirmed).len();
        let busy = self.shared.busy.load(Ordering::Acquire);
        (self.config.concurrency + self.config.prefetch).saturating_sub(busy + waiting)
    }

    fn should_claim(&self) -> bool {
        self.stopping.is_none() && !self.exhausted && self.capacity() > 0
    }

    /// Buffered tasks wait for their leases to be confirmed, and a heartbeat may be sent now.
    fn should_confirm(&self) -> bool {
        self.stopping.is_none()
            && !lock(&self.shared.unconfirmed).is_empty()
            && Instant::now() >= self.confirm_at
    }

    /// When the coordinator must wake without being told: a failed write is due to be tried
    /// again, or buffered tasks wait for a confirmation that failed before.
    fn next_retry(&self) -> Option<Instant> {
        let outcomes = (!self.unwritten.is_empty()).then_some(self.outcome_retry.at);
        let releases = (!self.unreleased.is_empty()).then_some(self.release_retry.at);
        let confirm = (self.stopping.is_none() && !lock(&self.shared.unconfirmed).is_empty())
            .then_some(self.confirm_at);
        [outcomes, releases, confirm].into_iter().flatten().min()
    }

    async fn claim_and_flush(&mut self) {
        let limit = self.capacity();
        // The leases are known to be held until a lease after the claim is sent.
        let sent = Instant::now();
        let batch = self.take_outcomes(sent);
        let queue = Arc::clone(self.backend.queue());
        let request = ClaimRequest {
            jobs: &self.jobs,
            worker: &self.config.id,
            limit,
            lease: self.config.lease,
            limits: &self.limits,
        };
        let finish = async {
            if batch.is_empty() {
                None
            } else {
                Some(queue.finish(completions(&batch)).await)
            }
        };
        let (claimed, finished) = tokio::join!(queue.claim(request), finish);
        // Outcomes just written may have freed places under a concurrency limit that the claim
        // beside them could not see yet: claim once more instead of waiting for the next poll.
        let freed = !self.limits.is_empty() && finished.as_ref().is_some_and(Result::is_ok);
        if let Some(finished) = finished {
            self.outcomes_written(batch, finished);
        }
        match claimed {
            Ok(claimed) => {
                self.exhausted = claimed.len() < limit && !freed;
                if !claimed.is_empty() {
                    self.shared.metrics.claimed(claimed.len());
                    self.record_waits(&claimed);
                    let valid_until = sent + self.config.lease;
                    lock(&self.shared.queue).extend(
                        claimed
                            .into_iter()
                            .map(|task| Buffered { task, valid_until }),
                    );
                    self.shared.work.notify_waiters();
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "claiming tasks failed; retrying at the next poll");
                self.exhausted = true;
            }
        }
        if self.exhausted {
            self.next_poll = Instant::now() + self.config.poll_interval;
        }
    }

    /// The outcomes to write now: those newly finished, with those whose write failed when
    /// their retry is due. While a retry waits, new outcomes wait with it, so that an outage
    /// costs one call per backoff rather than one per finished task.
    fn take_outcomes(&mut self, now: Instant) -> Vec<Unwritten<Completion>> {
        let fresh = std::mem::take(&mut *lock(&self.shared.outcomes));
        let fresh = fresh.into_iter().map(|finished| Unwritten {
            lease: finished.completion.lease,
            item: finished.completion,
            valid_until: finished.valid_until,
            failed_since: None,
        });
        if self.unwritten.is_empty() {
            return fresh.collect();
        }
        self.unwritten.extend(fresh);
        if self.outcome_retry.due(now) {
            std::mem::take(&mut self.unwritten)
        } else {
            Vec::new()
        }
    }

    async fn flush_outcomes(&mut self) {
        let batch = self.take_outcomes(Instant::now());
        if batch.is_empty() {
            return;
        }
        let result = self.backend.queue().finish(completions(&batch)).await;
        self.outcomes_written(batch, result);
    }

    /// Handles the answer to writing `batch`: a failed write is kept and tried again with
    /// backoff while the leases are known to be held (heartbeats go on extending them), so that a
    /// short outage does not make finished tasks run again.
    fn outcomes_written(&mut self, batch: Vec<Unwritten<Completion>>, result: Result<Vec<Ack>>) {
        match result {
            Ok(acks) => {
                self.outcome_retry.succeeded();
                let stale = acks.iter().filter(|ack| **ack == Ack::Stale).count();
                if stale > 0 {
                    tracing::warn!(
                        stale,
                        "outcomes refused: their leases had expired and the tasks were claimed again"
                    );
                }
            }
            Err(err) => {
                let now = Instant::now();
                let count = batch.len();
                let given_up = keep_for_retry(&mut self.unwritten, batch, now, self.config.lease);
                for lapsed in &given_up {
                    tracing::error!(
                        task_id = %lapsed.lease.task,
                        "giving up recording the outcome of an attempt: its lease may have expired meanwhile; the task runs again once its lease is recovered"
                    );
                }
                if !self.unwritten.is_empty() {
                    let retry_in = self.outcome_retry.failed(now, self.heartbeat_every);
                    tracing::warn!(
                        error = %err,
                        count,
                        ?retry_in,
                        "recording task outcomes failed; trying again while their leases are held"
                    );
                }
            }
        }
    }

    /// Gives tasks back to the queue. A failed give-back is tried again with backoff while the
    /// leases are known to be held.
    async fn release(&mut self, leases: Vec<(Lease, Instant, &'static str)>) {
        self.unreleased.extend(
            leases
                .into_iter()
                .map(|(lease, valid_until, job)| Unwritten {
                    item: job,
                    lease,
                    valid_until,
                    failed_since: None,
                }),
        );
        self.flush_releases().await;
    }

    async fn flush_releases(&mut self) {
        let now = Instant::now();
        if self.unreleased.is_empty() || !self.release_retry.due(now) {
            return;
        }
        let batch = std::mem::take(&mut self.unreleased);
        let leases: Vec<Lease> = batch.iter().map(|u| u.lease).collect();
        match self.backend.queue().release(&leases).await {
            Ok(_) => {
                self.release_retry.succeeded();
                self.shared.metrics.released(leases.len());
                for write in &batch {
                    if let Some(job) = self.shared.instruments.job(write.item) {
                        job.released();
                    }
                }
            }
            Err(err) => {
                let now = Instant::now();
                let given_up = keep_for_retry(&mut self.unreleased, batch, now, self.config.lease);
                for write in &given_up {
                    // Its lease expires and another worker recovers the task.
                    if let Some(job) = self.shared.instruments.job(write.item) {
                        job.lost();
                    }
                }
                if !given_up.is_empty() {
                    tracing::error!(
                        count = given_up.len(),
                        "giving up giving tasks back: their leases may have expired meanwhile; they are recovered and run again"
                    );
                }
                if !self.unreleased.is_empty() {
                    let retry_in = self.release_retry.failed(now, self.heartbeat_every);
                    tracing::warn!(
                        error = %err,
                        count = leases.len(),
                        ?retry_in,
                        "giving tasks back failed; trying again while their leases are held"
                    );
                }
            }
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let waiting = lock(&self.shared.queue).len() + lock(&self.shared.unconfirmed).len();
        self.shared.metrics.set_prefetched(waiting);
        self.flush_progress().await;
        self.enforce_kills(now);
        if now >= self.next_heartbeat {
            self.heartbeat().await;
        }
        if now >= self.next_register && self.stopping.is_none() {
            self.register().await;
        }
        if self.exhausted && now >= self.next_poll {
            self.exhausted = false;
        }
        if now >= self.next_sweep && self.stopping.is_none() {
            self.next_sweep = now + self.config.sweep_interval;
            self.sweep().await;
        }
        if let Some(deadline) = self.stopping {
            if now >= deadline {
                self.stop_running().await;
            }
        }
    }

    async fn flush_progress(&self) {
        let updates: Vec<_> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let current = lock(&slot.current);
                let current = current.as_ref()?;
                Some((current.lease, current.cx.take_dirty()?))
            })
            .collect();
        if updates.is_empty() {
            return;
        }
        if let Err(err) = self.backend.progress().report(&updates).await {
            tracing::warn!(error = %err, "writing progress failed; the next report will carry it");
        }
    }

    /// Stops attempts past their cancellation grace, and re-sends pending kills.
    fn enforce_kills(&self, now: Instant) {
        for slot in &self.slots {
            let mut current = lock(&slot.current);
            let Some(current) = current.as_mut() else {
                continue;
            };
            if current.kill.is_none() && current.force_at.is_some_and(|at| now >= at) {
                current.kill = Some(Kill::Cancel);
            }
            if current.kill.is_some() {
                slot.kill.notify_waiters();
            }
        }
    }

    /// Records how long each claimed task waited since it was due (by this machine's clock; a
    /// clock behind the backend's reads as no wait).
    fn record_waits(&self, claimed: &[ClaimedTask]) {
        let now = chrono::Utc::now();
        for task in claimed {
            if let Some(job) = self.shared.instruments.job(&task.job) {
                job.waited((now - task.due_at).to_std().unwrap_or(Duration::ZERO));
            }
        }
    }

    /// Extends every lease this worker holds: of running attempts, of buffered tasks (and those
    /// waiting for confirmation), and of writes being tried again. What it learns stops lost
    /// attempts, passes cancellation on, drops buffered tasks whose leases were lost and puts
    /// back those confirmed, and moves on the time until which each lease is known to be held.
    async fn heartbeat(&mut self) {
        let mut leases: Vec<Lease> = self
            .slots
            .iter()
            .filter_map(|slot| lock(&slot.current).as_ref().map(|c| c.lease))
            .collect();
        leases.extend(lock(&self.shared.queue).iter().map(|b| b.task.lease));
        leases.extend(lock(&self.shared.unconfirmed).iter().map(|b| b.task.lease));
        leases.extend(self.unwritten.iter().map(|u| u.lease));
        leases.extend(self.unreleased.iter().map(|u| u.lease));
        let sent = Instant::now();
        self.next_heartbeat = sent + self.heartbeat_every;
        if leases.is_empty() {
            return;
        }
        let states = match self
            .backend
            .queue()
            .heartbeat(&leases, self.config.lease)
            .await
        {
            Ok(states) => states,
            Err(err) => {
                // Try again soon: the leases run out meanwhile.
                let retry_in = self.heartbeat_every.min(Duration::from_secs(1));
                self.next_heartbeat = Instant::now() + retry_in;
                self.confirm_at = self.next_heartbeat;
                tracing::error!(error = %err, ?retry_in, "extending leases failed");
                return;
            }
        };
        let states: HashMap<Lease, LeaseState> = leases.into_iter().zip(states).collect();
        // The backend extended each held lease by a lease from when it got the heartbeat, which
        // is no earlier than when it was sent.
        let valid_until = sent + self.config.lease;
        self.heard_running(&states, valid_until);
        self.heard_waiting(&states, valid_until);
        for write in &mut self.unwritten {
            if let Some(LeaseState::Held { .. }) = states.get(&write.lease) {
                write.valid_until = write.valid_until.max(valid_until);
            }
        }
        self.unwritten.retain(|write| {
            let lost = states.get(&write.lease) == Some(&LeaseState::Lost);
            if lost {
                tracing::error!(
                    task_id = %write.lease.task,
                    "giving up recording the outcome of an attempt: its lease was lost; the task runs again"
                );
            }
            !lost
        });
        for write in &mut self.unreleased {
            if let Some(LeaseState::Held { .. }) = states.get(&write.lease) {
                write.valid_until = write.valid_until.max(valid_until);
            }
        }
        let instruments = &self.shared.instruments;
        self.unreleased.retain(|write| {
            let lost = states.get(&write.lease) == Some(&LeaseState::Lost);
            if let Some(job) = instruments.job(write.item).filter(|_| lost) {
                job.lost();
            }
            !lost
        });
    }

    /// Applies a heartbeat's answers to the running attempts.
    fn heard_running(&self, states: &HashMap<Lease, LeaseState>, valid_until: Instant) {
        let now = Instant::now();
        for slot in &self.slots {
            let mut current = lock(&slot.current);
            let Some(c) = current.as_mut() else {
                continue;
            };
            match states.get(&c.lease) {
                Some(LeaseState::Held { cancel_requested }) => {
                    c.valid_until = c.valid_until.max(valid_until);
                    if *cancel_requested && c.force_at.is_none() {
                        c.cx.cancel.cancel();
                        c.force_at = Some(now + c.grace);
                    }
                }
                Some(LeaseState::Lost) if c.kill.is_none() => {
                    self.shared.metrics.lease_lost();
                    if let Some(job) = self.shared.instruments.job(c.cx.job) {
                        job.lost();
                    }
                    tracing::warn!(task_id = %c.lease.task, "lease lost; stopping the attempt");
                    c.kill = Some(Kill::Lost);
                    slot.kill.notify_waiters();
                }
                _ => {}
            }
        }
    }

    /// Applies a heartbeat's answers to the tasks that have not started: those buffered, and
    /// those waiting for their leases to be confirmed (which go back to the buffer if held).
    fn heard_waiting(&mut self, states: &HashMap<Lease, LeaseState>, valid_until: Instant) {
        let mut cancelled = Vec::new();
        let mut lost = 0;
        let instruments = &self.shared.instruments;
        let mut heard = |buffered: &mut Buffered| match states.get(&buffered.task.lease) {
            Some(LeaseState::Held {
                cancel_requested: false,
            }) => {
                buffered.valid_until = buffered.valid_until.max(valid_until);
                Some(true)
            }
            Some(LeaseState::Held {
                cancel_requested: true,
            }) => {
                cancelled.push(buffered.task.lease);
                if let Some(job) = instruments.job(&buffered.task.job) {
                    job.ended_unrun(Ended::Cancelled);
                }
                Some(false)
            }
            Some(LeaseState::Lost) => {
                lost += 1;
                if let Some(job) = instruments.job(&buffered.task.job) {
                    job.lost();
                }
                Some(false)
            }
            None => None,
        };
        lock(&self.shared.queue).retain_mut(|buffered| heard(buffered).unwrap_or(true));
        let unconfirmed = std::mem::take(&mut *lock(&self.shared.unconfirmed));
        let mut confirmed = Vec::new();
        let mut unheard = Vec::new();
        for mut buffered in unconfirmed {
            match heard(&mut buffered) {
                Some(true) => confirmed.push(buffered),
                Some(false) => {}
                None => unheard.push(buffered),
            }
        }
        if !unheard.is_empty() {
            lock(&self.shared.unconfirmed).extend(unheard);
        }
        if !confirmed.is_empty() {
            let mut queue = lock(&self.shared.queue);
            for buffered in confirmed.into_iter().rev() {
                queue.push_front(buffered);
            }
            drop(queue);
            self.shared.work.notify_waiters();
        }
        for lease in cancelled {
            self.shared.push_outcome(
                Completion::new(
                    lease,
                    Outcome::Cancelled {
                        reason: "cancelled before it started".to_owned(),
                    },
                ),
                valid_until,
            );
        }
        if lost > 0 {
            for _ in 0..lost {
                self.shared.metrics.lease_lost();
            }
            tracing::warn!(
                count = lost,
                "buffered tasks dropped unstarted: their leases were lost (recovered by another worker)"
            );
        }
    }

    async fn sweep(&self) {
        const LIMIT: usize = 1_000;
        match self.backend.queue().recover_expired(LIMIT).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(recovered = n, "recovered tasks whose worker was lost"),
            Err(err) => tracing::error!(error = %err, "recovering expired leases failed"),
        }
        match self.backend.store().purge(LIMIT).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "purged finished tasks past retention"),
            Err(err) => tracing::error!(error = %err, "purging finished tasks failed"),
        }
    }

    async fn begin_shutdown(&mut self) {
        let shared = &self.shared;
        let job = |buffered: &Buffered| {
            shared
                .registry
                .get(&buffered.task.job)
                .map_or("", |(name, _)| name)
        };
        let mut waiting: Vec<(Lease, Instant, &'static str)> = lock(&shared.queue)
            .drain(..)
            .map(|b| (b.task.lease, b.valid_until, job(&b)))
            .collect();
        waiting.extend(
            lock(&shared.unconfirmed)
                .drain(..)
                .map(|b| (b.task.lease, b.valid_until, job(&b))),
        );
        tracing::info!(
            running = self.shared.busy.load(Ordering::Acquire),
            prefetched = waiting.len(),
            "worker shutting down"
        );
        self.stopping = Some(Instant::now() + self.config.shutdown_timeout);
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.work.notify_waiters();
        self.release(waiting).await;
        if self.config.shutdown_timeout.is_zero() {
            self.stop_running().await;
        }
    }

    /// Stops the attempts still running at the shutdown deadline and gives their tasks back.
    async fn stop_running(&mut self) {
        let mut leases = Vec::new();
        for slot in &self.slots {
            let mut current = lock(&slot.current);
            let Some(c) = current.as_mut().filter(|c| c.kill.is_none()) else {
                continue;
            };
            c.kill = Some(Kill::Release);
            slot.kill.notify_waiters();
            leases.push((c.lease, c.valid_until, c.cx.job));
        }
        if !leases.is_empty() {
            tracing::warn!(
                count = leases.len(),
                "shutdown timeout reached; giving running tasks back to the queue"
            );
            // Outcomes that raced the deadline are written first, so they win over the release;
            // one whose write is being tried again is not given back either.
            self.flush_outcomes().await;
            leases.retain(|(lease, _, _)| !self.unwritten.iter().any(|u| u.lease == *lease));
            self.release(leases).await;
        }
    }
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

/// This machine's name, for the workers registry: the kernel's host name, else `$HOSTNAME`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

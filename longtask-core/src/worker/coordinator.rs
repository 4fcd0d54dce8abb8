//! The coordinator: claims, heartbeats, progress, outcomes, sweeping and shutdown.

use std::{
    collections::VecDeque,
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
    queue::{Ack, ClaimRequest, Completion, Lease, LeaseState, Outcome},
};

use super::{
    slot::{lock, run_slot, Kill, Shared, Slot},
    Config, Worker,
};

pub(super) struct Coordinator {
    backend: Backend,
    shared: Arc<Shared>,
    slots: Vec<Arc<Slot>>,
    jobs: Vec<String>,
    config: Config,
    heartbeat_every: Duration,
    /// The last claim found less than it asked for: wait for a signal or the poll interval.
    exhausted: bool,
    stopping: Option<Instant>,
    next_heartbeat: Instant,
    next_sweep: Instant,
    next_poll: Instant,
}

impl Coordinator {
    pub(super) fn new(worker: Worker) -> Self {
        let heartbeat_every = worker
            .config
            .heartbeat
            .unwrap_or(worker.config.lease / 3)
            .max(Duration::from_millis(1));
        let now = Instant::now();
        let shared = Arc::new(Shared {
            registry: worker.registry,
            queue: Mutex::new(VecDeque::new()),
            work: Notify::new(),
            coordinator: Notify::new(),
            coordinator_woken: AtomicBool::new(false),
            outcomes: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            low_water: worker.config.prefetch / 2,
            metrics: worker.metrics,
        });
        Self {
            backend: worker.backend,
            shared,
            slots: (0..worker.config.concurrency)
                .map(|_| Arc::new(Slot::default()))
                .collect(),
            jobs: worker.jobs,
            heartbeat_every,
            next_heartbeat: now + heartbeat_every,
            next_sweep: now + Duration::from_millis(100).min(worker.config.sweep_interval),
            next_poll: now + worker.config.poll_interval,
            config: worker.config,
            exhausted: false,
            stopping: None,
        }
    }

    pub(super) async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        tracing::info!(worker = %self.config.id, jobs = ?self.jobs, "worker started");
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
            if self.should_claim() {
                // Claim the next batch and write the finished ones at once: on a network
                // backend the two round trips overlap instead of adding up.
                self.claim_and_flush().await;
                continue;
            }
            self.flush_outcomes().await;
            if self.stopping.is_some() && slots.is_empty() {
                self.flush_outcomes().await;
                break;
            }
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
                _ = tick.tick() => {
                    self.on_tick().await;
                }
            }
        }
        tracing::info!(worker = %self.config.id, "worker stopped");
        Ok(())
    }

    fn capacity(&self) -> usize {
        let queued = lock(&self.shared.queue).len();
        let busy = self.shared.busy.load(Ordering::Acquire);
        if queued > self.shared.low_water {
            return 0;
        }
        (self.config.concurrency + self.config.prefetch).saturating_sub(busy + queued)
    }

    fn should_claim(&self) -> bool {
        self.stopping.is_none() && !self.exhausted && self.capacity() > 0
    }

    async fn claim_and_flush(&mut self) {
        let limit = self.capacity();
        let outcomes = std::mem::take(&mut *lock(&self.shared.outcomes));
        let queue = self.backend.queue();
        let request = ClaimRequest {
            jobs: &self.jobs,
            worker: &self.config.id,
            limit,
            lease: self.config.lease,
        };
        let count = outcomes.len();
        let finish = async {
            if outcomes.is_empty() {
                None
            } else {
                Some(queue.finish(outcomes).await)
            }
        };
        let (claimed, finished) = tokio::join!(queue.claim(request), finish);
        if let Some(finished) = finished {
            Self::check_acks(finished, count);
        }
        match claimed {
            Ok(claimed) => {
                self.exhausted = claimed.len() < limit;
                if !claimed.is_empty() {
                    self.shared.metrics.claimed(claimed.len());
                    lock(&self.shared.queue).extend(claimed);
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

    async fn flush_outcomes(&mut self) {
        let batch = std::mem::take(&mut *lock(&self.shared.outcomes));
        if batch.is_empty() {
            return;
        }
        let count = batch.len();
        Self::check_acks(self.backend.queue().finish(batch).await, count);
    }

    fn check_acks(result: Result<Vec<Ack>>, count: usize) {
        match result {
            Ok(acks) => {
                let stale = acks.iter().filter(|ack| **ack == Ack::Stale).count();
                if stale > 0 {
                    tracing::warn!(
                        stale,
                        "outcomes refused: their leases had expired and the tasks were claimed again"
                    );
                }
            }
            Err(err) => {
                // The leases stay unfinished: they expire and the tasks run again (at least once).
                tracing::error!(error = %err, count, "recording task outcomes failed; the tasks will be retried after their leases expire");
            }
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        self.shared
            .metrics
            .set_prefetched(lock(&self.shared.queue).len());
        self.flush_progress().await;
        self.enforce_kills(now);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.heartbeat_every;
            self.heartbeat().await;
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
                Some((current.lease.task, current.cx.take_dirty()?))
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

    fn kill(slot: &Slot, lease: Lease, kill: Kill) -> bool {
        let mut current = lock(&slot.current);
        match current.as_mut() {
            Some(c) if c.lease == lease => {
                c.kill = Some(kill);
                slot.kill.notify_waiters();
                true
            }
            _ => false,
        }
    }

    async fn heartbeat(&mut self) {
        let mut leases: Vec<Lease> = self
            .slots
            .iter()
            .filter_map(|slot| lock(&slot.current).as_ref().map(|c| c.lease))
            .collect();
        let running = leases.len();
        leases.extend(lock(&self.shared.queue).iter().map(|t| t.lease));
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
                tracing::error!(error = %err, "extending leases failed; retrying at the next heartbeat");
                return;
            }
        };
        let now = Instant::now();
        for (i, (lease, state)) in leases.into_iter().zip(states).enumerate() {
            let is_running = i < running;
            match state {
                LeaseState::Held {
                    cancel_requested: false,
                } => {}
                LeaseState::Held {
                    cancel_requested: true,
                } if is_running => {
                    for slot in &self.slots {
                        let mut current = lock(&slot.current);
                        if let Some(c) = current.as_mut().filter(|c| c.lease == lease) {
                            if c.force_at.is_none() {
                                c.cx.cancel.cancel();
                                c.force_at = Some(now + c.grace);
                            }
                        }
                    }
                }
                LeaseState::Held {
                    cancel_requested: true,
                } => {
                    if Self::take_queued(&self.shared, lease) {
                        self.shared.push_outcome(Completion::new(
                            lease,
                            Outcome::Cancelled {
                                reason: "cancelled before it started".to_owned(),
                            },
                        ));
                    }
                }
                LeaseState::Lost if is_running => {
                    self.shared.metrics.lease_lost();
                    tracing::warn!(task_id = %lease.task, "lease lost; stopping the attempt");
                    for slot in &self.slots {
                        Self::kill(slot, lease, Kill::Lost);
                    }
                }
                LeaseState::Lost => {
                    Self::take_queued(&self.shared, lease);
                }
            }
        }
    }

    fn take_queued(shared: &Shared, lease: Lease) -> bool {
        let mut queue = lock(&shared.queue);
        let before = queue.len();
        queue.retain(|t| t.lease != lease);
        queue.len() < before
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
        let queued: Vec<Lease> = lock(&self.shared.queue)
            .drain(..)
            .map(|t| t.lease)
            .collect();
        tracing::info!(
            running = self.shared.busy.load(Ordering::Acquire),
            prefetched = queued.len(),
            "worker shutting down"
        );
        self.stopping = Some(Instant::now() + self.config.shutdown_timeout);
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.work.notify_waiters();
        self.release(&queued).await;
        if self.config.shutdown_timeout.is_zero() {
            self.stop_running().await;
        }
    }

    /// Stops the attempts still running at the shutdown deadline and gives their tasks back.
    async fn stop_running(&mut self) {
        let mut leases = Vec::new();
        for slot in &self.slots {
            let lease = lock(&slot.current).as_ref().map(|c| c.lease);
            if let Some(lease) = lease {
                if Self::kill(slot, lease, Kill::Release) {
                    leases.push(lease);
                }
            }
        }
        if !leases.is_empty() {
            tracing::warn!(
                count = leases.len(),
                "shutdown timeout reached; giving running tasks back to the queue"
            );
            // Outcomes that raced the deadline are written first, so they win over the release.
            self.flush_outcomes().await;
            self.release(&leases).await;
        }
    }

    async fn release(&self, leases: &[Lease]) {
        if leases.is_empty() {
            return;
        }
        self.shared.metrics.released(leases.len());
        if let Err(err) = self.backend.queue().release(leases).await {
            tracing::error!(error = %err, "giving tasks back failed; they run again when their leases expire");
        }
    }
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

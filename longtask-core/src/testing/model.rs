//! Case: the backend against a reference model. Random sequences of operations (insert batches
//! with priorities, schedules, owners and idempotency keys, invalid batches, claim, heartbeat,
//! finish with every outcome, release, progress reports, cancel, recover, purge, get, list,
//! latest, watch, clock advances, and futures dropped part-way) run against the backend and
//! against a small state machine written from the contract; after every operation each answer
//! and every record must agree. A failing sequence is shrunk (proptest) to a minimal one, which
//! the failure prints with the seed that found it (`LONGTASK_MODEL_SEED=<seed>` replays it).
//!
//! Where backends may legitimately differ, the model accepts exactly the allowed set:
//! - a task submitted for later shows `scheduled` until its `run_at`, then `scheduled` or `queued`
//!   until it is claimed (backends may promote it early or only when claiming);
//! - a task recovered from an expired lease with attempts left waits as `retrying` or `queued`;
//!   the error of a lost attempt only has to say "lost" (attempt and time are exact);
//! - lease tokens are opaque: a claim's token only has to be new for its task;
//! - `recover_expired` and `purge` with a `limit` below the number of candidates may pick any of
//!   them: the model reads which ones went, and checks the number and that each was a candidate;
//! - params and outputs are compared as JSON values.
//!
//! A lease lives until its task is finished, released or recovered: an expired lease that was not
//! recovered yet may still heartbeat and finish (no backend refuses it, and the contract's
//! [`Ack::Stale`](crate::Ack::Stale) names recovery, a new claim, finishing and purging). A
//! cancellation requested while a task runs stays requested when the task is released: the task
//! waits `queued` with `cancel_requested` set, and its next attempt sees it at its first heartbeat
//! (what every backend does today; the contract does not say otherwise).
//!
//! The sequences are the model's in the files beside this one: `ops` (what is generated, and the
//! calls it becomes) and `reference` (the state machine).
//!
//! Dropped futures: an insert, cancel, heartbeat, finish, release, report, recover or purge (and
//! reads) is dropped after its first poll or after a few scheduler turns. It must then have
//! happened entirely or not at all: the model waits until the records match the state after the
//! operation, and accepts the state before it only once 10 seconds have passed (a backend may
//! finish a dropped operation in the background, as `cancel_safe_backend!` does). A dropped claim
//! is not modelled (a backend may give the claimed tasks back, changing their `run_at`): the
//! `cancel_safety` case covers it.

mod ops;
mod reference;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner},
};

use self::{
    ops::{cut, op, start, Call, Op},
    reference::{check, Model, Seen, Stats},
};
use super::Harness;
use crate::{Backend, StatusCounts, TaskQuery, TaskStatus};

/// Sequences run per backend (each against fresh job names on the case's backend).
const SEQUENCES: u32 = 48;
/// Operations per sequence, at most.
const MAX_OPS: usize = 48;
/// How long a dropped operation may take to land before the model accepts that it never will.
const SETTLE: Duration = Duration::from_secs(10);

/// Every task of the sequence's jobs, as the backend lists them (in id order, as listed).
async fn observe(backend: &Backend, jobs: &[String; 2]) -> Result<Seen, String> {
    let mut seen = Seen::new();
    for job in jobs {
        let query = TaskQuery {
            job: Some(job.clone()),
            limit: 10_000,
            ..TaskQuery::default()
        };
        let listed = backend
            .store()
            .list(&query)
            .await
            .map_err(|e| format!("list failed: {e:?}"))?;
        check(listed.windows(2).all(|w| w[0].id < w[1].id), || {
            format!("list is not in id order: {listed:?}")
        })?;
        seen.extend(listed.into_iter().map(|r| (r.id, r)));
    }
    Ok(seen)
}

/// The backend's stats for the sequence's jobs agree with its records: the counts per status
/// (a scheduled task that has come due counts as queued) and the oldest due task.
async fn stats_agree(h: &Harness, jobs: &[String; 2], seen: &Seen) -> Result<(), String> {
    let stats = h
        .backend
        .store()
        .stats()
        .await
        .map_err(|e| format!("stats failed: {e:?}"))?;
    let now = h.now();
    for job in jobs {
        let mut counts = StatusCounts::default();
        let mut oldest = None;
        for record in seen.values().filter(|r| &r.job == job) {
            let status = match record.status {
                TaskStatus::Scheduled if record.run_at <= now => TaskStatus::Queued,
                status => status,
            };
            counts.add(status, 1);
            if matches!(status, TaskStatus::Queued | TaskStatus::Retrying) && record.run_at <= now {
                oldest = Some(oldest.map_or(record.run_at, |o| record.run_at.min(o)));
            }
        }
        let (got, got_oldest) = stats.job(job).map_or((StatusCounts::default(), None), |s| {
            (s.counts, s.oldest_due)
        });
        check(got == counts && got_oldest == oldest, || {
            format!(
                "stats disagree with the records of {job}:\n  stats:   {got:?}, oldest due {got_oldest:?}\n  records: {counts:?}, oldest due {oldest:?}"
            )
        })?;
    }
    Ok(())
}

async fn run_sequence(
    h: &Harness,
    prefix: &str,
    ops: &[Op],
    total: &Mutex<Stats>,
) -> Result<(), String> {
    let mut model = Model::new(prefix, h.now());
    let ran = run_steps(h, &mut model, ops).await;
    total
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .add(&model.stats);
    ran
}

async fn run_steps(h: &Harness, model: &mut Model, ops: &[Op]) -> Result<(), String> {
    for (step, op) in ops.iter().enumerate() {
        model.stats.operations += 1;
        let call = model.resolve(op);
        let context = |problem: String| format!("step {step}: {op:?}\n  as {call:?}\n{problem}");
        if let Call::Advance(by) = call {
            h.advance(by);
        }
        let future = start(&h.backend, &call);
        let answer = match op {
            Op::Dropped(_, at) => cut(future, *at).await,
            _ => Some(future.await),
        };
        match answer {
            Some(answer) => {
                let seen = observe(&h.backend, &model.jobs).await.map_err(context)?;
                model.apply(&call, Some(&answer), &seen).map_err(context)?;
                model.diff(&seen).map_err(context)?;
                stats_agree(h, &model.jobs, &seen).await.map_err(context)?;
            }
            None => {
                let (settled, done) = settle(h, model, &call).await.map_err(context)?;
                *model = settled;
                if done {
                    model.stats.dropped_done += 1;
                } else {
                    model.stats.dropped_not_done += 1;
                }
            }
        }
    }
    Ok(())
}

/// After a dropped operation: waits until the records show it done entirely (the model after
/// it), or, once [`SETTLE`] has passed, not at all (the model before it). Records that match
/// neither twice in a row (one reading may straddle the operation landing, as the two jobs are
/// listed one after the other) show it half done.
async fn settle(h: &Harness, model: &Model, call: &Call) -> Result<(Model, bool), String> {
    let started = Instant::now();
    let mut neither = 0;
    loop {
        let seen = observe(&h.backend, &model.jobs).await?;
        let mut after = model.clone();
        let done = after
            .apply(call, None, &seen)
            .and_then(|()| after.diff(&seen));
        let before = model.diff(&seen);
        match (done, before) {
            (Ok(()), _) => return Ok((after, true)),
            (Err(_), Ok(())) if started.elapsed() > SETTLE => return Ok((model.clone(), false)),
            (Err(_), Ok(())) => neither = 0,
            (Err(after), Err(before)) => {
                neither += 1;
                if neither == 2 {
                    return Err(format!(
                        "a dropped operation was half done: against the state after it:\n{after}\nagainst the state before it:\n{before}"
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Leaves nothing of a sequence that a later one's recovery or purge could see: every lease
/// expired and recovered, every task cancelled or finished, and all of them purged.
async fn clean_up(h: &Harness, prefix: &str) -> Result<(), String> {
    let jobs = [format!("{prefix}-a"), format!("{prefix}-b")];
    let (store, queue) = (h.backend.store(), h.backend.queue());
    let day = Duration::from_secs(24 * 3600);
    h.advance(day);
    queue
        .recover_expired(100_000)
        .await
        .map_err(|e| format!("clean-up recovery failed: {e:?}"))?;
    for record in observe(&h.backend, &jobs).await?.into_values() {
        if !record.status.is_final() {
            store
                .cancel(record.id)
                .await
                .map_err(|e| format!("clean-up cancel failed: {e:?}"))?;
        }
    }
    h.advance(day);
    while store
        .purge(100_000)
        .await
        .map_err(|e| format!("clean-up purge failed: {e:?}"))?
        > 0
    {}
    let left = observe(&h.backend, &jobs).await?;
    check(left.is_empty(), || {
        format!("clean-up left tasks behind: {left:?}")
    })
}

/// Random sequences of every backend operation, dropped futures and clock advances agree with
/// the reference model at every step: each answer and every record (see the module
/// documentation for what the model leaves open, and why). Shrinks a failure to a minimal
/// sequence and prints it with its seed. Runs on the multi-thread runtime that
/// [`conformance_suite!`](crate::conformance_suite) gives every case (each sequence is driven
/// with `block_in_place`, as proptest's runner is synchronous).
pub async fn random_operations_match_the_model(h: Harness) {
    let seed: u64 = std::env::var("LONGTASK_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!(
        "random_operations_match_the_model: seed {seed} (replay with LONGTASK_MODEL_SEED={seed})"
    );
    let mut bytes = [0_u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    let config = Config {
        cases: SEQUENCES,
        max_shrink_iters: 1000,
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let runtime = tokio::runtime::Handle::current();
    let sequences = AtomicUsize::new(0);
    let stats = Mutex::new(Stats::default());
    let strategy = prop::collection::vec(op(), 1..=MAX_OPS);
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |ops| {
            let n = sequences.fetch_add(1, Ordering::Relaxed);
            let prefix = format!("model-{n}");
            runtime.block_on(async {
                let ran = run_sequence(&h, &prefix, &ops, &stats).await;
                let cleaned = clean_up(&h, &prefix).await;
                ran.and(cleaned).map_err(TestCaseError::fail)
            })
        })
    });
    let stats = *stats.lock().unwrap_or_else(PoisonError::into_inner);
    eprintln!("random_operations_match_the_model: {stats:?}");
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!(
            "the backend diverged from the model (seed {seed}; replay with \
             LONGTASK_MODEL_SEED={seed}). Minimal sequence ({} operations):\n{ops:#?}\n{reason}",
            ops.len()
        ),
        Err(TestError::Abort(reason)) => panic!("the model test gave up (seed {seed}): {reason}"),
    }
}

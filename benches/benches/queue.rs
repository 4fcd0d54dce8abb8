#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Queue throughput per backend: enqueue (single and batch), claim+complete, end to end with a
//! running worker, and drain cost against history.
//!
//! The backend comes from `LONGTASK_BENCH_URL` (default `memory://`); see the crate docs.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use longtask_benches::{
    backend_from_env, checkpoints, claim_complete, claim_complete_limited, end_to_end,
    enqueue_batch, enqueue_single, runtime, EndToEnd, Parked,
};
use longtask_core::Client;

fn queue(c: &mut Criterion) {
    let rt = runtime();
    let (scheme, backend) = rt.block_on(backend_from_env());
    let client = Client::new(backend.clone());
    let fast = scheme == "memory";

    let mut group = c.benchmark_group(format!("{scheme}/enqueue"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("single", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| enqueue_single::<Parked>(&client, iters));
    });
    let batch = 1000;
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(BenchmarkId::new("batch", batch), |b| {
        b.to_async(&rt)
            .iter_custom(|iters| enqueue_batch::<Parked>(&client, iters * batch as u64, batch));
    });
    group.finish();

    // Each group opens the backend afresh: the in-memory backend then starts empty instead of
    // holding the millions of tasks the submit benchmarks left (the history benchmark below is
    // where history is measured).
    drop(client);
    let (_, backend) = rt.block_on(backend_from_env());
    let mut group = c.benchmark_group(format!("{scheme}/claim_complete"));
    let batch = 100;
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(BenchmarkId::new("batch", batch), |b| {
        b.to_async(&rt)
            .iter_custom(|iters| claim_complete(&backend, iters * batch as u64, batch));
    });
    group.bench_function(BenchmarkId::new("limited_batch", batch), |b| {
        b.to_async(&rt)
            .iter_custom(|iters| claim_complete_limited(&backend, iters * batch as u64, batch));
    });
    group.finish();

    let (_, backend) = rt.block_on(backend_from_env());
    let mut group = c.benchmark_group(format!("{scheme}/checkpoint"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("save_200_bytes_with_progress", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| checkpoints(&backend, iters));
    });
    group.finish();

    let (_, backend) = rt.block_on(backend_from_env());
    let mut group = c.benchmark_group(format!("{scheme}/end_to_end"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(if fast { 5 } else { 20 }));
    // Runs long enough that the worker's start and graceful stop are a small part of the time.
    let tasks: u64 = if fast { 100_000 } else { 50_000 };
    for backlog in [false, true] {
        let settings = EndToEnd {
            tasks,
            batch: 1000,
            concurrency: 64,
            prefetch: 256,
            backlog,
        };
        let name = if backlog {
            "drain_backlog"
        } else {
            "submit_and_run"
        };
        group.throughput(Throughput::Elements(tasks));
        group.bench_function(BenchmarkId::new(name, tasks), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let backend = backend.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += end_to_end(&backend, settings).await;
                    }
                    total
                }
            });
        });
    }
    group.finish();
}

/// Draining cost against history: finished tasks are kept, so the 200,000 run drains a queue
/// whose table/keyspace holds ten times the history of the 20,000 run; per-task throughput
/// should not fall.
fn drain(c: &mut Criterion) {
    let rt = runtime();
    let (scheme, backend) = rt.block_on(backend_from_env());
    let mut group = c.benchmark_group(format!("{scheme}/drain"));
    group.sample_size(10);
    for tasks in [20_000_u64, 200_000] {
        group.throughput(Throughput::Elements(tasks));
        group.bench_function(BenchmarkId::from_parameter(tasks), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let backend = backend.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += end_to_end(
                            &backend,
                            EndToEnd {
                                tasks,
                                batch: 1000,
                                concurrency: 64,
                                prefetch: 256,
                                backlog: true,
                            },
                        )
                        .await;
                    }
                    total
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, queue, drain);
criterion_main!(benches);

#![allow(missing_docs)] // criterion_group! generates undocumented items
//! What reading every job's stats costs on a store holding 1,000,000 finished tasks and 100,000
//! waiting ones (five jobs, four priorities): the dashboard's and the metrics' read.
//!
//! The backend comes from `LONGTASK_BENCH_URL` (default `memory://`); the first run fills it
//! through the backend's API (a few minutes), later runs on the same store reuse what is there.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use longtask_benches::{backend_from_env, fill_for_stats, runtime};
use longtask_core::Client;

fn stats(c: &mut Criterion) {
    let rt = runtime();
    let (scheme, backend) = rt.block_on(backend_from_env());
    let (finished, waiting) = rt.block_on(fill_for_stats(&backend, 1_000_000, 100_000));
    eprintln!("{scheme}: stats over {finished} finished and {waiting} waiting tasks");
    let client = Client::new(backend);
    let mut group = c.benchmark_group(format!("{scheme}/stats"));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("1m_finished_100k_waiting", |b| {
        b.to_async(&rt)
            .iter(|| async { client.stats().await.expect("stats failed") });
    });
    group.finish();
}

criterion_group!(benches, stats);
criterion_main!(benches);

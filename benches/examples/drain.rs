//! Drains a backlog of no-op tasks once and prints wall time, CPU time and jobs/s: a quick look at
//! throughput outside criterion (`cargo run --release -p longtask-benches --example drain -- 1000000`).
//! The backend comes from `LONGTASK_BENCH_URL` (default `memory://`).
//!
//! Arguments: tasks, then `live` (submit while the worker runs), `backlog` (the default) or
//! `submit` (only submit, in batches of 1,000), then the worker's concurrency and prefetch.

use std::time::Instant;

use longtask_benches::{backend_from_env, end_to_end, enqueue_batch, runtime, EndToEnd, Parked};
use longtask_core::Client;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux); 0 elsewhere.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn arg(n: usize) -> Option<usize> {
    std::env::args().nth(n).and_then(|a| a.parse().ok())
}

fn main() {
    let tasks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let mode = std::env::args().nth(2).unwrap_or_default();
    let backlog = mode != "live";
    let rt = runtime();
    let (scheme, backend) = rt.block_on(backend_from_env());
    let settings = EndToEnd {
        tasks,
        batch: 1000,
        concurrency: arg(3).unwrap_or(64),
        prefetch: arg(4).unwrap_or(256),
        backlog,
    };
    for round in 1..=3 {
        let cpu = cpu_seconds();
        let wall = Instant::now();
        let timed = if mode == "submit" {
            rt.block_on(enqueue_batch::<Parked>(
                &Client::new(backend.clone()),
                tasks,
                1000,
            ))
        } else {
            rt.block_on(end_to_end(&backend, settings))
        };
        let cpu = cpu_seconds() - cpu;
        #[allow(clippy::cast_precision_loss)]
        let rate = tasks as f64 / timed.as_secs_f64();
        println!(
            "{scheme} round {round}: {tasks} tasks, timed {timed:.2?} ({rate:.0} jobs/s), wall {:.2?} incl. submit, cpu {cpu:.2}s",
            wall.elapsed()
        );
    }
}

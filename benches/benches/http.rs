#![allow(missing_docs)] // criterion_group! generates undocumented items
//! HTTP endpoints in process: submit (`POST /reports`) and status (`GET /reports/{id}`, JSON
//! and HTML) requests through `longtask_tower::JobService` over the memory backend, with
//! `tower::ServiceExt::oneshot` and the answer's body collected, from several tasks at once on
//! a 2-thread runtime. Throughput is requests per second.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::Request;
use http_body_util::BodyExt;
use longtask_core::{Client, Job, JobError, MemoryBackend, TaskContext};
use longtask_tower::JobService;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

struct Report;

#[derive(Serialize, Deserialize)]
struct Params {
    month: String,
    days: u32,
}

impl Job for Report {
    const NAME: &'static str = "report";
    type Params = Params;
    type Output = u64;

    async fn run(&self, p: Params, _cx: TaskContext) -> Result<u64, JobError> {
        Ok(u64::from(p.days))
    }
}

/// Concurrent request loops per iteration, and requests each loop sends.
const TASKS: u64 = 8;
const PER_TASK: u64 = 128;

async fn run_batch<F>(make: Arc<F>, service: &JobService<Report>, iters: u64) -> Duration
where
    F: Fn() -> Request<String> + Send + Sync + 'static,
{
    let start = Instant::now();
    for _ in 0..iters {
        let mut handles = Vec::with_capacity(TASKS as usize);
        for _ in 0..TASKS {
            let make = Arc::clone(&make);
            let service = service.clone();
            handles.push(tokio::spawn(async move {
                for _ in 0..PER_TASK {
                    let response = service.clone().oneshot(make()).await.expect("infallible");
                    assert!(response.status().as_u16() < 300, "{}", response.status());
                    let body = response.into_body().collect().await.expect("infallible");
                    std::hint::black_box(body.to_bytes());
                }
            }));
        }
        for handle in handles {
            handle.await.expect("request loop");
        }
    }
    start.elapsed()
}

fn http(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(MemoryBackend::new());
    let service = JobService::<Report>::new(client.clone()).at("/reports");
    let id = rt
        .block_on(client.submit::<Report>(Params {
            month: "2026-10".into(),
            days: 31,
        }))
        .expect("submit");

    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(TASKS * PER_TASK));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));

    let submit = Arc::new(|| {
        Request::post("/reports")
            .header("content-type", "application/json")
            .body(r#"{"month":"2026-10","days":31}"#.to_owned())
            .expect("request")
    });
    group.bench_function("submit", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| run_batch(Arc::clone(&submit), &service, iters));
    });

    let path = format!("/reports/{id}");
    let status_json = {
        let path = path.clone();
        Arc::new(move || Request::get(&path).body(String::new()).expect("request"))
    };
    group.bench_function("status_json", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| run_batch(Arc::clone(&status_json), &service, iters));
    });

    let status_html = Arc::new(move || {
        Request::get(&path)
            .header("accept", "text/html")
            .body(String::new())
            .expect("request")
    });
    group.bench_function("status_html", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| run_batch(Arc::clone(&status_html), &service, iters));
    });
    group.finish();
}

criterion_group!(benches, http);
criterion_main!(benches);

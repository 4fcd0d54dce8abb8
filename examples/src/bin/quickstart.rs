//! The web demo: a form that starts a monthly report, and the report's status page; a form
//! that starts the twelve reports of a whole year as one group, and the group's page.
//!
//! ```text
//! cargo run -p longtask-examples --bin quickstart
//! ```
//!
//! Environment: `PORT` (default 3000), `LONGTASK_URL` (default `sqlite://longtask-demo.db`,
//! or `memory://` without the sqlite feature), `MS_PER_DAY` (default 500: how long each day of
//! the report takes). Stop it with Ctrl-C and start it again while a report runs: the report
//! goes on, and its page still works.
//!
//! The operators' dashboard (`longtask_tower::Dashboard`) is at `/admin`, for requests to a
//! loopback address of this machine only.

#[path = "../../examples/shared/demo.rs"]
mod demo;
#[path = "../../examples/shared/report.rs"]
mod report;

use std::{error::Error, time::Duration};

use demo::HomeState;
use longtask_core::{Client, Worker};
use longtask_examples::Timeouts;
use report::{MonthlyReport, YearSummary};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let port: u16 = env_or("PORT", 3000);
    let default_url = if cfg!(feature = "sqlite") {
        "sqlite://longtask-demo.db"
    } else {
        "memory://"
    };
    let url = std::env::var("LONGTASK_URL").unwrap_or_else(|_| default_url.to_owned());
    let ms_per_day: u64 = env_or("MS_PER_DAY", 500);

    // Prometheus metrics at /metrics: the recorder goes in before the worker and the client
    // take their handles.
    let prometheus = longtask_tower::Prometheus::install()?;
    let backend = longtask_examples::backend_from_url(&url).await?;
    // A short lease: if the demo is killed, its running task is picked up soon after a restart.
    let worker = Worker::builder(backend.clone())
        .register(MonthlyReport {
            default_ms_per_day: ms_per_day,
        })
        .register(YearSummary)
        .lease(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(1))
        .sweep_interval(Duration::from_secs(2))
        .build()?
        .spawn();
    let client = Client::new(backend);
    // The queue gauges (tasks per job and status, oldest due task), read every 15 s.
    let stats = longtask_core::metrics::poll_stats(
        client.clone(),
        Duration::from_secs(15),
        std::future::pending(),
    );
    tokio::spawn(stats);

    // The operators' dashboard at /admin, for this machine only. The demo listens on
    // 127.0.0.1, so no other machine reaches it; the peer's address is not part of the request
    // here (`longtask_examples::serve` does not record it), so the hook admits a request only
    // when it names a loopback host too, which also turns away a web page elsewhere that
    // reaches 127.0.0.1 by DNS rebinding. Serving on another address needs a real check.
    let dashboard = longtask_tower::Dashboard::builder(client.clone())
        .at("/admin")
        .with_title("longtask demo")
        .with_job_at::<MonthlyReport>("/reports")
        .authorize(move |parts| loopback_host(parts, port))
        .build();

    let app = demo::app(
        HomeState {
            client: client.clone(),
            ms_per_day,
            port,
        },
        report::service(client),
    )
    .nest_service("/admin", dashboard)
    .route_service("/metrics", prometheus.service());

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("longtask demo: http://127.0.0.1:{port}/  (backend {url}; Ctrl-C to stop)");
    println!("operators' dashboard: http://127.0.0.1:{port}/admin (this machine only)");
    println!("Prometheus metrics: http://127.0.0.1:{port}/metrics");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // HTTP/1.1 and HTTP/2 (h2c), with timeouts for slow and silent clients: see
    // `longtask_examples::serve`.
    let server = tokio::spawn(longtask_examples::serve(
        listener,
        app,
        Timeouts::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    shutdown_signal().await;
    println!("stopping: running tasks go back to the queue and resume at the next start");
    worker.shutdown().await?;
    let _ = stop_tx.send(());
    // Open event streams end with the process; do not wait for them long.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

/// Whether the request names this demo on a loopback host (`Host`, or the HTTP/2 authority).
fn loopback_host(parts: &http::request::Parts, port: u16) -> bool {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str));
    host.is_some_and(|host| {
        ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|name| host.eq_ignore_ascii_case(&format!("{name}:{port}")))
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

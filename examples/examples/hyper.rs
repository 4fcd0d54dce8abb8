//! The monthly report's endpoints served without axum: the tower service itself, through
//! hyper-util (`longtask_examples::serve`: HTTP/1.1 and HTTP/2, with timeouts for slow and
//! silent clients).
//!
//! ```text
//! cargo run -p longtask-examples --example hyper
//! curl -i -H 'content-type: application/json' -d '{"month":"2026-10"}' http://127.0.0.1:3001/reports
//! ```
//!
//! Environment: `PORT` (default 3001), `LONGTASK_URL` (default `memory://`), `MS_PER_DAY` (default 500).

#[path = "shared/report.rs"]
#[allow(dead_code)] // the whole-year group is the quickstart demo's
mod report;

use std::{error::Error, time::Duration};

use longtask_core::{Client, Worker};
use longtask_examples::Timeouts;
use report::MonthlyReport;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let url = std::env::var("LONGTASK_URL").unwrap_or_else(|_| "memory://".to_owned());
    let ms_per_day = std::env::var("MS_PER_DAY")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(500);

    let backend = longtask_examples::backend_from_url(&url).await?;
    let worker = Worker::builder(backend.clone())
        .register(MonthlyReport {
            default_ms_per_day: ms_per_day,
        })
        .lease(Duration::from_secs(5))
        .build()?
        .spawn();
    let service = report::service(Client::new(backend));

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("POST http://127.0.0.1:{port}/reports  (backend {url}; Ctrl-C to stop)");
    longtask_examples::serve(listener, service, Timeouts::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    worker.shutdown().await?;
    Ok(())
}

//! The web demo: a form that starts a monthly report, and the report's status page.
//!
//! ```text
//! cargo run -p longtask-examples --example quickstart
//! ```
//!
//! Environment: `PORT` (default 3000), `LONGTASK_URL` (default `sqlite://longtask-demo.db`,
//! or `memory://` without the sqlite feature), `MS_PER_DAY` (default 500: how long each day of
//! the report takes). Stop it with Ctrl-C and start it again while a report runs: the report
//! goes on, and its page still works.

#[path = "shared/report.rs"]
mod report;

use std::{error::Error, future::IntoFuture, time::Duration};

use axum::{extract::State, response::Html, routing::get, Router};
use chrono::{Datelike, Utc};
use longtask_core::{Client, Job, TaskQuery, Worker};
use longtask_tower::escape;
use report::MonthlyReport;

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

    let backend = longtask_examples::backend_from_url(&url).await?;
    // A short lease: if the demo is killed, its running task is picked up soon after a restart.
    let worker = Worker::builder(backend.clone())
        .register(MonthlyReport {
            default_ms_per_day: ms_per_day,
        })
        .lease(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(1))
        .sweep_interval(Duration::from_secs(2))
        .build()?
        .spawn();
    let client = Client::new(backend);

    let app = Router::new()
        .route("/", get(home))
        .with_state(HomeState {
            client: client.clone(),
            ms_per_day,
            port,
        })
        .nest_service("/reports", report::service(client));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("longtask demo: http://127.0.0.1:{port}/  (backend {url}; Ctrl-C to stop)");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .into_future(),
    );
    shutdown_signal().await;
    println!("stopping: running tasks go back to the queue and resume at the next start");
    worker.shutdown().await?;
    let _ = stop_tx.send(());
    // Open event streams end with the process; do not wait for them long.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
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

#[derive(Clone)]
struct HomeState {
    client: Client,
    ms_per_day: u64,
    port: u16,
}

async fn home(State(state): State<HomeState>) -> Html<String> {
    let today = Utc::now().date_naive();
    let month = format!("{:04}-{:02}", today.year(), today.month());
    let query = TaskQuery {
        job: Some(MonthlyReport::NAME.to_owned()),
        limit: 1000,
        ..TaskQuery::default()
    };
    let mut recent = state.client.list(&query).await.unwrap_or_default();
    recent.reverse();
    let mut rows = String::new();
    for task in recent.iter().take(10) {
        let month = serde_json::from_str::<serde_json::Value>(&task.params)
            .ok()
            .and_then(|p| p["month"].as_str().map(str::to_owned))
            .unwrap_or_default();
        rows.push_str(&format!(
            "<li><a href=\"/reports/{id}\">{month}</a> · {status}</li>",
            id = task.id,
            month = escape(&month),
            status = task.status,
        ));
    }
    if rows.is_empty() {
        rows.push_str("<li>none yet</li>");
    }
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>longtask demo</title>
<style>
body{{margin:0;padding:2rem 1rem;background:#f3f5f8;color:#1d2430;font:16px/1.5 system-ui,sans-serif}}
main{{max-width:40rem;margin:0 auto;background:#fff;border-radius:12px;padding:1.75rem 2rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}}
label{{display:block;margin:.8rem 0 .2rem;font-weight:600}} input{{font:inherit;padding:.3rem .5rem}}
button{{margin-top:1rem;font:inherit;padding:.5rem 1.2rem;border-radius:6px;border:0;background:#2563eb;color:#fff;cursor:pointer}}
.check{{font-weight:400}} .muted{{color:#5b6675;font-size:.9rem}}
</style></head><body><main>
<h1>Monthly invoice report</h1>
<p>Starts a report that walks through every day of a month in the background. You get a page with a
progress bar at once; bookmark it, close it, come back: the report goes on without you.</p>
<form method="post" action="/reports">
<label for="month">Month</label><input id="month" name="month" type="month" value="{month}" required>
<label for="ms">Milliseconds per day</label><input id="ms" name="ms_per_day" type="number" min="0" max="60000" value="{ms}" required>
<label class="check"><input type="checkbox" name="flaky"> fail once half-way, to see a retry</label>
<input type="hidden" name="_source" value="demo-form">
<button type="submit">Start the report</button>
</form>
<h2>Recent reports</h2><ul>{rows}</ul>
<p class="muted">JSON clients: <code>curl -i -H 'content-type: application/json' -d '{{"month":"{month}"}}' http://127.0.0.1:{port}/reports</code></p>
</main></body></html>"#,
        ms = state.ms_per_day,
        port = state.port,
    ))
}

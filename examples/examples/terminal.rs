//! A task with progress and ETA, drawn in the terminal.
//!
//! Submits a report job to an in-process worker and follows it with `Client::watch`, drawing a
//! progress bar, the job's message and the estimated time left, then prints the result.
//!
//! ```text
//! cargo run -p longtask-examples --example terminal            # memory backend
//! LONGTASK_URL=sqlite://demo.db cargo run -p longtask-examples --example terminal
//! ```

use std::{
    io::Write,
    time::{Duration, Instant},
};

use futures::StreamExt;
use longtask_core::{Client, Job, JobError, TaskContext, TaskStatus, Worker};
use serde::{Deserialize, Serialize};

/// Counts invoices day by day; a stand-in for a slow monthly report.
struct InvoiceCount;

#[derive(Serialize, Deserialize)]
struct Month {
    days: u32,
    millis_per_day: u64,
}

impl Job for InvoiceCount {
    const NAME: &'static str = "terminal-invoice-count";
    type Params = Month;
    type Output = u64;

    async fn run(&self, month: Month, cx: TaskContext) -> Result<u64, JobError> {
        let mut invoices = 0;
        for day in 1..=month.days {
            tokio::time::sleep(Duration::from_millis(month.millis_per_day)).await;
            invoices += u64::from(day % 7 + 30);
            cx.progress(
                day.into(),
                Some(month.days.into()),
                format!("Handling day {day}: {invoices} invoices so far"),
            )?;
        }
        Ok(invoices)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("LONGTASK_URL").unwrap_or_else(|_| "memory://".to_owned());
    let backend = longtask_examples::backend_from_url(&url).await?;
    let worker = Worker::builder(backend.clone())
        .register(InvoiceCount)
        .progress_interval(Duration::from_millis(100))
        .build()?
        .spawn();
    let client = Client::new(backend);

    let id = client
        .submit::<InvoiceCount>(Month {
            days: 31,
            millis_per_day: 120,
        })
        .await?;
    println!("submitted task {id} to {url}");
    let started = Instant::now();
    let mut updates = client.watch(id).await?;
    let mut out = std::io::stdout();
    while let Some(task) = updates.next().await {
        let task = task?;
        let (bar, message) = match &task.progress {
            Some(p) => {
                let percent = p.percent().unwrap_or(0.0);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let filled = (percent / 100.0 * 30.0).round() as usize;
                (
                    format!(
                        "[{}{}] {percent:5.1}%",
                        "#".repeat(filled),
                        ".".repeat(30 - filled)
                    ),
                    p.message.clone().unwrap_or_default(),
                )
            }
            None => (format!("[{}]", ".".repeat(30)), task.status.to_string()),
        };
        let eta = task
            .eta(chrono::Utc::now())
            .map_or_else(String::new, |eta| {
                format!(", about {} s left", eta.as_secs() + 1)
            });
        write!(out, "\r\x1b[2K{bar} {message}{eta}")?;
        out.flush()?;
        if task.status.is_final() {
            println!();
            match task.status {
                TaskStatus::Succeeded => println!(
                    "done in {:.1?}: {} invoices",
                    started.elapsed(),
                    client.output::<InvoiceCount>(id).await?.unwrap_or_default()
                ),
                status => println!("ended {status}: {:?}", task.last_error),
            }
        }
    }
    worker.shutdown().await?;
    Ok(())
}

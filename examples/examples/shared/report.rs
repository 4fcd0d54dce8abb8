//! The demo's job: a monthly invoice report that walks through the days of a month.

use std::{fmt::Write as _, time::Duration};

use chrono::{Datelike, NaiveDate};
use longtask_core::{Backoff, Client, Job, JobError, JobOptions, TaskContext};
use longtask_tower::{JobService, ResultFile};
use serde::{Deserialize, Deserializer, Serialize};

/// A month, written `2026-10`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(into = "String")]
pub(crate) struct Month(NaiveDate);

impl From<Month> for String {
    fn from(m: Month) -> Self {
        m.0.format("%Y-%m").to_string()
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        NaiveDate::parse_from_str(&format!("{}-01", text.trim()), "%Y-%m-%d")
            .map(Month)
            .map_err(|_| {
                serde::de::Error::custom(format!("`{text}` is not a month such as 2026-10"))
            })
    }
}

impl Month {
    /// The month's days, in order.
    pub(crate) fn days(self) -> impl Iterator<Item = NaiveDate> {
        let first = self.0;
        first
            .iter_days()
            .take_while(move |d| d.month() == first.month())
    }
}

/// What the form (or a JSON client) submits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReportParams {
    /// The month to report on.
    pub(crate) month: Month,
    /// How long each day takes, in milliseconds (the demo's stand-in for real work).
    #[serde(default)]
    pub(crate) ms_per_day: Option<u64>,
    /// Fail once half-way through the first attempt, to show a retry (a checkbox: "on").
    #[serde(default)]
    pub(crate) flaky: Option<String>,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DayRow {
    /// The day, `2026-10-12`.
    pub(crate) date: String,
    /// Invoices handled that day.
    pub(crate) invoices: u64,
}

/// The finished report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReportOutput {
    /// The month reported on.
    pub(crate) month: String,
    /// One row per day.
    pub(crate) days: Vec<DayRow>,
    /// Invoices in all.
    pub(crate) total: u64,
}

/// What the report saves after each day: the days done so far.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct DaysDone {
    /// One row per day done, in order.
    pub(crate) rows: Vec<DayRow>,
    /// Invoices so far.
    pub(crate) total: u64,
}

/// The monthly report job.
pub(crate) struct MonthlyReport {
    /// Milliseconds per day when the submission does not say.
    pub(crate) default_ms_per_day: u64,
}

/// A stand-in for the invoices of one day: 20 to 79, the same every run.
fn invoices_on(date: NaiveDate) -> u64 {
    let seed = u64::from(date.ordinal()) * 2_654_435_761 + u64::from(date.year().unsigned_abs());
    20 + (seed ^ (seed >> 7)) % 60
}

impl Job for MonthlyReport {
    const NAME: &'static str = "monthly-report";
    type Params = ReportParams;
    type Output = ReportOutput;

    async fn run(&self, params: ReportParams, cx: TaskContext) -> Result<ReportOutput, JobError> {
        let pause = Duration::from_millis(
            params
                .ms_per_day
                .unwrap_or(self.default_ms_per_day)
                .min(60_000),
        );
        let days: Vec<NaiveDate> = params.month.days().collect();
        let total_days = days.len() as u64;
        // Where an earlier attempt got to, if it was interrupted (the process killed, a retry):
        // the days it did are not done again.
        let mut done: DaysDone = cx.resume().await?.unwrap_or_default();
        if done.rows.is_empty() {
            cx.progress(0, total_days, "Opening the ledger")?;
        }
        for (i, date) in days.into_iter().enumerate().skip(done.rows.len()) {
            tokio::time::sleep(pause).await;
            let step = i as u64 + 1;
            if params.flaky.is_some() && cx.attempt() == 1 && step == total_days / 2 {
                return Err(JobError::retryable(format!(
                    "the invoice service timed out on day {step}"
                )));
            }
            let invoices = invoices_on(date);
            done.total += invoices;
            done.rows.push(DayRow {
                date: date.to_string(),
                invoices,
            });
            cx.progress(
                step,
                total_days,
                format!(
                    "Day {step} of {total_days} ({date}): {} invoices so far",
                    done.total
                ),
            )?;
            // Committed with the progress above in one write: a restart carries on from here.
            cx.checkpoint(&done).await?;
        }
        Ok(ReportOutput {
            month: String::from(params.month),
            days: done.rows,
            total: done.total,
        })
    }

    fn options() -> JobOptions {
        JobOptions::default()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_secs(5)))
    }
}

/// The report as CSV.
pub(crate) fn csv(report: &ReportOutput) -> String {
    let mut out = String::from("date,invoices\n");
    for row in &report.days {
        let _ = writeln!(out, "{},{}", row.date, row.invoices);
    }
    let _ = writeln!(out, "total,{}", report.total);
    out
}

/// The report's endpoints, mounted at `/reports`, serving the result as a CSV download. A
/// submission's body must arrive within 30 s (a client sending it a byte at a time gets `408`).
pub(crate) fn service(client: Client) -> JobService<MonthlyReport> {
    JobService::<MonthlyReport>::new(client)
        .at("/reports")
        .with_title("Monthly invoice report")
        .with_body_timeout(Duration::from_secs(30))
        .with_result_file(|report: &ReportOutput| {
            ResultFile::new("text/csv; charset=utf-8", csv(report))
                .filename(format!("invoices-{}.csv", report.month))
        })
}

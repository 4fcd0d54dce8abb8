//! The demo's job: a monthly invoice report that walks through the days of a month.

use std::{fmt::Write as _, time::Duration};

use chrono::{Datelike, NaiveDate};
use longtask_core::{Backoff, Client, Job, JobError, JobOptions, TaskContext, TaskStatus};
use longtask_tower::{escape, GroupService, JobService, ResultFile};
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
    /// Month `month` (1 to 12) of `year`.
    pub(crate) fn of(year: i32, month: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(year, month, 1).map(Month)
    }

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

/// The twelve monthly reports of `year` as one group, with [`YearSummary`] summing them once
/// all have finished: "export twelve months at once". Returns the group's id.
pub(crate) async fn submit_year(
    client: &Client,
    year: i32,
    ms_per_day: Option<u64>,
) -> longtask_core::Result<longtask_core::TaskId> {
    let mut group = client.group();
    for month in 1..=12 {
        let month = Month::of(year, month).ok_or_else(|| {
            longtask_core::Error::InvalidInput(format!("{year} is not a year we can report on"))
        })?;
        group.add::<MonthlyReport>(&ReportParams {
            month,
            ms_per_day,
            flaky: None,
        })?;
    }
    group.on_complete::<YearSummary>(&year)?;
    group.submit().await
}

/// One month of the year's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MonthTotal {
    /// `2026-03`.
    pub(crate) month: String,
    /// Invoices that month.
    pub(crate) invoices: u64,
}

/// What [`YearSummary`] makes of the twelve reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct YearOutput {
    /// The year.
    pub(crate) year: i32,
    /// The months whose report succeeded, in order.
    pub(crate) months: Vec<MonthTotal>,
    /// Invoices in all those months.
    pub(crate) total: u64,
    /// How many monthly reports failed or were cancelled.
    pub(crate) missing: usize,
}

/// The group's completion job: sums the year's monthly reports, once every one has finished.
pub(crate) struct YearSummary;

impl Job for YearSummary {
    const NAME: &'static str = "year-summary";
    type Params = i32;
    type Output = YearOutput;

    async fn run(&self, year: i32, cx: TaskContext) -> Result<YearOutput, JobError> {
        let mut summary = YearOutput {
            year,
            months: Vec::new(),
            total: 0,
            missing: 0,
        };
        for member in cx.group_members().await? {
            let report = (member.status == TaskStatus::Succeeded)
                .then(|| serde_json::from_str::<ReportOutput>(member.output.as_deref()?).ok())
                .flatten();
            match report {
                Some(report) => {
                    summary.total += report.total;
                    summary.months.push(MonthTotal {
                        month: report.month,
                        invoices: report.total,
                    });
                }
                None => summary.missing += 1,
            }
        }
        summary.months.sort_by(|a, b| a.month.cmp(&b.month));
        Ok(summary)
    }
}

/// The year's summary as the group page shows it: a table of months.
pub(crate) fn year_html(year: &YearOutput) -> String {
    let mut html = format!(
        "<p><strong>{}</strong>: {} invoices</p><table><thead><tr><th scope=\"col\">Month</th>\
         <th scope=\"col\">Invoices</th></tr></thead><tbody>",
        year.year, year.total
    );
    for month in &year.months {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&month.month),
            month.invoices
        );
    }
    html.push_str("</tbody></table>");
    if year.missing > 0 {
        let _ = write!(
            html,
            "<p>{} month(s) missing: their reports failed or were cancelled.</p>",
            year.missing
        );
    }
    html
}

/// The groups' endpoints, mounted at `/years`: each month links to its own report page under
/// `/reports`, and the page shows the year's table when done.
pub(crate) fn year_service(client: Client) -> GroupService {
    GroupService::new(client)
        .at("/years")
        .with_title("Whole-year invoice report")
        .with_job_at::<MonthlyReport>("/reports")
        .with_member_label(|task| {
            let params: ReportParams = serde_json::from_str(&task.params).ok()?;
            Some(String::from(params.month))
        })
        .with_result_html::<YearSummary>(year_html)
}

//! The demo's web app: its home page (a form that starts a report, a form that starts the twelve
//! reports of a whole year, and the recent reports), the report's endpoints under `/reports` and
//! the year groups' page under `/years`.

use std::sync::LazyLock;

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Router,
};
use base64::Engine as _;
use chrono::{Datelike, Utc};
use longtask_core::{Client, Job, TaskQuery};
use longtask_tower::{escape, JobService};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::report::{self, MonthlyReport};

/// The home page's only style sheet, inline.
const STYLE: &str = "
body{margin:0;padding:2rem 1rem;background:#f3f5f8;color:#1d2430;font:16px/1.5 system-ui,sans-serif}
main{max-width:40rem;margin:0 auto;background:#fff;border-radius:12px;padding:1.75rem 2rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
label{display:block;margin:.8rem 0 .2rem;font-weight:600} input{font:inherit;padding:.3rem .5rem}
button{margin-top:1rem;font:inherit;padding:.5rem 1.2rem;border-radius:6px;border:0;background:#2563eb;color:#fff;cursor:pointer}
.check{font-weight:400} .muted{color:#5b6675;font-size:.9rem}
";

/// The home page's Content-Security-Policy: nothing may load or run but its own inline style
/// (allowed by its hash), and its form may only post to this site.
fn policy() -> HeaderValue {
    static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
        HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
             base-uri 'none'; frame-ancestors 'none'"
        ))
        .expect("an ASCII policy")
    });
    POLICY.clone()
}

/// The demo: the home page at `/`, the report's endpoints under `/reports`, the whole-year form
/// at `POST /year` and the year groups' pages under `/years`.
pub(crate) fn app(home_state: HomeState, reports: JobService<MonthlyReport>) -> Router {
    let years = report::year_service(home_state.client.clone());
    Router::new()
        .route("/", get(home))
        .route("/year", post(start_year))
        .with_state(home_state)
        .nest_service("/reports", reports)
        .nest_service("/years", years)
}

/// What the whole-year form sends.
#[derive(Deserialize)]
struct YearForm {
    year: i32,
    #[serde(default)]
    ms_per_day: Option<u64>,
}

/// `POST /year`: submits the twelve monthly reports of a year as one group, and sends the
/// browser to the group's page.
async fn start_year(
    State(state): State<HomeState>,
    headers: HeaderMap,
    Form(form): Form<YearForm>,
) -> Response {
    // A form posted from another site would start work with the visitor's cookies.
    let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if site.is_some_and(|site| site != b"same-origin" && site != b"none") {
        return (StatusCode::FORBIDDEN, "post this form from this site").into_response();
    }
    if !(1..=9999).contains(&form.year) {
        return (StatusCode::BAD_REQUEST, "the year is 1 to 9999").into_response();
    }
    let ms_per_day = form.ms_per_day.map(|ms| ms.min(60_000));
    match report::submit_year(&state.client, form.year, ms_per_day).await {
        Ok(id) => Redirect::to(&format!("/years/{id}")).into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not start the year: {err}"),
        )
            .into_response(),
    }
}

/// What the home page shows.
#[derive(Clone)]
pub(crate) struct HomeState {
    /// Submits and lists the reports.
    pub(crate) client: Client,
    /// The form's default for milliseconds per day.
    pub(crate) ms_per_day: u64,
    /// The port, for the curl example.
    pub(crate) port: u16,
}

async fn home(State(state): State<HomeState>) -> impl IntoResponse {
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
    let page = Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>longtask demo</title>
<style>{STYLE}</style></head><body><main>
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
<h2>Whole year</h2>
<p>The twelve monthly reports of a year at once, and the year's total once all are done: one page
follows them all.</p>
<form method="post" action="/year">
<label for="year">Year</label><input id="year" name="year" type="number" min="1" max="9999" value="{year}" required>
<input type="hidden" name="ms_per_day" value="{ms}">
<button type="submit">Whole year</button>
</form>
<h2>Recent reports</h2><ul>{rows}</ul>
<p class="muted">JSON clients: <code>curl -i -H 'content-type: application/json' -d '{{"month":"{month}"}}' http://127.0.0.1:{port}/reports</code></p>
</main></body></html>"#,
        ms = state.ms_per_day,
        port = state.port,
        year = today.year(),
    ));
    (
        [
            (header::CONTENT_SECURITY_POLICY, policy()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        page,
    )
}

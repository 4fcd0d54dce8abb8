//! The demo's "Whole year" form: twelve monthly reports submitted as one group, followed on one
//! page under `/years`, summed by the completion job once all are done.

#![allow(missing_docs, dead_code)]

#[path = "../examples/shared/demo.rs"]
mod demo;
#[path = "../examples/shared/report.rs"]
mod report;

use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use longtask_core::{Client, MemoryBackend, TaskQuery, TaskStatus, Worker};
use tower::ServiceExt;

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn year_form(year: &str, site: &str) -> Request<Body> {
    Request::post("/year")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html,*/*;q=0.8")
        .header("sec-fetch-site", site)
        .body(Body::from(format!("year={year}&ms_per_day=0")))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_year_form_runs_twelve_reports_and_sums_them() {
    let backend = MemoryBackend::new();
    let worker = Worker::builder(backend.clone())
        .register(report::MonthlyReport {
            default_ms_per_day: 0,
        })
        .register(report::YearSummary)
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let app = demo::app(
        demo::HomeState {
            client: client.clone(),
            ms_per_day: 0,
            port: 0,
        },
        report::service(client.clone()),
    );

    let (status, _, home) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        home.contains("action=\"/year\"") && home.contains(">Whole year<"),
        "{home}"
    );

    // From another site: refused, nothing submitted.
    let (status, _, _) = send(&app, year_form("2025", "cross-site")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(&app, year_form("0", "same-origin")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let all = TaskQuery {
        limit: 1000,
        ..TaskQuery::default()
    };
    assert!(client.list(&all).await.unwrap().is_empty());

    let (status, headers, _) = send(&app, year_form("2025", "same-origin")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers["location"].to_str().unwrap().to_owned();
    let id: longtask_core::TaskId = location.strip_prefix("/years/").unwrap().parse().unwrap();

    let (status, _, json) = send(&app, Request::get(&location).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let members = json["members"].as_array().unwrap();
    assert_eq!(members.len(), 12);
    assert_eq!(members[0]["label"], "2025-01");
    assert_eq!(members[11]["label"], "2025-12");
    let first = members[0]["id"].as_str().unwrap();
    assert_eq!(members[0]["link"], format!("/reports/{first}"));
    assert_eq!(json["completion"]["job"], "year-summary");

    // Every month, then the summary.
    let mut group = client.group_status(id).await.unwrap();
    for _ in 0..6000 {
        if group.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        group = client.group_status(id).await.unwrap();
    }
    assert_eq!(group.root.status, TaskStatus::Succeeded, "{group:?}");
    assert_eq!(group.count(TaskStatus::Succeeded), 12);
    let months: u64 = group
        .members
        .iter()
        .map(|m| {
            let out: report::ReportOutput =
                serde_json::from_str(m.output.as_deref().unwrap()).unwrap();
            out.total
        })
        .sum();

    let (status, _, result) = send(
        &app,
        Request::get(format!("{location}/result"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(result["year"], 2025);
    assert_eq!(result["total"], months);
    assert_eq!(result["months"].as_array().unwrap().len(), 12);
    assert_eq!(result["missing"], 0);

    let page = Request::get(&location)
        .header("accept", "text/html")
        .body(Body::empty())
        .unwrap();
    let (status, _, page) = send(&app, page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&format!("<strong>2025</strong>: {months} invoices")),
        "{page}"
    );
    assert!(page.contains("<td>2025-12</td>"), "{page}");
    assert!(page.contains("12 of 12 done"), "{page}");
    assert!(
        page.contains(&format!("href=\"/reports/{first}\"")),
        "{page}"
    );
    worker.shutdown().await.unwrap();
}

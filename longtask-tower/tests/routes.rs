//! Every route and every error of `JobService`, through `tower::ServiceExt::oneshot`, with a
//! MemoryBackend and a real Worker.

mod common;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use common::*;
use http::{Method, Request, StatusCode};
use longtask_core::{
    Backend, CancelOutcome, Client, Error, Inserted, MemoryBackend, NewTask, Result, TaskId,
    TaskQuery, TaskRecord, TaskStatus, TaskStore,
};
use longtask_tower::JobService;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_json_then_status_then_result() {
    let app = App::new();
    let answer = send(&app.service, post_json("/reports", r#"{"days": 3}"#)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let id = id_of(&answer);
    assert_eq!(answer.header("location"), format!("/reports/{id}"));
    let json = answer.json();
    assert_eq!(json["status"], "queued");
    assert_eq!(json["links"]["self"], format!("/reports/{id}"));
    assert_eq!(json["links"]["events"], format!("/reports/{id}/events"));
    assert_eq!(json["links"]["result"], format!("/reports/{id}/result"));

    app.wait(id).await;
    let status = send(&app.service, get(&format!("/reports/{id}"))).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.header("content-type"), "application/json");
    let json = status.json();
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["attempt"], 1);
    assert_eq!(json["max_attempts"], 3);
    assert_eq!(json["progress"]["step"], 3);
    assert_eq!(json["progress"]["total"], 3);
    assert_eq!(json["progress"]["percent"], 100.0);
    assert_eq!(
        json["progress"]["message"],
        "Handling day 3: 120 invoices so far"
    );
    assert!(json["created_at"].is_string() && json["finished_at"].is_string());
    assert!(json["eta_seconds"].is_null());
    assert!(status.headers.get("retry-after").is_none());

    let result = send(&app.service, get(&format!("/reports/{id}/result"))).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.header("content-type"), "text/csv; charset=utf-8");
    assert!(result
        .header("content-disposition")
        .contains("report-3.csv"));
    assert_eq!(result.text(), "days,invoices\n3,120\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_works_with_the_prefix_stripped_too() {
    let app = App::new();
    // axum's nest_service strips the mount point: the service sees "/" and "/{id}".
    let answer = send(&app.service, post_json("/", r#"{"days": 1}"#)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let id = id_of(&answer);
    assert_eq!(answer.header("location"), format!("/reports/{id}"));
    app.wait(id).await;
    let status = send(&app.service, get(&format!("/{id}"))).await;
    assert_eq!(status.json()["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_served_as_is_without_a_file_hook() {
    let app = App::new();
    let plain = JobService::<Report>::new(app.client.clone()).at("/reports");
    let id = id_of(&send(&plain, post_json("/reports", r#"{"days": 2}"#)).await);
    app.wait(id).await;
    let result = send(&plain, get(&format!("/reports/{id}/result"))).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.header("content-type"), "application/json");
    assert_eq!(
        result.json(),
        serde_json::json!({"days": 2, "invoices": 80})
    );
    let page = send(&plain, get_html(&format!("/reports/{id}"))).await;
    assert!(
        page.text().contains("&quot;invoices&quot;: 80"),
        "{}",
        page.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_form_post_redirects_to_the_status_page() {
    let app = App::new();
    let request = Request::post("/reports")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html,*/*;q=0.8")
        .body("days=2&_csrf=abc&_submit=Start".to_owned())
        .unwrap();
    let answer = send(&app.service, request).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    let location = answer.header("location").to_owned();
    let id: TaskId = location.strip_prefix("/reports/").unwrap().parse().unwrap();
    let task = app.wait(id).await;
    assert_eq!(task.status, TaskStatus::Succeeded);
    assert_eq!(
        task.params,
        r#"{"days":2,"step_ms":0,"message":null,"fail":null,"no_total":false}"#
    );

    // The same form from a program gets the JSON answer.
    let request = Request::post("/reports")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("days=1&step_ms=0".to_owned())
        .unwrap();
    let answer = send(&app.service, request).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert!(answer.json()["id"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_first_task() {
    let app = App::idle();
    let request = || {
        Request::post("/reports")
            .header("content-type", "application/json")
            .header("idempotency-key", "october")
            .body(r#"{"days": 31}"#.to_owned())
            .unwrap()
    };
    let first = send(&app.service, request()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let again = send(&app.service, request()).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(id_of(&first), id_of(&again));
    assert_eq!(
        again.header("location"),
        format!("/reports/{}", id_of(&first))
    );

    // A form's hidden `_idempotency_key` field works too.
    let form = || {
        Request::post("/reports")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("days=3&_idempotency_key=form-1".to_owned())
            .unwrap()
    };
    let a = send(&app.service, form()).await;
    let b = send(&app.service, form()).await;
    assert_eq!(id_of(&a), id_of(&b));
    assert_ne!(id_of(&a), id_of(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_is_html_with_a_strict_policy() {
    let app = App::idle();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 3}"#)).await);
    let page = send(&app.service, get_html(&format!("/reports/{id}"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let csp = page.header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    let html = page.text();
    assert!(html.contains("<h1>Monthly report</h1>"));
    assert!(
        html.contains("<progress id=\"bar\" max=\"100\">"),
        "indeterminate while unknown"
    );
    assert!(html.contains("Waiting for a worker"));
    assert!(html.contains("bookmark"));
    assert!(html.contains("<noscript><meta http-equiv=\"refresh\""));
    assert!(html.contains(&format!("action=\"/reports/{id}/cancel\"")));
    assert!(html.contains(&format!("data-events=\"/reports/{id}/events\"")));
    assert_eq!(page.header("retry-after"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_task_shows_progress_eta_and_retry_after() {
    let app = App::new();
    let body = r#"{"days": 400, "step_ms": 20}"#;
    let id = id_of(&send(&app.service, post_json("/reports", body)).await);
    app.wait_until(id, |t| {
        t.progress
            .as_ref()
            .is_some_and(|p| p.step >= 20 && p.rate.is_some())
    })
    .await;
    let status = send(&app.service, get(&format!("/reports/{id}"))).await;
    let json = status.json();
    assert_eq!(json["status"], "running");
    assert!(json["eta_seconds"].as_u64().is_some(), "{json}");
    assert!(json["progress"]["percent"].as_f64().unwrap() > 0.0);
    let retry: u64 = status.header("retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry));

    let page = send(&app.service, get_html(&format!("/reports/{id}")))
        .await
        .text();
    assert!(page.contains("left</span>"), "{page}");
    assert!(page.contains("<progress id=\"bar\" max=\"100\" value=\""));
    assert!(page.contains("invoices so far"));
    app.client.cancel(id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_answers_not_modified() {
    let app = App::new();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    app.wait(id).await;
    let first = send(&app.service, get(&format!("/reports/{id}"))).await;
    let tag = first.header("etag").to_owned();
    assert!(tag.starts_with("W/\""));
    let request = Request::get(format!("/reports/{id}"))
        .header("if-none-match", &tag)
        .body(String::new())
        .unwrap();
    let again = send(&app.service, request).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), tag);
    // The HTML page has a validator of its own.
    let page = send(&app.service, get_html(&format!("/reports/{id}"))).await;
    assert_ne!(page.header("etag"), tag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_one_event_per_change_and_end() {
    let app = App::new();
    let id = id_of(
        &send(
            &app.service,
            post_json("/reports", r#"{"days": 5, "step_ms": 60}"#),
        )
        .await,
    );
    let request = Request::get(format!("/reports/{id}/events"))
        .header("accept", "text/event-stream")
        .body(String::new())
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), send(&app.service, request))
        .await
        .expect("the stream ends after the final status");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), "text/event-stream");
    let text = answer.text();
    assert!(text.starts_with("retry: 2000\n\n"), "{text}");
    let events: Vec<serde_json::Value> = text
        .split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert!(events.len() >= 3, "{text}");
    assert_eq!(events.last().unwrap()["status"], "succeeded");
    assert!(text.contains("event: progress"), "{text}");
    assert!(text.contains("event: status"));
    let steps: Vec<u64> = events
        .iter()
        .filter_map(|e| e["progress"]["step"].as_u64())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
    // Only the final event has an id; an EventSource reconnecting after it is told to stop.
    assert_eq!(
        text.matches("\nid: ").count() + usize::from(text.starts_with("id: ")),
        1
    );
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("id: succeeded\nevent: status\n"), "{last}");
    let request = Request::get(format!("/reports/{id}/events"))
        .header("accept", "text/event-stream")
        .header("last-event-id", "succeeded")
        .body(String::new())
        .unwrap();
    let again = send(&app.service, request).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    assert!(again.body.is_empty());
}

/// Live streams are limited per service: past the limit a stream request answers 503 with
/// Retry-After, and closing a stream frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_capped() {
    let app = App::idle();
    let service = app.service.clone().with_max_watchers(2);
    let id = id_of(&send(&service, post_json("/reports", r#"{"days": 1}"#)).await);
    let open = || {
        let request = Request::get(format!("/reports/{id}/events"))
            .header("accept", "text/event-stream")
            .body(String::new())
            .unwrap();
        tower::ServiceExt::oneshot(service.clone(), request)
    };
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    let refused = send(
        &service,
        Request::get(format!("/reports/{id}/events"))
            .header("accept", "text/event-stream")
            .body(String::new())
            .unwrap(),
    )
    .await;
    let detail = refused.problem(503);
    assert!(detail.contains("at most 2"), "{detail}");
    assert!(refused.headers.get("retry-after").is_some());
    // Status pages still answer.
    assert_eq!(
        send(&service, get(&format!("/reports/{id}"))).await.status,
        StatusCode::OK
    );
    drop(first);
    let third = open().await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    drop((second, third));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_is_202_while_unfinished_and_409_when_failed_or_cancelled() {
    let app = App::idle();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    let waiting = send(&app.service, get(&format!("/reports/{id}/result"))).await;
    assert_eq!(waiting.status, StatusCode::ACCEPTED);
    assert_eq!(waiting.json()["status"], "queued");
    assert_eq!(waiting.header("content-location"), format!("/reports/{id}"));
    assert!(waiting.headers.get("retry-after").is_some());

    app.client.cancel(id).await.unwrap();
    let cancelled = send(&app.service, get(&format!("/reports/{id}/result"))).await;
    assert!(cancelled.problem(409).contains("cancelled"));

    let app = App::new();
    let body = r#"{"days": 1, "fail": "the ledger is locked"}"#;
    let request = Request::post("/reports")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .unwrap();
    let id = id_of(&send(&app.service, request).await);
    // First attempt fails; the next waits 30 s: the page says so.
    app.wait_until(id, |t| t.status == TaskStatus::Retrying)
        .await;
    let page = send(&app.service, get_html(&format!("/reports/{id}")))
        .await
        .text();
    assert!(
        page.contains("Attempt 1 of 3 failed: the ledger is locked"),
        "{page}"
    );
    assert!(page.contains("Retry 2 of 3 in "), "{page}");
    let json = send(&app.service, get(&format!("/reports/{id}")))
        .await
        .json();
    assert_eq!(json["status"], "retrying");
    assert_eq!(json["last_error"]["message"], "the ledger is locked");
    assert!(json["next_attempt_in_seconds"].as_u64().unwrap() > 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_task_result_is_409_with_the_error() {
    let backend = MemoryBackend::new();
    let client = Client::new(backend.clone());
    let service = JobService::<Report>::new(client.clone()).at("/reports");
    // A task that has used up its attempts.
    let inserted = client
        .submit_with::<Report>(
            common::Params {
                days: 1,
                step_ms: 0,
                message: None,
                fail: Some("disk full".into()),
                no_total: false,
            },
            longtask_core::SubmitOptions::new().max_attempts(1),
        )
        .await
        .unwrap();
    let worker = longtask_core::Worker::builder(backend)
        .register(Report)
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap()
        .spawn();
    let task = client
        .wait(inserted.id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    let result = send(&service, get(&format!("/reports/{}/result", inserted.id))).await;
    let detail = result.problem(409);
    assert!(
        detail.contains("failed after 1 of 1 attempts (disk full)"),
        "{detail}"
    );
    let page = send(&service, get_html(&format!("/reports/{}", inserted.id)))
        .await
        .text();
    assert!(
        page.contains("The task failed after 1 of 1 attempts: disk full"),
        "{page}"
    );
    assert!(
        !page.contains("<noscript><meta"),
        "a final page does not refresh"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_delete_and_by_form() {
    let app = App::idle();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    let request = Request::delete(format!("/reports/{id}"))
        .body(String::new())
        .unwrap();
    let answer = send(&app.service, request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["status"], "cancelled");

    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    let form = Request::post(format!("/reports/{id}/cancel"))
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(String::new())
        .unwrap();
    let answer = send(&app.service, form).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.header("location"), format!("/reports/{id}"));
    assert_eq!(
        app.client.status(id).await.unwrap().status,
        TaskStatus::Cancelled
    );

    // A running task: cancellation is requested, 202.
    let app = App::new();
    let id = id_of(
        &send(
            &app.service,
            post_json("/reports", r#"{"days": 1000, "step_ms": 20}"#),
        )
        .await,
    );
    app.wait_until(id, |t| t.status == TaskStatus::Running)
        .await;
    let request = Request::delete(format!("/reports/{id}"))
        .body(String::new())
        .unwrap();
    let answer = send(&app.service, request).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    assert_eq!(answer.json()["cancel_requested"], true);
    assert_eq!(app.wait(id).await.status, TaskStatus::Cancelled);

    // A finished task cannot be cancelled.
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    app.wait(id).await;
    let request = Request::delete(format!("/reports/{id}"))
        .body(String::new())
        .unwrap();
    let detail = send(&app.service, request).await.problem(409);
    assert!(detail.contains("already succeeded"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_malformed_and_foreign_ids_are_404() {
    let app = App::idle();
    let unknown = TaskId::new();
    for path in [
        format!("/reports/{unknown}"),
        format!("/reports/{unknown}/events"),
        format!("/reports/{unknown}/result"),
        "/reports/not-a-uuid".to_owned(),
        "/reports/%3Cscript%3E/result".to_owned(),
        "/reports/x/y/z".to_owned(),
    ] {
        let detail = send(&app.service, get(&path)).await.problem(404);
        assert!(!detail.is_empty());
    }
    // A task of another job is not served here.
    let other = app
        .client
        .submit_raw(vec![NewTask::new("another-job", "{}")])
        .await
        .unwrap()[0]
        .id;
    send(&app.service, get(&format!("/reports/{other}")))
        .await
        .problem(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_405_with_allow() {
    let app = App::idle();
    let id = TaskId::new();
    for (method, path, allow) in [
        (Method::GET, "/reports".to_owned(), "POST, OPTIONS"),
        (
            Method::PUT,
            format!("/reports/{id}"),
            "GET, HEAD, DELETE, OPTIONS",
        ),
        (
            Method::POST,
            format!("/reports/{id}/events"),
            "GET, HEAD, OPTIONS",
        ),
        (
            Method::DELETE,
            format!("/reports/{id}/result"),
            "GET, HEAD, OPTIONS",
        ),
        (
            Method::GET,
            format!("/reports/{id}/cancel"),
            "POST, OPTIONS",
        ),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(&path)
            .body(String::new())
            .unwrap();
        let answer = send(&app.service, request).await;
        answer.problem(405);
        assert_eq!(answer.header("allow"), allow, "{path}");

        // OPTIONS names the same methods, with no body.
        let request = Request::options(&path).body(String::new()).unwrap();
        let answer = send(&app.service, request).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "OPTIONS {path}");
        assert_eq!(answer.header("allow"), allow, "OPTIONS {path}");
        assert!(answer.body.is_empty());
    }
    let request = Request::options("/reports/a/b/c")
        .body(String::new())
        .unwrap();
    send(&app.service, request).await.problem(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacceptable_accept_is_406() {
    let app = App::idle();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    for path in [format!("/reports/{id}"), format!("/reports/{id}/events")] {
        let request = Request::get(&path)
            .header("accept", "image/png")
            .body(String::new())
            .unwrap();
        let detail = send(&app.service, request).await.problem(406);
        assert!(detail.contains("Accept"), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    let app = App::idle();
    let big = format!(r#"{{"days": 1, "message": "{}"}}"#, "x".repeat(1 << 20));
    let detail = send(&app.service, post_json("/reports", &big))
        .await
        .problem(413);
    assert_eq!(
        detail,
        "body exceeds 1 MiB limit (set with `with_body_limit`)"
    );

    // Without a Content-Length (a streamed body), the limit still holds.
    let small = app.service.clone().with_body_limit(16);
    let chunks = futures::stream::iter((0..10).map(|_| {
        Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::from_static(
            b"{\"days\": 1}",
        )))
    }));
    let request = Request::post("/reports")
        .header("content-type", "application/json")
        .body(http_body_util::StreamBody::new(chunks))
        .unwrap();
    let response = tower::ServiceExt::oneshot(small, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_media_types_are_415() {
    let app = App::idle();
    let request = Request::post("/reports")
        .header("content-type", "text/plain")
        .body("days=1".to_owned())
        .unwrap();
    let detail = send(&app.service, request).await.problem(415);
    assert!(detail.contains("application/json"), "{detail}");
    let request = Request::post("/reports").body("{}".to_owned()).unwrap();
    send(&app.service, request).await.problem(415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_400_or_422_naming_the_field() {
    let app = App::idle();
    let detail = send(&app.service, post_json("/reports", "{\"days\": "))
        .await
        .problem(400);
    assert!(detail.contains("not valid JSON"), "{detail}");
    let detail = send(&app.service, post_json("/reports", ""))
        .await
        .problem(400);
    assert!(detail.contains("not valid JSON"), "{detail}");
    let detail = send(&app.service, post_json("/reports", r#"{"days": "many"}"#))
        .await
        .problem(422);
    assert!(detail.starts_with("field `days`"), "{detail}");
    let detail = send(&app.service, post_json("/reports", r#"{}"#))
        .await
        .problem(422);
    assert!(detail.contains("missing field `days`"), "{detail}");
    let detail = send(
        &app.service,
        post_json("/reports", r#"{"days": 1, "colour": 2}"#),
    )
    .await
    .problem(422);
    assert!(detail.contains("colour"), "{detail}");
    let detail = send(&app.service, post_json("/reports", r#"{"days": 1} {}"#))
        .await
        .problem(400);
    assert!(detail.contains("one document"), "{detail}");
    let form = Request::post("/reports")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("days=lots".to_owned())
        .unwrap();
    let detail = send(&app.service, form).await.problem(422);
    assert!(detail.starts_with("field `days`"), "{detail}");
    let bad_key = Request::post("/reports")
        .header("content-type", "application/json")
        .header("idempotency-key", "")
        .body(r#"{"days": 1}"#.to_owned())
        .unwrap();
    let detail = send(&app.service, bad_key).await.problem(400);
    assert!(detail.contains("idempotency key"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_owners_task_is_404_everywhere() {
    let app = App::new();
    let service = app.service.clone().with_owner(|parts| {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    });
    let as_user = |user: &str, method: Method, path: String| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("x-user", user)
            .header("content-type", "application/json")
            .header("idempotency-key", "same-key")
            .body(r#"{"days": 1}"#.to_owned())
            .unwrap()
    };
    let alice = send(&service, as_user("alice", Method::POST, "/reports".into())).await;
    let id = id_of(&alice);
    assert_eq!(app.wait(id).await.owner.as_deref(), Some("alice"));
    for (method, path) in [
        (Method::GET, format!("/reports/{id}")),
        (Method::GET, format!("/reports/{id}/events")),
        (Method::GET, format!("/reports/{id}/result")),
        (Method::DELETE, format!("/reports/{id}")),
        (Method::POST, format!("/reports/{id}/cancel")),
    ] {
        send(&service, as_user("bob", method.clone(), path.clone()))
            .await
            .problem(404);
        let anonymous = Request::builder()
            .method(method)
            .uri(&path)
            .body(String::new())
            .unwrap();
        send(&service, anonymous).await.problem(404);
    }
    let mine = send(
        &service,
        as_user("alice", Method::GET, format!("/reports/{id}")),
    )
    .await;
    assert_eq!(mine.status, StatusCode::OK);
    // The same idempotency key from another owner is another task.
    let bob = send(&service, as_user("bob", Method::POST, "/reports".into())).await;
    assert_eq!(bob.status, StatusCode::ACCEPTED);
    assert_ne!(id_of(&bob), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_strings_are_escaped_in_the_page() {
    let app = App::new();
    let body = r#"{"days": 1, "message": "<script>alert('m')</script>", "fail": "<script>alert(\"e\")</script><img src=x onerror=alert(1)>"}"#;
    let id = id_of(&send(&app.service, post_json("/reports", body)).await);
    app.wait_until(id, |t| t.status == TaskStatus::Retrying)
        .await;
    let page = send(&app.service, get_html(&format!("/reports/{id}")))
        .await
        .text();
    assert!(
        page.contains("&lt;script&gt;alert(&#39;m&#39;)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains(
            "&lt;script&gt;alert(&quot;e&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
        ),
        "{page}"
    );
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("<img"));
    // Exactly one script element: the page's own.
    assert_eq!(page.matches("<script").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_result_html_is_used() {
    let app = App::new();
    let service = JobService::<Report>::new(app.client.clone())
        .at("/reports")
        .with_result_html(|out: &Output| {
            format!("<p class=\"total\">{} invoices</p>", out.invoices)
        });
    let id = id_of(&send(&service, post_json("/reports", r#"{"days": 2}"#)).await);
    app.wait(id).await;
    let page = send(&service, get_html(&format!("/reports/{id}")))
        .await
        .text();
    assert!(
        page.contains("<p class=\"total\">80 invoices</p>"),
        "{page}"
    );
    assert!(page.contains("Done"));
    // With a file hook, the page links to the download.
    let page = send(&app.service, get_html(&format!("/reports/{id}")))
        .await
        .text();
    assert!(page.contains("Download report-2.csv"), "{page}");
}

/// A task store whose storage is down.
struct DownStore;

#[async_trait]
impl TaskStore for DownStore {
    async fn insert(&self, _: Vec<NewTask>) -> Result<Vec<Inserted>> {
        Err(Error::backend(
            "inserting tasks",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn get(&self, _: TaskId) -> Result<Option<TaskRecord>> {
        Err(Error::backend(
            "reading a task",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn list(&self, _: &TaskQuery) -> Result<Vec<TaskRecord>> {
        Err(Error::backend(
            "listing tasks",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn cancel(&self, _: TaskId) -> Result<CancelOutcome> {
        Err(Error::backend(
            "cancelling",
            std::io::Error::other("connection refused"),
        ))
    }
    async fn purge(&self, _: usize) -> Result<u64> {
        Err(Error::backend(
            "purging",
            std::io::Error::other("connection refused"),
        ))
    }

    async fn retry(&self, _: &[TaskId]) -> Result<Vec<longtask_core::RetryOutcome>> {
        Err(Error::backend(
            "retrying",
            std::io::Error::other("connection refused"),
        ))
    }

    async fn delete(&self, _: &[TaskId]) -> Result<Vec<longtask_core::DeleteOutcome>> {
        Err(Error::backend(
            "deleting",
            std::io::Error::other("connection refused"),
        ))
    }

    async fn stats(&self) -> Result<longtask_core::Stats> {
        Err(Error::backend(
            "reading stats",
            std::io::Error::other("connection refused"),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_failure_is_503() {
    let memory = Arc::new(MemoryBackend::new());
    let backend = Backend::from_parts(Arc::new(DownStore), memory.clone(), memory);
    let service = JobService::<Report>::new(Client::new(backend)).at("/reports");
    let answer = send(&service, post_json("/reports", r#"{"days": 1}"#)).await;
    let detail = answer.problem(503);
    assert!(detail.contains("try again"), "{detail}");
    assert_eq!(answer.header("retry-after"), "5");
    send(&service, get(&format!("/reports/{}", TaskId::new())))
        .await
        .problem(503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_total_gives_an_indeterminate_bar() {
    let app = App::new();
    let body = r#"{"days": 1000, "step_ms": 20, "no_total": true}"#;
    let id = id_of(&send(&app.service, post_json("/reports", body)).await);
    app.wait_until(id, |t| t.progress.as_ref().is_some_and(|p| p.step >= 3))
        .await;
    let json = send(&app.service, get(&format!("/reports/{id}")))
        .await
        .json();
    assert!(json["progress"]["total"].is_null());
    assert!(json["progress"]["percent"].is_null());
    assert!(json["eta_seconds"].is_null());
    let page = send(&app.service, get_html(&format!("/reports/{id}")))
        .await
        .text();
    assert!(page.contains("<progress id=\"bar\" max=\"100\">"), "{page}");
    assert!(page.contains("<span id=\"percent\">step "), "{page}");
    app.client.cancel(id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_format_override() {
    let app = App::idle();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    let head = Request::head(format!("/reports/{id}"))
        .body(String::new())
        .unwrap();
    let answer = send(&app.service, head).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers.contains_key("etag"));
    // The page's "as JSON" link works from a browser.
    let mut request = get_html(&format!("/reports/{id}?format=json"));
    *request.uri_mut() = format!("/reports/{id}?format=json").parse().unwrap();
    let answer = send(&app.service, request).await;
    assert_eq!(answer.header("content-type"), "application/json");
    let answer = send(&app.service, get(&format!("/reports/{id}?format=html"))).await;
    assert_eq!(answer.header("content-type"), "text/html; charset=utf-8");
}

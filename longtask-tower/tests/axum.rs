//! Mounting in an axum Router beside ordinary routes: `nest_service` and `layer`.

mod common;

use axum::{body::Body, routing::get, Router};
use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use longtask_tower::JobLayer;
use tower::ServiceExt;

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn submit(path: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"days": 2}"#))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nest_service_beside_ordinary_routes() {
    let app_state = App::new();
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .nest_service("/reports", app_state.service.clone());

    let (status, _, body) = call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "home"));

    let (status, headers, body) = call(&app, submit("/reports")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let location = headers["location"].to_str().unwrap().to_owned();
    let id = location.strip_prefix("/reports/").unwrap().parse().unwrap();
    app_state.wait(id).await;

    let (status, _, body) = call(&app, Request::get(&location).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"status\":\"succeeded\""), "{body}");
    let (status, headers, body) = call(
        &app,
        Request::get(format!("{location}/result"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(body, "days,invoices\n2,80\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_answers_under_its_prefix_only() {
    let app_state = App::new();
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .route("/reportsx", get(|| async { "not ours" }))
        .layer(JobLayer::<Report>::new(
            "/reports",
            app_state.client.clone(),
        ));

    let (status, _, body) = call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "home"));
    let (_, _, body) = call(&app, Request::get("/reportsx").body(Body::empty()).unwrap()).await;
    assert_eq!(body, "not ours");

    let (status, headers, body) = call(&app, submit("/reports")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let location = headers["location"].to_str().unwrap().to_owned();
    let id = location.strip_prefix("/reports/").unwrap().parse().unwrap();
    app_state.wait(id).await;
    let (status, _, body) = call(&app, Request::get(&location).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"status\":\"succeeded\""), "{body}");

    // Errors under the prefix are the layer's problems; elsewhere, axum's own 404.
    let (status, headers, _) = call(
        &app,
        Request::get("/reports/nope").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, headers, _) = call(
        &app,
        Request::get("/elsewhere").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers
        .get("content-type")
        .is_none_or(|v| v != "application/problem+json"));
}

//! Serving the service from plain hyper (hyper-util's tower adapter) over a real TCP socket.

mod common;

use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, server::conn::http1};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use longtask_core::TaskId;
use tokio::net::{TcpListener, TcpStream};

async fn fetch(
    addr: std::net::SocketAddr,
    request: Request<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_by_hyper_over_tcp() {
    let app = App::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.service.clone();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let request = Request::post("/reports")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"days": 3, "step_ms": 30}"#,
        )))
        .unwrap();
    let (status, headers, body) = fetch(addr, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let location = headers["location"].to_str().unwrap().to_owned();
    let id: TaskId = location.strip_prefix("/reports/").unwrap().parse().unwrap();

    // The event stream flows over the socket and ends with the final status.
    let events = Request::get(format!("{location}/events"))
        .header("host", addr.to_string())
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(20), fetch(addr, events))
        .await
        .expect("the stream ends");
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"status\":\"succeeded\""), "{body}");
    assert_eq!(
        app.client.status(id).await.unwrap().status,
        longtask_core::TaskStatus::Succeeded
    );

    let page = Request::get(&location)
        .header("host", addr.to_string())
        .header("accept", "text/html")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = fetch(addr, page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("content-security-policy"));
    assert!(body.contains("Download report-3.csv"), "{body}");
    server.abort();
}

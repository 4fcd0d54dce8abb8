//! `longtask dashboard`'s guards, on a real SQLite file: what it refuses to start with (a
//! non-loopback address without `--allow-anyone` or `--token`, a port in use, a bad address,
//! a weak token), `--token`, `--prefix`, and `--allow-anyone` with its warning.

#![allow(missing_docs)]

mod common;

use std::net::TcpListener;

use common::{at, dashboard, get, http};
use tempfile::TempDir;

/// A migrated SQLite file of this test alone, with a task of job `report` in it.
async fn sqlite() -> (TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let client = longtask::Client::new(longtask::connect(&url).await.expect("opening SQLite"));
    common::submit(&client, "report", "{}").await;
    (dir, url)
}

const TOKEN: &str = "Zm9vYmFyYmF6cXV4cXV1eA-_.~+/=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_needs_allow_anyone_or_a_token() {
    let (_dir, url) = sqlite().await;
    for bind in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8080"] {
        let run = at(&url, &["dashboard", "--bind", bind]).await;
        let line = run.fails_with(2);
        assert!(
            line.contains("not a loopback address")
                && line.contains("--allow-anyone")
                && line.contains("--token"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_or_a_bad_address_is_one_line() {
    let (_dir, url) = sqlite().await;
    let taken = TcpListener::bind("127.0.0.1:0").expect("holding a port");
    let port = taken.local_addr().expect("its address").port();
    let bind = format!("127.0.0.1:{port}");
    let run = at(&url, &["dashboard", "--bind", &bind]).await;
    let line = run.fails_with(1);
    assert!(
        line.contains(&format!("cannot listen on {bind}")) && line.contains("in use"),
        "{line}"
    );
    drop(taken);

    for bad in [
        "nope",
        "127.0.0.1",
        "127.0.0.1:99999",
        "http://127.0.0.1:8080",
        "",
    ] {
        let line = at(&url, &["dashboard", "--bind", bad])
            .await
            .fails_with(2)
            .to_owned();
        assert!(line.contains("--bind"), "{bad:?}: {line}");
    }
    for bad in ["admin", "/ad min", "/a?b", "/a/../b//c"] {
        let line = at(&url, &["dashboard", "--prefix", bad])
            .await
            .fails_with(2)
            .to_owned();
        assert!(line.contains("not a path prefix"), "{bad:?}: {line}");
    }
    // A weak token: refused without repeating it.
    for weak in ["short", "sixteen chars but spaces"] {
        let line = at(&url, &["dashboard", "--token", weak])
            .await
            .fails_with(2)
            .to_owned();
        assert!(line.contains("at least 16"), "{line}");
        assert!(!line.contains(weak), "the token is not repeated: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_with_every_request() {
    let (_dir, url) = sqlite().await;
    let (running, port) = dashboard(&url, &["--token", TOKEN]).await;
    let host = format!("127.0.0.1:{port}");

    let without = get(port, &host, "/", "application/json", "").await;
    assert_eq!(without.status, 401, "{without:#?}");
    let challenges: Vec<&str> = without
        .headers
        .iter()
        .filter(|(name, _)| name == "www-authenticate")
        .map(|(_, value)| value.as_str())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic ")),
        "{without:#?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer ")),
        "{without:#?}"
    );
    assert!(!without.body.contains("report"), "{without:#?}");

    for wrong in [
        "Bearer wrong-token-of-enough-length".to_owned(),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Token {TOKEN}"),
        // Basic with the token as user name, not password.
        format!("Basic {}", base64(&format!("{TOKEN}:"))),
    ] {
        let answer = get(
            port,
            &host,
            "/",
            "application/json",
            &format!("Authorization: {wrong}\r\n"),
        )
        .await;
        assert_eq!(answer.status, 401, "{wrong}: {answer:#?}");
    }

    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let answer = get(port, &host, "/", "application/json", &bearer).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert!(answer.body.contains("\"report\""), "{answer:#?}");
    let basic = format!(
        "Authorization: Basic {}\r\n",
        base64(&format!("ada:{TOKEN}"))
    );
    let answer = get(port, &host, "/tasks", "text/html", &basic).await;
    assert_eq!(answer.status, 200, "{answer:#?}");

    // The token does not open the dashboard to other host names.
    let foreign = get(
        port,
        &format!("evil.example:{port}"),
        "/",
        "text/html",
        &bearer,
    )
    .await;
    assert_eq!(foreign.status, 403, "{foreign:#?}");

    running.interrupt().await;
    let (code, lines, stderr) = running.end_with_stderr().await;
    assert_eq!(code, 0, "{lines:#?} {stderr}");
    assert!(!stderr.contains(TOKEN) && !lines.join("\n").contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_serves_the_dashboard_under_it_only() {
    let (_dir, url) = sqlite().await;
    let (running, port) = dashboard(&url, &["--prefix", "/admin"]).await;
    assert!(
        running.seen[0].contains(&format!("http://127.0.0.1:{port}/admin/")),
        "{:#?}",
        running.seen
    );
    let host = format!("localhost:{port}");
    for path in ["/admin", "/admin/", "/admin/tasks"] {
        let answer = get(port, &host, path, "text/html", "").await;
        assert_eq!(answer.status, 200, "{path}: {answer:#?}");
    }
    let page = get(port, &host, "/admin/", "text/html", "").await;
    assert!(
        page.body.contains("href=\"/admin/tasks"),
        "links carry the prefix"
    );
    for path in ["/", "/tasks", "/administrator", "/purge"] {
        let answer = get(port, &host, path, "text/html", "").await;
        assert_eq!(answer.status, 404, "{path}: {answer:#?}");
    }
    running.interrupt().await;
    assert_eq!(running.end().await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_anyone_admits_any_host_and_says_so_loudly() {
    let (_dir, url) = sqlite().await;
    let (running, port) = dashboard(&url, &["--bind", "0.0.0.0:0", "--allow-anyone"]).await;
    let answer = get(
        port,
        &format!("dashboard.example:{port}"),
        "/",
        "application/json",
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert!(answer.body.contains("\"report\""), "{answer:#?}");
    running.interrupt().await;
    let (code, _, stderr) = running.end_with_stderr().await;
    assert_eq!(code, 0);
    assert!(
        stderr.starts_with("WARNING: --allow-anyone") && stderr.contains("Anyone who can reach"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_flag_prints_the_address_as_one_document() {
    let (_dir, url) = sqlite().await;
    let mut running =
        common::Running::start(&url, &["dashboard", "--json", "--bind", "localhost:0"]);
    let line = running.line_with("\"url\"").await;
    let json: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let bind = json["bind"].as_str().expect("the bound address");
    assert!(bind.starts_with("127.0.0.1:"), "{json}");
    let port: u16 = bind
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    assert_eq!(json["url"], format!("http://{bind}/"));
    assert_eq!(json["backend"], url);
    let answer = http(
        port,
        &format!("GET / HTTP/1.1\r\nHost: {bind}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    running.interrupt().await;
    let (code, lines) = running.end().await;
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 1, "nothing but the document: {lines:#?}");
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

//! What a shell user sees for a bad or unreachable backend URL, a missing URL, and `--help`:
//! one line on stderr, a distinct exit status, and never the URL's password.

#![allow(missing_docs)]

mod common;

use std::{net::TcpListener, time::Instant};

use common::{at, longtask, BOUND};

const PASSWORD: &str = "Sup3rS3cret";

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_urls_are_usage_errors() {
    for (url, says) in [
        ("", "empty"),
        ("   ", "empty"),
        ("garbage", "does not start with a scheme"),
        ("://nohost", "does not start with a scheme"),
        ("ftp://files.example", "no backend is named `ftp:`"),
        ("sqlite://", "names no file"),
        ("memory://somewhere", "memory:// takes no host"),
        ("postgres://[::1", "not a Postgres URL"),
        ("postgres://host:notaport/db", "not a Postgres URL"),
        ("redis://host:notaport", "not a Redis URL"),
        ("redis+cluster://", "names no node"),
    ] {
        let line = at(url, &["list"]).await.fails_with(2).to_owned();
        assert!(
            line.starts_with("error: bad backend URL: "),
            "{url:?}: {line}"
        );
        assert!(line.contains(says), "{url:?}: {line}");
    }
    // The unknown scheme's message lists the known ones.
    let line = at("ftp://x", &["list"]).await.fails_with(2).to_owned();
    for scheme in [
        "memory://",
        "sqlite://",
        "postgres://",
        "redis://",
        "redis+cluster://",
    ] {
        assert!(line.contains(scheme), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_url_is_a_usage_error_and_the_environment_is_read() {
    let line = longtask(&["list"]).await.fails_with(2).to_owned();
    assert!(
        line.contains("--url") && line.contains("LONGTASK_URL"),
        "{line}"
    );

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_longtask"))
        .args(["list", "--json"])
        .env("LONGTASK_URL", "memory://")
        .output()
        .await
        .expect("running longtask");
    assert!(out.status.success(), "{out:?}");
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(page["tasks"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_fail_fast_with_the_address_and_without_the_password() {
    let port = closed_port();
    for url in [
        format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/app"),
        format!("postgresql://app@127.0.0.1:{port}/app?password={PASSWORD}"),
        format!("redis://:{PASSWORD}@127.0.0.1:{port}/0"),
        format!("redis+cluster://:{PASSWORD}@127.0.0.1:{port}"),
    ] {
        for args in [&["list"][..], &["migrate"]] {
            let started = Instant::now();
            let run = at(&url, args).await;
            let line = run.fails_with(4).to_owned();
            assert!(
                started.elapsed() < BOUND / 2,
                "{url}: took {:?}",
                started.elapsed()
            );
            assert!(line.contains("cannot open the backend"), "{url}: {line}");
            assert!(
                !line.contains(PASSWORD),
                "{url}: the password leaked: {line}"
            );
        }
    }
    let line = at(
        &format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/app"),
        &["list"],
    )
    .await
    .fails_with(4)
    .to_owned();
    assert!(
        line.contains(&format!("127.0.0.1:{port}")),
        "says where: {line}"
    );
}

/// A URL the driver rejects is echoed in the message, with its password masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_in_echoed_urls_are_masked() {
    let url = format!("sqlite://tasks.db?password={PASSWORD}&mode=bogus");
    let line = at(&url, &["list"]).await.fails_with(2).to_owned();
    assert!(line.contains("password=***"), "{line}");
    assert!(!line.contains(PASSWORD), "the password leaked: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_documents_the_exit_statuses_and_hides_the_environment() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_longtask"))
        .arg("--help")
        .env("LONGTASK_URL", format!("postgres://app:{PASSWORD}@db/app"))
        .output()
        .await
        .expect("running longtask");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("UTF-8");
    for line in [
        "2  usage",
        "3  no such task",
        "4  the backend cannot be reached",
        "5  `watch`: the task failed",
        "6  `watch`: the task was cancelled",
    ] {
        assert!(help.contains(line), "{line:?} in {help}");
    }
    for command in ["migrate", "list", "show", "watch", "cancel", "purge"] {
        assert!(help.contains(command), "{command} in {help}");
    }
    assert!(
        !help.contains(PASSWORD),
        "--help printed LONGTASK_URL: {help}"
    );

    let run = longtask(&["--url", "memory://", "frobnicate"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
}

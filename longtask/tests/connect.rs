//! `longtask::connect` on every scheme compiled in, against real servers, and on hostile URLs:
//! a malformed URL is `InvalidInput` with a message saying what to write; a backend that cannot
//! be reached is `Backend`, soon, saying where and why; no message holds the URL's password.

#![allow(missing_docs)]

use std::time::Duration;
#[cfg(any(feature = "postgres", feature = "redis"))]
use std::{net::TcpListener, time::Instant};

use longtask::{Client, Error, NewTask, TaskStatus};

/// Long enough for a connection on a loaded machine; a hang fails the test instead.
const BOUND: Duration = Duration::from_secs(30);
const PASSWORD: &str = "Sup3rS3cret";

/// `connect(url)` within [`BOUND`].
async fn connect(url: &str) -> longtask::Result<longtask::Backend> {
    tokio::time::timeout(BOUND, longtask::connect(url))
        .await
        .unwrap_or_else(|_| panic!("connect({url:?}) hung"))
}

fn invalid(url: &str, err: &Error) -> String {
    assert!(
        matches!(err, Error::InvalidInput(_)),
        "{url:?}: expected InvalidInput, got {err:?}"
    );
    err.to_string()
}

/// The error and its sources, as one line.
fn chain(err: &Error) -> String {
    let mut line = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    line
}

/// A backend that works: submit a task, read it back.
async fn usable(backend: longtask::Backend) {
    let client = Client::new(backend);
    let id = client
        .submit_raw(vec![NewTask::new("report", "{}")])
        .await
        .expect("submitting")[0]
        .id;
    assert_eq!(
        client.status(id).await.expect("reading").status,
        TaskStatus::Queued
    );
}

#[tokio::test]
async fn malformed_urls_say_what_to_write() {
    for (url, says) in [
        ("", "empty"),
        ("  \n", "empty"),
        ("garbage", "does not start with a scheme"),
        ("://host", "does not start with a scheme"),
        ("9p://host", "does not start with a scheme"),
        (&"x".repeat(100_000), "does not start with a scheme"),
        ("ftp://files.example", "no backend is named `ftp:`"),
        ("memory://elsewhere", "takes no host"),
        #[cfg(feature = "redis")]
        ("redis+cluster://", "names no node"),
    ] {
        let err = connect(url).await.unwrap_err();
        let message = invalid(url, &err);
        assert!(message.contains(says), "{url:?}: {message}");
        assert!(message.len() < 400, "the message is short: {message}");
    }
    let message = invalid("ftp://x", &connect("ftp://x").await.unwrap_err());
    for scheme in [
        "memory://",
        "sqlite://",
        "postgres://",
        "redis://",
        "redis+cluster://",
    ] {
        assert!(message.contains(scheme), "lists {scheme}: {message}");
    }
    // Something that looks like credentials without a scheme is not repeated.
    let err = connect(&format!("admin:{PASSWORD}@db")).await.unwrap_err();
    assert!(!chain(&err).contains(PASSWORD), "{err}");
}

#[tokio::test]
async fn memory_needs_no_feature() {
    usable(connect("memory://").await.expect("memory://")).await;
    usable(connect(" MEMORY: ").await.expect("MEMORY:")).await;
}

/// Built without a backend's feature, its scheme names the feature to enable (run with
/// `cargo test -p longtask` without features).
#[cfg(not(all(feature = "sqlite", feature = "postgres", feature = "redis")))]
#[tokio::test]
async fn a_scheme_not_compiled_in_names_its_feature() {
    #[allow(unused_mut)]
    let mut off: Vec<(&str, &str)> = Vec::new();
    #[cfg(not(feature = "sqlite"))]
    off.push(("sqlite://tasks.db", "`sqlite` feature"));
    #[cfg(not(feature = "postgres"))]
    off.push(("postgres://db/app", "`postgres` feature"));
    #[cfg(not(feature = "redis"))]
    off.extend([
        ("redis://host", "`redis` feature"),
        ("redis+cluster://a:1,b:2", "`redis` feature"),
    ]);
    for (url, says) in off {
        let message = invalid(url, &connect(url).await.unwrap_err());
        assert!(
            message.contains("not compiled in") && message.contains(says),
            "{message}"
        );
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_files_are_created_migrated_or_refused_clearly() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("tasks.db");
    let url = format!("sqlite://{}", path.display());

    // A reader that must not create the file.
    let read_only = longtask::ConnectOptions::new()
        .migrate(false)
        .create_if_missing(false);
    let err = longtask::connect_with(&url, &read_only).await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(chain(&err).contains("no such file"), "{}", chain(&err));
    assert!(!path.exists());

    // connect creates and migrates it.
    usable(connect(&url).await.expect("sqlite://")).await;
    usable(
        longtask::connect_with(&url, &read_only)
            .await
            .expect("it exists now"),
    )
    .await;
    usable(connect("sqlite::memory:").await.expect("sqlite::memory:")).await;

    // A folder that does not exist.
    let nowhere = format!("sqlite://{}/no/such/folder/tasks.db", dir.path().display());
    let err = connect(&nowhere).await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(
        chain(&err).contains("unable to open database file"),
        "{}",
        chain(&err)
    );

    for (url, says) in [
        ("sqlite://", "names no file"),
        ("sqlite://tasks.db?mode=bogus", "not a SQLite URL"),
    ] {
        let message = invalid(url, &connect(url).await.unwrap_err());
        assert!(message.contains(says), "{url}: {message}");
    }
}

/// A loopback port nobody listens on.
#[cfg(any(feature = "postgres", feature = "redis"))]
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_connects_migrates_and_fails_fast_and_clearly() {
    let server = longtask_test_servers::Postgres::start();
    usable(connect(&server.url()).await.expect("postgres://")).await;
    let other_scheme = server.url().replacen("postgres://", "postgresql://", 1);
    usable(connect(&other_scheme).await.expect("postgresql://")).await;

    // A refused port: at once, saying where and why, without the password.
    let port = closed_port();
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/app");
    let started = Instant::now();
    let err = connect(&url).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    let line = chain(&err);
    assert!(line.contains(&format!("127.0.0.1:{port}/app")), "{line}");
    assert!(line.contains("refused"), "says why: {line}");
    assert!(!line.contains(PASSWORD), "{line}");

    // A port that accepts connections and never answers: given up after 5 s.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a silent listener");
    let port = silent.local_addr().expect("its address").port();
    let started = Instant::now();
    let err = connect(&format!("postgres://app@127.0.0.1:{port}/app"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        chain(&err).contains("no answer within 5 s"),
        "{}",
        chain(&err)
    );

    for url in ["postgres://[::1", "postgres://host:notaport/db"] {
        let message = invalid(url, &connect(url).await.unwrap_err());
        assert!(message.contains("not a Postgres URL"), "{message}");
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_connects_and_fails_fast_and_clearly() {
    let server = longtask_test_servers::Redis::start();
    usable(connect(&server.url()).await.expect("redis://")).await;

    let port = closed_port();
    for url in [
        format!("redis://:{PASSWORD}@127.0.0.1:{port}/0"),
        format!("redis+cluster://:{PASSWORD}@127.0.0.1:{port},127.0.0.1:{port}"),
    ] {
        let started = Instant::now();
        let err = connect(&url).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, Error::Backend { .. }), "{url}: {err:?}");
        assert!(!chain(&err).contains(PASSWORD), "{}", chain(&err));
    }

    // A server that accepts connections and never answers.
    server.freeze();
    let started = Instant::now();
    let err = connect(&server.url()).await.unwrap_err();
    assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    server.thaw();

    for url in ["redis://host:notaport", "redis+cluster://a:1,b:notaport"] {
        let message = invalid(url, &connect(url).await.unwrap_err());
        assert!(message.contains("not a Redis URL"), "{url}: {message}");
    }
}

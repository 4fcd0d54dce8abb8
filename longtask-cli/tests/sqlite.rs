//! Every command of the `longtask` binary on a real SQLite file: tasks seeded and driven from
//! this process, the binary reading (and changing) them from its own.

#![allow(missing_docs)]

mod common;

use common::{at, scenarios, BOUND};
use longtask::Client;
use tempfile::TempDir;

/// A migrated SQLite file of this test alone, with a client on it.
async fn sqlite() -> (TempDir, String, Client) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
    let backend = longtask::connect(&url).await.expect("opening SQLite");
    (dir, url, Client::new(backend))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_pages_and_prints_tables_and_json() {
    let (_dir, url, client) = sqlite().await;
    scenarios::list(&url, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_every_part_of_the_record() {
    let (_dir, url, client) = sqlite().await;
    scenarios::show(&url, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_says_what_it_did() {
    let (_dir, url, client) = sqlite().await;
    scenarios::cancel(&url, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_only_expired_tasks() {
    let (_dir, url, client) = sqlite().await;
    scenarios::purge(&url, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_task_to_its_end_and_exits_with_its_outcome() {
    let (_dir, url, client) = sqlite().await;
    scenarios::watch(&url, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_delete_and_workers_say_what_they_did() {
    let (_dir, url, client) = sqlite().await;
    scenarios::admin(&url, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_every_status_exactly() {
    let (_dir, url, client) = sqlite().await;
    scenarios::stats(&url, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_serves_loopback_hosts_only_and_stops_on_sigint() {
    let (_dir, url, client) = sqlite().await;
    scenarios::dashboard(&url, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_with_distinct_exit_statuses() {
    let (_dir, url, _client) = sqlite().await;
    scenarios::errors(&url).await;
}

/// `migrate` creates the file and the schema; every other command refuses a file that does not
/// exist (a typo must not leave an empty database behind) and never migrates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_migrate_creates_a_database() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("new.db");
    let url = format!("sqlite://{}", path.display());
    for args in [
        &["list"][..],
        &["show", "0193f0d4-7c2a-7b1e-9d1c-5e2f3a4b5c6d"],
        &["purge"],
    ] {
        let line = at(&url, args).await.fails_with(4).to_owned();
        assert!(
            line.contains("no such file") && line.contains("new.db"),
            "{line}"
        );
        assert!(!path.exists(), "{args:?} created the file");
    }
    let migrated = at(&url, &["migrate"]).await;
    assert_eq!(
        migrated.ok().trim(),
        format!("{url}: the schema is up to date")
    );
    assert!(path.exists());
    let again = at(&url, &["migrate", "--json"]).await.json();
    assert_eq!(again["migrated"], true);
    assert_eq!(again["url"], url);
    assert_eq!(at(&url, &["list"]).await.ok().trim(), "no tasks match");

    // A file that exists but was never migrated: the command says what to do.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("an empty file");
    let line = at(&format!("sqlite://{}", empty.display()), &["list"])
        .await
        .fails_with(1)
        .to_owned();
    assert!(line.contains("longtask migrate"), "{line}");

    // A folder that does not exist: migrate cannot create the file there.
    let nowhere = format!("sqlite://{}/no/such/folder/x.db", dir.path().display());
    let started = std::time::Instant::now();
    let line = at(&nowhere, &["migrate"]).await.fails_with(4).to_owned();
    assert!(line.contains("cannot open the backend"), "{line}");
    assert!(started.elapsed() < BOUND);
}

//! Every command of the `longtask` binary on a throwaway Postgres server, through a URL with a
//! password (the server trusts loopback, so any password connects): the password never shows.

#![allow(missing_docs)]

mod common;

use std::time::Instant;

use common::{at, scenarios, BOUND};
use longtask::Client;
use longtask_test_servers::Postgres;

const PASSWORD: &str = "Sup3rS3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_postgres() {
    let server = Postgres::start();
    let url = server
        .url()
        .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    assert!(url.contains(PASSWORD));

    let migrated = at(&url, &["migrate"]).await;
    let text = migrated.ok();
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(
        text.contains("postgres:***@"),
        "the URL is shown masked: {text}"
    );
    assert!(text.contains("the schema is up to date"), "{text}");

    let client = Client::new(longtask::connect(&url).await.expect("connecting"));
    // One scenario at a time: they share the server's `longtask` schema (each with job names
    // of its own), and `purge` counts every expired task.
    scenarios::list(&url, &client).await;
    scenarios::show(&url, &client).await;
    scenarios::cancel(&url, &client).await;
    scenarios::purge(&url, &client).await;
    scenarios::watch(&url, &client).await;
    scenarios::admin(&url, &client).await;
    scenarios::stats(&url, &client).await;
    scenarios::dashboard(&url, &client).await;
    scenarios::errors(&url).await;

    // The server goes away: one line, exit 4, soon, without the password.
    server.stop();
    let started = Instant::now();
    let line = at(&url, &["list"]).await.fails_with(4).to_owned();
    assert!(
        started.elapsed() < BOUND / 2,
        "took {:?}",
        started.elapsed()
    );
    assert!(!line.contains(PASSWORD), "{line}");
    assert!(line.contains("cannot open the backend"), "{line}");
}

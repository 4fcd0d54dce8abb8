//! The dashboard in headless Chromium (chromedriver), served on 127.0.0.1: each page loads with
//! and without JavaScript; with it the overview follows new tasks live, without it the overview
//! reloads itself; and every action button (retry every failed task of a job, cancel, retry,
//! delete, purge) is clicked in both and changes the backend as its page then says.
//!
//! `LONGTASK_SCREENSHOTS=dir` saves the overview and a failed task's page there
//! (`dashboard-overview.png`, `dashboard-task.png`; the crate's `docs/` holds the published
//! ones). Needs Debian's `chromium` and `chromium-driver`; the test fails without them.

mod common;
#[path = "common/dashboard.rs"]
mod dash;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use dash::{DashApp, Outcome};
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use longtask_core::{Error, NewTask, SubmitOptions, TaskId, TaskStatus};
use longtask_tower::Dashboard;
use tokio::net::TcpListener;
use webdriver::Driver;

/// Serves a dashboard admitting requests for `127.0.0.1:{its port}` only.
async fn serve(app: &DashApp) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let host = addr.to_string();
    let dashboard = Dashboard::builder(app.client.clone())
        .at("/admin")
        .with_title("Billing queues")
        .authorize(move |parts| {
            parts
                .headers
                .get("host")
                .is_some_and(|h| h.as_bytes() == host.as_bytes())
        })
        .build();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(dashboard.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, server)
}

/// Runs `f` with the driver on a blocking thread.
async fn with<T: Send + 'static>(
    driver: &Arc<Driver>,
    f: impl FnOnce(&Driver) -> T + Send + 'static,
) -> T {
    let driver = Arc::clone(driver);
    tokio::task::spawn_blocking(move || f(&driver))
        .await
        .unwrap()
}

fn save(driver: &Driver, name: &str) {
    let png = driver.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    if let Ok(dir) = std::env::var("LONGTASK_SCREENSHOTS") {
        std::fs::write(Path::new(&dir).join(name), png).unwrap();
    }
}

/// Clicks `css` and returns the notice of the page the click leads to (not the one it was on).
fn act(driver: &Driver, css: &str) -> String {
    driver.script("window.__before = true; return true;");
    driver.click(css);
    driver
        .wait_for(
            "var n = document.getElementById('notice'); \
             return n && window.__before !== true ? n.textContent : null;",
            "a new page with a notice after the action",
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The tasks one session acts on.
struct Fixture {
    failed: [TaskId; 2],
    expiring: TaskId,
}

/// Fresh tasks for one session's actions: two failed (while a worker runs), and a cancelled
/// one past its retention.
async fn fixture(app: &mut DashApp) -> Fixture {
    app.start_worker();
    let failed = [app.failed("disk full").await, app.failed("quota").await];
    app.stop_worker().await;
    let expiring = app
        .submit_with(
            Outcome::Succeed,
            "expiring",
            SubmitOptions::new().retention(Duration::ZERO),
        )
        .await;
    app.client.cancel(expiring).await.unwrap();
    Fixture { failed, expiring }
}

/// Clicks every action in one session and checks the backend after each.
async fn click_every_action(driver: &Arc<Driver>, app: &mut DashApp, base: &str, js: bool) {
    let Fixture { failed, expiring } = fixture(app).await;
    let status = |id: TaskId| {
        let client = app.client.clone();
        async move { client.status(id).await.map(|t| t.status) }
    };

    // Retry every failed task of the job, from the overview.
    let url = format!("{base}/admin/");
    let said = with(driver, move |d| {
        d.navigate(&url);
        act(d, "tr[data-job=\"chore\"] button.retry-failed")
    })
    .await;
    assert_eq!(said, "2 tasks queued again.", "js={js}");
    for id in failed {
        assert_eq!(status(id).await.unwrap(), TaskStatus::Queued);
    }

    // The list links to each task; cancel, retry, cancel, delete from its page.
    let url = format!("{base}/admin/tasks?status=queued");
    let first = failed[0];
    let said = with(driver, move |d| {
        d.navigate(&url);
        d.click(&format!("tr[data-task=\"{first}\"] a"));
        d.wait_for(
            "return document.getElementById('task') ? true : null;",
            "the task's page",
        );
        act(d, "button.cancel")
    })
    .await;
    assert_eq!(said, "The task is cancelled.");
    assert_eq!(status(first).await.unwrap(), TaskStatus::Cancelled);

    let said = with(driver, |d| act(d, "button.retry")).await;
    assert_eq!(
        said,
        "The task is queued again, with a fresh attempt budget."
    );
    assert_eq!(status(first).await.unwrap(), TaskStatus::Queued);

    let (said, url) = with(driver, |d| {
        act(d, "button.cancel");
        (act(d, "button.delete"), d.url())
    })
    .await;
    assert_eq!(said, "The task is deleted.");
    assert!(url.ends_with("/admin/tasks?notice=deleted"), "{url}");
    assert!(matches!(status(first).await, Err(Error::NotFound(_))));

    // Purge now, from the overview.
    let url = format!("{base}/admin/");
    let said = with(driver, move |d| {
        d.navigate(&url);
        act(d, "form[action=\"/admin/purge\"] button")
    })
    .await;
    assert_eq!(said, "1 task past their retention purged.");
    assert!(matches!(status(expiring).await, Err(Error::NotFound(_))));
    assert_eq!(status(failed[1]).await.unwrap(), TaskStatus::Queued);
    // Cancel what is left, for the next session.
    app.client.cancel(failed[1]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let mut app = DashApp::new();
    let (addr, server) = serve(&app).await;
    let base = format!("http://{addr}");
    let (with_js, without_js) = tokio::task::spawn_blocking(|| {
        let mut with_js = Driver::start();
        with_js.open_session(true);
        let mut without_js = Driver::start();
        without_js.open_session(false);
        (Arc::new(with_js), Arc::new(without_js))
    })
    .await
    .unwrap();

    // A busy hour: tasks done and failed, one running, some waiting for another job's workers.
    for note in ["January", "February", "March", "April"] {
        app.succeeded(note).await;
    }
    let failed = app.failed("the invoice store refused the connection").await;
    let running = app.running("March invoices").await;
    app.client
        .submit_raw(vec![
            NewTask::new("send-email", "{\"to\":\"ops@example.com\"}"),
            NewTask::new("send-email", "{\"to\":\"billing@example.com\"}"),
        ])
        .await
        .unwrap();
    app.wait_busy(1).await;

    // With JavaScript: the overview goes live, and follows a new task without a reload.
    let url = format!("{base}/admin/");
    with(&with_js, move |d| {
        d.navigate(&url);
        assert_eq!(
            d.script("return document.querySelector('noscript meta') !== null;"),
            false
        );
        d.script("window.__samePage = true; return true;");
        d.wait_for(
            "var l = document.getElementById('live'); return l && l.textContent === 'Live' ? true : null;",
            "the live updates started",
        );
        let failed = d.script("return document.querySelector('[data-total=\"failed\"]').textContent;");
        assert_eq!(failed, "1");
        let bars = d.script("return document.querySelectorAll('tr[data-job=\"chore\"] svg.spark rect').length;");
        assert!(bars.as_u64().unwrap_or(0) >= 1, "no sparkline bars");
        save(d, "dashboard-overview.png");
    })
    .await;
    app.client
        .submit_raw(vec![NewTask::new(
            "send-email",
            "{\"to\":\"new@example.com\"}",
        )])
        .await
        .unwrap();
    with(&with_js, |d| {
        let seen = d.wait_for(
            "var q = document.querySelector('[data-total=\"queued\"]').textContent; \
             return q === '3' ? window.__samePage === true : null;",
            "the queued count went up live",
        );
        assert_eq!(seen, true, "the page reloaded instead of updating");
    })
    .await;

    // A task's page, with and without JavaScript.
    for driver in [&with_js, &without_js] {
        let url = format!("{base}/admin/tasks/{failed}");
        with(driver, move |d| {
            d.navigate(&url);
            let text = d.script("return document.body.innerText;");
            let text = text.as_str().unwrap_or_default();
            assert!(
                text.contains("failed: the invoice store refused the connection"),
                "{text}"
            );
            assert!(
                text.contains("Attempt\n1 of 2") || text.contains("1 of 2"),
                "{text}"
            );
        })
        .await;
    }
    with(&with_js, |d| save(d, "dashboard-task.png")).await;
    let url = format!("{base}/admin/tasks/{running}");
    with(&without_js, move |d| {
        d.navigate(&url);
        let text = d.script("return document.getElementById('message').textContent;");
        assert_eq!(text, "holding March invoices");
    })
    .await;

    // Without JavaScript: the overview reloads itself to new figures.
    let url = format!("{base}/admin/");
    with(&without_js, move |d| {
        d.navigate(&url);
        assert_eq!(
            d.script("return document.querySelector('noscript meta') !== null;"),
            true,
            "JavaScript is still enabled"
        );
        let queued =
            d.script("return document.querySelector('[data-total=\"queued\"]').textContent;");
        assert_eq!(queued, "3");
        d.script("window.__samePage = true; return true;");
    })
    .await;
    app.client
        .submit_raw(vec![NewTask::new(
            "send-email",
            "{\"to\":\"late@example.com\"}",
        )])
        .await
        .unwrap();
    with(&without_js, |d| {
        let reloaded = d.wait_for(
            "var q = document.querySelector('[data-total=\"queued\"]'); \
             return q && q.textContent === '4' ? window.__samePage !== true : null;",
            "the overview reloaded itself",
        );
        assert_eq!(reloaded, true);
    })
    .await;

    // Every action, clicked, in both sessions.
    app.gate.add_permits(1);
    app.wait_status(running, TaskStatus::Succeeded).await;
    app.stop_worker().await;
    app.client.delete(failed).await.unwrap();
    click_every_action(&with_js, &mut app, &base, true).await;
    click_every_action(&without_js, &mut app, &base, false).await;

    // The task list and the refusal page load in both.
    for driver in [&with_js, &without_js] {
        let url = format!("{base}/admin/tasks?job=send-email");
        with(driver, move |d| {
            d.navigate(&url);
            let rows = d.script("return document.querySelectorAll('#tasks tbody tr').length;");
            assert_eq!(rows, 4);
        })
        .await;
        // Another host name for the same server: not admitted.
        let url = format!("http://localhost:{}/admin/", addr.port());
        with(driver, move |d| {
            d.navigate(&url);
            let h1 = d.script("return document.querySelector('h1').textContent;");
            assert_eq!(h1, "Not allowed");
        })
        .await;
    }
    server.abort();
}

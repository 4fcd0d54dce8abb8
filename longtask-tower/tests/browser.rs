//! Headless Chromium, driven by chromedriver (WebDriver over HTTP), loads the status page of a
//! running task served on 127.0.0.1: with JavaScript it sees the bar advance live, then the
//! result; with JavaScript disabled the page refreshes itself until the result shows.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages
//! (`apt-get install chromium chromium-driver`); the test fails without them.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use common::*;
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use longtask_core::{TaskId, TaskStatus};
use tokio::net::TcpListener;
use webdriver::Driver;

/// Serves the app's service on a free loopback port.
async fn serve(app: &App) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.service.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, server)
}

/// The `value` attribute of the page's progress bar, from its HTML.
fn bar_value(source: &str) -> Option<f64> {
    let start = source.find("id=\"bar\"")?;
    let tag = &source[start..start + source[start..].find('>')?];
    let value = tag.split("value=\"").nth(1)?.split('"').next()?;
    value.parse().ok()
}

async fn running_task(app: &App, days: u32, step_ms: u64) -> TaskId {
    let id = app
        .client
        .submit::<Report>(Params {
            days,
            step_ms,
            message: None,
            fail: None,
            no_total: false,
        })
        .await
        .unwrap();
    app.wait_until(id, |t| {
        t.status == TaskStatus::Running && t.progress.as_ref().is_some_and(|p| p.step >= 1)
    })
    .await;
    id
}

/// With JavaScript: loads the page and watches the bar until the result shows; returns the bar
/// values seen while the page stayed the same document (live updates), and the final text.
fn watch_live(driver: &Driver, url: &str) -> (Vec<f64>, String) {
    driver.navigate(url);
    driver.script("window.__samePage = true; return true;");
    // Scripting is on: the <noscript> refresh is inert text.
    let parsed_noscript = driver.script("return document.querySelector('noscript meta') !== null;");
    assert_eq!(parsed_noscript, false);
    let mut live_values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = driver.script(
            "return { bar: document.getElementById('bar').value, \
                      state: document.getElementById('state').textContent, \
                      same: window.__samePage === true, \
                      text: document.body.innerText };",
        );
        if state["state"] == "Running" && state["same"] == true {
            live_values.push(state["bar"].as_f64().unwrap_or(0.0));
        }
        if state["state"] == "Done" {
            let text = state["text"].as_str().unwrap_or_default().to_owned();
            return (live_values, text);
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed the result: {state}"
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Without JavaScript: loads the page once and reads it until it has refreshed itself to the
/// result; returns the bar values seen and the final source.
fn watch_refresh(driver: &Driver, url: &str) -> (Vec<f64>, String) {
    driver.navigate(url);
    // Scripting is off: the parser made the <noscript> refresh a real element.
    let parsed_noscript = driver.script("return document.querySelector('noscript meta') !== null;");
    assert_eq!(parsed_noscript, true, "JavaScript is still enabled");
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let source = driver.source();
        if source.contains("Download report-") {
            return (values, source);
        }
        // Read during a refresh, the document can be empty or blank: only a status page that
        // has loaded must carry the refresh.
        let loaded = source.contains("id=\"state\"") && source.contains("</html>");
        assert!(
            !loaded || source.contains("http-equiv=\"refresh\""),
            "no refresh: {source}"
        );
        if let Some(v) = bar_value(&source) {
            values.push(v);
        }
        assert!(
            Instant::now() < deadline,
            "the page never refreshed to the result: {source}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium() {
    let app = App::new();
    let (addr, server) = serve(&app).await;

    // The browsers start first, so that a slow start does not outlast the tasks.
    let (with_js, without_js) = tokio::task::spawn_blocking(|| {
        let mut with_js = Driver::start();
        with_js.open_session(true);
        let mut without_js = Driver::start();
        without_js.open_session(false);
        (with_js, without_js)
    })
    .await
    .unwrap();

    // With JavaScript: the bar advances live (no reload), then the result shows.
    let id = running_task(&app, 30, 200).await;
    let url = format!("http://{addr}/reports/{id}");
    let (values, text) = tokio::task::spawn_blocking(move || watch_live(&with_js, &url))
        .await
        .unwrap();
    let advanced = values.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(advanced >= 2, "the bar did not advance live: {values:?}");
    assert!(text.contains("Download report-30.csv"), "{text}");

    // Without JavaScript: the page refreshes itself until the result shows.
    let id = running_task(&app, 20, 150).await;
    let url = format!("http://{addr}/reports/{id}");
    let (values, source) = tokio::task::spawn_blocking(move || watch_refresh(&without_js, &url))
        .await
        .unwrap();
    assert!(source.contains(">Done<"), "{source}");
    assert!(source.contains("Download report-20.csv"), "{source}");
    assert!(!values.is_empty());
    server.abort();
}

/// Serves a group service on a free loopback port.
async fn serve_groups(
    service: longtask_tower::GroupService,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, server)
}

/// The group page, live with JavaScript: the bar and the list follow the members without a
/// reload, the result appears when the group is done, and "Cancel all" cancels a group;
/// without JavaScript the page refreshes itself to the same. At 320 px wide nothing scrolls
/// sideways. `LONGTASK_SCREENSHOTS=dir` saves the running page there as `group-running.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_page_in_headless_chromium() {
    use common::groups::{GroupApp, SumParams};

    let app = GroupApp::memory();
    let (addr, server) = serve_groups(
        GroupApp::service(app.client.clone())
            .with_member_label(|task| {
                let step: common::groups::Step = serde_json::from_str(&task.params).ok()?;
                Some(format!("Month {}", step.n))
            })
            .with_result_html::<common::groups::YearTotal>(|sum| {
                format!("<p id=\"year\">The year: {} invoices</p>", sum.total)
            }),
    )
    .await;
    let (with_js, without_js) = tokio::task::spawn_blocking(|| {
        let mut with_js = Driver::start();
        with_js.open_session(true);
        let mut without_js = Driver::start();
        without_js.open_session(false);
        (with_js, without_js)
    })
    .await
    .unwrap();
    let with_js = std::sync::Arc::new(with_js);
    let without_js = std::sync::Arc::new(without_js);
    let blocking = |driver: &std::sync::Arc<Driver>, f: fn(&Driver, &str), url: String| {
        let driver = std::sync::Arc::clone(driver);
        tokio::task::spawn_blocking(move || f(&driver, &url))
    };

    // With JavaScript: the page opens on 4 running months.
    let id = app.submit(4, Some(SumParams::default()), None).await;
    app.wait_running(id).await;
    let url = format!("http://{addr}/groups/{id}");
    blocking(
        &with_js,
        |d, url| {
            d.navigate(url);
            d.script("window.__samePage = true; return true;");
            let text = d.script("return document.getElementById('summary').textContent;");
            assert_eq!(text, "0 of 4 done, 4 running");
            let bar = d.script("return document.getElementById('bar').value;");
            assert_eq!(bar.as_f64(), Some(50.0));
            if let Ok(dir) = std::env::var("LONGTASK_SCREENSHOTS") {
                std::fs::write(Path::new(&dir).join("group-running.png"), d.screenshot()).unwrap();
            }
            let png = d.screenshot();
            assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        },
        url.clone(),
    )
    .await
    .unwrap();

    // One month through: the bar, the summary and that month's row move, without a reload.
    app.open(1);
    blocking(
        &with_js,
        |d, _| {
            let seen = d.wait_for(
                "var s = document.getElementById('summary').textContent; \
             return s.indexOf('1 of 4 done') === 0 ? { same: window.__samePage === true, \
               bar: document.getElementById('bar').value, \
               done: document.querySelectorAll('#members .state.succeeded').length, \
               label: document.querySelector('#members .state.succeeded') && \
                      document.querySelector('#members .state.succeeded').textContent } : null;",
                "the summary updated live",
            );
            assert_eq!(seen["same"], true, "the page reloaded: {seen}");
            assert_eq!(seen["bar"].as_f64(), Some(62.5), "{seen}");
            assert_eq!(seen["done"], 1, "{seen}");
            assert_eq!(seen["label"], "Done", "{seen}");
        },
        String::new(),
    )
    .await
    .unwrap();

    // The rest through: the page shows the completion job's result.
    app.open(3);
    blocking(
        &with_js,
        |d, _| {
            let year = d.wait_for(
                "var y = document.getElementById('year'); return y ? y.textContent : null;",
                "the result appeared",
            );
            assert_eq!(year, "The year: 1000 invoices");
            let state = d.script("return document.getElementById('state').textContent;");
            assert_eq!(state, "Done");
            assert_eq!(
                d.script("return document.getElementById('bar').value;")
                    .as_f64(),
                Some(100.0)
            );
            assert_eq!(
                d.script("return document.querySelector('form') === null;"),
                true
            );
        },
        String::new(),
    )
    .await
    .unwrap();

    // Cancel all, with JavaScript, at 320 px wide.
    let cancel = app.submit(3, Some(SumParams::default()), None).await;
    app.wait_running(cancel).await;
    let url = format!("http://{addr}/groups/{cancel}");
    blocking(
        &with_js,
        |d, url| {
            d.resize(320, 700);
            d.navigate(url);
            let wide = d.script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        );
            assert!(
                wide.as_i64().unwrap_or(1) <= 0,
                "scrolls sideways at 320 px by {wide}"
            );
            d.script("document.querySelector('form button').click(); return true;");
            d.wait_for(
                "var s = document.getElementById('state'); \
             return s && s.textContent === 'Cancelled' ? true : null;",
                "the group shows cancelled",
            );
            d.resize(900, 700);
        },
        url,
    )
    .await
    .unwrap();
    let group = app.wait_final(cancel).await;
    assert_eq!(group.root.status, TaskStatus::Cancelled);
    assert!(group
        .members
        .iter()
        .all(|m| m.status == TaskStatus::Cancelled));

    // Without JavaScript: the page refreshes itself through the months to the result.
    let id = app.submit(3, Some(SumParams::default()), None).await;
    app.wait_running(id).await;
    let url = format!("http://{addr}/groups/{id}");
    blocking(
        &without_js,
        |d, url| {
            d.navigate(url);
            let parsed = d.script("return document.querySelector('noscript meta') !== null;");
            assert_eq!(parsed, true, "JavaScript is still enabled");
            assert!(d.source().contains("0 of 3 done, 3 running"));
        },
        url,
    )
    .await
    .unwrap();
    app.open(1);
    blocking(
        &without_js,
        |d, _| {
            d.wait_for("return document.getElementById('summary').textContent.indexOf('1 of 3 done') === 0 \
             ? true : null;",
            "the page refreshed to one month done",
        );
        },
        String::new(),
    )
    .await
    .unwrap();
    app.open(2);
    blocking(
        &without_js,
        |d, _| {
            let year = d.wait_for(
                "var y = document.getElementById('year'); return y ? y.textContent : null;",
                "the page refreshed to the result",
            );
            assert_eq!(year, "The year: 600 invoices");
            assert!(!d.source().contains("http-equiv=\"refresh\""));
        },
        String::new(),
    )
    .await
    .unwrap();
    server.abort();
}

//! Headless Chromium, driven by chromedriver (WebDriver over HTTP), loads the status page of a
//! running task served on 127.0.0.1: with JavaScript it sees the bar advance live, then the
//! result; with JavaScript disabled the page refreshes itself until the result shows.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages
//! (`apt-get install chromium chromium-driver`); the test fails without them.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use hyper::server::conn::http1;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use longtask_core::{TaskId, TaskStatus};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

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

/// A chromedriver process (behind a watchdog shell that stops it if this test process dies)
/// with at most one browser session; both are stopped on drop.
struct Driver {
    port: u16,
    watchdog: Child,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Self {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: apt-get install chromium chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The shell stops chromedriver when told to (TERM) or when this process is gone.
        let script = format!(
            "{CHROMEDRIVER} --port={port} --allowed-ips=127.0.0.1 >/dev/null 2>&1 & pid=$!; \
             trap 'kill $pid 2>/dev/null; exit 0' TERM; \
             while kill -0 $PPID 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; \
             kill $pid 2>/dev/null"
        );
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Self {
            port,
            watchdog,
            session: None,
            _profile: tempfile::tempdir().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = driver.call("GET", "/status", None) {
                if status["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    /// One WebDriver command; returns its `value`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        // chromedriver may keep the connection open: read the head, then Content-Length bytes.
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            raw.extend_from_slice(&buf[..n]);
            if n == 0 || response_complete(&raw) {
                break;
            }
        }
        let text = String::from_utf8_lossy(&raw);
        let (head, mut payload) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
        let decoded;
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            decoded = dechunk(payload);
            payload = &decoded;
        }
        let json: Value = serde_json::from_str(payload).map_err(|e| format!("{e}: {payload}"))?;
        let code: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if code >= 400 {
            return Err(format!("{method} {path}: {code} {json}"));
        }
        Ok(json["value"].clone())
    }

    fn open_session(&mut self, javascript: bool) {
        let mut prefs = json!({});
        if !javascript {
            prefs["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        let profile = self
            ._profile
            .path()
            .join(if javascript { "js" } else { "nojs" });
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=900,700",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": prefs,
        }}}});
        let value = self
            .call("POST", "/session", Some(&capabilities))
            .expect("chromium starts");
        self.session = Some(value["sessionId"].as_str().expect("session id").to_owned());
    }

    fn session_path(&self, rest: &str) -> String {
        format!(
            "/session/{}{rest}",
            self.session.as_deref().expect("a session")
        )
    }

    fn navigate(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(&json!({ "url": url })),
        )
        .expect("navigate");
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({ "script": script, "args": [] })),
        )
        .expect("script runs")
    }

    fn source(&self) -> String {
        self.call("GET", &self.session_path("/source"), None)
            .expect("page source")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn close_session(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self.call("DELETE", &format!("/session/{id}"), None);
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.close_session();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.watchdog.id().to_string())
            .status();
        let _ = self.watchdog.wait();
    }
}

/// Whether `raw` holds a whole response: its head and its declared body (or a final chunk).
fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
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

/// Runs `script` until it returns something other than `null`, for up to a minute.
fn wait_for(driver: &Driver, script: &str, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = driver.script(script);
        if !value.is_null() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened; the page: {}",
            driver.source()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Driver {
    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let data = self
            .call("GET", &self.session_path("/screenshot"), None)
            .expect("screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 PNG")
    }

    fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.session_path("/window/rect"),
            Some(&json!({ "width": width, "height": height })),
        )
        .expect("resize");
    }
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
            let seen = wait_for(
                d,
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
            let year = wait_for(
                d,
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
            wait_for(
                d,
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
            wait_for(
            d,
            "return document.getElementById('summary').textContent.indexOf('1 of 3 done') === 0 \
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
            let year = wait_for(
                d,
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

//! A small WebDriver client for headless Chromium through Debian's chromedriver: start it
//! (behind a watchdog shell that stops it if the test process dies), open a session with or
//! without JavaScript, navigate, run scripts, find and click elements, take screenshots.
//! Included with `#[path]` by `tests/browser.rs` and `tests/dashboard_browser.rs`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with at most one browser session; both stop on drop.
pub struct Driver {
    port: u16,
    watchdog: Child,
    session: Option<String>,
    profile: tempfile::TempDir,
}

impl Driver {
    pub fn start() -> Self {
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
            profile: tempfile::tempdir().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
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
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
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
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            raw.extend_from_slice(&buf[..n]);
            if n == 0 || complete(&raw) {
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

    pub fn open_session(&mut self, javascript: bool) {
        let mut prefs = json!({});
        if !javascript {
            prefs["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        let profile = self
            .profile
            .path()
            .join(if javascript { "js" } else { "nojs" });
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1200,900",
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

    pub fn navigate(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(&json!({ "url": url })),
        )
        .expect("navigate");
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.session_path("/url"), None)
            .expect("url")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({ "script": script, "args": [] })),
        )
        .expect("script runs")
    }

    pub fn source(&self) -> String {
        self.call("GET", &self.session_path("/source"), None)
            .expect("page source")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Clicks the element `css` selects (as a person would: WebDriver scrolls to it and
    /// clicks its middle).
    pub fn click(&self, css: &str) {
        let found = self
            .call(
                "POST",
                &self.session_path("/element"),
                Some(&json!({ "using": "css selector", "value": css })),
            )
            .unwrap_or_else(|e| panic!("no `{css}` on the page ({e}): {}", self.source()));
        let id = found[ELEMENT].as_str().expect("an element reference");
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            Some(&json!({})),
        )
        .unwrap_or_else(|e| panic!("clicking `{css}` failed: {e}"));
    }

    /// Runs `script` until it returns something other than `null`, for up to a minute.
    pub fn wait_for(&self, script: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self.script(script);
            if !value.is_null() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: never happened; the page: {}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let data = self
            .call("GET", &self.session_path("/screenshot"), None)
            .expect("screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 PNG")
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.session_path("/window/rect"),
            Some(&json!({ "width": width, "height": height })),
        )
        .expect("resize");
    }

    pub fn close_session(&mut self) {
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
fn complete(raw: &[u8]) -> bool {
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

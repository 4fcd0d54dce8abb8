//! The operators' dashboard over HTTP (through `tower::ServiceExt::oneshot`, on the memory
//! backend with a real worker): authorization on every route, CSRF and cross-site refusals,
//! each action's effect on the backend, the pages and their JSON twins, live events, and a
//! table of hostile requests over every route and method that must never get a 500, a panic
//! or a change of state.

mod common;
#[path = "common/dashboard.rs"]
mod dash;

use std::time::Duration;

use bytes::Bytes;
use common::Answer;
use dash::*;
use http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use longtask_core::{Error, NewTask, SubmitOptions, TaskId, TaskStatus};
use longtask_tower::Dashboard;
use tower::ServiceExt;

fn admin_json(path: &str) -> Request<String> {
    Request::get(path)
        .header(header::ACCEPT, "application/json")
        .body(String::new())
        .unwrap()
}

/// The notice a redirect leads to, as the page shows it.
async fn follow(app: &DashApp, answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    let location = answer.header("location").to_owned();
    let page = app.admin(browser_get(&location)).await;
    assert_eq!(page.status, 200, "{location}: {}", page.text());
    let text = page.text();
    let at = text
        .find("id=\"notice\"")
        .unwrap_or_else(|| panic!("no notice on {location}: {text}"));
    let rest = &text[at..];
    rest[rest.find('>').unwrap() + 1..rest.find("</p>").unwrap()].to_owned()
}

#[tokio::test]
async fn every_route_refuses_requests_the_hook_does_not_admit() {
    let mut app = DashApp::new();
    let failed = app.failed("kept").await;
    let done = app.succeeded("kept too").await;
    app.stop_worker().await;
    // A valid token and cookie: only authorization stands in the way.
    let (cookie, token) = app.csrf().await;
    let before = app.snapshot().await;
    let form = format!("csrf={token}&job=chore");
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/admin".into()),
        (Method::GET, "/admin/".into()),
        (Method::HEAD, "/admin/".into()),
        (Method::GET, "/admin/events".into()),
        (Method::GET, "/admin/tasks".into()),
        (Method::GET, format!("/admin/tasks/{failed}")),
        (Method::POST, format!("/admin/tasks/{failed}/retry")),
        (Method::POST, format!("/admin/tasks/{done}/delete")),
        (Method::POST, format!("/admin/tasks/{failed}/cancel")),
        (Method::POST, "/admin/retry-failed".into()),
        (Method::POST, "/admin/purge".into()),
        (Method::OPTIONS, "/admin/".into()),
        (Method::GET, "/admin/no-such-page".into()),
        (Method::DELETE, format!("/admin/tasks/{done}")),
    ];
    let who: [&[(&str, &str)]; 4] = [
        &[],
        &[("x-admin", "no")],
        &[("x-admin", "YES")],
        &[("x-admin", "yes, please")],
    ];
    for (method, path) in &routes {
        for headers in who {
            for browser in [false, true] {
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri(path.as_str())
                    .header(header::COOKIE, &cookie)
                    .header("sec-fetch-site", "same-origin")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                if browser {
                    request = request.header(header::ACCEPT, "text/html");
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                let answer =
                    common::send(&app.dashboard, request.body(form.clone()).unwrap()).await;
                let what = format!("{method} {path} {headers:?} browser={browser}");
                if browser {
                    assert_eq!(answer.status, 403, "{what}: {}", answer.text());
                    assert!(answer.text().contains("Not allowed"), "{what}");
                    assert!(answer
                        .header("content-security-policy")
                        .contains("default-src 'none'"));
                    assert!(!answer.headers.contains_key("set-cookie"), "{what}");
                } else {
                    let detail = answer.problem(403);
                    assert!(detail.contains("operators"), "{what}: {detail}");
                }
            }
        }
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused request changed tasks"
    );

    // Admitted: the same requests work.
    let page = app.admin(browser_get("/admin/")).await;
    assert_eq!(page.status, 200);
    let answer = app.act(&format!("/tasks/{failed}/retry"), &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    assert_eq!(
        app.client.status(failed).await.unwrap().status,
        TaskStatus::Queued
    );

    // allow_anyone() admits everyone, by choice.
    let open = Dashboard::builder(app.client.clone())
        .allow_anyone()
        .build();
    let answer = common::send(&open, admin_json("/")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test]
async fn actions_without_the_csrf_token_or_from_another_site_are_refused() {
    let mut app = DashApp::new();
    let failed = app.failed("csrf").await;
    app.stop_worker().await;
    let (cookie, token) = app.csrf().await;
    let (other_cookie, other_token) = DashApp::idle().csrf().await;
    let (_, second_token) = app.csrf().await; // another browser's cookie, same dashboard
    let path = format!("/admin/tasks/{failed}/retry");
    type Headers = Vec<(&'static str, String)>;
    let base = |cookie: &str| -> Headers {
        vec![
            ("cookie", cookie.to_owned()),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
        ]
    };
    let with = |mut headers: Headers, extra: &[(&'static str, &str)]| {
        headers.extend(extra.iter().map(|(n, v)| (*n, (*v).to_owned())));
        headers
    };
    let cases: Vec<(&str, Headers, String, &str)> = vec![
        (
            "no cookie, no token",
            base("a=b"),
            String::new(),
            "no CSRF cookie",
        ),
        (
            "cookie, no token",
            base(&cookie),
            String::new(),
            "no CSRF token",
        ),
        (
            "cookie, empty token",
            base(&cookie),
            "csrf=".into(),
            "no CSRF token",
        ),
        (
            "token, no cookie",
            base("a=b"),
            format!("csrf={token}"),
            "no CSRF cookie",
        ),
        (
            "another browser's token",
            base(&cookie),
            format!("csrf={second_token}"),
            "does not match",
        ),
        (
            "another dashboard's token",
            base(&cookie),
            format!("csrf={other_token}"),
            "does not match",
        ),
        (
            "another dashboard's cookie and token",
            base(&other_cookie),
            format!("csrf={other_token}"),
            "does not match",
        ),
        (
            "a forged token",
            base(&cookie),
            format!("csrf={}", "A".repeat(43)),
            "does not match",
        ),
        (
            "a wrong header token",
            with(base(&cookie), &[("x-csrf-token", "nope")]),
            format!("csrf={token}"),
            "does not match",
        ),
        (
            "cross-site",
            with(base(&cookie), &[("sec-fetch-site", "cross-site")]),
            format!("csrf={token}"),
            "another site",
        ),
        (
            "same-site, other origin",
            with(base(&cookie), &[("sec-fetch-site", "same-site")]),
            format!("csrf={token}"),
            "another origin",
        ),
        (
            "Origin of another host",
            with(
                base(&cookie),
                &[
                    ("origin", "http://evil.example"),
                    ("host", "127.0.0.1:3000"),
                ],
            ),
            format!("csrf={token}"),
            "another site",
        ),
    ];
    for (what, headers, body, says) in cases {
        let mut request = Request::post(path.as_str());
        for (name, value) in &headers {
            request = request.header(*name, value.as_str());
        }
        let answer = app.admin(request.body(body).unwrap()).await;
        let detail = answer.problem(403);
        assert!(detail.contains(says), "{what}: {detail}");
        let task = app.client.status(failed).await.unwrap();
        assert_eq!(task.status, TaskStatus::Failed, "{what} retried the task");
    }

    // GET never acts.
    let answer = app.admin(browser_get(&path)).await;
    answer.problem(405);
    assert_eq!(
        app.client.status(failed).await.unwrap().status,
        TaskStatus::Failed
    );

    // The same post, from this site with its token, acts.
    let request = Request::post(path.as_str())
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://127.0.0.1:3000")
        .header("host", "127.0.0.1:3000")
        .body(format!("csrf={token}"))
        .unwrap();
    let answer = app.admin(request).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    assert_eq!(
        app.client.status(failed).await.unwrap().status,
        TaskStatus::Queued
    );
    // ... and so does the token in a header, with an empty body.
    let again = app.failed_later(&cookie, &token).await;
    assert_eq!(again, StatusCode::SEE_OTHER);
}

impl DashApp {
    /// Posts a cancel of a new queued task with the token in `X-CSRF-Token`; returns the status.
    async fn failed_later(&self, cookie: &str, token: &str) -> StatusCode {
        let id = self.submit(Outcome::Succeed, "header").await;
        let request = Request::post(format!("/admin/tasks/{id}/cancel"))
            .header("cookie", cookie)
            .header("x-csrf-token", token)
            .body(String::new())
            .unwrap();
        let answer = self.admin(request).await;
        assert_eq!(
            self.client.status(id).await.unwrap().status,
            TaskStatus::Cancelled,
            "{}",
            answer.text()
        );
        answer.status
    }
}

#[tokio::test]
async fn each_action_changes_the_backend_and_says_so() {
    let mut app = DashApp::new();
    let failed = [
        app.failed("one").await,
        app.failed("two").await,
        app.failed("three").await,
    ];
    let done = app.succeeded("done").await;
    let running = app.running("held").await;

    // Cancel a running task: requested, then the job stops.
    let answer = app.act(&format!("/tasks/{running}/cancel"), &[]).await;
    assert_eq!(
        answer.header("location"),
        format!("/admin/tasks/{running}?notice=cancel-requested")
    );
    assert!(follow(&app, &answer)
        .await
        .contains("Cancellation was requested"));
    app.wait_status(running, TaskStatus::Cancelled).await;

    app.stop_worker().await;

    // Retry a failed task: queued again with a fresh attempt budget.
    let answer = app.act(&format!("/tasks/{}/retry", failed[0]), &[]).await;
    assert!(follow(&app, &answer).await.contains("queued again"));
    let task = app.client.status(failed[0]).await.unwrap();
    assert_eq!((task.status, task.attempt), (TaskStatus::Queued, 0));
    // Retrying it again changes nothing, and says so.
    let answer = app.act(&format!("/tasks/{}/retry", failed[0]), &[]).await;
    assert!(follow(&app, &answer)
        .await
        .contains("Only a failed or cancelled task"));

    // Cancel a queued task: cancelled at once.
    let answer = app.act(&format!("/tasks/{}/cancel", failed[0]), &[]).await;
    assert!(follow(&app, &answer)
        .await
        .contains("The task is cancelled."));
    assert_eq!(
        app.client.status(failed[0]).await.unwrap().status,
        TaskStatus::Cancelled
    );
    // Cancelling a finished task changes nothing.
    let answer = app.act(&format!("/tasks/{done}/cancel"), &[]).await;
    assert!(follow(&app, &answer).await.contains("already finished"));
    assert_eq!(
        app.client.status(done).await.unwrap().status,
        TaskStatus::Succeeded
    );

    // Delete: a finished task goes; an unfinished one stays.
    let queued = app.submit(Outcome::Succeed, "queued").await;
    let answer = app.act(&format!("/tasks/{queued}/delete"), &[]).await;
    assert!(follow(&app, &answer).await.contains("cancel it first"));
    assert_eq!(
        app.client.status(queued).await.unwrap().status,
        TaskStatus::Queued
    );
    let answer = app.act(&format!("/tasks/{done}/delete"), &[]).await;
    assert_eq!(answer.header("location"), "/admin/tasks?notice=deleted");
    assert!(follow(&app, &answer).await.contains("The task is deleted."));
    assert!(matches!(
        app.client.status(done).await,
        Err(Error::NotFound(_))
    ));

    // Retry every failed task of a job: the two left; another job's name retries none.
    let answer = app.act("/retry-failed", &[("job", "chore")]).await;
    assert_eq!(
        answer.header("location"),
        "/admin/?notice=retried-failed&count=2"
    );
    assert!(follow(&app, &answer)
        .await
        .contains("2 tasks queued again."));
    for id in &failed[1..] {
        assert_eq!(
            app.client.status(*id).await.unwrap().status,
            TaskStatus::Queued
        );
    }
    let answer = app.act("/retry-failed", &[("job", "no-such-job")]).await;
    assert!(follow(&app, &answer)
        .await
        .contains("0 tasks queued again."));

    // Purge now: the finished tasks past their retention go, nothing else.
    let expiring = app
        .submit_with(
            Outcome::Succeed,
            "expiring",
            SubmitOptions::new().retention(Duration::ZERO),
        )
        .await;
    app.act(&format!("/tasks/{expiring}/cancel"), &[]).await;
    let before = app.snapshot().await.len();
    let answer = app.act("/purge", &[]).await;
    assert_eq!(answer.header("location"), "/admin/?notice=purged&count=1");
    assert!(follow(&app, &answer)
        .await
        .contains("1 task past their retention purged."));
    assert!(matches!(
        app.client.status(expiring).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(app.snapshot().await.len(), before - 1);
    assert_eq!(
        app.client.status(failed[0]).await.unwrap().status,
        TaskStatus::Cancelled
    );

    // Unknown tasks: 404, nothing done.
    let answer = app
        .act(&format!("/tasks/{}/retry", TaskId::new()), &[])
        .await;
    answer.problem(404);
}

#[tokio::test]
async fn the_pages_show_the_figures_and_escape_what_they_show() {
    let app = DashApp::new();
    let done = app.succeeded("<b>bold</b>").await;
    let failed = app.failed("<script>alert(1)</script>").await;
    let running = app.running("& more").await;
    app.wait_busy(1).await;
    // A job no worker runs, with a hostile name: it waits.
    app.client
        .submit_raw(vec![NewTask::new(
            "<img src=x onerror=alert(1)>",
            "{\"x\":\"</pre>\"}",
        )])
        .await
        .unwrap();

    let page = app.admin(browser_get("/admin/")).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(!html.contains("<img src=x"), "unescaped job name");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("Test &lt;queues&gt;"), "unescaped title");
    assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"));
    // Per job: counts by status, the oldest wait, a sparkline with bars, a retry button.
    let chore = &html[html.find("<tr data-job=\"chore\">").expect("a chore row")..];
    let chore = &chore[..chore.find("</tr>").unwrap()];
    for (status, n) in [
        ("succeeded", 1),
        ("failed", 1),
        ("running", 1),
        ("queued", 0),
    ] {
        assert!(
            chore.contains(&format!("data-status=\"{status}\"><a href=\"/admin/tasks?job=chore&amp;status={status}\">{n}</a>")),
            "{status}: {chore}"
        );
    }
    assert!(
        chore.contains("aria-label=\"2 finished in the last hour\""),
        "{chore}"
    );
    assert_eq!(chore.matches("<rect class=\"bad\"").count(), 1, "{chore}");
    assert!(chore.contains("Retry failed"), "{chore}");
    assert!(html.contains("<span class=\"n\" data-total=\"queued\">1</span>"));
    // The worker, with its busy slots.
    assert!(
        html.contains("<span class=\"busy\">1 of 4</span>"),
        "{html}"
    );
    let csp = page.header("content-security-policy");
    assert!(
        !csp.contains("unsafe-inline") && csp.contains("'sha256-"),
        "{csp}"
    );
    assert!(page
        .header("set-cookie")
        .contains("HttpOnly; SameSite=Strict"));
    assert_eq!(page.header("cache-control"), "no-store");

    // The JSON twin: the Stats, the totals, the oldest wait, the workers.
    let json = app.admin(admin_json("/admin/")).await.json();
    assert_eq!(json["totals"]["succeeded"], 1);
    assert_eq!(json["totals"]["queued"], 1);
    assert_eq!(json["jobs"][1]["job"], "chore");
    assert_eq!(json["jobs"][1]["finished"].as_array().unwrap().len(), 60);
    assert_eq!(json["workers"][0]["busy"], 1);
    assert!(json["oldest_wait_seconds"].is_u64(), "{json}");
    let forced = app.admin(browser_get("/admin/?format=json")).await;
    assert_eq!(forced.header("content-type"), "application/json");

    // The task detail: parameters, output, progress, error, lease owner; escaped.
    let page = app
        .admin(browser_get(&format!("/admin/tasks/{failed}")))
        .await;
    let html = page.text();
    assert!(!html.contains("<script>alert(1)"), "unescaped error");
    assert!(html.contains("failed: &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains(">Retry</button>") && html.contains(">Delete</button>"));
    assert!(!html.contains(">Cancel</button>"));
    // The attempt history: the failed attempt, its worker, outcome and error, escaped.
    let worker = app.client.workers().await.unwrap()[0].id.clone();
    let history = &html[html
        .find("<table class=\"attempts\" id=\"attempts\">")
        .expect("an attempt history")..];
    let row = &history[history.find("<tr data-attempt=\"1\">").expect("attempt 1")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.starts_with(&format!(
            "<tr data-attempt=\"1\"><td>1</td><td><code>{worker}</code></td>"
        )),
        "{row}"
    );
    assert!(
        row.contains("<td class=\"outcome failed\">Failed</td>"),
        "{row}"
    );
    assert!(
        row.contains("<td><pre>failed: &lt;script&gt;alert(1)&lt;/script&gt;</pre></td>"),
        "{row}"
    );
    assert_eq!(
        row.matches("<time datetime=").count(),
        2,
        "started and ended: {row}"
    );
    let json = app
        .admin(admin_json(&format!("/admin/tasks/{failed}")))
        .await
        .json();
    assert_eq!(json["attempts"][0]["attempt"], 1, "{json}");
    assert_eq!(json["attempts"][0]["outcome"], "failed", "{json}");
    assert_eq!(json["attempts"][0]["worker"], worker.as_str(), "{json}");
    let page = app
        .admin(browser_get(&format!("/admin/tasks/{done}")))
        .await
        .text();
    assert!(page.contains("done: &lt;b&gt;bold&lt;/b&gt;"), "{page}");
    assert!(
        !page.contains("id=\"attempts\""),
        "a success has no failed attempts: {page}"
    );
    let page = app
        .admin(browser_get(&format!("/admin/tasks/{running}")))
        .await
        .text();
    assert!(page.contains("holding &amp; more"), "{page}");
    assert!(
        page.contains("<progress id=\"bar\" max=\"100\" value=\"25.0\">"),
        "{page}"
    );
    let worker = &app.client.workers().await.unwrap()[0].id;
    assert!(
        page.contains(&format!("<span id=\"lease-owner\">{worker}</span>")),
        "{page}"
    );
    assert!(page.contains(">Cancel</button>") && !page.contains(">Delete</button>"));
    let json = app
        .admin(admin_json(&format!("/admin/tasks/{running}")))
        .await
        .json();
    assert_eq!(json["status"], "running");
    assert_eq!(json["id"], running.to_string());

    // The list: filters and paging.
    let json = app
        .admin(admin_json("/admin/tasks?status=succeeded,failed"))
        .await
        .json();
    let ids: Vec<&str> = json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [done.to_string(), failed.to_string()]);
    let json = app
        .admin(admin_json("/admin/tasks?job=chore&limit=2"))
        .await
        .json();
    assert_eq!(json["tasks"].as_array().unwrap().len(), 2);
    let next = json["next"].as_str().expect("a next page").to_owned();
    assert_eq!(
        next,
        format!("/admin/tasks?job=chore&limit=2&after={failed}")
    );
    let json = app.admin(admin_json(&next)).await.json();
    assert_eq!(json["tasks"][0]["id"], running.to_string());
    assert!(json["next"].is_null());
    let page = app.admin(browser_get("/admin/tasks?limit=1")).await.text();
    assert!(
        page.contains(&format!(
            "href=\"/admin/tasks?limit=1&amp;after={done}\" rel=\"next\""
        )),
        "{page}"
    );
    let page = app
        .admin(browser_get("/admin/tasks?owner=nobody"))
        .await
        .text();
    assert!(page.contains("No tasks match."), "{page}");
    app.gate.add_permits(1);
}

#[tokio::test]
async fn the_overview_streams_its_figures_when_they_change() {
    let app = DashApp::idle();
    let dashboard = Dashboard::builder(app.client.clone())
        .at("/admin")
        .allow_anyone()
        .with_max_watchers(1)
        .build();
    let request = Request::get("/admin/events")
        .header(header::ACCEPT, "text/event-stream")
        .body(String::new())
        .unwrap();
    let response = dashboard.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    // The next `stats` event, within 20 s (keep-alive comments do not count).
    let mut next_event = async || -> serde_json::Value {
        let read = async {
            let mut seen = String::new();
            loop {
                let frame = body.frame().await.expect("the stream goes on").unwrap();
                seen.push_str(&String::from_utf8_lossy(
                    &frame.into_data().unwrap_or_default(),
                ));
                if let Some(at) = seen.find("event: stats\ndata: ") {
                    let data = &seen[at + 19..];
                    let line = &data[..data.find('\n').unwrap()];
                    return serde_json::from_str(line).unwrap();
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("a stats event within 20 s")
    };
    let first = next_event().await;
    assert_eq!(first["totals"]["queued"], 0);
    // A second stream is over the limit.
    let second = common::send(
        &dashboard,
        Request::get("/admin/events").body(String::new()).unwrap(),
    )
    .await;
    assert!(second.problem(503).contains("too many live updates"));
    app.submit(Outcome::Succeed, "counted").await;
    let changed = next_event().await;
    assert_eq!(changed["totals"]["queued"], 1, "{changed}");
    assert_eq!(changed["jobs"][0]["job"], "chore");
}

// ---- Hostile input -------------------------------------------------------------------------

#[derive(Clone)]
struct Case {
    method: Method,
    uri: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    expect: Option<u16>,
    /// Send the CSRF cookie and token (form field) too.
    token: bool,
}

impl Case {
    fn new(method: &str, uri: impl Into<String>) -> Self {
        Self {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            uri: uri.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            expect: None,
            token: false,
        }
    }
    fn header(mut self, name: &'static str, value: &[u8]) -> Self {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_bytes(value).unwrap(),
        ));
        self
    }
    fn form(self, body: &[u8]) -> Self {
        let mut case = self.header("content-type", b"application/x-www-form-urlencoded");
        case.body = Bytes::copy_from_slice(body);
        case.token = true;
        case
    }
    fn expect(mut self, status: u16) -> Self {
        self.expect = Some(status);
        self
    }
    fn describe(&self) -> String {
        let uri: String = self.uri.chars().take(100).collect();
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| {
                format!("{n}: {}", String::from_utf8_lossy(v.as_bytes()))
                    .chars()
                    .take(60)
                    .collect()
            })
            .collect();
        format!("{} {uri} {headers:?} token={}", self.method, self.token)
    }
}

async fn run(app: &DashApp, case: &Case, cookie: &str, token: &str) -> Option<Answer> {
    let uri: http::Uri = case.uri.parse().ok()?;
    let mut request = Request::builder()
        .method(case.method.clone())
        .uri(uri)
        .header("x-admin", "yes");
    for (name, value) in &case.headers {
        request = request.header(name, value);
    }
    let mut body = case.body.to_vec();
    if case.token {
        request = request.header(header::COOKIE, cookie);
        if !body.is_empty() {
            body.push(b'&');
        }
        body.extend_from_slice(format!("csrf={token}").as_bytes());
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let dashboard = app.dashboard.clone();
    let what = case.describe();
    let answer = tokio::spawn(async move {
        let response = dashboard.oneshot(request).await.unwrap();
        let (parts, mut body) = response.into_parts();
        let streaming = parts
            .headers
            .get("content-type")
            .is_some_and(|v| v == "text/event-stream");
        let bytes = if streaming {
            let mut seen = Vec::new();
            while !String::from_utf8_lossy(&seen).contains("event: stats") {
                match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        seen.extend_from_slice(&frame.into_data().unwrap_or_default());
                    }
                    _ => break,
                }
            }
            Bytes::from(seen)
        } else {
            tokio::time::timeout(Duration::from_secs(10), body.collect())
                .await
                .unwrap_or_else(|_| panic!("the body never ends: {what}"))
                .unwrap()
                .to_bytes()
        };
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: bytes,
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the dashboard panicked on {}: {e}", case.describe()));
    Some(answer)
}

fn check(case: &Case, answer: &Answer) -> Result<(), String> {
    let what = case.describe();
    if answer.status == StatusCode::INTERNAL_SERVER_ERROR {
        return Err(format!("500 for {what}"));
    }
    if let Some(expect) = case.expect {
        if answer.status.as_u16() != expect {
            return Err(format!(
                "{what}: expected {expect}, got {}: {}",
                answer.status,
                answer.text()
            ));
        }
    }
    if answer.status.is_client_error() || answer.status.is_server_error() {
        if answer
            .headers
            .get("content-type")
            .map(HeaderValue::as_bytes)
            != Some(b"application/problem+json")
        {
            return Err(format!(
                "{what}: error {} is not a problem document",
                answer.status
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("{what}: problem is not JSON ({e})"))?;
        if json["status"] != answer.status.as_u16()
            || json["detail"].as_str().is_none_or(|d| d.trim().is_empty())
        {
            return Err(format!("{what}: a bad problem document: {json}"));
        }
        if answer.status == StatusCode::METHOD_NOT_ALLOWED && !answer.headers.contains_key("allow")
        {
            return Err(format!("{what}: 405 without Allow"));
        }
    }
    if answer
        .headers
        .get("x-content-type-options")
        .map(HeaderValue::as_bytes)
        != Some(b"nosniff")
    {
        return Err(format!("{what}: no X-Content-Type-Options: nosniff"));
    }
    Ok(())
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PURGE", "get",
];

fn bad_ids() -> Vec<String> {
    vec![
        "not-a-task".into(),
        "..".into(),
        "%2e%2e".into(),
        "caf%C3%A9".into(),
        "%FF%FE%00".into(),
        "x".repeat(5000),
        "0".repeat(36),
        "%3Cscript%3E".into(),
        "'%20OR%201=1--".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_problems_never_a_500_nor_a_change() {
    let mut app = DashApp::new();
    let failed = app.failed("hostile").await;
    let done = app.succeeded("hostile").await;
    app.stop_worker().await;
    let (cookie, token) = app.csrf().await;
    let unknown = TaskId::new();

    let mut cases = Vec::new();
    // Every route × every method: allowed ones answer, others 405 with Allow.
    let routes = [
        "/admin".to_owned(),
        "/admin/".to_owned(),
        "/admin/events".to_owned(),
        "/admin/tasks".to_owned(),
        format!("/admin/tasks/{failed}"),
        format!("/admin/tasks/{failed}/retry"),
        format!("/admin/tasks/{failed}/cancel"),
        format!("/admin/tasks/{done}/delete"),
        "/admin/retry-failed".to_owned(),
        "/admin/purge".to_owned(),
    ];
    for route in &routes {
        let posts = route.ends_with("/retry")
            || route.ends_with("/cancel")
            || route.ends_with("/delete")
            || route.ends_with("/retry-failed")
            || route.ends_with("/purge");
        for method in METHODS {
            let case = Case::new(method, route.clone());
            let case = match *method {
                "OPTIONS" => case.expect(204),
                "GET" | "HEAD" if !posts => case,
                // The state-changing posts are sent without a token: 403, nothing done.
                "POST" if posts => case.expect(403),
                _ => case.expect(405),
            };
            cases.push(case);
        }
    }
    // Unknown routes.
    for path in [
        "/admin/nope",
        "/admin/tasks/x/y/z",
        "/admin/tasks//retry",
        "/admin/events/x",
        "/admin/%2e%2e/etc/passwd",
        "/elsewhere",
    ] {
        cases.push(Case::new("GET", path).expect(404));
        cases.push(Case::new("POST", path).expect(404));
    }
    // Bad and unknown ids, on every task route.
    for id in bad_ids() {
        cases.push(Case::new("GET", format!("/admin/tasks/{id}")).expect(400));
        for act in ["retry", "cancel", "delete"] {
            cases.push(
                Case::new("POST", format!("/admin/tasks/{id}/{act}"))
                    .form(b"")
                    .expect(400),
            );
        }
    }
    cases.push(Case::new("GET", format!("/admin/tasks/{unknown}")).expect(404));
    for act in ["retry", "cancel", "delete"] {
        cases.push(
            Case::new("POST", format!("/admin/tasks/{unknown}/{act}"))
                .form(b"")
                .expect(404),
        );
    }
    // Bad queries, naming the field.
    for query in [
        "status=done",
        "status=queued,nope",
        "limit=0",
        "limit=-1",
        "limit=501",
        "limit=abc",
        "limit=99999999999999999999",
        "after=x",
        "after=",
        "job=a&job=b",
        "owner=%FF",
        "job=%00",
        "format=xml",
        "notice=hi",
        "count=x&notice=purged",
        "bogus=1",
        "%FF=1",
    ] {
        let expect = if query == "after=" { 200 } else { 400 };
        cases.push(Case::new("GET", format!("/admin/tasks?{query}")).expect(expect));
    }
    cases.push(Case::new("GET", format!("/admin/tasks?job={}", "j".repeat(2000))).expect(400));
    cases.push(Case::new("GET", "/admin/?job=chore").expect(400));
    cases.push(Case::new("GET", "/admin/?format=csv").expect(400));
    cases.push(Case::new("GET", format!("/admin/tasks/{failed}?limit=3")).expect(400));
    cases.push(
        Case::new("GET", "/admin/events?x=1")
            .header("accept", b"text/event-stream")
            .expect(400),
    );
    // Negotiation.
    for accept in [
        &b"image/png"[..],
        b"*/*;q=0",
        b"text/html;q=0, application/json;q=0",
        b"\xff\xfe",
    ] {
        cases.push(Case::new("GET", "/admin/").header("accept", accept));
        cases.push(Case::new("GET", "/admin/tasks").header("accept", accept));
    }
    cases.push(
        Case::new("GET", "/admin/")
            .header("accept", b"image/png")
            .expect(406),
    );
    cases.push(
        Case::new("GET", "/admin/events")
            .header("accept", b"application/json")
            .expect(406),
    );
    cases.push(
        Case::new("HEAD", "/admin/events")
            .header("accept", b"text/event-stream")
            .expect(200),
    );
    // Action bodies: types, sizes, encodings, fields.
    let retry = format!("/admin/tasks/{done}/retry");
    cases.push(
        Case::new("POST", &retry)
            .header("content-type", b"application/json")
            .form(b"")
            .expect(415),
    );
    let mut json = Case::new("POST", &retry).header("content-type", b"application/json");
    json.body = Bytes::from_static(b"{}");
    json.token = true;
    cases.push(json.expect(415));
    let mut untyped = Case::new("POST", &retry);
    untyped.body = Bytes::from_static(b"csrf=x");
    cases.push(untyped.expect(415));
    cases.push(
        Case::new("POST", &retry)
            .header("content-length", b"2000000")
            .form(b"")
            .expect(413),
    );
    cases.push(
        Case::new("POST", &retry)
            .form(&vec![b'a'; 64 << 10])
            .expect(413),
    );
    cases.push(Case::new("POST", &retry).form(b"x=%FF").expect(400));
    cases.push(Case::new("POST", &retry).form(b"csrf=other").expect(400));
    cases.push(
        Case::new("POST", "/admin/retry-failed")
            .form(b"")
            .expect(400),
    );
    cases.push(
        Case::new("POST", "/admin/retry-failed")
            .form(b"job=")
            .expect(400),
    );
    cases.push(
        Case::new("POST", "/admin/retry-failed")
            .form(b"job=a&job=b")
            .expect(400),
    );
    cases.push(
        Case::new("POST", "/admin/retry-failed")
            .form(format!("job={}", "j".repeat(2000)).as_bytes())
            .expect(400),
    );
    cases.push(
        Case::new("POST", "/admin/retry-failed")
            .form(b"job=%0D%0A")
            .expect(400),
    );
    cases.push(
        Case::new("POST", "/admin/purge")
            .form(b"&&&=&=")
            .expect(303),
    );
    // The posts that act on this fixture but change nothing: a succeeded task retried, a
    // failed one deleted... no: they are the only ones allowed to change state, below.
    cases.push(Case::new("POST", &retry).form(b"").expect(303));
    cases.push(
        Case::new("POST", format!("/admin/tasks/{done}/cancel"))
            .form(b"")
            .expect(303),
    );
    cases.push(
        Case::new("POST", format!("/admin/tasks/{failed}/delete"))
            .form(b"")
            .header("sec-fetch-site", b"cross-site")
            .expect(403),
    );
    // Odd headers on every page.
    for path in ["/admin/", "/admin/tasks", &format!("/admin/tasks/{failed}")] {
        for (name, value) in [
            ("cookie", &b"longtask_dashboard_csrf=\xff"[..]),
            ("cookie", "a=b; ".repeat(2000).as_bytes()),
            ("accept", "x".repeat(10_000).as_bytes()),
            ("if-none-match", b"*"),
        ] {
            cases.push(Case::new("GET", path).header(name, value));
        }
    }

    let before = app.snapshot().await;
    let mut failures = Vec::new();
    let mut sent = 0;
    for case in &cases {
        let Some(answer) = run(&app, case, &cookie, &token).await else {
            continue;
        };
        sent += 1;
        if let Err(failure) = check(case, &answer) {
            failures.push(failure);
        }
        // Nothing these cases send may change a task: the few accepted posts act on tasks
        // where they change nothing (a succeeded task is not retried, nor cancelled).
        let after = app.snapshot().await;
        if after != before {
            failures.push(format!(
                "{} changed the tasks: {before:?} → {after:?}",
                case.describe()
            ));
            break;
        }
    }
    assert!(sent > 200, "only {sent} cases sent");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

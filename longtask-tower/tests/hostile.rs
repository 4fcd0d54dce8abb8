//! Hostile input: a few hundred malformed, oversized, oddly encoded and misdirected requests,
//! table-driven, through `tower::ServiceExt::oneshot`. Whatever comes in, the service must not
//! panic, must not answer 500, must answer every error with an RFC 9457 problem document whose
//! `detail` says something, and must not create a task for a request it rejects.

mod common;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use common::*;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use longtask_core::{
    Client, Job, JobError, MemoryBackend, SubmitOptions, TaskContext, TaskId, TaskQuery,
    TaskStatus, Worker,
};
use longtask_tower::{GroupService, JobService, ResultFile};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

type In = UnsyncBoxBody<Bytes, std::io::Error>;

/// What a case sends as its body.
#[derive(Clone)]
enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// `count` chunks of `size` bytes, with no size hint (like a chunked upload).
    Chunks {
        size: usize,
        count: usize,
    },
    /// A body that fails after its first chunk (a dropped connection).
    Broken,
}

impl Body {
    fn text(s: &str) -> Self {
        Self::Bytes(s.as_bytes().to_vec())
    }

    fn into_body(self) -> In {
        match self {
            Self::Empty => Full::new(Bytes::new())
                .map_err(|e| match e {})
                .boxed_unsync(),
            Self::Bytes(b) => Full::new(Bytes::from(b))
                .map_err(|e| match e {})
                .boxed_unsync(),
            Self::Chunks { size, count } => {
                StreamBody::new(futures::stream::iter((0..count).map(move |_| {
                    Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b' '; size])))
                })))
                .boxed_unsync()
            }
            Self::Broken => StreamBody::new(futures::stream::iter([
                Ok(Frame::data(Bytes::from_static(b"{\"days\":"))),
                Err::<Frame<Bytes>, _>(std::io::Error::other("connection reset")),
            ]))
            .boxed_unsync(),
        }
    }
}

#[derive(Clone)]
struct Case {
    method: Method,
    uri: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Body,
    /// The status this case must get, when it matters.
    expect: Option<u16>,
}

impl Case {
    fn new(method: Method, uri: impl Into<String>) -> Self {
        Self {
            method,
            uri: uri.into(),
            headers: Vec::new(),
            body: Body::Empty,
            expect: None,
        }
    }

    fn header(mut self, name: &'static str, value: &[u8]) -> Self {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_bytes(value).expect("a header value http accepts"),
        ));
        self
    }

    fn json(self, body: &str) -> Self {
        self.header("content-type", b"application/json")
            .body(Body::text(body))
    }

    fn form(self, body: &[u8]) -> Self {
        self.header("content-type", b"application/x-www-form-urlencoded")
            .body(Body::Bytes(body.to_vec()))
    }

    fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    fn expect(mut self, status: u16) -> Self {
        self.expect = Some(status);
        self
    }

    fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
            .map(|h| h.chars().take(80).collect())
            .collect();
        let uri: String = self.uri.chars().take(120).collect();
        format!("{} {uri} {headers:?}", self.method)
    }
}

/// A job with the same name as the test report but another output type: what a deploy that
/// changed `Output` leaves behind in the store.
struct Impostor;

impl Job for Impostor {
    const NAME: &'static str = "test-report";
    type Params = serde_json::Value;
    type Output = String;

    async fn run(&self, _: serde_json::Value, _: TaskContext) -> Result<String, JobError> {
        Ok("not what Report outputs".to_owned())
    }
}

async fn count(client: &Client) -> usize {
    let query = TaskQuery {
        limit: 10_000,
        ..TaskQuery::default()
    };
    client.list(&query).await.expect("list").len()
}

/// Sends one case; answers with the status, the headers and (for event streams, only the first
/// frames) the body.
async fn run<S>(service: &S, case: &Case) -> Option<Answer>
where
    S: tower::Service<
            Request<In>,
            Response = http::Response<longtask_tower::ResponseBody>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let uri: Uri = case.uri.parse().ok()?;
    let mut request = Request::builder().method(case.method.clone()).uri(uri);
    for (name, value) in &case.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(case.body.clone().into_body())
        .expect("request");
    let service = service.clone();
    let what = case.describe();
    let answer = tokio::spawn(async move {
        let response = service.oneshot(request).await.expect("infallible");
        let (parts, mut body) = response.into_parts();
        let streaming = parts
            .headers
            .get("content-type")
            .is_some_and(|v| v == "text/event-stream");
        let body = if streaming {
            // A live stream: read up to its first event (after the `retry:` line). A stream
            // that sends none within 10 s, or ends first, is reported by `check`.
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !String::from_utf8_lossy(&seen).contains("event: ") {
                match tokio::time::timeout_at(deadline, body.frame()).await {
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
                .expect("infallible")
                .to_bytes()
        };
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the service panicked on {}: {e}", case.describe()));
    Some(answer)
}

/// The checks every answer passes.
fn check(case: &Case, answer: &Answer, before: usize, after: usize) -> Result<(), String> {
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
        let ct = answer
            .headers
            .get("content-type")
            .map(HeaderValue::as_bytes);
        if ct != Some(b"application/problem+json".as_slice()) {
            return Err(format!(
                "{what}: error {} is not a problem: {ct:?}",
                answer.status
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("{what}: problem is not JSON ({e}): {}", answer.text()))?;
        if json["status"] != answer.status.as_u16() {
            return Err(format!("{what}: problem status differs: {json}"));
        }
        if json["detail"].as_str().is_none_or(|d| d.trim().is_empty()) {
            return Err(format!("{what}: problem without a detail: {json}"));
        }
        if answer.status == StatusCode::METHOD_NOT_ALLOWED && !answer.headers.contains_key("allow")
        {
            return Err(format!("{what}: 405 without Allow"));
        }
        if after != before {
            return Err(format!(
                "{what}: rejected with {} but created {} task(s)",
                answer.status,
                after - before
            ));
        }
    }
    if answer.headers.get("x-content-type-options") != Some(&HeaderValue::from_static("nosniff")) {
        return Err(format!(
            "{what}: {} without X-Content-Type-Options: nosniff",
            answer.status
        ));
    }
    let streaming = answer
        .headers
        .get("content-type")
        .is_some_and(|v| v == "text/event-stream");
    if streaming && answer.status == StatusCode::OK && case.method == Method::GET {
        let text = answer.text();
        // Every stream these cases open is of the live task, which stays queued.
        if !(text.starts_with("retry: ")
            && text.contains("event: status\ndata: {")
            && text.contains(r#""status":"queued""#))
        {
            return Err(format!(
                "{what}: the stream's first event never came: {text:?}"
            ));
        }
    }
    for (name, value) in &answer.headers {
        if value
            .as_bytes()
            .iter()
            .any(|b| b.is_ascii_control() && *b != b'\t')
        {
            return Err(format!("{what}: control character in the {name} header"));
        }
    }
    Ok(())
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PURGE", "get",
];

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("method")
}

/// Ids that are not (this service's) tasks.
fn bad_ids() -> Vec<String> {
    vec![
        "not-a-task".into(),
        "..".into(),
        "%2e%2e".into(),
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
        "caf%C3%A9".into(),
        "%E2%80%AE%F0%9F%92%A3".into(),
        "%FF%FE%00".into(),
        "%00".into(),
        "x".repeat(5000),
        "0".repeat(36),
        TaskId::new().to_string(),
        "%7B%7D".into(),
        "'%20OR%201=1--".into(),
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E".into(),
    ]
}

/// Header variations that every route must survive.
fn header_sets() -> Vec<Vec<(&'static str, Vec<u8>)>> {
    let h = |n: &'static str, v: &[u8]| (n, v.to_vec());
    vec![
        vec![],
        vec![h("accept", b"*/*;q=0")],
        vec![h("accept", b"text/html;q=0, application/json;q=0")],
        vec![h("accept", b"image/png")],
        vec![h("accept", b"garbage")],
        vec![h("accept", b";;,,;q=")],
        vec![h("accept", b"text/html;q=abc, */*;q=NaN")],
        vec![h("accept", b"text/event-stream;Q=0")],
        vec![
            h("accept", b"text/html"),
            h("accept", b"application/json;q=0.1"),
        ],
        vec![h("accept", b"\xff\xfe")],
        vec![h("accept", "x".repeat(10_000).as_bytes())],
        vec![h("if-none-match", b"*")],
        vec![h("if-none-match", b"W/\"\", \"\xff\", ,,,")],
        vec![h("if-none-match", "\"a\",".repeat(2000).as_bytes())],
        vec![
            h("content-type", b"application/json"),
            h("content-type", b"text/plain"),
        ],
        vec![h("content-length", b"18446744073709551616")],
        vec![h("idempotency-key", b"\t\t")],
        vec![h("x-user", b"alice")],
        vec![h("x-user", b"bob"), h("accept", b"text/html")],
    ]
}

/// Submissions: bodies, media types and keys.
fn submissions() -> Vec<Case> {
    let post = || Case::new(Method::POST, "/reports");
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_field = format!(
        "{{\"days\": 1, \"message\": {}{}}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    vec![
        // Media types.
        post().body(Body::text(r#"{"days": 1}"#)).expect(415),
        post()
            .header("content-type", b"text/plain")
            .body(Body::text(r#"{"days": 1}"#))
            .expect(415),
        post()
            .header("content-type", b"\xff")
            .body(Body::text(r#"{"days": 1}"#))
            .expect(415),
        post()
            .header("content-type", b"")
            .body(Body::text(r#"{"days": 1}"#))
            .expect(415),
        post()
            .header("content-type", b";;;")
            .body(Body::text(r#"{"days": 1}"#))
            .expect(415),
        post()
            .header("content-type", b"multipart/form-data; boundary=x")
            .body(Body::text("--x--"))
            .expect(415),
        post()
            .header("content-type", b"application/json")
            .header("content-type", b"application/x-www-form-urlencoded")
            .body(Body::text(r#"{"days": 1}"#))
            .expect(415),
        post()
            .header("content-type", b"APPLICATION/JSON; charset=utf-8")
            .body(Body::text(r#"{"days": 1}"#))
            .expect(202),
        // Negotiation before anything is created.
        post()
            .json(r#"{"days": 1}"#)
            .header("accept", b"*/*;q=0")
            .expect(406),
        post()
            .json(r#"{"days": 1}"#)
            .header("accept", b"image/png")
            .expect(406),
        post()
            .json(r#"{"days": 1}"#)
            .header("accept", b"application/json;Q=0")
            .expect(406),
        // Bodies.
        post().json("").expect(400),
        post().json("   ").expect(400),
        post().json("null").expect(422),
        post().json("[]").expect(422),
        post().json(r#"{"days": "1"}"#).expect(422),
        post().json(r#"{"days": -1}"#).expect(422),
        post().json(r#"{"days": 1e99}"#).expect(422),
        post().json(r#"{"days": 1, "days": 2}"#).expect(422),
        post().json(r#"{"days": 1, "extra": true}"#).expect(422),
        post().json(r#"{"days": 1} {"days": 2}"#).expect(400),
        post().json(r#"{"days": 1,}"#).expect(400),
        post().json(&deep_json).expect(422),
        post().json(&deep_field).expect(422),
        post()
            .header("content-type", b"application/json")
            .body(Body::Bytes(
                b"{\"days\": 1, \"message\": \"\xff\xfe\"}".to_vec(),
            ))
            .expect(400),
        post()
            .header("content-type", b"application/json")
            .body(Body::Bytes(b"\xef\xbb\xbf{\"days\": 1}".to_vec()))
            .expect(202),
        post()
            .json(r#"{"days": 1, "message": "\ud800"}"#)
            .expect(400),
        post().form(b"").expect(422),
        post().form(b"days=").expect(422),
        post().form(b"days=abc").expect(422),
        post().form(b"days=1&days=2").expect(422),
        post().form(b"days=1&bogus=2").expect(422),
        post().form(b"&&&=&=").expect(422),
        post().form(b"days=1&message=caf\xff").expect(400),
        post().form(b"days=1&message=caf%FF").expect(400),
        post().form(b"days=1&mess%FFage=x").expect(400),
        post().form(b"days=1&message=%C3%28").expect(400),
        post().form(b"days=1&message=%").expect(202),
        // Sizes: declared, undeclared and lying.
        post()
            .header("content-length", b"2000000")
            .json(r#"{"days": 1}"#)
            .expect(413),
        post()
            .header("content-type", b"application/json")
            .body(Body::Chunks {
                size: 64 * 1024,
                count: 20,
            })
            .expect(413),
        post()
            .header("content-type", b"application/json")
            .header("content-length", b"10")
            .body(Body::Chunks {
                size: 64 * 1024,
                count: 20,
            })
            .expect(413),
        post()
            .header("content-type", b"application/json")
            .header("content-length", b"abc")
            .body(Body::text(r#"{"days": 1}"#))
            .expect(202),
        post()
            .header("content-type", b"application/json")
            .header("content-length", b"-5")
            .body(Body::text(r#"{"days": 1}"#))
            .expect(202),
        post()
            .header("content-type", b"application/json")
            .header("content-length", b"100")
            .body(Body::text(r#"{"days": 1}"#))
            .expect(202),
        post()
            .form(&[b"days=1&message=".as_slice(), &vec![b'a'; 2 << 20]].concat())
            .expect(413),
        post()
            .header("content-type", b"application/json")
            .body(Body::Broken)
            .expect(400),
        // Idempotency keys.
        post()
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", b"")
            .expect(400),
        post()
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", "k".repeat(600).as_bytes())
            .expect(400),
        post()
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", "k".repeat(300).as_bytes())
            .expect(400),
        post()
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", b"tab\there")
            .expect(400),
        post()
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", b"caf\xc3\xa9")
            .expect(400),
        post()
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", b"\t")
            .expect(400),
        post()
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", b"a")
            .header("idempotency-key", b"b")
            .expect(400),
        post()
            .form(b"days=1&_idempotency_key=%0D%0Ainjected")
            .expect(400),
        post()
            .form(b"days=1&_idempotency_key=caf%C3%A9")
            .expect(400),
        post()
            .form(&[b"days=1&_idempotency_key=".as_slice(), &vec![b'k'; 300]].concat())
            .expect(400),
        post()
            .form(b"days=1&_idempotency_key=a&_idempotency_key=b")
            .expect(400),
        post()
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", b"a-good-key_1")
            .expect(202),
        post()
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", b"a-good-key_1")
            .expect(200),
    ]
}

/// What a path names, for the status each method must get there.
#[derive(Clone, Copy, Debug)]
enum Names {
    /// `POST /reports`.
    Mount,
    /// A route of the live (queued, visible) task.
    Live(Route),
    /// A route of something that is not a task of this service.
    Absent(Route),
    /// No route at all.
    Nothing,
}

#[derive(Clone, Copy, Debug)]
enum Route {
    Task,
    Events,
    Result,
    Cancel,
}

/// The placeholder that [`hostile_requests_get_problems_and_create_nothing`] replaces with a
/// task submitted just before the case: cancelling must not touch the task the other cases
/// watch.
const FRESH: &str = "{fresh}";

/// The status `method` must get on a path that names `names`.
fn expected_status(names: Names, method: &Method) -> u16 {
    let (get, head, post, delete, options) = (
        method == Method::GET,
        method == Method::HEAD,
        method == Method::POST,
        method == Method::DELETE,
        method == Method::OPTIONS,
    );
    let reads = get || head;
    match names {
        Names::Nothing => 404,
        _ if options => 204,
        Names::Mount if post => 415, // an unlabelled body
        Names::Live(Route::Task | Route::Events) if reads => 200,
        Names::Live(Route::Result) if reads => 202, // not finished yet
        Names::Live(Route::Task) if delete => 200,
        Names::Live(Route::Cancel) if post => 200,
        Names::Absent(Route::Task) if reads || delete => 404,
        Names::Absent(Route::Events | Route::Result) if reads => 404,
        Names::Absent(Route::Cancel) if post => 404,
        _ => 405,
    }
}

/// Whether `method` on a path that names `names` may cancel a task.
fn cancels(names: Names, method: &Method) -> bool {
    matches!(
        (names, method),
        (Names::Live(Route::Task), &Method::DELETE) | (Names::Live(Route::Cancel), &Method::POST)
    )
}

/// The task routes' paths and variants of them, with what each names (`id` is a live task).
fn named_paths_of(id: &str) -> Vec<(String, Names)> {
    let live = |route| Names::Live(route);
    vec![
        (format!("/reports/{id}"), live(Route::Task)),
        (format!("/reports/{id}/"), live(Route::Task)),
        (format!("/reports//{id}"), live(Route::Task)),
        (format!("/reports/{id}//"), Names::Nothing),
        (format!("/reports/{id}/events"), live(Route::Events)),
        (format!("/reports/{id}/result"), live(Route::Result)),
        (format!("/reports/{id}/cancel"), live(Route::Cancel)),
        (format!("/reports/{id}/cancel/"), live(Route::Cancel)),
        (format!("/reports/{id}/bogus"), Names::Nothing),
        (format!("/reports/{id}/events/extra"), Names::Nothing),
        (
            format!("/reports/{id}%2Fevents"),
            Names::Absent(Route::Task),
        ),
        (
            format!("/reports/{id}?format=json&format=html"),
            live(Route::Task),
        ),
        (
            format!("/reports/{id}?format=xml&x=%FF%00"),
            live(Route::Task),
        ),
        (format!("/reports/{}", id.to_uppercase()), live(Route::Task)),
        // The service also answers paths with its mount point stripped (axum's nest_service).
        (format!("/{id}"), live(Route::Task)),
    ]
}

fn all_cases(queued: &str) -> Vec<Case> {
    let mut cases = submissions();
    // Every method on every route, for a real task, its variants and ids that are not tasks.
    let mut paths: Vec<(String, Names)> = Vec::new();
    paths.extend(
        [
            ("/reports", Names::Mount),
            ("/reports/", Names::Mount),
            ("/reports//", Names::Mount),
            ("//reports", Names::Absent(Route::Task)),
            ("/reports?x=1", Names::Mount),
        ]
        .map(|(path, names)| (path.to_owned(), names)),
    );
    for id in bad_ids() {
        paths.push((format!("/reports/{id}"), Names::Absent(Route::Task)));
        paths.push((
            format!("/reports/{id}/events"),
            Names::Absent(Route::Events),
        ));
        paths.push((
            format!("/reports/{id}/result"),
            Names::Absent(Route::Result),
        ));
    }
    for name in METHODS {
        let method = method(name);
        let live_paths = named_paths_of(queued)
            .into_iter()
            .zip(named_paths_of(FRESH));
        let mut all: Vec<(String, Names)> = live_paths
            .map(|(shared, fresh)| {
                if cancels(fresh.1, &method) {
                    fresh
                } else {
                    shared
                }
            })
            .collect();
        all.extend(paths.iter().cloned());
        for (path, names) in all {
            let mut case = Case::new(method.clone(), path).expect(expected_status(names, &method));
            if method == Method::POST && matches!(names, Names::Mount) {
                // Submissions are covered above; here: an unlabelled body.
                case = case.body(Body::text("days=1"));
            }
            cases.push(case);
        }
    }
    // Header variations on the real task's routes.
    for set in header_sets() {
        for path in [
            format!("/reports/{queued}"),
            format!("/reports/{queued}/events"),
            format!("/reports/{queued}/result"),
        ] {
            let mut case = Case::new(Method::GET, path);
            for (name, value) in &set {
                case = case.header(name, value);
            }
            cases.push(case);
        }
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_problems_and_create_nothing() {
    let app = App::idle();
    let queued = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    let services = [
        app.service.clone(),
        app.service.clone().with_owner(|parts| {
            parts
                .headers
                .get("x-user")?
                .to_str()
                .ok()
                .map(str::to_owned)
        }),
        app.service.clone().with_body_limit(16),
    ];
    let cases = all_cases(&queued.to_string());
    let mut failures = Vec::new();
    let mut sent = 0;
    let mut skipped = Vec::new();
    for (n, service) in services.iter().enumerate() {
        for case in &cases {
            let mut case = case.clone();
            if n == 1 {
                case.expect = case.expect.map(|status| without_owner(&case, status));
            }
            if n == 2 {
                case.expect = case.expect.map(|status| within_16_bytes(&case, status));
            }
            let upper = FRESH.to_uppercase();
            if case.uri.contains(FRESH) || case.uri.contains(&upper) {
                let fresh =
                    id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
                let fresh = fresh.to_string();
                case.uri = case
                    .uri
                    .replace(FRESH, &fresh)
                    .replace(&upper, &fresh.to_uppercase());
            }
            let before = count(&app.client).await;
            let Some(answer) = run(service, &case).await else {
                skipped.push(case.uri.clone());
                continue;
            };
            sent += 1;
            let after = count(&app.client).await;
            if let Err(e) = check(&case, &answer, before, after) {
                failures.push(format!("[service {n}] {e}"));
            }
        }
    }
    assert!(sent >= 300, "only {sent} requests sent");
    // The task the streams watched was live for every case.
    assert_eq!(
        app.client.status(queued).await.unwrap().status,
        TaskStatus::Queued
    );
    assert!(skipped.len() < 10, "too many unparsable URIs: {skipped:?}");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What `case`, expected to get `status` from the service without an owner hook, gets from
/// the one with a hook: a request that names no owner (no `x-user`) is in the same scope as
/// every other request without an owner, so the repeated key names the task created earlier by
/// the first service (keys are scoped by owner, and "no owner" is one scope).
fn without_owner(case: &Case, status: u16) -> u16 {
    let anonymous = !case.headers.iter().any(|(name, _)| name == "x-user");
    let repeated_key = case
        .headers
        .iter()
        .any(|(name, v)| name == "idempotency-key" && v == "a-good-key_1");
    if anonymous && repeated_key && status == 202 {
        200
    } else {
        status
    }
}

/// What `case`, expected to get `status` from the service with the default body limit, gets
/// from one whose limit is 16 bytes: `413` wherever the body would have been read whole, and
/// the key every request without an owner shares names the task created earlier.
fn within_16_bytes(case: &Case, status: u16) -> u16 {
    let declared = case
        .headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, v)| v.to_str().ok()?.parse::<u64>().ok());
    let sent = match &case.body {
        Body::Bytes(bytes) => bytes.len(),
        Body::Chunks { size, count } => size * count,
        Body::Empty | Body::Broken => 0,
    };
    let read_whole = matches!(status, 200 | 202 | 400 | 422) && !matches!(case.body, Body::Broken);
    let repeated_key = case
        .headers
        .iter()
        .any(|(name, v)| name == "idempotency-key" && v == "a-good-key_1");
    if read_whole && (sent > 16 || declared.is_some_and(|len| len > 16)) {
        413
    } else if repeated_key {
        200
    } else {
        status
    }
}

fn form(path: &str, accept: Option<&str>, body: &[u8]) -> Request<String> {
    let mut request =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    // `String` bodies must be UTF-8: smuggle the raw bytes through a lossless route.
    request
        .body(String::from_utf8(body.to_vec()).unwrap_or_default())
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_fields_that_are_not_utf8_are_400_and_create_nothing() {
    let app = App::idle();
    // Percent-encoded bytes that are no UTF-8: they used to be stored as U+FFFD.
    for body in [
        "days=1&message=caf%E9",
        "days=1&message=%C3%28",
        "days=1&mess%FFage=x",
    ] {
        let detail = send(&app.service, form("/reports", None, body.as_bytes()))
            .await
            .problem(400);
        assert!(detail.contains("UTF-8"), "{detail}");
    }
    let detail = send(
        &app.service,
        form("/reports", None, b"days=1&message=caf%E9"),
    )
    .await
    .problem(400);
    assert!(detail.contains("field `message`"), "{detail}");
    // Raw invalid bytes, through a body type that can carry them.
    let case = Case::new(Method::POST, "/reports").form(b"days=1&message=caf\xe9");
    let answer = run(&app.service, &case).await.expect("uri");
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert_eq!(count(&app.client).await, 0);
    // Properly encoded text still arrives whole.
    let ok = send(
        &app.service,
        form(
            "/reports",
            None,
            "days=1&message=caf%C3%A9+%E2%9C%93&_x=%FF".as_bytes(),
        ),
    )
    .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text());
    let task = app.client.status(id_of(&ok)).await.unwrap();
    assert!(task.params.contains("café ✓"), "{}", task.params);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_idempotency_keys_are_400_and_create_nothing() {
    let app = App::idle();
    let with_key = |key: &[u8]| {
        Case::new(Method::POST, "/reports")
            .json(r#"{"days": 1}"#)
            .header("idempotency-key", key)
    };
    let long = "k".repeat(256);
    for (case, says) in [
        (with_key(b""), "is empty"),
        (with_key(long.as_bytes()), "256 bytes"),
        (with_key(b"tab\there"), "'\\t'"),
        (with_key("café".as_bytes()), "not ASCII"),
        (with_key(b"a").header("idempotency-key", b"b"), "several"),
        (
            Case::new(Method::POST, "/reports").form(b"days=1&_idempotency_key=a%0D%0Ab"),
            "'\\r'",
        ),
        (
            Case::new(Method::POST, "/reports").form(b"days=1&_idempotency_key=caf%C3%A9"),
            "'é'",
        ),
        (
            Case::new(Method::POST, "/reports")
                .form(b"days=1&_idempotency_key=a&_idempotency_key=b"),
            "several",
        ),
    ] {
        let answer = run(&app.service, &case).await.expect("uri");
        let detail = answer.problem(400);
        assert!(detail.contains(says), "{}: {detail}", case.describe());
    }
    assert_eq!(count(&app.client).await, 0);
    // 255 printable characters, spaces included, are a key.
    let key = format!("order 42 {}", "k".repeat(246));
    let first = run(&app.service, &with_key(key.as_bytes())).await.unwrap();
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text());
    let again = run(&app.service, &with_key(key.as_bytes())).await.unwrap();
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(id_of(&first), id_of(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owners_key_never_names_another_owners_task() {
    let app = App::idle();
    let service = app.service.clone().with_owner(|parts| {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    });
    let submit = |user: Option<&str>, key: &str, as_form: bool| {
        let mut request = Request::post("/reports");
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        let request = if as_form {
            let mut body = form_urlencoded::Serializer::new(String::from("days=1&"));
            body.append_pair("_idempotency_key", key);
            request
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "text/html")
                .body(body.finish())
        } else {
            request
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(r#"{"days": 1}"#.to_owned())
        };
        request.unwrap()
    };
    // Owners whose names look like another's name joined to a key, and one too long to be
    // stored whole; `None` sends no owner at all.
    let long = "o".repeat(400);
    let owners: Vec<Option<&str>> = vec![
        None,
        Some("alice"),
        Some("bob"),
        Some("5:alice"),
        Some("alice:k"),
        Some("-"),
        Some(&long),
    ];
    let mut tasks = Vec::new();
    for owner in &owners {
        let first = send(&service, submit(*owner, "k", false)).await;
        assert_eq!(
            first.status,
            StatusCode::ACCEPTED,
            "{owner:?}: {}",
            first.text()
        );
        let id = id_of(&first);
        // The key works for its owner: the probes below are not empty.
        let again = send(&service, submit(*owner, "k", false)).await;
        assert_eq!(id_of(&again), id, "{owner:?}: the key names its own task");
        // Whatever the key is stored as, as the public record says.
        let record = app.client.status(id).await.unwrap();
        assert_eq!(record.owner.as_deref(), *owner);
        tasks.push((*owner, id, record.idempotency_key.expect("a stored key")));
    }
    for (owner, id, stored) in &tasks {
        for (other, _, _) in &tasks {
            if other == owner {
                continue;
            }
            // Another requester sends the key as stored, and the key that joins this owner's
            // name to the key: each time it gets a task of its own (new, or its own earlier
            // one), never this owner's and never a conflict with it, as JSON or as a form.
            let joined = format!("{}:k", owner.unwrap_or_default());
            for key in [stored.as_str(), joined.as_str()] {
                if key.len() > 255 {
                    continue;
                }
                let answer = send(&service, submit(*other, key, false)).await;
                assert!(
                    answer.status == StatusCode::ACCEPTED || answer.status == StatusCode::OK,
                    "{other:?} sending key {key:?} (after {owner:?}): {}",
                    answer.text()
                );
                let got = id_of(&answer);
                assert_ne!(
                    got, *id,
                    "{other:?} sending key {key:?} got {owner:?}'s task"
                );
                let record = app.client.status(got).await.unwrap();
                assert_eq!(record.owner.as_deref(), *other, "key {key:?}");
                let answer = send(&service, submit(*other, key, true)).await;
                assert_eq!(
                    answer.status,
                    StatusCode::SEE_OTHER,
                    "{other:?} posting key {key:?} (after {owner:?}): {}",
                    answer.text()
                );
                let got: TaskId = answer
                    .header("location")
                    .rsplit('/')
                    .next()
                    .and_then(|id| id.parse().ok())
                    .expect("a task's link");
                let record = app.client.status(got).await.unwrap();
                assert_eq!(
                    record.owner.as_deref(),
                    *other,
                    "{other:?} posting key {key:?} was sent to {owner:?}'s task"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_hook_none_and_some_see_only_their_own() {
    let app = App::idle();
    let service = app.service.clone().with_owner(|parts| {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    });
    let submit = |user: Option<&str>| {
        let mut r = Request::post("/reports").header("content-type", "application/json");
        if let Some(user) = user {
            r = r.header("x-user", user);
        }
        r.body(r#"{"days": 1}"#.to_owned()).unwrap()
    };
    let get_as = |user: Option<&str>, path: String| {
        let mut r = Request::get(path);
        if let Some(user) = user {
            r = r.header("x-user", user);
        }
        r.body(String::new()).unwrap()
    };
    let anonymous = id_of(&send(&service, submit(None)).await);
    let alices = id_of(&send(&service, submit(Some("alice"))).await);
    assert_eq!(app.client.status(anonymous).await.unwrap().owner, None);
    for suffix in ["", "/result", "/events"] {
        let path = |id: TaskId| format!("/reports/{id}{suffix}");
        send(&service, get_as(Some("alice"), path(anonymous)))
            .await
            .problem(404);
        send(&service, get_as(None, path(alices)))
            .await
            .problem(404);
        send(&service, get_as(Some(""), path(alices)))
            .await
            .problem(404);
    }
    let mine = send(&service, get_as(None, format!("/reports/{anonymous}"))).await;
    assert_eq!(mine.status, StatusCode::OK);
    let mine = send(
        &service,
        get_as(Some("alice"), format!("/reports/{alices}")),
    )
    .await;
    assert_eq!(mine.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_on_events_answers_headers_without_a_stream() {
    let app = App::idle();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    let head = Request::head(format!("/reports/{id}/events"))
        .body(String::new())
        .unwrap();
    // The task never finishes (no worker): a stream would never end.
    let answer = tokio::time::timeout(Duration::from_secs(5), send(&app.service, head))
        .await
        .expect("a HEAD answer ends");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), "text/event-stream");
    assert!(answer.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_finished_unknown_and_foreign_tasks() {
    let app = App::new();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    app.wait(id).await;
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        send(&app.service, get(&format!("/reports/{id}/events"))),
    )
    .await
    .expect("the stream of a finished task ends");
    let text = answer.text();
    assert_eq!(text.matches("event: ").count(), 1, "{text}");
    assert!(text.contains("event: status\ndata: {"), "{text}");
    assert!(text.contains("\"status\":\"succeeded\""), "{text}");
    send(
        &app.service,
        get(&format!("/reports/{}/events", TaskId::new())),
    )
    .await
    .problem(404);
    // A task of another job on the same backend is not this service's.
    let other = app
        .client
        .submit_with::<Impostor>(serde_json::json!(1), SubmitOptions::new())
        .await
        .unwrap();
    let foreign = JobService::<Elsewhere>::new(app.client.clone()).at("/reports");
    let answer = send(&foreign, get(&format!("/reports/{}/events", other.id))).await;
    answer.problem(404);
    let answer = send(&foreign, get(&format!("/reports/{}", other.id))).await;
    answer.problem(404);
}

/// Another job, to see that one service does not serve another's tasks.
struct Elsewhere;

impl Job for Elsewhere {
    const NAME: &'static str = "elsewhere";
    type Params = u32;
    type Output = u32;

    async fn run(&self, p: u32, _: TaskContext) -> Result<u32, JobError> {
        Ok(p)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_finished_tasks() {
    let app = App::new();
    let done = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    app.wait(done).await;
    let failed = app
        .client
        .submit_with::<Report>(
            serde_json::from_str(r#"{"days": 1, "fail": "boom"}"#).unwrap(),
            SubmitOptions::new().max_attempts(1),
        )
        .await
        .unwrap()
        .id;
    assert_eq!(app.wait(failed).await.status, TaskStatus::Failed);
    let delete = |id: TaskId| {
        Request::delete(format!("/reports/{id}"))
            .body(String::new())
            .unwrap()
    };
    let detail = send(&app.service, delete(done)).await.problem(409);
    assert!(detail.contains("succeeded"), "{detail}");
    let detail = send(&app.service, delete(failed)).await.problem(409);
    assert!(detail.contains("failed"), "{detail}");
    // The browser's cancel button on a page gone stale: back to the page.
    let button = form(&format!("/reports/{done}/cancel"), Some("text/html"), b"");
    let answer = send(&app.service, button).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.client.status(done).await.unwrap().status,
        TaskStatus::Succeeded
    );
    // Cancelling twice: the second answers the cancelled task.
    let slow = id_of(
        &send(
            &app.service,
            post_json("/reports", r#"{"days": 1000, "step_ms": 50}"#),
        )
        .await,
    );
    let first = send(&app.service, delete(slow)).await;
    assert!(first.status == StatusCode::OK || first.status == StatusCode::ACCEPTED);
    app.wait(slow).await;
    let second = send(&app.service, delete(slow)).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    assert_eq!(second.json()["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_output_that_does_not_decode_is_a_problem_not_a_crash() {
    let backend = MemoryBackend::new();
    let worker = Worker::builder(backend.clone())
        .register(Impostor)
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let id = client
        .submit_with::<Impostor>(serde_json::json!({}), SubmitOptions::new())
        .await
        .unwrap()
        .id;
    client.wait(id, Duration::from_secs(20)).await.unwrap();
    let service = JobService::<Report>::new(client.clone())
        .at("/reports")
        .with_result_file(|out: &Output| ResultFile::new("text/csv", format!("{}", out.days)));
    let detail = send(&service, get(&format!("/reports/{id}/result")))
        .await
        .problem(503);
    assert!(detail.contains("Output"), "{detail}");
    // The page and the status still work, showing the raw output.
    let page = send(&service, get_html(&format!("/reports/{id}"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text().contains("not what Report outputs"),
        "{}",
        page.text()
    );
    let status = send(&service, get(&format!("/reports/{id}"))).await;
    assert_eq!(status.json()["status"], "succeeded");
    // Without a file hook the stored JSON is served as it is.
    let plain = JobService::<Report>::new(client).at("/reports");
    let raw = send(&plain, get(&format!("/reports/{id}/result"))).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.json(), "not what Report outputs");
    worker.shutdown().await.unwrap();
}

/// The `sha256-...` source of a CSP hash for `text`.
fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// The text between `open` and `close`, for each element of the page.
fn elements<'a>(page: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    page.split(open)
        .skip(1)
        .map(|rest| rest.split(close).next().expect("closed"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_hashes_are_those_of_the_inline_script_and_style() {
    let app = App::new();
    let running = id_of(
        &send(
            &app.service,
            post_json("/reports", r#"{"days": 1000, "step_ms": 50}"#),
        )
        .await,
    );
    let done = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    app.wait(done).await;
    app.wait_until(running, |t| t.status == TaskStatus::Running)
        .await;
    for id in [running, done] {
        let page = send(&app.service, get_html(&format!("/reports/{id}"))).await;
        let csp = page.header("content-security-policy").to_owned();
        let html = page.text();
        let scripts = elements(&html, "<script>", "</script>");
        let styles = elements(&html, "<style>", "</style>");
        assert_eq!(scripts.len(), 1, "{html}");
        assert_eq!(styles.len(), 1, "{html}");
        assert!(!html.contains("<script "), "no other script elements");
        assert!(!html.contains(" style=\""), "no inline style attributes");
        let handler = html.split(" on").skip(1).find(|rest| {
            let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert!(
            handler.is_none(),
            "an event handler attribute: on{handler:?}"
        );
        let directive = |name: &str| {
            csp.split(';')
                .map(str::trim)
                .find_map(|d| d.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {csp}"))
                .trim()
                .to_owned()
        };
        assert_eq!(directive("script-src "), csp_hash(scripts[0]), "{csp}");
        assert_eq!(directive("style-src "), csp_hash(styles[0]), "{csp}");
        assert_eq!(directive("default-src "), "'none'");
        assert_eq!(directive("base-uri "), "'none'");
        assert_eq!(directive("frame-ancestors "), "'none'");
        assert_eq!(directive("form-action "), "'self'");
        assert!(!csp.contains("unsafe") && !csp.contains('*'), "{csp}");
        assert_eq!(page.header("x-content-type-options"), "nosniff");
    }
    app.client.cancel(running).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_string_is_escaped_in_text_and_attributes() {
    let evil = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>&amp;";
    let escaped = longtask_tower::escape(evil);
    let app = App::new();
    let service = app.service.clone().with_title(evil);
    let params = serde_json::json!({ "days": 1000, "step_ms": 50, "message": evil });
    let running = id_of(&send(&service, post_json("/reports", &params.to_string())).await);
    app.wait_until(running, |t| t.progress.is_some()).await;
    let failed = app
        .client
        .submit_with::<Report>(
            serde_json::from_value(serde_json::json!({ "days": 1, "fail": evil })).unwrap(),
            SubmitOptions::new().max_attempts(1),
        )
        .await
        .unwrap()
        .id;
    app.wait(failed).await;
    // The default result view (JSON) and a download link named by the output.
    let done = id_of(&send(&service, post_json("/reports", r#"{"days": 2}"#)).await);
    app.wait(done).await;
    let named = service.clone().with_result_file(move |_: &Output| {
        ResultFile::new("text/csv", "x").filename("\"><script>alert(3)</script>.csv")
    });
    let json_view = JobService::<Report>::new(app.client.clone())
        .at("/reports")
        .with_title(evil);
    for (service, id) in [
        (&service, running),
        (&service, failed),
        (&named, done),
        (&json_view, done),
    ] {
        let html = send(service, get_html(&format!("/reports/{id}")))
            .await
            .text();
        assert_eq!(
            html.matches("<script").count(),
            1,
            "only the page's own script: {html}"
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("onerror=alert(2)>"), "{html}");
        assert!(html.contains(&format!("<h1>{escaped}</h1>")), "{html}");
        assert!(html.contains(&format!("<title>{escaped} · ")), "{html}");
    }
    let running_page = send(&service, get_html(&format!("/reports/{running}")))
        .await
        .text();
    assert!(
        running_page.contains(&format!("id=\"message\">{escaped}</p>")),
        "{running_page}"
    );
    let failed_page = send(&service, get_html(&format!("/reports/{failed}")))
        .await
        .text();
    assert!(failed_page.contains(&escaped), "{failed_page}");
    let named_page = send(&named, get_html(&format!("/reports/{done}")))
        .await
        .text();
    assert!(
        named_page.contains("Download &quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;.csv"),
        "{named_page}"
    );
    // JSON and events carry the same strings JSON-escaped, never raw HTML a browser would run.
    let status = send(&service, get(&format!("/reports/{running}"))).await;
    assert_eq!(status.header("content-type"), "application/json");
    assert_eq!(status.json()["progress"]["message"], evil);
    app.client.cancel(running).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_files_cannot_inject_headers_or_run_scripts() {
    let app = App::new();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    app.wait(id).await;
    for name in [
        "a\"; filename=\"evil.exe",
        "report\r\nSet-Cookie: session=stolen\r\n.csv",
        "r\u{e9}sum\u{e9} \u{1F4CA}\u{202E}vsc.exe",
        "../../etc/passwd",
        "",
        "\0\u{7f}",
    ] {
        let service = app.service.clone().with_result_file(move |_: &Output| {
            ResultFile::new("text/html\r\nX-Evil: 1", "<script>alert(1)</script>").filename(name)
        });
        let answer = send(&service, get(&format!("/reports/{id}/result"))).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(!answer.headers.contains_key("set-cookie"));
        assert!(!answer.headers.contains_key("x-evil"));
        assert_eq!(answer.header("content-type"), "application/octet-stream");
        let disposition = answer.header("content-disposition");
        let (plain, extended) = disposition
            .strip_prefix("attachment; filename=\"")
            .and_then(|rest| rest.split_once("\"; filename*=UTF-8''"))
            .unwrap_or_else(|| panic!("{disposition}"));
        assert!(!plain.contains(['"', '\\', '/', ';']), "{plain}");
        assert!(
            extended
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"%.-_".contains(&b)),
            "{extended}"
        );
        assert_eq!(answer.header("x-content-type-options"), "nosniff");
        let csp = answer.header("content-security-policy");
        assert!(
            csp.contains("sandbox") && csp.contains("default-src 'none'"),
            "{csp}"
        );
    }
    // An HTML output served as is still runs nothing.
    let service = app.service.clone().with_result_file(|_: &Output| {
        ResultFile::new("text/html; charset=utf-8", "<script>alert(1)</script>")
    });
    let answer = send(&service, get(&format!("/reports/{id}/result"))).await;
    assert_eq!(answer.header("content-type"), "text/html; charset=utf-8");
    assert!(answer.header("content-security-policy").contains("sandbox"));
    let plain = JobService::<Report>::new(app.client.clone()).at("/reports");
    let answer = send(&plain, get(&format!("/reports/{id}/result"))).await;
    assert_eq!(answer.header("x-content-type-options"), "nosniff");
    assert!(answer.header("content-security-policy").contains("sandbox"));
}

/// Steps only when the test lets it: one permit, one step (no total, so no ETA moves the tag).
static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

struct Gated;

impl Job for Gated {
    const NAME: &'static str = "gated";
    type Params = u64;
    type Output = u64;

    async fn run(&self, steps: u64, cx: TaskContext) -> Result<u64, JobError> {
        for step in 1..=steps {
            GATE.acquire()
                .await
                .map_err(|e| JobError::fatal(e.to_string()))?
                .forget();
            cx.progress(step, None, format!("step {step}"))?;
        }
        Ok(steps)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_follows_progress_and_304_needs_a_match() {
    let backend = MemoryBackend::new();
    let worker = Worker::builder(backend.clone())
        .register(Gated)
        .poll_interval(Duration::from_millis(10))
        .progress_interval(Duration::from_millis(1))
        .build()
        .unwrap()
        .spawn();
    let client = Client::new(backend);
    let service = JobService::<Gated>::new(client.clone()).at("/gated");
    let id = client.submit::<Gated>(2).await.unwrap();
    let get_with = |tag: Option<&str>| {
        let mut r = Request::get(format!("/gated/{id}"));
        if let Some(tag) = tag {
            r = r.header("if-none-match", tag);
        }
        r.body(String::new()).unwrap()
    };
    let wait_for = |check: fn(&longtask_core::TaskRecord) -> bool| {
        let client = client.clone();
        async move {
            for _ in 0..2000 {
                if check(&client.status(id).await.unwrap()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("never reached");
        }
    };
    wait_for(|t| t.status == TaskStatus::Running).await;
    let first = send(&service, get_with(None)).await;
    let tag0 = first.header("etag").to_owned();
    assert_eq!(
        first.header("retry-after"),
        "2",
        "running, no ETA: poll again soon"
    );
    let same = send(&service, get_with(Some(&tag0))).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert!(same.body.is_empty());
    assert_eq!(same.header("etag"), tag0);
    assert_eq!(same.header("retry-after"), "2");
    // Strong form, lists, and `*` match too; other tags and garbage do not.
    let strong = tag0.trim_start_matches("W/").to_owned();
    for header in [strong.clone(), format!("\"nope\", {tag0}"), "*".to_owned()] {
        assert_eq!(
            send(&service, get_with(Some(&header))).await.status,
            StatusCode::NOT_MODIFIED,
            "{header}"
        );
    }
    for header in [
        "\"nope\"",
        "W/",
        "",
        ",,,",
        "W/\"\"",
        &tag0[..tag0.len() - 2],
    ] {
        assert_eq!(
            send(&service, get_with(Some(header))).await.status,
            StatusCode::OK,
            "{header}"
        );
    }
    // One step of progress: a new tag; the old one no longer answers 304.
    GATE.add_permits(1);
    wait_for(|t| t.progress.as_ref().is_some_and(|p| p.step == 1)).await;
    let moved = send(&service, get_with(Some(&tag0))).await;
    assert_eq!(moved.status, StatusCode::OK);
    let tag1 = moved.header("etag").to_owned();
    assert_ne!(tag1, tag0);
    assert_eq!(moved.json()["progress"]["message"], "step 1");
    assert_eq!(
        send(&service, get_with(Some(&tag1))).await.status,
        StatusCode::NOT_MODIFIED
    );
    // The HTML page has its own tag: the JSON one does not validate it.
    let mut html = get_with(Some(&tag1));
    html.headers_mut()
        .insert("accept", http::HeaderValue::from_static("text/html"));
    let page = send(&service, html).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_ne!(page.header("etag"), tag1);
    // Finished: a new tag again, and no Retry-After.
    GATE.add_permits(1);
    client.wait(id, Duration::from_secs(20)).await.unwrap();
    let done = send(&service, get_with(Some(&tag1))).await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(!done.headers.contains_key("retry-after"));
    let tag2 = done.header("etag").to_owned();
    assert_ne!(tag2, tag1);
    let cached = send(&service, get_with(Some(&tag2))).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(!cached.headers.contains_key("retry-after"));
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_follows_the_state() {
    let app = App::new();
    let queued_app = App::idle();
    let queued = id_of(&send(&queued_app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    let answer = send(&queued_app.service, get(&format!("/reports/{queued}"))).await;
    assert_eq!(answer.header("retry-after"), "1");
    let result = send(
        &queued_app.service,
        get(&format!("/reports/{queued}/result")),
    )
    .await;
    assert_eq!(result.status, StatusCode::ACCEPTED);
    assert_eq!(result.header("retry-after"), "1");
    // Retrying: the wait until the next attempt (30 s backoff), within 1..=60.
    let retrying = id_of(
        &send(
            &app.service,
            post_json("/reports", r#"{"days": 1, "fail": "x"}"#),
        )
        .await,
    );
    app.wait_until(retrying, |t| t.status == TaskStatus::Retrying)
        .await;
    let answer = send(&app.service, get(&format!("/reports/{retrying}"))).await;
    let secs: u64 = answer.header("retry-after").parse().unwrap();
    assert!((25..=30).contains(&secs), "{secs}");
    assert_eq!(answer.json()["next_attempt_in_seconds"], secs);
    app.client.cancel(retrying).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_path_that_needs_encoding_still_gives_working_links() {
    let app = App::idle();
    let service = JobService::<Report>::new(app.client.clone()).at("/rapports été");
    let answer = send(
        &service,
        post_json("/rapports%20%C3%A9t%C3%A9", r#"{"days": 1}"#),
    )
    .await;
    // It used to create the task, then fail to build the Location header: 503, task orphaned.
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let id = id_of(&answer);
    let location = answer.header("location").to_owned();
    assert_eq!(location, format!("/rapports%20%C3%A9t%C3%A9/{id}"));
    let status = send(&service, get(&location)).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(
        status.json()["links"]["events"],
        format!("{location}/events")
    );
    let page = send(&service, get_html(&location)).await.text();
    assert!(
        page.contains(&format!("action=\"{location}/cancel\"")),
        "{page}"
    );
    // A browser form gets its redirect too.
    let redirect = send(
        &service,
        form("/rapports%20%C3%A9t%C3%A9", Some("text/html"), b"days=1"),
    )
    .await;
    assert_eq!(
        redirect.status,
        StatusCode::SEE_OTHER,
        "{}",
        redirect.text()
    );
    assert_eq!(count(&app.client).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_posted_from_another_site_are_refused() {
    let app = App::idle();
    let id = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    let post = |path: String, headers: &[(&str, &str)], body: &str| {
        let mut r = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "app.example")
            .header("accept", "text/html");
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        r.body(body.to_owned()).unwrap()
    };
    let cross: &[&[(&str, &str)]] = &[
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example"),
        ],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
    ];
    for headers in cross {
        let detail = send(&app.service, post("/reports".into(), headers, "days=1"))
            .await
            .problem(403);
        assert!(detail.contains("posted from"), "{detail}");
        send(
            &app.service,
            post(format!("/reports/{id}/cancel"), headers, ""),
        )
        .await
        .problem(403);
    }
    assert_eq!(count(&app.client).await, 1, "nothing submitted");
    assert_eq!(
        app.client.status(id).await.unwrap().status,
        TaskStatus::Queued,
        "nothing cancelled"
    );
    // The same site's pages, and programs (no browser headers), pass.
    let same: &[&[(&str, &str)]] = &[
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://app.example"),
        ],
        &[("sec-fetch-site", "none")],
        &[("origin", "https://app.example")],
        &[],
    ];
    for headers in same {
        let answer = send(&app.service, post("/reports".into(), headers, "days=1")).await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{headers:?}: {}",
            answer.text()
        );
    }
    let answer = send(
        &app.service,
        post(format!("/reports/{id}/cancel"), same[0], ""),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.client.status(id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    // A form with an Origin but no Host has nothing to be compared with: refused.
    for path in [
        "/reports".to_owned(),
        format!(
            "/reports/{}",
            id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await,)
        ) + "/cancel",
    ] {
        let no_host = Request::post(path.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://app.example")
            .body("days=1".to_owned())
            .unwrap();
        let detail = send(&app.service, no_host).await.problem(403);
        assert!(detail.contains("no Host"), "{path}: {detail}");
    }
    // JSON is guarded by CORS preflights: an allowed cross-origin client still submits.
    let mut json = post_json("/reports", r#"{"days": 1}"#);
    json.headers_mut().insert(
        "sec-fetch-site",
        http::HeaderValue::from_static("cross-site"),
    );
    assert_eq!(send(&app.service, json).await.status, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_tasks_are_never_left_in_shared_caches() {
    let app = App::new();
    let service = app.service.clone().with_owner(|parts| {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    });
    let as_alice = |method: Method, path: String, body: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("x-user", "alice")
            .header("content-type", "application/json")
            .body(body.to_owned())
            .unwrap()
    };
    let done = id_of(
        &send(
            &service,
            as_alice(Method::POST, "/reports".into(), r#"{"days": 1}"#),
        )
        .await,
    );
    app.wait(done).await;
    let slow = r#"{"days": 1000, "step_ms": 50}"#;
    let running = id_of(&send(&service, as_alice(Method::POST, "/reports".into(), slow)).await);
    let json_results = JobService::<Report>::new(app.client.clone())
        .at("/reports")
        .with_owner(|_| Some("alice".to_owned()));
    for (service, path, private) in [
        (&service, format!("/reports/{done}"), "private, no-cache"),
        (&service, format!("/reports/{done}/result"), "private"),
        (&json_results, format!("/reports/{done}/result"), "private"),
        (
            &service,
            format!("/reports/{running}/result"),
            "private, no-cache",
        ),
    ] {
        let answer = send(service, as_alice(Method::GET, path.clone(), "")).await;
        assert!(answer.status.is_success(), "{path}: {}", answer.text());
        assert_eq!(answer.header("cache-control"), private, "{path}");
    }
    let head = send(
        &service,
        as_alice(Method::HEAD, format!("/reports/{running}/events"), ""),
    )
    .await;
    assert_eq!(head.header("cache-control"), "private, no-cache");
    // Without owners every answer may be kept, but revalidated.
    let page = send(&app.service, get(&format!("/reports/{done}/result"))).await;
    assert_eq!(page.header("cache-control"), "no-cache");
    app.client.cancel(running).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_key_works_for_a_long_owner() {
    let app = App::idle();
    let owner = "o".repeat(400);
    let hook_owner = owner.clone();
    let service = app
        .service
        .clone()
        .with_owner(move |_| Some(hook_owner.clone()));
    let key = "k".repeat(255);
    let submit = || {
        Request::post("/reports")
            .header("content-type", "application/json")
            .header("idempotency-key", key.as_str())
            .body(r#"{"days": 1}"#.to_owned())
            .unwrap()
    };
    // Owner and key together used to pass the store's 512-byte limit: a 400 about a key the
    // client had kept within 255.
    let first = send(&service, submit()).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text());
    let again = send(&service, submit()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(id_of(&first), id_of(&again));
    let task = app.client.status(id_of(&first)).await.unwrap();
    assert_eq!(task.owner.as_deref(), Some(owner.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_order_marks_are_skipped_and_other_charsets_refused() {
    let app = App::idle();
    let with_type = |content_type: &'static [u8], body: &[u8]| {
        Case::new(Method::POST, "/reports")
            .header("content-type", content_type)
            .body(Body::Bytes(body.to_vec()))
    };
    let bom = with_type(b"application/json", b"\xef\xbb\xbf{\"days\": 1}");
    let answer = run(&app.service, &bom).await.unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    for content_type in [
        b"application/json; charset=\"UTF-8\"".as_slice(),
        b"application/json;charset=utf-8",
    ] {
        let case = with_type(content_type, b"{\"days\": 1}");
        assert_eq!(
            run(&app.service, &case).await.unwrap().status,
            StatusCode::ACCEPTED
        );
    }
    // UTF-16 JSON used to be a 400 about an invalid character; Latin-1 forms stored U+FFFD.
    for (content_type, body) in [
        (
            b"application/json; charset=utf-16".as_slice(),
            b"{\0\"\0d\0".as_slice(),
        ),
        (
            b"application/x-www-form-urlencoded; charset=ISO-8859-1",
            b"days=1&message=caf%E9",
        ),
    ] {
        let detail = run(&app.service, &with_type(content_type, body))
            .await
            .unwrap()
            .problem(415);
        assert!(detail.contains("UTF-8"), "{detail}");
    }
    assert_eq!(count(&app.client).await, 3);
}

#[tokio::test(start_paused = true)]
async fn a_body_still_arriving_after_the_body_timeout_is_408_and_creates_nothing() {
    use futures::StreamExt as _;
    let app = App::idle();
    let service = app
        .service
        .clone()
        .with_body_timeout(Duration::from_secs(10));
    // One byte every 2 s: each arrives well within any per-read timeout, the whole never.
    let dribble = |bytes: &'static [u8]| {
        futures::stream::iter(bytes.iter().copied())
            .then(|byte| async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![byte])))
            })
            .chain(futures::stream::pending())
    };
    let request = Request::post("/reports")
        .header("content-type", "application/json")
        .body(StreamBody::new(dribble(br#"{"days": 1}"#)).boxed_unsync())
        .unwrap();
    let started = tokio::time::Instant::now();
    let response = service.clone().oneshot(request).await.unwrap();
    let waited = started.elapsed();
    let (parts, body) = response.into_parts();
    let answer = Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    };
    let detail = answer.problem(408);
    assert!(detail.contains("with_body_timeout"), "{detail}");
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(12)).contains(&waited),
        "answered after {waited:?}"
    );
    assert_eq!(answer.header("x-content-type-options"), "nosniff");
    assert_eq!(count(&app.client).await, 0);
    // A body that ends within the time is read, however slowly it came.
    let request = Request::post("/reports")
        .header("content-type", "application/json")
        .body(
            StreamBody::new(futures::stream::iter(br#"{"days":1}"#.chunks(3)).then(
                |chunk| async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok::<_, std::io::Error>(Frame::data(Bytes::copy_from_slice(chunk)))
                },
            ))
            .boxed_unsync(),
        )
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// The status `method` must get on a group route: a live group (`live`), or something that is
/// not a group of this service. Groups are not submitted over HTTP: the mount point is no route.
fn expected_group_status(names: Names, method: &Method) -> u16 {
    let reads = method == Method::GET || method == Method::HEAD;
    match names {
        Names::Nothing | Names::Mount => 404,
        _ if method == Method::OPTIONS => 204,
        Names::Live(Route::Task | Route::Events) if reads => 200,
        Names::Live(Route::Result) if reads => 202, // the completion job has not run
        Names::Live(Route::Task) if method == Method::DELETE => 200,
        Names::Live(Route::Cancel) if method == Method::POST => 200,
        Names::Absent(Route::Task) if reads || method == Method::DELETE => 404,
        Names::Absent(Route::Events | Route::Result) if reads => 404,
        Names::Absent(Route::Cancel) if method == Method::POST => 404,
        _ => 405,
    }
}

/// The group routes' paths and variants, with what each names (`id` is a live group).
fn group_paths_of(id: &str) -> Vec<(String, Names)> {
    let live = |route| Names::Live(route);
    vec![
        (format!("/groups/{id}"), live(Route::Task)),
        (format!("/groups/{id}/"), live(Route::Task)),
        (format!("/groups//{id}"), live(Route::Task)),
        (format!("/groups/{id}//"), Names::Nothing),
        (format!("/groups/{id}/events"), live(Route::Events)),
        (format!("/groups/{id}/result"), live(Route::Result)),
        (format!("/groups/{id}/cancel"), live(Route::Cancel)),
        (format!("/groups/{id}/bogus"), Names::Nothing),
        (format!("/groups/{id}/events/extra"), Names::Nothing),
        (format!("/groups/{id}%2Fevents"), Names::Absent(Route::Task)),
        (
            format!("/groups/{id}?format=json&format=html"),
            live(Route::Task),
        ),
        (format!("/groups/{}", id.to_uppercase()), live(Route::Task)),
        (format!("/{id}"), live(Route::Task)),
    ]
}

/// Hostile requests on the group routes: every method on every route of a live group, of ids
/// that are not groups (a plain task, a member, garbage), odd headers and the owner hook. No
/// 500, no panic, every error a problem, nothing created, and nothing cancelled but by the
/// requests that cancel (each on a group of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_group_requests_get_problems_and_cancel_nothing() {
    let app = App::idle();
    let client = app.client.clone();
    let submit_group = || {
        let client = client.clone();
        async move {
            let mut group = client.group();
            for days in 1..=2 {
                group
                    .add::<Report>(&Params {
                        days,
                        step_ms: 0,
                        message: None,
                        fail: None,
                        no_total: false,
                    })
                    .unwrap();
            }
            group
                .on_complete::<Report>(&Params {
                    days: 1,
                    step_ms: 0,
                    message: None,
                    fail: None,
                    no_total: false,
                })
                .unwrap();
            group.owner("alice");
            group.submit().await.unwrap()
        }
    };
    let live = submit_group().await;
    let plain = id_of(&send(&app.service, post_json("/reports", r#"{"days": 1}"#)).await);
    let member = app.client.group_status(live).await.unwrap().members[0].id;

    let mut paths: Vec<(String, Names)> = vec![
        ("/groups".to_owned(), Names::Mount),
        ("/groups/".to_owned(), Names::Mount),
        ("/groups?x=1".to_owned(), Names::Mount),
        ("//groups".to_owned(), Names::Absent(Route::Task)),
    ];
    let mut ids = bad_ids();
    ids.push(plain.to_string());
    ids.push(member.to_string());
    for id in ids {
        for (suffix, route) in [
            ("", Route::Task),
            ("/events", Route::Events),
            ("/result", Route::Result),
            ("/cancel", Route::Cancel),
        ] {
            paths.push((format!("/groups/{id}{suffix}"), Names::Absent(route)));
        }
    }
    let mut cases = Vec::new();
    for name in METHODS {
        let method = method(name);
        let live_paths = group_paths_of(&live.to_string())
            .into_iter()
            .zip(group_paths_of(FRESH));
        for (shared, fresh) in live_paths {
            let (path, names) = if matches!(
                (fresh.1, &method),
                (Names::Live(Route::Task), &Method::DELETE)
                    | (Names::Live(Route::Cancel), &Method::POST)
            ) {
                fresh
            } else {
                shared
            };
            cases.push(
                Case::new(method.clone(), path).expect(expected_group_status(names, &method)),
            );
        }
        for (path, names) in &paths {
            cases.push(
                Case::new(method.clone(), path.clone())
                    .body(Body::text("days=1"))
                    .expect(expected_group_status(*names, &method)),
            );
        }
    }
    for set in header_sets() {
        for path in [
            format!("/groups/{live}"),
            format!("/groups/{live}/events"),
            format!("/groups/{live}/result"),
            format!("/groups/{FRESH}/cancel"),
        ] {
            let mut case = Case::new(
                if path.ends_with("/cancel") {
                    Method::POST
                } else {
                    Method::GET
                },
                path,
            );
            for (name, value) in &set {
                case = case.header(name, value);
            }
            cases.push(case);
        }
    }

    let owner = |parts: &http::request::Parts| {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    };
    let services = [
        GroupService::new(app.client.clone()).at("/groups"),
        GroupService::new(app.client.clone())
            .at("/groups")
            .with_owner(owner),
    ];
    let mut failures = Vec::new();
    let mut sent = 0;
    for (n, service) in services.iter().enumerate() {
        for case in &cases {
            let mut case = case.clone();
            let alice = case
                .headers
                .iter()
                .any(|(name, value)| name == "x-user" && value == "alice");
            if n == 1 && !alice {
                // Nobody but alice sees her groups: whatever named one is now not a group.
                case.expect = case.expect.map(|status| match status {
                    200 | 202 => 404,
                    other => other,
                });
            }
            let fresh = if case.uri.contains(FRESH) || case.uri.contains(&FRESH.to_uppercase()) {
                let fresh = submit_group().await;
                case.uri = case
                    .uri
                    .replace(FRESH, &fresh.to_string())
                    .replace(&FRESH.to_uppercase(), &fresh.to_string().to_uppercase());
                Some(fresh)
            } else {
                None
            };
            let before = count(&app.client).await;
            let Some(answer) = run(service, &case).await else {
                continue;
            };
            sent += 1;
            let after = count(&app.client).await;
            if let Err(e) = check(&case, &answer, before, after) {
                failures.push(format!("[service {n}] {e}"));
            }
            if let Some(fresh) = fresh {
                let group = app.client.group_status(fresh).await.unwrap();
                let cancelled = group.root.status == TaskStatus::Cancelled;
                let accepted = answer.status.is_success() || answer.status == StatusCode::SEE_OTHER;
                if cancelled
                    != (accepted && case.method != Method::OPTIONS && case.method != Method::HEAD)
                {
                    failures.push(format!(
                        "[service {n}] {}: answered {} but the group is {}",
                        case.describe(),
                        answer.status,
                        if cancelled {
                            "cancelled"
                        } else {
                            "not cancelled"
                        }
                    ));
                }
            }
        }
    }
    assert!(sent >= 300, "only {sent} requests sent");
    let group = app.client.group_status(live).await.unwrap();
    assert_eq!(group.root.status, TaskStatus::Scheduled);
    assert_eq!(group.count(TaskStatus::Queued), 2);
    assert_eq!(
        app.client.status(plain).await.unwrap().status,
        TaskStatus::Queued
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

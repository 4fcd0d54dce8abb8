//! Generated near-valid and hostile requests against the tower service: every answer is below
//! 500, every error is an RFC 9457 problem document, every answer says `nosniff`, no rejected
//! request leaves a task behind, and memory stays flat.
//!
//! `FUZZ_CASES` sets the number of requests (50,000 by default, the CI size); `FUZZ_SEED` replays
//! a run (the seed is printed at the start). The README quotes a run of 1,000,000.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use bytes::Bytes;
use common::{App, Params, MOUNT};
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use longtask_core::{TaskId, TaskQuery};
use longtask_tower::JobService;
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use tower::ServiceExt;

/// One generated request, and what is needed to check its answer.
struct Case {
    request: Request<Full<Bytes>>,
    /// The marker the body carries (as the task's `message`), when it has one.
    marker: Option<String>,
    /// Whether a task may come from this request.
    submit: bool,
    head: bool,
}

/// Bytes that make paths, keys and bodies awkward.
const AWKWARD: &[&str] = &[
    "%00",
    "%2F",
    "%2e%2e",
    "..",
    "%",
    "%zz",
    "\u{e9}",
    "%C3%A9",
    "%FF",
    "'",
    "\"",
    "<script>",
    "{",
    "}",
    "+",
    " ",
    "%20",
    ";",
    "?",
    "#",
    "//",
    "\\",
    "😀",
    "%F0%9F%98%80",
    "null",
];

fn junk(rng: &mut StdRng, max: usize) -> String {
    let len = rng.gen_range(0..=max);
    let mut out = String::with_capacity(len);
    while out.len() < len {
        if rng.gen_bool(0.3) {
            out.push_str(AWKWARD.choose(rng).unwrap());
        } else {
            out.push(rng.gen_range(b'!'..=b'~') as char);
        }
    }
    out
}

fn marker(rng: &mut StdRng) -> String {
    format!("m{:016x}", rng.gen::<u64>())
}

/// A task id: one that exists, an unknown one, or a damaged one.
fn some_id(rng: &mut StdRng, known: &[TaskId]) -> String {
    let id = known
        .choose(rng)
        .map_or_else(|| TaskId::new().to_string(), ToString::to_string);
    match rng.gen_range(0..10) {
        0..=4 => id,
        5 => TaskId::new().to_string(),
        6 => id.to_uppercase(),
        7 => id[..rng.gen_range(0..id.len())].to_owned(),
        8 => format!("{id}{}", junk(rng, 3)),
        _ => junk(rng, 40),
    }
}

/// Percent-encodes what a URI may not hold raw (the raw forms go to the raw HTTP fuzzer).
fn uri_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%?".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn path(rng: &mut StdRng, known: &[TaskId], method: &Method) -> String {
    let id = some_id(rng, known);
    let choice = if *method == Method::POST && rng.gen_bool(0.7) {
        0
    } else {
        rng.gen_range(0..14)
    };
    let mut path = match choice {
        0..=2 => MOUNT.to_owned(),
        3 => format!("{MOUNT}/"),
        4..=5 => format!("{MOUNT}/{id}"),
        6 => format!("{MOUNT}/{id}/events"),
        7 => format!("{MOUNT}/{id}/result"),
        8 => format!("{MOUNT}/{id}/cancel"),
        9 => format!("{MOUNT}/{id}/{}", junk(rng, 12)),
        10 => format!("{MOUNT}//{id}"),
        11 => format!("{MOUNT}/{}", junk(rng, 2_000)),
        12 => format!("/{}", junk(rng, 20)),
        _ => format!("{MOUNT}{}", junk(rng, 8)),
    };
    if rng.gen_bool(0.1) {
        path.push('?');
        path.push_str(&junk(rng, 30));
    }
    uri_safe(&path)
}

/// A JSON body: valid, near-valid, or broken; carrying `marker` when it is meant to submit.
fn json_body(rng: &mut StdRng, marker: &str) -> Vec<u8> {
    let days = match rng.gen_range(0..8) {
        0 => "-1".to_owned(),
        1 => "4294967296".to_owned(),
        2 => "1.5".to_owned(),
        3 => "\"3\"".to_owned(),
        4 => "null".to_owned(),
        _ => rng.gen_range(0..40).to_string(),
    };
    let mut body = match rng.gen_range(0..12) {
        0 => format!(r#"{{"days":{days},"message":"{marker}","extra":1}}"#),
        1 => format!(r#"{{"message":"{marker}"}}"#),
        2 => format!(r#"[{{"days":{days}}}]"#),
        3 => "[".repeat(rng.gen_range(1..5_000)),
        4 => format!(r#"{{"days":{days},"days":2,"message":"{marker}"}}"#),
        5 => String::new(),
        6 => format!(
            r#"{{"days":{days},"message":"{marker}","fail":{}}}"#,
            serde_json::json!(junk(rng, 20))
        ),
        _ => format!(r#"{{"days":{days},"message":"{marker}"}}"#),
    }
    .into_bytes();
    mutate(rng, &mut body);
    body
}

fn form_body(rng: &mut StdRng, marker: &str) -> Vec<u8> {
    let mut fields = vec![
        format!("days={}", rng.gen_range(0..40)),
        format!("message={marker}"),
    ];
    if rng.gen_bool(0.3) {
        fields.push(format!("_idempotency_key={}", junk(rng, 20)));
    }
    if rng.gen_bool(0.2) {
        fields.push(format!("_csrf={}", junk(rng, 20)));
    }
    if rng.gen_bool(0.2) {
        fields.push(format!("{}={}", junk(rng, 8), junk(rng, 8)));
    }
    fields.shuffle(rng);
    let mut body = fields.join("&").into_bytes();
    mutate(rng, &mut body);
    body
}

/// Leaves most bodies alone; damages the others: flips, cuts, inserts invalid UTF-8.
fn mutate(rng: &mut StdRng, body: &mut Vec<u8>) {
    if body.is_empty() || rng.gen_bool(0.6) {
        return;
    }
    for _ in 0..rng.gen_range(1..4) {
        let at = rng.gen_range(0..body.len().max(1));
        match rng.gen_range(0..4) {
            0 if at < body.len() => body[at] ^= 1 << rng.gen_range(0..8),
            1 => body.truncate(at),
            2 => body.insert(at.min(body.len()), rng.gen_range(0x80..=0xff)),
            _ => body.insert(at.min(body.len()), rng.gen()),
        }
        if body.is_empty() {
            return;
        }
    }
}

fn header_value(rng: &mut StdRng, max: usize) -> HeaderValue {
    let text = junk(rng, max);
    HeaderValue::from_bytes(text.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("x"))
}

fn case(rng: &mut StdRng, known: &[TaskId]) -> Option<Case> {
    let method = match rng.gen_range(0..20) {
        0..=6 => Method::POST,
        7..=12 => Method::GET,
        13..=14 => Method::DELETE,
        15 => Method::HEAD,
        16 => Method::OPTIONS,
        17 => Method::PUT,
        18 => Method::PATCH,
        _ => Method::from_bytes(b"BREW").unwrap(),
    };
    let uri = path(rng, known, &method);
    let mut builder = Request::builder().method(method.clone()).uri(uri.as_str());
    let marker = marker(rng);
    let (content_type, body) = match rng.gen_range(0..10) {
        0..=4 => ("application/json", json_body(rng, &marker)),
        5..=7 => ("application/x-www-form-urlencoded", form_body(rng, &marker)),
        8 => ("text/plain", json_body(rng, &marker)),
        _ => ("multipart/form-data; boundary=x", form_body(rng, &marker)),
    };
    let body = if rng.gen_bool(0.003) {
        // Just over the default 1 MiB limit.
        let mut big = br#"{"days":1,"message":""#.to_vec();
        big.resize((1 << 20) + 10, b'a');
        big.extend_from_slice(b"\"}");
        big
    } else {
        body
    };
    if rng.gen_bool(0.9) {
        let value = if rng.gen_bool(0.05) {
            header_value(rng, 40)
        } else {
            HeaderValue::from_static(content_type)
        };
        builder = builder.header(header::CONTENT_TYPE, value);
    }
    if rng.gen_bool(0.7) {
        let accept = [
            "application/json",
            "text/html",
            "text/html,application/xhtml+xml,*/*;q=0.8",
            "text/event-stream",
            "*/*",
            "text/html;q=0, application/json;q=0",
            "image/png",
            "",
        ];
        builder = builder.header(header::ACCEPT, *accept.choose(rng).unwrap());
    }
    if rng.gen_bool(0.2) {
        builder = builder.header("idempotency-key", header_value(rng, 300));
    }
    if rng.gen_bool(0.1) {
        builder = builder.header("idempotency-key", header_value(rng, 10));
    }
    if rng.gen_bool(0.15) {
        builder = builder.header(header::ORIGIN, header_value(rng, 30));
    }
    if rng.gen_bool(0.15) {
        builder = builder.header(header::HOST, header_value(rng, 30));
    }
    if rng.gen_bool(0.1) {
        builder = builder.header("sec-fetch-site", header_value(rng, 12));
    }
    if rng.gen_bool(0.3) {
        builder = builder.header("x-user", header_value(rng, 12));
    }
    if rng.gen_bool(0.05) {
        builder = builder.header("last-event-id", header_value(rng, 10));
    }
    if rng.gen_bool(0.05) {
        builder = builder.header(header::IF_NONE_MATCH, header_value(rng, 20));
    }
    let request = builder.body(Full::new(Bytes::from(body))).ok()?;
    let submit = method == Method::POST;
    Some(Case {
        request,
        marker: submit.then_some(marker),
        submit,
        head: method == Method::HEAD,
    })
}

/// The process's resident memory, in bytes (Linux).
fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_problems_and_rejected_ones_create_nothing() {
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("fuzzing {cases} requests with FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let app = App::idle();
    let plain: JobService<common::Report> = app.service.clone();
    let owned = app.service.clone().with_owner(|parts| {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .filter(|user| !user.is_empty())
            .map(str::to_owned)
    });
    let mut known: Vec<TaskId> = Vec::new();
    let mut accepted_posts = 0usize;
    let mut rejected_markers: HashSet<String> = HashSet::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut skipped = 0usize;
    let mut memory_at_warm_up = 0;

    for n in 0..cases {
        if n == cases / 5 {
            memory_at_warm_up = resident();
        }
        let Some(case) = case(&mut rng, &known) else {
            skipped += 1;
            continue;
        };
        let described = format!(
            "{} {} {:?}",
            case.request.method(),
            case.request.uri(),
            case.request.headers()
        );
        let service = if rng.gen_bool(0.5) { &plain } else { &owned };
        let response = service
            .clone()
            .oneshot(case.request)
            .await
            .expect("the service is infallible");
        let status = response.status();
        *statuses.entry(status.as_u16()).or_default() += 1;
        let (parts, body) = response.into_parts();
        let event_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        // A live event stream never ends while its task waits: read its first frame, then hang up.
        let body = if event_stream {
            let mut body = body;
            match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
                Ok(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
                Ok(_) => Bytes::new(),
                Err(_) => {
                    failures.push(format!("event stream sent nothing in 5 s: {described}"));
                    Bytes::new()
                }
            }
        } else {
            body.collect().await.expect("infallible").to_bytes()
        };

        if status.is_server_error() {
            failures.push(format!(
                "{status} for {described}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        if parts
            .headers
            .get("x-content-type-options")
            .map(HeaderValue::as_bytes)
            != Some(b"nosniff")
        {
            failures.push(format!("no nosniff on {status} for {described}"));
        }
        if status.is_client_error() || status.is_server_error() {
            let content_type = parts.headers.get(header::CONTENT_TYPE);
            if content_type.map(HeaderValue::as_bytes) != Some(b"application/problem+json") {
                failures.push(format!(
                    "{status} is not problem+json ({content_type:?}) for {described}"
                ));
            } else if !case.head {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(problem)
                        if problem["status"] == status.as_u16()
                            && problem["detail"].as_str().is_some_and(|d| !d.is_empty()) => {}
                    _ => failures.push(format!(
                        "{status} with a broken problem {:?} for {described}",
                        String::from_utf8_lossy(&body)
                    )),
                }
            }
            if let Some(marker) = case.marker {
                rejected_markers.insert(marker);
            }
        } else if case.submit {
            accepted_posts += 1;
            if status == StatusCode::ACCEPTED {
                if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if let Some(id) = json["id"].as_str().and_then(|id| id.parse().ok()) {
                        known.push(id);
                    }
                }
            }
        }
        if failures.len() > 20 {
            break;
        }
    }

    let mut tasks = Vec::new();
    loop {
        let page = app
            .client
            .list(&TaskQuery {
                after: tasks.last().map(|t: &longtask_core::TaskRecord| t.id),
                limit: 10_000,
                ..TaskQuery::default()
            })
            .await
            .expect("listing tasks");
        if page.is_empty() {
            break;
        }
        tasks.extend(page);
    }
    for task in &tasks {
        let params: Params = serde_json::from_str(&task.params).expect("stored params decode");
        if let Some(marker) = params.message {
            if rejected_markers.contains(&marker) {
                failures.push(format!(
                    "a rejected request left task {} behind (marker {marker})",
                    task.id
                ));
            }
        }
    }
    if tasks.len() > accepted_posts {
        failures.push(format!(
            "{} tasks from {accepted_posts} accepted submits",
            tasks.len()
        ));
    }
    let grown = resident().saturating_sub(memory_at_warm_up);
    eprintln!(
        "answers by status: {statuses:?}; {} tasks; {skipped} requests not buildable; \
         resident memory grew {} KiB after the warm-up",
        tasks.len(),
        grown / 1024
    );
    assert!(
        failures.is_empty(),
        "FUZZ_SEED={seed}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        skipped < cases / 10,
        "{skipped} of {cases} requests could not be built"
    );
    assert!(
        statuses.keys().any(|s| *s == 202) && statuses.keys().any(|s| *s == 404),
        "the generator never reached both acceptance and rejection: {statuses:?}"
    );
    // Flat: what grows is the tasks accepted (a few KiB each), not the requests served.
    let allowance = 64 * 1024 * 1024 + 8 * 1024 * tasks.len() as u64;
    assert!(
        grown < allowance,
        "resident memory grew {} MiB after the warm-up (allowed {} MiB)",
        grown >> 20,
        allowance >> 20
    );
}

//! Every route of `GroupService`, through `tower::ServiceExt::oneshot`, with a real worker on
//! the memory backend (and once on SQLite): the JSON status and the page, live events, the
//! completion job's result, cancelling the whole group, owners, and what is not a group.

mod common;

use std::time::Duration;

use common::{groups::*, *};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use longtask_core::{Backend, TaskStatus};
use longtask_tower::GroupService;
use tower::ServiceExt;

/// The stream's next frame, as text; `None` when it ended.
async fn next(body: &mut longtask_tower::ResponseBody) -> Option<String> {
    let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
        .await
        .expect("an event within 30 s")?;
    Some(String::from_utf8(frame.unwrap().into_data().unwrap().to_vec()).unwrap())
}

fn path(id: impl std::fmt::Display) -> String {
    format!("{GROUPS}/{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_status_counts_steps_members_and_links() {
    let app = GroupApp::memory();
    let id = app.submit(3, Some(SumParams::default()), None).await;
    app.wait_running(id).await;

    let answer = send(&app.service, get(&path(id))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("content-type"), "application/json");
    let json = answer.json();
    assert_eq!(json["id"], id.to_string());
    assert_eq!(json["state"], "running");
    assert_eq!(json["is_final"], false);
    assert_eq!(json["summary"], "0 of 3 done, 3 running");
    assert_eq!(json["counts"]["running"], 3);
    assert_eq!(json["counts"]["succeeded"], 0);
    assert_eq!(json["steps"]["done"], 3);
    assert_eq!(json["steps"]["total"], 6);
    assert_eq!(json["percent"], 50.0);
    assert_eq!(json["completion"]["job"], "year-total");
    assert_eq!(json["completion"]["status"], "scheduled");
    assert_eq!(json["completion"]["result"], format!("/groups/{id}/result"));
    assert_eq!(json["links"]["self"], format!("/groups/{id}"));
    assert_eq!(json["links"]["events"], format!("/groups/{id}/events"));
    assert_eq!(json["links"]["cancel"], format!("/groups/{id}/cancel"));
    let members = json["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    for (i, member) in members.iter().enumerate() {
        let member_id = member["id"].as_str().unwrap();
        assert_eq!(member["job"], "gated");
        assert_eq!(member["label"], format!("gated {}", i + 1));
        assert_eq!(member["status"], "running");
        assert_eq!(member["progress"]["step"], 1);
        assert_eq!(
            member["progress"]["message"],
            format!("Month {}: half way", i + 1)
        );
        assert_eq!(member["link"], format!("/gated/{member_id}"));
    }
    assert!(answer.headers.get("etag").is_some());
    assert!(answer.headers.get("retry-after").is_some());

    // One member through: one done, the bar moves.
    app.open(1);
    app.wait_group(id, |g| g.count(TaskStatus::Succeeded) == 1)
        .await;
    let json = send(&app.service, get(&path(id))).await.json();
    assert_eq!(json["summary"], "1 of 3 done, 2 running");
    assert_eq!(json["steps"]["done"], 4);

    // All through: the completion job sums them, the group is final.
    app.open(2);
    app.wait_final(id).await;
    let answer = send(&app.service, get(&path(id))).await;
    let json = answer.json();
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["is_final"], true);
    assert_eq!(json["summary"], "3 of 3 done");
    assert_eq!(json["percent"], 100.0);
    assert_eq!(json["completion"]["status"], "succeeded");
    assert!(json["finished_at"].is_string());
    assert!(json["eta_seconds"].is_null());
    assert!(answer.headers.get("retry-after").is_none());

    let result = send(&app.service, get(&format!("{}/result", path(id)))).await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.text());
    assert_eq!(result.header("content-type"), "application/json");
    assert_eq!(
        result.header("content-security-policy"),
        "default-src 'none'; sandbox"
    );
    assert_eq!(
        result.json(),
        serde_json::json!({"total": 600, "failed": 0})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_works_with_the_prefix_stripped_too() {
    let app = GroupApp::idle();
    let id = app.submit(2, None, None).await;
    // axum's nest_service strips the mount point.
    let json = send(&app.service, get(&format!("/{id}"))).await.json();
    assert_eq!(json["state"], "queued");
    assert_eq!(json["summary"], "0 of 2 done, 2 waiting");
    assert_eq!(json["links"]["self"], format!("/groups/{id}"));
    assert!(json["completion"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_is_202_then_200_409_when_failed_404_without_completion() {
    let app = GroupApp::memory();
    let id = app.submit(2, Some(SumParams::default()), None).await;
    let pending = send(&app.service, get(&format!("{}/result", path(id)))).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.text());
    assert_eq!(pending.header("content-location"), path(id));
    assert!(pending.headers.get("retry-after").is_some());
    assert_eq!(pending.json()["is_final"], false);
    app.open(2);
    app.wait_final(id).await;
    let done = send(&app.service, get(&format!("{}/result", path(id)))).await;
    assert_eq!(done.status, StatusCode::OK);

    // The completion job fails: 409, saying why.
    let failing = app.submit(1, Some(SumParams { fail: true }), None).await;
    app.open(1);
    app.wait_final(failing).await;
    let detail = send(&app.service, get(&format!("{}/result", path(failing))))
        .await
        .problem(409);
    assert!(detail.contains("the ledger is closed"), "{detail}");
    let json = send(&app.service, get(&path(failing))).await.json();
    assert_eq!(json["state"], "failed");
    assert_eq!(
        json["completion"]["last_error"]["message"],
        "the ledger is closed"
    );

    // No completion job: no result of its own.
    let plain = app.submit(1, None, None).await;
    app.open(1);
    app.wait_final(plain).await;
    let detail = send(&app.service, get(&format!("{}/result", path(plain))))
        .await
        .problem(404);
    assert!(detail.contains("no completion job"), "{detail}");
    assert_eq!(
        send(&app.service, get(&path(plain))).await.json()["state"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_member_shows_in_the_summary_and_the_list() {
    let app = GroupApp::memory();
    let steps = [
        Step {
            n: 1,
            ..Step::default()
        },
        Step {
            n: 2,
            fail: true,
            ..Step::default()
        },
        Step {
            n: 3,
            ..Step::default()
        },
    ];
    let id = app
        .submit_steps(steps, Some(SumParams::default()), None)
        .await;
    app.wait_running(id).await;
    app.open(2);
    let group = app
        .wait_group(id, |g| {
            g.members.iter().filter(|m| m.status.is_final()).count() == 2
        })
        .await;
    let failed = group.count(TaskStatus::Failed);
    let json = send(&app.service, get(&path(id))).await.json();
    if failed == 1 {
        assert_eq!(json["summary"], "1 of 3 done, 1 running, 1 failed");
    } else {
        assert_eq!(json["summary"], "2 of 3 done, 1 running");
    }
    app.open(1);
    app.wait_final(id).await;
    let json = send(&app.service, get(&path(id))).await.json();
    assert_eq!(json["summary"], "2 of 3 done, 1 failed");
    let failed = &json["members"][1];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["last_error"]["message"], "month 2 could not be read");
    let result = send(&app.service, get(&format!("{}/result", path(id)))).await;
    assert_eq!(
        result.json(),
        serde_json::json!({"total": 400, "failed": 1})
    );
    let page = send(&app.service, get_html(&path(id))).await.text();
    assert!(page.contains("month 2 could not be read"), "{page}");
    assert!(page.contains("2 of 3 done, 1 failed"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_has_one_bar_the_list_and_a_cancel_button_then_the_result() {
    let app = GroupApp::memory();
    let id = app.submit(3, Some(SumParams::default()), None).await;
    app.wait_running(id).await;
    app.open(1);
    app.wait_group(id, |g| g.count(TaskStatus::Succeeded) == 1)
        .await;

    let answer = send(&app.service, get_html(&path(id))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(answer.header("x-content-type-options"), "nosniff");
    assert_eq!(answer.header("referrer-policy"), "no-referrer");
    let csp = answer.header("content-security-policy");
    assert!(
        !csp.contains("unsafe-inline") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let page = answer.text();
    assert_eq!(page.matches("<progress").count(), 1, "{page}");
    assert!(page.contains("value=\"66.7\""), "{page}");
    assert!(page.contains("1 of 3 done, 2 running"), "{page}");
    assert!(
        page.contains("<noscript><meta http-equiv=\"refresh\""),
        "{page}"
    );
    assert!(
        page.contains(&format!("action=\"/groups/{id}/cancel\"")),
        "{page}"
    );
    assert!(page.contains("Tasks (3)"), "{page}");
    let group = app.client.group_status(id).await.unwrap();
    for member in &group.members {
        assert!(
            page.contains(&format!("<a href=\"/gated/{}\">", member.id)),
            "{page}"
        );
    }
    assert!(
        page.contains(">Done<") && page.contains(">Running<"),
        "{page}"
    );
    assert!(page.contains("year-total"), "{page}");
    assert!(!page.contains("id=\"result\""), "{page}");

    app.open(2);
    app.wait_final(id).await;
    let page = send(&app.service, get_html(&path(id))).await.text();
    assert!(page.contains("id=\"result\""), "{page}");
    assert!(page.contains("&quot;total&quot;: 600"), "{page}");
    assert!(!page.contains("http-equiv=\"refresh\""), "{page}");
    assert!(!page.contains("/cancel"), "{page}");
    assert!(page.contains("value=\"100.0\""), "{page}");

    // A result renderer of the completion job's type.
    let custom = GroupApp::service(app.client.clone())
        .with_result_html::<YearTotal>(|sum: &Sum| format!("<p class=\"year\">{}</p>", sum.total))
        .with_member_label(|task| {
            let step: Step = serde_json::from_str(&task.params).ok()?;
            Some(format!("Month <{}>", step.n))
        });
    let page = send(&custom, get_html(&path(id))).await.text();
    assert!(page.contains("<p class=\"year\">600</p>"), "{page}");
    assert!(page.contains("Month &lt;2&gt;"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_text_is_escaped_everywhere() {
    let app = GroupApp::memory();
    let hostile = "<script>alert(1)</script>\"'&";
    let steps = [Step {
        n: 1,
        message: Some(hostile.to_owned()),
        ..Step::default()
    }];
    let id = app.submit_steps(steps, None, None).await;
    app.wait_running(id).await;
    let service = GroupApp::service(app.client.clone())
        .with_title("<b>Title</b>")
        .with_member_label(|_| Some("<img src=x>".to_owned()))
        .with_member_link(|_| Some("\"><script>x</script>".to_owned()));
    // `with_job_at` names `gated`: the mount wins over the hook; use another service for the hook.
    let hooked = GroupService::new(app.client.clone())
        .at(GROUPS)
        .with_member_link(|_| Some("\"><script>x</script>".to_owned()));
    for page in [
        send(&service, get_html(&path(id))).await.text(),
        send(&hooked, get_html(&path(id))).await.text(),
    ] {
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(!page.contains("\"><script>x"), "{page}");
        assert_eq!(page.matches("<script>").count(), 1, "{page}");
    }
    let page = send(&service, get_html(&path(id))).await.text();
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"),
        "{page}"
    );
    app.open(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_the_group_and_end_when_it_is_final() {
    let app = GroupApp::memory();
    let id = app.submit(2, Some(SumParams::default()), None).await;
    app.wait_running(id).await;
    let request = Request::get(format!("{}/events", path(id)))
        .header("accept", "text/event-stream")
        .body(String::new())
        .unwrap();
    let response = app.service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    assert_eq!(next(&mut body).await.unwrap(), "retry: 2000\n\n");
    let first = next(&mut body).await.unwrap();
    assert!(first.starts_with("event: status\ndata: "), "{first}");
    assert!(
        first.contains("\"summary\":\"0 of 2 done, 2 running\""),
        "{first}"
    );

    // Nothing changes: nothing is sent (the stream re-reads the group every 50 ms).
    let quiet = tokio::time::timeout(Duration::from_secs(1), body.frame()).await;
    assert!(quiet.is_err(), "an event without a change: {quiet:?}");
    // One member through: an event saying so.
    app.open(1);
    loop {
        let event = next(&mut body).await.expect("the stream goes on");
        if event.contains("1 of 2 done") {
            assert!(event.starts_with("event: progress\n"), "{event}");
            break;
        }
    }
    app.open(1);
    let last = loop {
        let event = next(&mut body)
            .await
            .expect("the stream goes on until final");
        if event.contains("\"is_final\":true") {
            break event;
        }
    };
    assert!(last.starts_with("id: succeeded\nevent: status\n"), "{last}");
    assert!(last.contains("\"summary\":\"2 of 2 done\""), "{last}");
    assert!(
        next(&mut body).await.is_none(),
        "the stream ends after the final event"
    );

    // Reconnecting after the final event: 204, so that EventSource stops.
    let again = Request::get(format!("{}/events", path(id)))
        .header("accept", "text/event-stream")
        .header("last-event-id", "succeeded")
        .body(String::new())
        .unwrap();
    let answer = send(&app.service, again).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_limited() {
    let app = GroupApp::idle();
    let id = app.submit(1, None, None).await;
    let service = GroupApp::service(app.client.clone()).with_max_watchers(1);
    let events = || {
        Request::get(format!("{}/events", path(id)))
            .header("accept", "text/event-stream")
            .body(String::new())
            .unwrap()
    };
    let open = service.clone().oneshot(events()).await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    let refused = send(&service, events()).await;
    refused.problem(503);
    assert!(refused.headers.get("retry-after").is_some());
    drop(open);
    let reopened = service.clone().oneshot(events()).await.unwrap();
    assert_eq!(reopened.status(), StatusCode::OK);
    drop(reopened);
    // Not an event stream client: 406.
    let json = Request::get(format!("{}/events", path(id)))
        .header("accept", "application/json")
        .body(String::new())
        .unwrap();
    send(&service, json).await.problem(406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cancels_the_whole_group() {
    let app = GroupApp::memory();
    let id = app.submit(3, Some(SumParams::default()), None).await;
    app.wait_running(id).await;
    let request = Request::delete(path(id)).body(String::new()).unwrap();
    let answer = send(&app.service, request).await;
    // The members were running: asked to stop.
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let state = answer.json()["state"].clone();
    assert!(state == "cancelling" || state == "cancelled", "{state}");
    let group = app.wait_final(id).await;
    assert_eq!(group.root.status, TaskStatus::Cancelled);
    assert!(group.members.iter().all(|m| m.status.is_final()));
    let json = send(&app.service, get(&path(id))).await.json();
    assert_eq!(json["state"], "cancelled");
    send(&app.service, get(&format!("{}/result", path(id))))
        .await
        .problem(409);
    // Again: already cancelled, 200.
    let again = send(
        &app.service,
        Request::delete(path(id)).body(String::new()).unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());

    // Waiting members are cancelled at once: 200, never run.
    let idle = GroupApp::idle();
    let id = idle.submit(2, Some(SumParams::default()), None).await;
    let answer = send(
        &idle.service,
        Request::delete(path(id)).body(String::new()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["state"], "cancelled");
    assert_eq!(json["counts"]["cancelled"], 2);

    // A finished group: nothing to cancel.
    let done = app.submit(1, None, None).await;
    app.open(1);
    app.wait_final(done).await;
    let detail = send(
        &app.service,
        Request::delete(path(done)).body(String::new()).unwrap(),
    )
    .await
    .problem(409);
    assert!(detail.contains("already succeeded"), "{detail}");
}

fn cancel_form(id: impl std::fmt::Display, headers: &[(&str, &str)]) -> Request<String> {
    let mut request = Request::post(format!("{}/cancel", path(id)))
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(String::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancel_form_redirects_and_refuses_other_sites() {
    let app = GroupApp::idle();
    let id = app.submit(2, None, None).await;
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "https://evil.example"), ("host", "app.example")],
        // An origin and nothing to compare it with.
        vec![("origin", "https://app.example")],
    ] {
        let detail = send(&app.service, cancel_form(id, &headers))
            .await
            .problem(403);
        assert!(detail.contains("posted from"), "{detail}");
        let group = app.client.group_status(id).await.unwrap();
        assert_eq!(group.count(TaskStatus::Queued), 2, "{headers:?} cancelled");
    }
    let answer = send(
        &app.service,
        cancel_form(
            id,
            &[
                ("sec-fetch-site", "same-origin"),
                ("accept", "text/html,*/*;q=0.8"),
            ],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    assert_eq!(answer.header("location"), path(id));
    let group = app.client.group_status(id).await.unwrap();
    assert_eq!(group.count(TaskStatus::Cancelled), 2);
    // Sent again (a double click): the page again.
    let answer = send(
        &app.service,
        cancel_form(id, &[("accept", "text/html,*/*;q=0.8")]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_another_owner_is_404_on_every_route() {
    let app = GroupApp::idle();
    let service = GroupApp::service(app.client.clone()).with_owner(|parts| {
        parts
            .headers
            .get("x-user")?
            .to_str()
            .ok()
            .map(str::to_owned)
    });
    let id = app
        .submit(2, Some(SumParams::default()), Some("alice"))
        .await;
    let as_user = |method: &str, suffix: &str, user: Option<&str>| {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{suffix}", path(id)))
            .header("accept", "application/json, text/event-stream");
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        request.body(String::new()).unwrap()
    };
    for (method, suffix) in [
        ("GET", ""),
        ("GET", "/events"),
        ("GET", "/result"),
        ("DELETE", ""),
        ("POST", "/cancel"),
    ] {
        for user in [Some("bob"), None] {
            let detail = send(&service, as_user(method, suffix, user))
                .await
                .problem(404);
            assert!(detail.contains("no group"), "{detail}");
        }
    }
    assert_eq!(
        app.client
            .group_status(id)
            .await
            .unwrap()
            .count(TaskStatus::Queued),
        2,
        "nothing was cancelled"
    );
    let answer = send(&service, as_user("GET", "", Some("alice"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("cache-control"), "private, no-cache");
    let answer = send(&service, as_user("DELETE", "", Some("alice"))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_task_or_a_member_is_not_a_group() {
    let app = GroupApp::idle();
    let id = app.submit(1, None, None).await;
    let member = app.client.group_status(id).await.unwrap().members[0].id;
    let plain = app
        .client
        .submit::<Gated>(Step {
            n: 1,
            ..Step::default()
        })
        .await
        .unwrap();
    for task in [member, plain] {
        for suffix in ["", "/result", "/events"] {
            let request = Request::get(format!("{}{suffix}", path(task)))
                .header("accept", "application/json, text/event-stream")
                .body(String::new())
                .unwrap();
            let detail = send(&app.service, request).await.problem(404);
            assert!(detail.contains("no group"), "{detail}");
        }
        let delete = Request::delete(path(task)).body(String::new()).unwrap();
        send(&app.service, delete).await.problem(404);
    }
    assert_eq!(
        app.client.status(plain).await.unwrap().status,
        TaskStatus::Queued
    );
    // Not an id at all, and the mount point itself.
    send(&app.service, get(&path("nope"))).await.problem(404);
    send(&app.service, get(GROUPS)).await.problem(404);
    let post = Request::post(GROUPS).body(String::new()).unwrap();
    send(&app.service, post).await.problem(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_and_retry_after() {
    let app = GroupApp::memory();
    let id = app.submit(2, None, None).await;
    app.wait_running(id).await;
    let first = send(&app.service, get(&path(id))).await;
    let tag = first.header("etag").to_owned();
    let cached = Request::get(path(id))
        .header("if-none-match", &tag)
        .body(String::new())
        .unwrap();
    let answer = send(&app.service, cached).await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    assert!(answer.body.is_empty());
    let page = send(&app.service, get_html(&path(id))).await;
    assert_ne!(
        page.header("etag"),
        tag,
        "the page and the JSON share a tag"
    );
    let retry: u64 = first.header("retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");

    app.open(1);
    app.wait_group(id, |g| g.count(TaskStatus::Succeeded) == 1)
        .await;
    let cached = Request::get(path(id))
        .header("if-none-match", &tag)
        .body(String::new())
        .unwrap();
    let answer = send(&app.service, cached).await;
    assert_eq!(answer.status, StatusCode::OK, "a change keeps the old tag");
    app.open(1);
    app.wait_final(id).await;
    let last = send(&app.service, get(&path(id))).await;
    assert!(last.headers.get("retry-after").is_none());
    let again = send(&app.service, get_html(&path(id))).await;
    let cached = Request::get(path(id))
        .header("accept", "text/html")
        .header("if-none-match", again.header("etag"))
        .body(String::new())
        .unwrap();
    assert_eq!(
        send(&app.service, cached).await.status,
        StatusCode::NOT_MODIFIED,
        "a final page keeps its tag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_group_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("groups.db").display());
    let backend = longtask_sqlx::SqliteBackend::connect(&url).await.unwrap();
    backend.migrate().await.unwrap();
    let app = GroupApp::on(Backend::new(backend), true);
    let id = app.submit(4, Some(SumParams::default()), None).await;
    app.wait_running(id).await;
    let json = send(&app.service, get(&path(id))).await.json();
    assert_eq!(json["summary"], "0 of 4 done, 4 running");
    assert_eq!(json["percent"], 50.0);
    app.open(4);
    app.wait_final(id).await;
    let json = send(&app.service, get(&path(id))).await.json();
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["summary"], "4 of 4 done");
    let result = send(&app.service, get(&format!("{}/result", path(id)))).await;
    assert_eq!(
        result.json(),
        serde_json::json!({"total": 1000, "failed": 0})
    );

    let cancelled = app.submit(2, Some(SumParams::default()), None).await;
    app.wait_running(cancelled).await;
    let answer = send(
        &app.service,
        Request::delete(path(cancelled))
            .body(String::new())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let group = app.wait_final(cancelled).await;
    assert_eq!(group.root.status, TaskStatus::Cancelled);
}

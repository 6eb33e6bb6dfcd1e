//! The Flask original's `/` and `/api/chat/<room>` contract in process (`tests/app`), on the
//! three databases (SQLite here, MariaDB and PostgreSQL with `FERROCHAT_TEST_DATABASE`, as
//! `scripts/test` runs them): what its page, curl and the seed's clients rely on. The
//! transcript as plain text, one line a message, oldest first, each room its own; posts as
//! a form, multipart or JSON, trimmed and defaulted, by 20 writers at once with nothing
//! lost; bad input refused with a one-line reason and nothing stored, and a value the
//! database refuses a 400; cheap polling (ETag and 304, `after`, JSON, `wait`, compression)
//! and a big room's newest messages; the page, its assets and `/health`. What needs a
//! second server process or a restart (the data read back from the database by a fresh
//! server) stays in `tests/legacy_api.rs` and `tests/polling.rs`.

mod app;

use app::db::Backend;
use app::{assert_detail, assert_every_writer_in_order, lines, unique, TestApp, UNICODE_CASES};
use rocket::http::{Header, Method};
use rocket::local::asynchronous::LocalResponse;
use serde_json::json;
use std::time::{Duration, Instant};

/// A room name as one path segment, percent-encoded as a client's URL library writes it
/// (the local client takes a URI as it is, not a name with spaces or `☕` in it).
fn segment(room: &str) -> String {
    let mut url = url::Url::parse("http://localhost/").unwrap();
    url.path_segments_mut().unwrap().pop_if_empty().push(room);
    url.path()[1..].to_string()
}

/// `/api/chat/<room>`.
fn chat_path(room: &str) -> String {
    format!("/api/chat/{}", segment(room))
}

/// A GET of `path` with these headers, as nobody in particular.
async fn get<'a>(
    app: &'a TestApp,
    path: &str,
    headers: &[(&'static str, &str)],
) -> LocalResponse<'a> {
    let mut req = app.client.get(path.to_string());
    for (name, value) in headers {
        req = req.header(Header::new(*name, value.to_string()));
    }
    req.dispatch().await
}

/// The body as text (empty when there is none, as for a 304).
async fn text_of(res: LocalResponse<'_>) -> String {
    res.into_string().await.unwrap_or_default()
}

/// A header of the answer, if it has it.
fn header(res: &LocalResponse<'_>, name: &str) -> Option<String> {
    res.headers().get_one(name).map(str::to_string)
}

/// A POST of `body` as it is, with this `Content-Type`; the status and the plain-text
/// answer.
async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: impl AsRef<[u8]>,
) -> (u16, String) {
    let res = app
        .client
        .post(path.to_string())
        .header(Header::new("Content-Type", content_type.to_string()))
        .body(body)
        .dispatch()
        .await;
    let status = res.status().code;
    (status, text_of(res).await)
}

/// A form post that must be accepted (204).
async fn post_ok(app: &TestApp, room: &str, fields: &[(&str, &str)]) {
    let (status, body) = app.post_form(&segment(room), fields).await;
    assert_eq!(status, 204, "POST {fields:?} to {room}: {body}");
}

/// The room's transcript, which must be there (200).
async fn transcript(app: &TestApp, room: &str) -> String {
    let res = get(app, &chat_path(room), &[]).await;
    assert_eq!(res.status().code, 200, "GET /api/chat/{room}");
    text_of(res).await
}

/// A `multipart/form-data` body of these text fields, as `curl -F` and reqwest write it,
/// and its content type.
fn multipart(fields: &[(&str, &str)]) -> (String, String) {
    let boundary = "ferrochat-legacy-contract-7d3f";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

// The transcript and posts.

#[rocket::async_test]
async fn unknown_room_is_empty_plain_text() {
    let app = TestApp::new().await;
    let res = get(&app, &chat_path(&unique("nobody")), &[]).await;
    assert_eq!(res.status().code, 200);
    assert_eq!(
        header(&res, "Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(text_of(res).await, "");
}

#[rocket::async_test]
async fn form_post_then_get_shows_the_line() {
    let app = TestApp::new().await;
    let room = unique("form");
    let (status, body) = app
        .post_form(&room, &[("username", "a"), ("msg", "hi")])
        .await;
    assert_eq!((status, body.as_str()), (204, ""));
    let text = transcript(&app, &room).await;
    assert_eq!(lines(&text), ["a: hi"]);
    // Local time as the original shows it, to the second.
    let now = chrono::Local::now().naive_local();
    let shown = chrono::NaiveDateTime::parse_from_str(&text[1..20], "%Y-%m-%d %H:%M:%S").unwrap();
    assert!((now - shown).num_seconds().abs() < 60, "{shown} vs {now}");
}

#[rocket::async_test]
async fn json_and_multipart_posts() {
    let app = TestApp::new().await;
    let room = unique("json");
    let path = chat_path(&room);
    let body = json!({"username": "j", "msg": "from json"}).to_string();
    let (status, reason) = post_raw(&app, &path, "application/json", body).await;
    assert_eq!(status, 204, "{reason}");
    let (content_type, body) = multipart(&[("username", "m"), ("msg", "from multipart")]);
    let (status, reason) = post_raw(&app, &path, &content_type, body).await;
    assert_eq!(status, 204, "{reason}");
    // jQuery's $.post sends this content type, charset included.
    let (status, reason) = post_raw(
        &app,
        &path,
        "application/x-www-form-urlencoded; charset=UTF-8",
        "username=q&msg=from+jquery",
    )
    .await;
    assert_eq!(status, 204, "{reason}");
    assert_eq!(
        lines(&transcript(&app, &room).await),
        ["j: from json", "m: from multipart", "q: from jquery"]
    );
}

#[rocket::async_test]
async fn username_defaults_and_fields_are_trimmed() {
    let app = TestApp::new().await;
    let room = unique("anon");
    post_ok(&app, &room, &[("msg", " first ")]).await;
    post_ok(&app, &room, &[("username", " "), ("msg", "second")]).await;
    post_ok(&app, &room, &[("username", " bob "), ("msg", "third\n")]).await;
    let body = json!({"username": null, "msg": "fourth"}).to_string();
    let (status, reason) = post_raw(&app, &chat_path(&room), "application/json", body).await;
    assert_eq!(status, 204, "{reason}");
    assert_eq!(
        lines(&transcript(&app, &room).await),
        [
            "Anonymous: first",
            "Anonymous: second",
            "bob: third",
            "Anonymous: fourth"
        ]
    );
}

#[rocket::async_test]
async fn bad_input_is_refused_with_a_reason_and_nothing_is_stored() {
    let app = TestApp::with(&[("max_message_chars", "100")]).await;
    let room = unique("bad");
    let path = chat_path(&room);
    let form = "application/x-www-form-urlencoded";
    let long_name = "n".repeat(65);
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("no msg", form, b"username=a".to_vec(), 400),
        ("empty msg", form, b"username=a&msg=".to_vec(), 400),
        ("blank msg", form, b"msg=+%20%0A".to_vec(), 400),
        (
            "msg over the limit",
            form,
            format!("msg={}", "x".repeat(101)).into_bytes(),
            400,
        ),
        (
            "long username",
            form,
            format!("username={long_name}&msg=x").into_bytes(),
            400,
        ),
        (
            "username with a newline",
            form,
            b"username=a%0Ab&msg=x".to_vec(),
            400,
        ),
        (
            "username with an escape",
            form,
            b"username=a%1B&msg=x".to_vec(),
            400,
        ),
        ("msg with NUL", form, b"msg=a%00b".to_vec(), 400),
        ("bad percent-encoding", form, b"msg=%E0%A4%A".to_vec(), 400),
        ("bad hex", form, b"msg=%zz".to_vec(), 400),
        ("invalid UTF-8", form, b"msg=%FF%FE".to_vec(), 400),
        ("raw invalid UTF-8", form, b"msg=\xff".to_vec(), 400),
        (
            "broken JSON",
            "application/json",
            b"{\"msg\": ".to_vec(),
            400,
        ),
        ("JSON array", "application/json", b"[1,2]".to_vec(), 400),
        (
            "JSON number msg",
            "application/json",
            b"{\"msg\": 5}".to_vec(),
            400,
        ),
        ("wrong content type", "text/plain", b"msg=hi".to_vec(), 415),
        (
            "body over the limit",
            form,
            format!("msg={}", "x".repeat(70_000)).into_bytes(),
            413,
        ),
        (
            "JSON over the limit",
            "application/json",
            format!("{{\"msg\":\"{}\"}}", "x".repeat(70_000)).into_bytes(),
            413,
        ),
    ];
    for (what, content_type, body, expected) in cases {
        let (status, reason) = post_raw(&app, &path, content_type, body).await;
        assert_eq!(status, expected, "{what}: {reason}");
        assert_eq!(
            reason.trim_end().lines().count(),
            1,
            "{what}: one-line reason, got {reason:?}"
        );
        assert!(reason.len() > 5, "{what}: a reason, got {reason:?}");
    }
    let bad_rooms = [
        ("empty".to_string(), "/api/chat/".to_string()),
        ("slash".to_string(), "/api/chat/a%2Fb".to_string()),
        ("long".to_string(), format!("/api/chat/{}", "r".repeat(65))),
        ("control".to_string(), "/api/chat/a%07b".to_string()),
        ("newline".to_string(), "/api/chat/a%0Ab".to_string()),
    ];
    for (what, path) in &bad_rooms {
        let (status, reason) = post_raw(&app, path, form, "msg=hi").await;
        assert!((400..500).contains(&status), "room {what}: {status}");
        assert_eq!(
            reason.trim_end().lines().count(),
            1,
            "room {what}: {reason:?}"
        );
        let status = get(&app, path, &[]).await.status();
        assert!(
            (400..500).contains(&status.code),
            "GET room {what}: {status}"
        );
    }
    assert_eq!(transcript(&app, &room).await, "");
    // Straight from the database too: not one row went in.
    let direct = app.db.connect().await;
    let count = sea_orm::ConnectionTrait::query_one_raw(
        &direct,
        sea_orm::Statement::from_string(
            direct.get_database_backend(),
            "SELECT COUNT(*) AS n FROM message",
        ),
    )
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap();
    assert_eq!(count, 0);
    // The limit is inclusive.
    post_ok(&app, &room, &[("msg", &"é".repeat(100))]).await;
    post_ok(&app, &room, &[("username", &"ü".repeat(64)), ("msg", "x")]).await;
}

/// A server whose name limit is above the column's (64): MariaDB and PostgreSQL refuse
/// the row, which must be a 400 that says so (not "503 try again", which can never
/// succeed), in either door's error form, while the posts that shared its batch are
/// stored; SQLite does not enforce the length and stores it.
#[rocket::async_test]
async fn a_value_the_database_refuses_is_a_4xx_not_a_503() {
    let app = TestApp::with(&[("max_username_chars", "200")]).await;
    let backend = app::backend();
    let room = unique("refused");
    let long_name = "n".repeat(100);
    let refused = backend != Backend::Sqlite;
    // One refused post among good ones, all at once, so some share its batch.
    let posts = (0..20).map(|i| {
        let name = if i == 10 {
            long_name.clone()
        } else {
            format!("u{i}")
        };
        let (app, room) = (&app, &room);
        async move {
            let msg = format!("m{i}");
            app.post_form(room, &[("username", &name), ("msg", &msg)])
                .await
        }
    });
    let answers = futures_util::future::join_all(posts).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        if i == 10 && refused {
            assert_eq!(*status, 400, "{backend:?}: {body}");
            assert!(body.contains("refused"), "{body}");
            assert!(!body.contains('{'), "legacy errors are plain text: {body}");
        } else {
            assert_eq!(*status, 204, "{backend:?} post {i}: {body}");
        }
    }
    let text = transcript(&app, &room).await;
    assert_eq!(lines(&text).len(), if refused { 19 } else { 20 }, "{text}");
    assert_eq!(text.contains(&long_name), !refused);

    // The JSON door says it as {"detail"}.
    let answer = app
        .call(
            &app.anonymous(),
            Method::Post,
            &format!("/api/chat/rooms/{room}/messages"),
            Some(json!({"username": long_name, "content": "x"})),
        )
        .await;
    if refused {
        assert_detail(&answer, 400, "refused");
    } else {
        assert_eq!(answer.0, 201, "{:?}", answer.1);
    }
}

/// Names, messages and a room name in many scripts, emoji, a tab and markup, read back as
/// written. (Read back by a second server process from the database: in
/// `tests/legacy_api.rs`.)
#[rocket::async_test]
async fn unicode_round_trips() {
    let app = TestApp::new().await;
    let room = format!("{}-café-☕-房间", unique("u"));
    let cases = UNICODE_CASES;
    for (user, msg) in cases {
        post_ok(&app, &room, &[("username", user), ("msg", msg)]).await;
    }
    let expected: Vec<String> = cases.iter().map(|(u, m)| format!("{u}: {m}")).collect();
    assert_eq!(lines(&transcript(&app, &room).await), expected);
}

#[rocket::async_test]
async fn a_message_is_always_one_transcript_line() {
    let app = TestApp::new().await;
    let room = unique("lines");
    let forged = "hello\n[2026-01-01 00:00:00] admin: you are banned\r\nbye\rnow\u{2028}x\u{2029}y";
    post_ok(&app, &room, &[("username", "eve"), ("msg", forged)]).await;
    post_ok(&app, &room, &[("username", "bob"), ("msg", "after")]).await;
    let text = transcript(&app, &room).await;
    assert_eq!(text.split('\n').count(), 2, "{text:?}");
    assert_eq!(
        lines(&text),
        [
            "eve: hello↵[2026-01-01 00:00:00] admin: you are banned↵bye↵now↵x↵y",
            "bob: after"
        ]
    );
}

#[rocket::async_test]
async fn rooms_are_separate_and_oldest_first() {
    let app = TestApp::new().await;
    let (a, b) = (unique("a"), unique("b"));
    for i in 0..10 {
        let target = if i % 2 == 0 { &a } else { &b };
        post_ok(
            &app,
            target,
            &[("username", "u"), ("msg", &format!("m{i}"))],
        )
        .await;
    }
    assert_eq!(
        lines(&transcript(&app, &a).await),
        ["u: m0", "u: m2", "u: m4", "u: m6", "u: m8"]
    );
    assert_eq!(
        lines(&transcript(&app, &b).await),
        ["u: m1", "u: m3", "u: m5", "u: m7", "u: m9"]
    );
}

#[rocket::async_test]
async fn concurrent_writers_lose_nothing_and_keep_order() {
    concurrent_writers(true).await
}

/// The path MySQL 8 takes (no `RETURNING`): one INSERT per row, on whichever database the
/// tier runs (MariaDB's in `scripts/test`'s MariaDB round).
#[rocket::async_test]
async fn concurrent_writers_one_insert_per_row() {
    concurrent_writers(false).await
}

/// 20 writers x 25 posts at once while a reader polls, as open pages do: all 500 there,
/// once each, each writer's in its order. (The same read back by a fresh server from the
/// database: in `tests/legacy_api.rs`.)
async fn concurrent_writers(returning: bool) {
    let app = TestApp::with(&[("db_insert_returning", &returning.to_string())]).await;
    let room = unique("busy");
    let writers = (0..20).map(|w| {
        let (app, room) = (&app, &room);
        async move {
            for i in 0..25 {
                let (user, msg) = (format!("w{w}"), format!("{i}"));
                let (status, _) = app
                    .post_form(room, &[("username", &user), ("msg", &msg)])
                    .await;
                assert_eq!(status, 204);
            }
        }
    });
    // Readers poll meanwhile, as open pages do.
    let reader = async {
        for _ in 0..50 {
            let res = get(&app, &chat_path(&room), &[]).await;
            assert_eq!(res.status().code, 200);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::join!(futures_util::future::join_all(writers), reader);
    let text = transcript(&app, &room).await;
    assert_every_writer_in_order(&lines(&text), 20, 25);
}

// The page and health.

#[rocket::async_test]
async fn page_and_assets() {
    let app = TestApp::new().await;
    let page = |path: &'static str| {
        let app = &app;
        async move {
            let res = get(app, path, &[]).await;
            (res.status().code, text_of(res).await)
        }
    };
    let (status, html) = page("/").await;
    assert_eq!(status, 200);
    assert!(html.contains("data-room=\"general\""), "{html}");
    assert!(html.contains("/static/vendor/jquery.min.js"));
    let (status, html) = page("/devops").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("data-room=\"devops\"")
            && html.contains("<span id=\"room-name\">devops</span>")
    );
    // A room name is text in the page, never markup.
    let (status, html) = page("/%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(status, 400, "'/' is not allowed in a room name");
    assert!(!html.contains("<script>alert"));
    let (status, html) = page("/%3Cimg%20src=x%20onerror=alert(1)%3E").await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("<img src=x") && html.contains("&lt;img"),
        "{html}"
    );
    let (status, js) = page("/static/chat.js").await;
    assert_eq!(status, 200);
    assert!(js.contains("/api/chat/"));
    let (status, jquery) = page("/static/vendor/jquery.min.js").await;
    assert_eq!(
        status, 200,
        "run `npm ci` first: jQuery comes from node_modules"
    );
    assert!(jquery.contains("jQuery"));
}

#[rocket::async_test]
async fn health_reports_the_database() {
    let app = TestApp::new().await;
    for path in ["/health", "/healthz"] {
        let res = get(&app, path, &[]).await;
        assert_eq!(res.status().code, 200);
        let body: serde_json::Value = serde_json::from_str(&text_of(res).await).unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["database"]["state"], "up");
        let expected = match app::backend() {
            Backend::Sqlite => "sqlite",
            Backend::MariaDb => "mysql",
            Backend::Postgres => "postgres",
        };
        assert_eq!(body["database"]["backend"], expected);
    }
}

// Cheap polling: clients that send none of it get exactly the original answer.

#[rocket::async_test]
async fn etag_and_not_modified() {
    let app = TestApp::new().await;
    let room = unique("etag");
    let path = chat_path(&room);
    post_ok(&app, &room, &[("username", "a"), ("msg", "one")]).await;

    let first = get(&app, &path, &[]).await;
    assert_eq!(first.status().code, 200);
    let tag = header(&first, "ETag").unwrap();
    assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
    let body = text_of(first).await;

    let again = get(&app, &path, &[("If-None-Match", &tag)]).await;
    assert_eq!(again.status().code, 304);
    assert_eq!(header(&again, "ETag").unwrap(), tag);
    assert_eq!(text_of(again).await, "");

    post_ok(&app, &room, &[("username", "a"), ("msg", "two")]).await;
    let changed = get(&app, &path, &[("If-None-Match", &tag)]).await;
    assert_eq!(changed.status().code, 200);
    assert_ne!(header(&changed, "ETag").unwrap(), tag);
    let text = text_of(changed).await;
    assert_eq!(text, format!("{body}\n{}", text.lines().nth(1).unwrap()));
    assert_eq!(lines(&text), ["a: one", "a: two"]);
}

#[rocket::async_test]
async fn after_and_json() {
    let app = TestApp::new().await;
    let room = unique("after");
    let path = chat_path(&room);
    for m in ["one", "two", "three"] {
        post_ok(&app, &room, &[("username", "zoë"), ("msg", m)]).await;
    }
    let res = get(&app, &format!("{path}?format=json"), &[]).await;
    assert_eq!(res.status().code, 200);
    assert_eq!(
        header(&res, "Content-Type").as_deref(),
        Some("application/json")
    );
    let last: i64 = header(&res, "X-Last-Message-Id").unwrap().parse().unwrap();
    let json: serde_json::Value = serde_json::from_str(&text_of(res).await).unwrap();
    assert_eq!(json["room"], room.as_str());
    let messages = json["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    let ids: Vec<i64> = messages.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(json["last_id"].as_i64().unwrap(), last);
    assert_eq!(ids[2], last);
    assert_eq!(messages[0]["username"], "zoë");
    assert_eq!(messages[0]["text"], "one");
    let stamp = messages[0]["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{stamp}"
    );

    // Accept: application/json is the same as format=json.
    let res = get(&app, &path, &[("Accept", "application/json")]).await;
    let accepted: serde_json::Value = serde_json::from_str(&text_of(res).await).unwrap();
    assert_eq!(accepted["messages"], json["messages"]);

    // Only the lines after a known id, as text and as JSON.
    let text = text_of(get(&app, &format!("{path}?after={}", ids[0]), &[]).await).await;
    assert_eq!(lines(&text), ["zoë: two", "zoë: three"]);
    let later = get(&app, &format!("{path}?after={}&format=json", ids[1]), &[]).await;
    let later: serde_json::Value = serde_json::from_str(&text_of(later).await).unwrap();
    assert_eq!(later["messages"].as_array().unwrap().len(), 1);
    assert_eq!(later["messages"][0]["text"], "three");
    let none = get(&app, &format!("{path}?after={last}"), &[]).await;
    assert_eq!(none.status().code, 200);
    assert_eq!(text_of(none).await, "");

    for bad in ["after=abc", "wait=-1", "wait=soon", "format=xml"] {
        let res = get(&app, &format!("{path}?{bad}"), &[]).await;
        assert_eq!(res.status().code, 400, "{bad}");
        assert_eq!(text_of(res).await.trim_end().lines().count(), 1);
    }
}

/// `wait`: held while there is nothing new (the wait is the server's own timer, so the
/// times hold in process too), answered at once when a message comes.
#[rocket::async_test]
async fn long_poll() {
    let app = TestApp::new().await;
    let room = unique("wait");
    let path = chat_path(&room);
    post_ok(&app, &room, &[("username", "a"), ("msg", "one")]).await;
    let tag = header(&get(&app, &path, &[]).await, "ETag").unwrap();

    // Nothing new: held for the wait, then 304.
    let started = Instant::now();
    let res = get(&app, &format!("{path}?wait=1"), &[("If-None-Match", &tag)]).await;
    assert_eq!(res.status().code, 304);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "held for the wait"
    );

    // A message arrives while the poll is held: answered at once, with it.
    let held = async {
        let started = Instant::now();
        let res = get(&app, &format!("{path}?wait=20"), &[("If-None-Match", &tag)]).await;
        let status = res.status().code;
        (status, text_of(res).await, started.elapsed())
    };
    let poster = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        post_ok(&app, &room, &[("username", "b"), ("msg", "two")]).await;
    };
    let ((status, text, took), ()) = tokio::join!(held, poster);
    assert_eq!(status, 200);
    assert_eq!(lines(&text), ["a: one", "b: two"]);
    assert!(
        took < Duration::from_secs(10),
        "answered when the message came, not at the end: {took:?}"
    );

    // The same with `after`: only the new line comes back.
    let json = text_of(get(&app, &format!("{path}?format=json"), &[]).await).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let last = json["last_id"].as_i64().unwrap();
    let held =
        async { text_of(get(&app, &format!("{path}?after={last}&wait=20"), &[]).await).await };
    let poster = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        post_ok(&app, &room, &[("username", "c"), ("msg", "three")]).await;
    };
    let (text, ()) = tokio::join!(held, poster);
    assert_eq!(lines(&text), ["c: three"]);
}

/// A room larger than `transcript_max_messages` answers its newest that many, for the
/// whole transcript and for `?after=`: no poll reads or sends a room without bound. (A
/// fresh server's first read of a room larger than a socket replay's page: in
/// `tests/polling.rs`.)
#[rocket::async_test]
async fn a_big_room_answers_its_newest_messages() {
    let app = TestApp::with(&[("transcript_max_messages", "300")]).await;
    let big = unique("big");
    for i in 0..400 {
        post_ok(
            &app,
            &big,
            &[("username", "p"), ("msg", &format!("m{i:03}"))],
        )
        .await;
    }
    let whole = lines(&transcript(&app, &big).await);
    assert_eq!(whole.len(), 300, "the newest 300");
    assert!(whole[0].ends_with("p: m100"), "{}", whole[0]);
    assert!(whole[299].ends_with("p: m399"), "{}", whole[299]);
    let res = get(
        &app,
        &format!("{}?format=json&after=0", chat_path(&big)),
        &[],
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&text_of(res).await).unwrap();
    assert_eq!(json["messages"].as_array().unwrap().len(), 300);
}

/// What `GET /api/chat/<room>` answers when the client accepts `encoding`: its status,
/// `Content-Encoding`, `Vary`, and the body as sent.
async fn get_encoded(
    app: &TestApp,
    path: &str,
    encoding: Option<&str>,
) -> (u16, Option<String>, String, Vec<u8>) {
    let headers: Vec<(&'static str, &str)> = encoding
        .map(|encoding| ("Accept-Encoding", encoding))
        .into_iter()
        .collect();
    let res = get(app, path, &headers).await;
    let (coding, vary) = (
        header(&res, "Content-Encoding"),
        header(&res, "Vary").unwrap_or_default(),
    );
    let status = res.status().code;
    (
        status,
        coding,
        vary,
        res.into_bytes().await.unwrap_or_default(),
    )
}

fn gunzip(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn unbrotli(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut text = String::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// The transcript, compressed when the client asks (brotli before gzip, never a coding
/// it refuses with q=0), the same text once decompressed, a tenth of the bytes or less for
/// a room of 300 lines, as text and as JSON; `Vary: Accept-Encoding` on every answer; a
/// client that asks for nothing gets exactly the bytes it always did; a new message makes a
/// new compressed body.
#[rocket::async_test]
async fn the_transcript_is_compressed_for_clients_that_ask() {
    let app = TestApp::new().await;
    let room = unique("compressed");
    for i in 0..300 {
        let msg = format!("message {i}: the quick brown fox jumps over the lazy dog");
        post_ok(&app, &room, &[("username", "ann"), ("msg", &msg)]).await;
    }
    let path = chat_path(&room);
    let (status, coding, vary, plain) = get_encoded(&app, &path, None).await;
    assert_eq!((status, coding), (200, None));
    assert_eq!(vary, "Accept-Encoding");
    let plain = String::from_utf8(plain).unwrap();
    assert_eq!(lines(&plain).len(), 300);

    for (asks, gets) in [
        ("gzip, deflate, br", "br"),
        ("br", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip;q=0.5", "gzip"),
        ("x-gzip", "gzip"),
    ] {
        let (status, coding, vary, body) = get_encoded(&app, &path, Some(asks)).await;
        assert_eq!((status, coding.as_deref()), (200, Some(gets)), "{asks}");
        assert_eq!(vary, "Accept-Encoding");
        assert!(
            body.len() * 10 <= plain.len(),
            "{gets}: {} bytes",
            body.len()
        );
        let text = if gets == "br" {
            unbrotli(&body)
        } else {
            gunzip(&body)
        };
        assert_eq!(text, plain, "{asks}");
    }
    for refused in ["identity", "br;q=0, gzip;q=0", "deflate", ""] {
        let (_, coding, _, body) = get_encoded(&app, &path, Some(refused)).await;
        assert_eq!(coding, None, "{refused:?}");
        assert_eq!(body, plain.as_bytes(), "{refused:?}");
    }
    // A new version: compressed anew.
    post_ok(&app, &room, &[("username", "bob"), ("msg", "one more")]).await;
    let (_, _, _, body) = get_encoded(&app, &path, Some("br")).await;
    assert!(unbrotli(&body).ends_with("bob: one more"));
    // The JSON form too, once per version.
    let json_path = format!("{path}?format=json");
    let (_, coding, _, plain_json) = get_encoded(&app, &json_path, None).await;
    assert_eq!(coding, None);
    for (asks, decode) in [("br", unbrotli as fn(&[u8]) -> String), ("gzip", gunzip)] {
        let (status, coding, vary, body) = get_encoded(&app, &json_path, Some(asks)).await;
        assert_eq!(
            (status, coding.as_deref(), vary.as_str()),
            (200, Some(asks), "Accept-Encoding")
        );
        assert!(
            body.len() * 5 <= plain_json.len(),
            "{asks}: {} bytes",
            body.len()
        );
        assert_eq!(decode(&body).as_bytes(), plain_json, "{asks}");
    }
    // A page after an id goes as it is.
    let (_, coding, _, _) = get_encoded(&app, &format!("{path}?after=1"), Some("br")).await;
    assert_eq!(coding, None);
}

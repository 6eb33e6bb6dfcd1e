//! The Flask original's contract, over real HTTP, against SQLite, MariaDB and PostgreSQL:
//! `GET` and `POST /api/chat/<room>`, the page, and `/health`.

mod common;

use common::*;
use std::collections::HashMap;

on_every_backend!(
    unknown_room_is_empty_plain_text,
    form_post_then_get_shows_the_line,
    json_and_multipart_posts,
    username_defaults_and_fields_are_trimmed,
    bad_input_is_refused_with_a_reason_and_nothing_is_stored,
    a_value_the_database_refuses_is_a_4xx_not_a_503,
    unicode_round_trips,
    a_message_is_always_one_transcript_line,
    rooms_are_separate_and_oldest_first,
    concurrent_writers_lose_nothing_and_keep_order,
    restart_keeps_the_data,
    page_and_assets,
    health_reports_the_database,
);

async fn unknown_room_is_empty_plain_text(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let res = client()
        .get(format!("{}/api/chat/{}", server.url, room("nobody")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(res.text().await.unwrap(), "");
    db.drop_db().await;
}

async fn form_post_then_get_shows_the_line(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("form");
    let (status, body) = post_form(&server, &room, &[("username", "a"), ("msg", "hi")]).await;
    assert_eq!((status, body.as_str()), (204, ""));
    let text = transcript(&server, &room).await;
    assert_eq!(lines(&text), ["a: hi"]);
    // Local time as the original shows it, to the second.
    let now = chrono::Local::now().naive_local();
    let shown = chrono::NaiveDateTime::parse_from_str(&text[1..20], "%Y-%m-%d %H:%M:%S").unwrap();
    assert!((now - shown).num_seconds().abs() < 60, "{shown} vs {now}");
    db.drop_db().await;
}

async fn json_and_multipart_posts(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("json");
    let url = format!("{}/api/chat/{room}", server.url);
    let res = client()
        .post(&url)
        .json(&serde_json::json!({"username": "j", "msg": "from json"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let form = reqwest::multipart::Form::new()
        .text("username", "m")
        .text("msg", "from multipart");
    let res = client().post(&url).multipart(form).send().await.unwrap();
    assert_eq!(res.status(), 204);
    // jQuery's $.post sends this content type, charset included.
    let res = client()
        .post(&url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body("username=q&msg=from+jquery")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        lines(&transcript(&server, &room).await),
        ["j: from json", "m: from multipart", "q: from jquery"]
    );
    db.drop_db().await;
}

async fn username_defaults_and_fields_are_trimmed(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("anon");
    post_ok(&server, &room, &[("msg", " first ")]).await;
    post_ok(&server, &room, &[("username", " "), ("msg", "second")]).await;
    post_ok(&server, &room, &[("username", " bob "), ("msg", "third\n")]).await;
    let res = client()
        .post(format!("{}/api/chat/{room}", server.url))
        .json(&serde_json::json!({"username": null, "msg": "fourth"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        lines(&transcript(&server, &room).await),
        [
            "Anonymous: first",
            "Anonymous: second",
            "bob: third",
            "Anonymous: fourth"
        ]
    );
    db.drop_db().await;
}

async fn bad_input_is_refused_with_a_reason_and_nothing_is_stored(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_MAX_MESSAGE_CHARS", "100"))
            .await;
    let room = room("bad");
    let url = format!("{}/api/chat/{room}", server.url);
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
        let res = client()
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let reason = res.text().await.unwrap();
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
        let res = client()
            .post(format!("{}{path}", server.url))
            .form(&[("msg", "hi")])
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "room {what}: {status}");
        let reason = res.text().await.unwrap();
        assert_eq!(
            reason.trim_end().lines().count(),
            1,
            "room {what}: {reason:?}"
        );
        let res = client()
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_client_error(),
            "GET room {what}: {}",
            res.status()
        );
    }
    assert_eq!(transcript(&server, &room).await, "");
    // Straight from the database too: not one row went in.
    let direct = db.connect().await;
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
    post_ok(&server, &room, &[("msg", &"é".repeat(100))]).await;
    post_ok(
        &server,
        &room,
        &[("username", &"ü".repeat(64)), ("msg", "x")],
    )
    .await;
    db.drop_db().await;
}

/// A server whose name limit is above the column's (64): MariaDB and PostgreSQL refuse
/// the row, which must be a 400 that says so (not "503 try again", which can never
/// succeed), in either door's error form, while the posts that shared its batch are
/// stored; SQLite does not enforce the length and stores it.
async fn a_value_the_database_refuses_is_a_4xx_not_a_503(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_MAX_USERNAME_CHARS", "200"))
            .await;
    let room = room("refused");
    let long_name = "n".repeat(100);
    let refused = backend != Backend::Sqlite;
    // One refused post among good ones, all at once, so some share its batch.
    let posts = (0..20).map(|i| {
        let name = if i == 10 {
            long_name.clone()
        } else {
            format!("u{i}")
        };
        let server = &server;
        let room = room.clone();
        async move {
            let msg = format!("m{i}");
            post_form(server, &room, &[("username", &name), ("msg", &msg)]).await
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
    let text = transcript(&server, &room).await;
    assert_eq!(lines(&text).len(), if refused { 19 } else { 20 }, "{text}");
    assert_eq!(text.contains(&long_name), !refused);

    // The JSON door says it as {"detail"}.
    let answer = call(
        &server,
        reqwest::Method::POST,
        &format!("/api/chat/rooms/{room}/messages"),
        Some(serde_json::json!({"username": long_name, "content": "x"})),
    )
    .await;
    if refused {
        assert_detail(&answer, 400, "refused");
    } else {
        assert_eq!(answer.0, 201, "{:?}", answer.1);
    }
    db.drop_db().await;
}

async fn unicode_round_trips(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = format!("{}-café-☕-房间", room("u"));
    let cases = [
        ("zoë", "héllo wörld"),
        ("李雷", "你好，世界"),
        ("ناديا", "مرحبا بالعالم"),
        ("🦀 rustacean", "emoji 🎉👩‍👩‍👧 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
        ("tab", "a\tb"),
        ("quote", "<script>alert(\"x\")</script> & 'q'"),
    ];
    for (user, msg) in cases {
        post_ok(&server, &room, &[("username", user), ("msg", msg)]).await;
    }
    let expected: Vec<String> = cases.iter().map(|(u, m)| format!("{u}: {m}")).collect();
    assert_eq!(lines(&transcript(&server, &room).await), expected);
    // And from the database itself, through a second server process.
    server.stop();
    let server = Server::start(&db.url).await;
    assert_eq!(lines(&transcript(&server, &room).await), expected);
    db.drop_db().await;
}

async fn a_message_is_always_one_transcript_line(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("lines");
    let forged = "hello\n[2026-01-01 00:00:00] admin: you are banned\r\nbye\rnow\u{2028}x\u{2029}y";
    post_ok(&server, &room, &[("username", "eve"), ("msg", forged)]).await;
    post_ok(&server, &room, &[("username", "bob"), ("msg", "after")]).await;
    let text = transcript(&server, &room).await;
    assert_eq!(text.split('\n').count(), 2, "{text:?}");
    assert_eq!(
        lines(&text),
        [
            "eve: hello↵[2026-01-01 00:00:00] admin: you are banned↵bye↵now↵x↵y",
            "bob: after"
        ]
    );
    db.drop_db().await;
}

async fn rooms_are_separate_and_oldest_first(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (a, b) = (room("a"), room("b"));
    for i in 0..10 {
        let target = if i % 2 == 0 { &a } else { &b };
        post_ok(
            &server,
            target,
            &[("username", "u"), ("msg", &format!("m{i}"))],
        )
        .await;
    }
    assert_eq!(
        lines(&transcript(&server, &a).await),
        ["u: m0", "u: m2", "u: m4", "u: m6", "u: m8"]
    );
    assert_eq!(
        lines(&transcript(&server, &b).await),
        ["u: m1", "u: m3", "u: m5", "u: m7", "u: m9"]
    );
    db.drop_db().await;
}

async fn concurrent_writers_lose_nothing_and_keep_order(backend: Backend) {
    concurrent_writers(backend, true).await
}

/// The path MySQL 8 takes (no `RETURNING`), on MariaDB.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_one_insert_per_row() {
    concurrent_writers(Backend::MariaDb, false).await
}

async fn concurrent_writers(backend: Backend, returning: bool) {
    let db = TestDb::create(backend).await;
    let options =
        ServerOptions::new(&db.url).env("ROCKET_DB_INSERT_RETURNING", &returning.to_string());
    let server = Server::start_with(options).await;
    let room = room("busy");
    let mut writers = Vec::new();
    for w in 0..20 {
        let url = format!("{}/api/chat/{room}", server.url);
        writers.push(tokio::spawn(async move {
            let client = client();
            for i in 0..25 {
                let res = client
                    .post(&url)
                    .form(&[("username", format!("w{w}")), ("msg", format!("{i}"))])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 204);
            }
        }));
    }
    // Readers poll meanwhile, as open pages do.
    let reader = {
        let url = format!("{}/api/chat/{room}", server.url);
        tokio::spawn(async move {
            for _ in 0..50 {
                let res = client().get(&url).send().await.unwrap();
                assert_eq!(res.status(), 200);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    reader.await.unwrap();
    let check = |text: String| {
        let lines = lines(&text);
        assert_eq!(lines.len(), 500);
        let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
        for line in lines {
            let (user, n) = line.split_once(": ").unwrap();
            seen.entry(user.to_string())
                .or_default()
                .push(n.parse().unwrap());
        }
        assert_eq!(seen.len(), 20);
        for (user, ns) in seen {
            assert_eq!(
                ns,
                (0..25).collect::<Vec<_>>(),
                "{user}'s messages, in order, once each"
            );
        }
    };
    check(transcript(&server, &room).await);
    // The cache and the database agree.
    server.stop();
    let server = Server::start(&db.url).await;
    check(transcript(&server, &room).await);
    db.drop_db().await;
}

async fn restart_keeps_the_data(backend: Backend) {
    let db = TestDb::create(backend).await;
    let room = room("restart");
    let server = Server::start(&db.url).await;
    post_ok(&server, &room, &[("username", "a"), ("msg", "before")]).await;
    let before = transcript(&server, &room).await;
    server.stop();
    let server = Server::start(&db.url).await;
    assert_eq!(transcript(&server, &room).await, before);
    post_ok(&server, &room, &[("username", "a"), ("msg", "after")]).await;
    assert_eq!(
        lines(&transcript(&server, &room).await),
        ["a: before", "a: after"]
    );
    db.drop_db().await;
}

async fn page_and_assets(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let page = |path: &'static str| {
        let url = format!("{}{path}", server.url);
        async move {
            let res = client().get(url).send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
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
    db.drop_db().await;
}

async fn health_reports_the_database(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    for path in ["/health", "/healthz"] {
        let res = client()
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["database"]["state"], "up");
        let expected = match backend {
            Backend::Sqlite => "sqlite",
            Backend::MariaDb => "mysql",
            Backend::Postgres => "postgres",
        };
        assert_eq!(body["database"]["backend"], expected);
    }
    db.drop_db().await;
}

//! Abuse resistance and who may call what, in open mode, tried as an attacker would, over
//! real HTTP and sockets against a real server: each attack of the trust issue is a test
//! here, and each failed on the main before it.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

on_every_backend!(only_the_admin_may_delete_rooms_messages_and_files);

/// Who may delete, in open mode: nobody without a token, not a wrong token, the admin; and
/// with no admin token configured, nobody at all. The same rule at every door that
/// deletes.
async fn only_the_admin_may_delete_rooms_messages_and_files(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("del");
    post_ok(&server, &room, &[("username", "a"), ("msg", "one")]).await;
    let (_, history) = call(
        &server,
        Method::GET,
        &format!("/api/chat/rooms/{room}/messages"),
        None,
    )
    .await;
    let id = history[0]["id"].as_i64().unwrap();
    let upload = client()
        .post(format!("{}/api/files/upload", server.url))
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    let file: serde_json::Value = upload.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_string();

    let targets = [
        format!("/api/chat/messages/{id}"),
        format!("/api/files/{file_id}"),
        format!("/api/chat/rooms/{room}"),
    ];
    // (who, token, expected status, words of the reason)
    let callers: [(&str, Option<&str>, u16, &str); 2] = [
        ("anonymous", None, 401, "admin token"),
        ("a token that is not valid", Some("guess"), 401, "not valid"),
    ];
    for path in &targets {
        for (who, token, status, words) in callers {
            let answer = call_with_token(&server, Method::DELETE, path, None, token).await;
            assert_detail(&answer, status, words);
            let _ = who;
        }
    }
    // Nothing was deleted by them.
    assert_eq!(lines(&transcript(&server, &room).await), ["a: one"]);
    for path in &targets {
        let (status, body) = admin_call(&server, Method::DELETE, path, None).await;
        assert_eq!(status, 200, "the admin deletes {path}: {body}");
    }
    assert_eq!(transcript(&server, &room).await, "");
    drop(server);

    // No admin token configured: deleting is closed to everyone, and the answer says why.
    let server = Server::start_with(ServerOptions::new(&db.url).env("ADMIN_TOKEN", "")).await;
    post_ok(&server, &room, &[("username", "a"), ("msg", "two")]).await;
    let path = format!("/api/chat/rooms/{room}");
    let anonymous = call_with_token(&server, Method::DELETE, &path, None, None).await;
    assert_detail(&anonymous, 403, "ADMIN_TOKEN");
    // The old token is no credential here any more.
    let stale = call_with_token(&server, Method::DELETE, &path, None, Some(ADMIN_TOKEN)).await;
    assert_detail(&stale, 401, "not valid");
    db.drop_db().await;
}

/// 20,000 long-polls of distinct rooms nobody uses: the server's memory stays within tens
/// of MB of where it started (each used to leave a room channel of 4096 slots behind:
/// 4 GB).
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_polls_of_unknown_rooms_leave_memory_flat() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let http = client();
    // Warm up: the first requests grow pools and caches that then stay.
    for i in 0..200 {
        let res = http
            .get(format!("{}/api/chat/warm-{i}?wait=0", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let before = server.rss_bytes();
    let prefix = unique_name("nobody");
    let polls = futures_util::stream::iter(0..20_000).map(|i| {
        let url = format!("{}/api/chat/{prefix}-{i}?wait=0", server.url);
        let http = http.clone();
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let statuses: Vec<_> = polls.buffer_unordered(32).collect().await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "every poll answered 200"
    );
    assert_flat(&server, before, "20,000 polls of unknown rooms");
    db.drop_db().await;
}

/// A socket may open on a room no one has posted in yet (the page of a new room goes live
/// at once), and holds nothing once closed: 20,000 sockets of distinct new rooms, each
/// opened and closed, leave the server's memory within tens of MB of where it started.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_sockets_of_new_rooms_leave_memory_flat() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let ws_url = server.url.replacen("http://", "ws://", 1);
    let open_and_close = |path: String| {
        let url = format!("{ws_url}{path}");
        async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
            ws.close(None).await?;
            // Until the server's close comes back: the socket is over on both sides.
            while let Some(frame) = ws.next().await {
                frame?;
            }
            Ok::<_, tokio_tungstenite::tungstenite::Error>(())
        }
    };
    for i in 0..200 {
        open_and_close(format!("/ws/warm-{i}/u")).await.unwrap();
    }
    let before = server.rss_bytes();
    let prefix = unique_name("new");
    let sockets = futures_util::stream::iter(0..20_000)
        .map(|i| open_and_close(format!("/ws/{prefix}-{i}/u{i}")));
    let outcomes: Vec<_> = sockets.buffer_unordered(32).collect().await;
    let refused: Vec<_> = outcomes.iter().filter(|o| o.is_err()).take(3).collect();
    assert!(refused.is_empty(), "every socket opened: {refused:?}");
    assert_flat(&server, before, "20,000 sockets of new rooms");
    let hub = get_json(&format!("{}/health", server.url)).await;
    assert_eq!(hub["status"], "ok");
    db.drop_db().await;
}

/// The probes are open to anyone (a kubelet carries no token): 20,000 of them answer and
/// leave memory flat; each costs a pooled `SELECT 1` at most.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_probes_leave_memory_flat() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let http = client();
    for _ in 0..200 {
        let res = http
            .get(format!("{}/health/ready", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let before = server.rss_bytes();
    let probes = futures_util::stream::iter(0..20_000).map(|i| {
        let path = if i % 2 == 0 { "ready" } else { "live" };
        let (http, url) = (http.clone(), format!("{}/health/{path}?n={i}", server.url));
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let statuses: Vec<_> = probes.buffer_unordered(32).collect().await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "every probe answered 200"
    );
    assert_flat(&server, before, "20,000 probes");
    db.drop_db().await;
}

/// Odd numbers in queries are a 400 that says what is wrong, never a 500.
#[tokio::test(flavor = "multi_thread")]
async fn odd_numbers_are_refused_with_a_reason() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let room = room("odd");
    post_ok(&server, &room, &[("username", "a"), ("msg", "one")]).await;
    for query in [
        "wait=1e20",
        "wait=-1",
        "wait=NaN",
        "wait=31",
        "after=-1",
        "after=99999999999999999999",
    ] {
        let res = client()
            .get(format!("{}/api/chat/{room}?{query}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{query}");
        let reason = res.text().await.unwrap();
        assert!(
            reason.ends_with('\n') && reason.lines().count() == 1,
            "{query}: {reason:?}"
        );
    }
    for path in [
        format!("/api/chat/rooms/{room}/messages?limit=99999999999"),
        format!("/api/chat/rooms/{room}/messages?after=-5"),
        format!("/api/chat/rooms/{room}/messages?before=1e3"),
        "/api/notifications/u1?limit=0".to_string(),
    ] {
        assert_eq!(
            call(&server, Method::GET, &path, None).await.0,
            400,
            "{path}"
        );
    }
    let ws = tokio_tungstenite::connect_async(format!(
        "{}/ws/{room}/u1?since=-1",
        server.url.replacen("http://", "ws://", 1)
    ))
    .await;
    assert!(ws.is_err(), "a socket with since=-1 is refused");
    db.drop_db().await;
}

/// With `rate_limits`, a flood of posts from one address gets 429s with Retry-After, and
/// every post answered 204 is stored exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_posts_is_told_to_wait_and_nothing_accepted_is_lost() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_RATE_LIMITS", "true")
            .env("ROCKET_POSTS_PER_MINUTE", "60")
            .env("ROCKET_POSTS_BURST", "20"),
    )
    .await;
    let room = room("flood");
    let url = format!("{}/api/chat/{room}", server.url);
    let posts = futures_util::stream::iter(0..300).map(|i| {
        let (http, url) = (client(), url.clone());
        async move {
            let res = http
                .post(url)
                .form(&[("username", "flood"), ("msg", &format!("m{i}"))])
                .send()
                .await
                .unwrap();
            let retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (i, res.status().as_u16(), retry, res.text().await.unwrap())
        }
    });
    let answers: Vec<_> = posts.buffer_unordered(16).collect().await;
    let accepted: Vec<usize> = answers.iter().filter(|a| a.1 == 204).map(|a| a.0).collect();
    let limited: Vec<_> = answers.iter().filter(|a| a.1 == 429).collect();
    assert_eq!(accepted.len() + limited.len(), 300, "only 204 or 429");
    assert!(
        (20..=30).contains(&accepted.len()),
        "the burst passes: {}",
        accepted.len()
    );
    for (_, _, retry, reason) in &limited {
        assert!(
            retry.as_deref().is_some_and(|r| r.parse::<u64>().is_ok()),
            "Retry-After"
        );
        assert!(reason.starts_with("too many messages"), "{reason}");
    }
    let mut stored: Vec<String> = lines(&transcript(&server, &room).await)
        .into_iter()
        .map(|l| l.trim_start_matches("flood: ").to_string())
        .collect();
    stored.sort();
    let mut expected: Vec<String> = accepted.iter().map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(stored, expected, "each accepted post once, nothing else");

    // The JSON door and room creation draw on their own buckets, and say so as JSON.
    let answer = call(
        &server,
        Method::POST,
        &format!("/api/chat/rooms/{room}/messages"),
        Some(json!({"content": "x"})),
    )
    .await;
    assert_detail(&answer, 429, "too many messages");
    db.drop_db().await;
}

fn socket_request(
    server: &Server,
    path: &str,
    origin: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!("{}{path}", server.url.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        req.headers_mut()
            .insert("Origin", HeaderValue::from_str(origin).unwrap());
    }
    req
}

/// A page of another site cannot open a socket here (it would chat in its visitor's name);
/// this site's pages, listed sites and clients that send no Origin can.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_from_another_site_is_refused() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url).env("ROCKET_ALLOWED_ORIGINS", "[\"https://app.example.com\"]"),
    )
    .await;
    let path = "/ws/general/u1";
    let refused = tokio_tungstenite::connect_async(socket_request(
        &server,
        path,
        Some("https://evil.example"),
    ))
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("a foreign origin was not refused: {:?}", other.map(|_| ())),
    }
    let own = server.url.clone(); // http://127.0.0.1:<port>
                                  // Without the session cookie, a page of this host on another port (the ChatFlow app
                                  // on :3000 beside the API) is taken too: the socket is only what it claims.
    for origin in [
        None,
        Some(own.as_str()),
        Some("https://app.example.com"),
        Some("http://127.0.0.1:3000"),
    ] {
        let opened = tokio_tungstenite::connect_async(socket_request(&server, path, origin)).await;
        assert!(opened.is_ok(), "{origin:?} refused: {:?}", opened.err());
    }
    db.drop_db().await;
}

/// A cross-site `fetch(..., {mode: "no-cors"})` can only send text/plain, forms or
/// multipart: the JSON routes take none of them (415), so it creates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn json_routes_refuse_bodies_not_sent_as_json() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let post = |path: &str, content_type: &str, body: &str| {
        client()
            .post(format!("{}{path}", server.url))
            .header("Content-Type", content_type)
            .body(body.to_string())
            .send()
    };
    let res = post("/api/chat/rooms", "text/plain", r#"{"name": "csrf"}"#)
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let res = post(
        "/api/chat/rooms/general/messages",
        "text/plain",
        r#"{"content": "csrf"}"#,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 415);
    let res = post(
        "/api/notifications",
        "application/x-www-form-urlencoded",
        "user_id=u&title=t&body=b",
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 415);
    let res = post("/api/chat/general", "text/plain", "username=a&msg=csrf")
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_detail(
        &call(&server, Method::GET, "/api/chat/rooms/csrf", None).await,
        404,
        "does not exist",
    );
    let (_, history) = call(
        &server,
        Method::GET,
        "/api/chat/rooms/general/messages",
        None,
    )
    .await;
    assert_eq!(history, json!([]));
    db.drop_db().await;
}

/// With `rate_limits`: sockets per address are capped, and a socket that floods frames
/// is told, then closed with 1008.
#[tokio::test(flavor = "multi_thread")]
async fn sockets_per_address_and_frames_per_socket_are_limited() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_RATE_LIMITS", "true")
            .env("ROCKET_SOCKETS_PER_CLIENT", "3")
            .env("ROCKET_FRAMES_PER_MINUTE", "60")
            .env("ROCKET_FRAMES_BURST", "5"),
    )
    .await;
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(open_socket(&server, &format!("/ws/general/u{i}")).await);
    }
    let fourth =
        tokio_tungstenite::connect_async(socket_request(&server, "/ws/general/u9", None)).await;
    match fourth {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 429),
        other => panic!("a fourth socket was let in: {:?}", other.map(|_| ())),
    }
    // One closes: a place is free again.
    drop(open.pop());
    let mut ws = {
        let mut tries = 0;
        loop {
            match tokio_tungstenite::connect_async(socket_request(&server, "/ws/general/u9", None))
                .await
            {
                Ok((ws, _)) => break ws,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("the place was not given back: {err}"),
            }
        }
    };
    // Typing frames, as fast as they go.
    for _ in 0..100 {
        if ws
            .send(Message::text(json!({"type": "typing"}).to_string()))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut told = false;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(Message::Text(text)) if text.contains("too many frames") => told = true,
                Ok(Message::Close(Some(close))) => return Some(u16::from(close.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the flooding socket was not closed");
    assert!(told, "an error frame first");
    assert_eq!(closed, Some(1008));
    db.drop_db().await;
}

/// Behind the shipped nginx, with `trusted_proxies` naming it: a client that writes a new
/// `X-Forwarded-For` on every request is still one address, at each of nginx's locations
/// (sign-ins, sockets, uploads). nginx reaches the server from 127.0.0.1, the client nginx
/// from 127.0.0.2, so the two are told apart as a proxy and its client would be.
#[tokio::test(flavor = "multi_thread")]
async fn behind_the_shipped_nginx_a_forged_forwarded_for_is_still_one_address() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_RATE_LIMITS", "true")
            .env("ROCKET_TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
            .env("ROCKET_SIGN_INS_PER_HOUR", "3")
            .env("ROCKET_SOCKETS_PER_CLIENT", "2")
            .env("ROCKET_UPLOADS_PER_DAY", "2"),
    )
    .await;
    let nginx = Nginx::start(&[&server]).await;
    let me: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let http = reqwest::Client::builder()
        .local_address(me)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let forged = |i: usize| format!("198.51.100.{i}");

    // Registrations from the client, then from an address inside the trusted block (as a
    // client on the host reaches nginx from Docker's gateway): each is one address.
    let gateway: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    for (from, who) in [(me, "client"), (gateway, "gateway")] {
        let http = reqwest::Client::builder()
            .local_address(from)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut registrations = Vec::new();
        for i in 0..6 {
            let res = http
                .post(format!("{}/api/auth/register", nginx.url))
                .header("X-Forwarded-For", forged(i))
                .header("X-Real-IP", forged(i))
                .json(&json!({"username": format!("{who}{i}"), "password": "correct horse"}))
                .send()
                .await
                .unwrap();
            registrations.push(res.status().as_u16());
        }
        assert_eq!(
            registrations,
            [201, 201, 201, 429, 429, 429],
            "registrations from the {who}"
        );
    }

    let mut sockets = Vec::new();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let stream = tokio::net::TcpSocket::new_v4().unwrap();
        stream.bind((me, 0).into()).unwrap();
        let front = nginx.url.trim_start_matches("http://");
        let stream = stream.connect(front.parse().unwrap()).await.unwrap();
        let mut req = format!("ws://{front}/ws/general/rotor{i}")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "X-Forwarded-For",
            HeaderValue::from_str(&forged(i)).unwrap(),
        );
        match tokio_tungstenite::client_async(req, stream).await {
            Ok((ws, _)) => {
                sockets.push(ws);
                statuses.push(101);
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                statuses.push(res.status().as_u16())
            }
            Err(err) => panic!("socket {i}: {err}"),
        }
    }
    assert_eq!(statuses, [101, 101, 429, 429], "sockets");

    let mut uploads = Vec::new();
    for i in 0..4 {
        let part = reqwest::multipart::Part::bytes(b"hello".to_vec())
            .file_name("note.txt")
            .mime_str("text/plain")
            .unwrap();
        let res = http
            .post(format!("{}/api/files/upload", nginx.url))
            .header("X-Forwarded-For", forged(i))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        uploads.push(res.status().as_u16());
    }
    assert_eq!(uploads, [201, 201, 429, 429], "uploads");
    drop(sockets);
    db.drop_db().await;
}

/// A socket's `since=0` in a room of more messages than one replay page gets them all, in
/// order, once each (read page by page, never all at once).
#[tokio::test(flavor = "multi_thread")]
async fn a_long_replay_comes_page_by_page_and_whole() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let room = room("replay");
    let url = format!("{}/api/chat/{room}", server.url);
    let posts = futures_util::stream::iter(0..1_200).map(|i| {
        let (http, url) = (client(), url.clone());
        async move {
            let res = http
                .post(url)
                .form(&[("msg", format!("m{i}"))])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 204);
        }
    });
    posts.buffer_unordered(16).collect::<Vec<()>>().await;
    let mut ws = open_socket(&server, &format!("/ws/{room}/reader?since=0")).await;
    let got = messages_until(&mut ws, 1_200, Duration::from_secs(30)).await;
    let ids: Vec<i64> = got.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 1_200);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in id order, once each"
    );
    db.drop_db().await;
}

/// The shipped nginx's cap per client address: 100 requests in progress, sockets included
/// (a person's tabs, each with its socket, fit); the 101st is 429 from nginx, and a socket
/// that closes makes room for another. On main every one of them opened.
#[tokio::test(flavor = "multi_thread")]
async fn behind_the_shipped_nginx_one_address_holds_100_sockets_and_no_more() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let nginx = Nginx::start(&[&server]).await;
    let front = Server::at(&nginx.url);
    let room = room("tabs");
    let mut tabs = Vec::new();
    for i in 0..100 {
        tabs.push(open_socket(&front, &format!("/ws/{room}/tab{i}")).await);
    }
    let url = format!(
        "{}/ws/{room}/one-too-many",
        nginx.url.replacen("http://", "ws://", 1)
    );
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 429),
        other => panic!(
            "the 101st socket of one address: {:?}",
            other.map(|(_, r)| r)
        ),
    }
    // Another address is counted apart.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other
        .bind(("127.0.0.2".parse::<std::net::IpAddr>().unwrap(), 0).into())
        .unwrap();
    let stream = other
        .connect(nginx.url.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let (_elsewhere, res) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .expect("a socket from another address");
    assert_eq!(res.status(), 101);
    // One tab closed, one more opens (the count is of requests in progress, not a rate).
    tabs.pop().unwrap().close(None).await.unwrap();
    let reopened = eventually(Duration::from_secs(5), || {
        let url = url.clone();
        async move { tokio_tungstenite::connect_async(&url).await.is_ok() }
    })
    .await;
    assert!(reopened, "a socket in the place of a closed one");
    db.drop_db().await;
}

/// nginx's header deadline, as deploy/nginx.conf sets it (`client_header_timeout 10s`).
const HEADER_DEADLINE: Duration = Duration::from_secs(10);

/// Slowloris through the shipped nginx: 3,000 connections from one address, each a partial
/// request header followed by one more header line every 2 s. nginx resets each of them at
/// its header deadline however it dribbles (nginx's default, 60 s, kept them all), nothing
/// of them reaches the server, and meanwhile `/health` from another address answers 200
/// within 2 s every time and the server's memory stays where it was.
#[tokio::test(flavor = "multi_thread")]
async fn behind_the_shipped_nginx_slow_headers_are_cut_off_and_health_answers() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let nginx = Nginx::start(&[&server]).await;
    let attacker: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    slow_headers_are_cut_off(&server, &nginx.url, &[attacker]).await;
    db.drop_db().await;
}

/// The same slowloris straight at the server, with no proxy in front (`cargo run`, a
/// container's published port): 3,000 connections from 12 addresses, each under the
/// default cap per address. The front door cuts each at its header deadline and none
/// reaches Rocket; on the main before it every one stayed open, and past the file limit
/// `/health` stopped answering.
#[tokio::test(flavor = "multi_thread")]
async fn straight_at_the_server_slow_headers_are_cut_off_and_health_answers() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url).env("ROCKET_CONNECTIONS_PER_ADDRESS", "256"),
    )
    .await;
    let attackers: Vec<std::net::IpAddr> = (10..22)
        .map(|i| format!("127.0.0.{i}").parse().unwrap())
        .collect();
    let url = server.url.clone();
    slow_headers_are_cut_off(&server, &url, &attackers).await;
    let metrics = client()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ferrochat_connections_cut_total{reason=\"header_timeout\"}"),
        "the cuts are counted"
    );
    db.drop_db().await;
}

/// 3,000 slow headers at `front` (spread over `attackers`), timed from each connect: each
/// is cut at the header deadline and none before it, none is answered, `/health` from
/// another address answers 200 within 2 s all the while, and `server` does not grow.
async fn slow_headers_are_cut_off(server: &Server, front: &str, attackers: &[std::net::IpAddr]) {
    let slow = slow_connections_allowed(3000);
    let front_addr: std::net::SocketAddr = front.trim_start_matches("http://").parse().unwrap();
    let before = server.rss_bytes();

    // One at a time, so none waits in a listen backlog: each is timed from its connect.
    let mut clients = Vec::with_capacity(slow);
    for i in 0..slow {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind((attackers[i % attackers.len()], 0).into())
            .unwrap();
        let stream = socket
            .connect(front_addr)
            .await
            .expect("the connection is taken");
        clients.push(tokio::spawn(dribble(stream)));
    }

    // Meanwhile, past the deadline and the margin, a fresh connection asks for /health
    // every half second.
    let health = format!("{front}/health");
    let probes = tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut answers = Vec::new();
        loop {
            let res = http.get(&health).send().await;
            answers.push(res.map(|r| r.status().as_u16()).map_err(|e| e.to_string()));
            tokio::time::sleep(Duration::from_millis(500)).await;
            if answers.len() as u64 > HEADER_DEADLINE.as_secs() * 2 + 12 {
                return answers;
            }
        }
    });
    // The server's memory while every slow connection is open.
    tokio::time::sleep(HEADER_DEADLINE / 2).await;
    let grown = server.rss_bytes().saturating_sub(before);
    let mut ends = Vec::with_capacity(slow);
    for client in clients {
        ends.push(client.await.unwrap());
    }
    let answers = probes.await.unwrap();

    let still_open = ends.iter().filter(|e| **e == SlowEnd::StillOpen).count();
    assert_eq!(
        still_open,
        0,
        "{still_open} of {slow} slow connections still open {:?} after they connected",
        HEADER_DEADLINE + Duration::from_secs(5)
    );
    let answered: Vec<_> = ends
        .iter()
        .filter(|e| matches!(e, SlowEnd::Answered(_)))
        .collect();
    assert!(
        answered.is_empty(),
        "a header never finished was answered: {:?}",
        &answered[..5.min(answered.len())]
    );
    // Cut at the deadline, not before: none was turned away for want of room.
    let early: Vec<_> = ends
        .iter()
        .filter_map(|e| match e {
            SlowEnd::Reset(after) if *after < HEADER_DEADLINE - Duration::from_secs(1) => {
                Some(after)
            }
            _ => None,
        })
        .collect();
    assert!(
        early.is_empty(),
        "closed before the deadline: {:?}",
        &early[..5.min(early.len())]
    );
    let failed: Vec<_> = answers.iter().filter(|a| **a != Ok(200)).collect();
    assert!(
        failed.is_empty(),
        "/health with {slow} slow connections open: {failed:?} of {} probes",
        answers.len()
    );
    assert!(
        grown < 16 << 20,
        "the server grew {} MB while {slow} slow connections were open",
        grown >> 20
    );
}

/// A connection whose next request header dribbles in, a line a second and never ended:
/// it is cut at the front door's 3 s deadline, not at once, and never answered.
async fn assert_next_header_cut(stream: &mut tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let opened = std::time::Instant::now();
    stream.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let end = loop {
        if stream.write_all(b"X-Slow: still typing\r\n").await.is_err() {
            break opened.elapsed();
        }
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break opened.elapsed(),
            Ok(Ok(n)) => panic!("answered: {}", String::from_utf8_lossy(&buf[..n])),
            Err(_) if opened.elapsed() > Duration::from_secs(10) => {
                panic!("a dribbled header is still open after 10 s")
            }
            Err(_) => {}
        }
    };
    assert!(
        end >= Duration::from_secs(2),
        "cut at the 3 s deadline, not at once: {end:?}"
    );
}

/// The front door's caps, straight at the server: past `connections_per_address` an
/// address is told 429 while others are still taken, past `max_connections` everyone is
/// told 503, a connection that closes makes room again, and a kept-alive connection whose
/// second header dribbles is cut at the deadline like a new one. Rocket still tells the
/// clients apart by address through it (a sign-in limit per address). On the main before,
/// every connection was taken and the dribbling one stayed open.
#[tokio::test(flavor = "multi_thread")]
async fn the_front_door_caps_connections_in_all_and_per_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_CONNECTIONS_PER_ADDRESS", "3")
            .env("ROCKET_MAX_CONNECTIONS", "5")
            .env("ROCKET_HEADER_TIMEOUT_SECS", "3")
            .env("ROCKET_RATE_LIMITS", "true")
            .env("ROCKET_SIGN_INS_PER_HOUR", "1"),
    )
    .await;
    let front: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let from = |last: u8| -> std::net::IpAddr { format!("127.0.0.{last}").parse().unwrap() };
    let connect = |ip: std::net::IpAddr| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((ip, 0).into()).unwrap();
        socket.connect(front).await.unwrap()
    };
    // The first line a connection is answered with, if it is answered at once.
    async fn told(stream: &mut tokio::net::TcpStream) -> String {
        let mut buf = vec![0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            _ => String::new(),
        }
    }

    // Rocket sees each address as its own: one sign-in try per hour each.
    let register = |ip: std::net::IpAddr, name: &'static str| {
        let url = server.url.clone();
        async move {
            reqwest::Client::builder()
                .local_address(ip)
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
                .post(format!("{url}/api/auth/register"))
                .json(&json!({"username": name, "password": "correct horse"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(register(from(2), "first").await, 201);
    assert_eq!(register(from(2), "second").await, 429);
    assert_eq!(
        register(from(3), "third").await,
        201,
        "another address, its own limit"
    );

    // A connection the door admitted: one it does not answer at once (a refusal is
    // written as it is accepted). The sign-ins' connections are closed by now, but the
    // door lets each go only when its relay ends, which a busy machine may put off: until
    // then a new one can be refused, so it is tried again. Held ones are cut at the
    // header deadline (3 s), so the probe is short.
    let admitted = |ip: std::net::IpAddr| async move {
        for _ in 0..50 {
            let mut stream = connect(ip).await;
            let mut buf = [0u8; 64];
            let answered =
                tokio::time::timeout(Duration::from_millis(150), stream.read(&mut buf)).await;
            if answered.is_err() {
                return stream;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the door never admitted a connection from {ip}");
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(admitted(from(2)).await);
    }
    let mut fourth = connect(from(2)).await;
    let line = told(&mut fourth).await;
    assert!(
        line.starts_with("HTTP/1.1 429"),
        "the fourth from one address: {line:?}"
    );
    held.push(admitted(from(3)).await);
    held.push(admitted(from(4)).await);
    let mut sixth = connect(from(5)).await;
    let line = told(&mut sixth).await;
    assert!(
        line.starts_with("HTTP/1.1 503"),
        "the sixth in all: {line:?}"
    );

    // One closes: its place is free again, for a request that is answered.
    drop(held.remove(0));
    let mut again = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut stream = connect(from(2)).await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: ferrochat\r\n\r\n")
            .await
            .unwrap();
        let line = told(&mut stream).await;
        if line.starts_with("HTTP/1.1 200") {
            again = Some(stream);
            break;
        }
    }
    let mut kept = again.expect("a closed connection makes room for another");

    // That connection, kept alive, starts a second header and never ends it: cut at the
    // deadline, as a new connection's would be.
    assert_next_header_cut(&mut kept).await;

    // An upgrade Rocket does not grant (a plain route answers 200, not 101) leaves the
    // connection an HTTP one: its next header is held to the deadline too.
    drop(held);
    let mut asked = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut stream = connect(from(6)).await;
        stream
            .write_all(
                b"GET /health HTTP/1.1\r\nHost: ferrochat\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\n\r\n",
            )
            .await
            .unwrap();
        if told(&mut stream).await.starts_with("HTTP/1.1 200") {
            asked = Some(stream);
            break;
        }
    }
    let mut asked = asked.expect("an upgrade asked of /health is answered 200");
    assert_next_header_cut(&mut asked).await;

    // A body sent chunked is followed chunk by chunk: the post is stored, and the next
    // header on that connection is held to the deadline too.
    drop(asked);
    let mut chunked = None;
    let room = room("chunked");
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut stream = connect(from(7)).await;
        let request = format!(
            "POST /api/chat/{room} HTTP/1.1\r\nHost: ferrochat\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n\
             a\r\nusername=c\r\na\r\n&msg=chunk\r\n0\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let line = told(&mut stream).await;
        if line.starts_with("HTTP/1.1 204") {
            chunked = Some(stream);
            break;
        }
        assert!(!line.starts_with("HTTP/1.1 4"), "{line}");
    }
    let mut chunked = chunked.expect("a chunked post through the front door");
    let transcript = client()
        .get(format!("{}/api/chat/{room}", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(transcript.ends_with("c: chunk"), "{transcript:?}");
    assert_next_header_cut(&mut chunked).await;
    db.drop_db().await;
}

#[derive(Debug, PartialEq)]
enum SlowEnd {
    /// nginx closed or reset the connection this long after it was opened.
    Reset(Duration),
    /// Bytes came back: the request was answered.
    Answered(String),
    /// Open past the deadline and a margin for a loaded machine.
    StillOpen,
}

/// A request header that never ends: its first line and Host, then one line every 2 s.
async fn dribble(mut stream: tokio::net::TcpStream) -> SlowEnd {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let opened = std::time::Instant::now();
    let mut line = 0;
    let mut next: Vec<u8> = b"GET /health HTTP/1.1\r\nHost: ferrochat\r\n".to_vec();
    let mut buf = [0u8; 512];
    while opened.elapsed() < HEADER_DEADLINE + Duration::from_secs(5) {
        if stream.write_all(&next).await.is_err() {
            return SlowEnd::Reset(opened.elapsed());
        }
        line += 1;
        next = format!("X-Slow-{line}: still typing\r\n").into_bytes();
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return SlowEnd::Reset(opened.elapsed()),
            Ok(Ok(n)) => return SlowEnd::Answered(String::from_utf8_lossy(&buf[..n]).into()),
        }
    }
    SlowEnd::StillOpen
}

/// `wanted` slow connections if this process may open them and more besides (the soft
/// limit on open files raised to the hard one, as far as it goes), else as many as it may.
fn slow_connections_allowed(wanted: usize) -> usize {
    // Room for the harness: the server's and nginx's pipes, the probes, the runtime.
    const SPARE: u64 = 256;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the one struct given, and touch
        // nothing else of this process's memory.
        let soft = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            }
            limit.rlim_cur
        };
        let allowed = soft.saturating_sub(SPARE) as usize;
        if allowed < wanted {
            eprintln!("open files limited to {soft}: {allowed} slow connections, not {wanted}");
            return allowed;
        }
    }
    wanted
}

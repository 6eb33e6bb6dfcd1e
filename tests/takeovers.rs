//! Rooms and identities that cannot be taken over: the reproductions of the second trust
//! review (issue 18), each run as its attacker ran it, over real HTTP and sockets. Each
//! failed on the code before its fix.

mod common;

use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Reads a socket until the server closes it (or `within` passes): the JSON frames it
/// sent, and its close code and reason.
async fn until_closed(ws: &mut Socket, within: Duration) -> (Vec<Value>, Option<(u16, String)>) {
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, ws.next()).await {
        match frame {
            Ok(Message::Text(text)) => frames.push(serde_json::from_str(&text).unwrap()),
            Ok(Message::Close(close)) => {
                let close = close.map(|c| (u16::from(c.code), c.reason.to_string()));
                return (frames, close);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (frames, None)
}

fn contents(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .filter_map(|f| f["content"].as_str())
        .collect()
}

/// Item 1: eve computes the direct room id of alice and bob (user ids are public) and
/// makes it first, by every door that creates rooms; then alice asks for her direct room.
#[tokio::test(flavor = "multi_thread")]
async fn a_direct_conversation_cannot_be_made_before_it_exists() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let (alice, alice_token) = sign_up(&server, "alice").await;
    let (bob, _) = sign_up(&server, "bob").await;
    let (_, eve_token) = sign_up(&server, "eve").await;
    let dm = ferrochat::chat::rooms::direct_room_id(&alice, &bob);

    for id in [dm.clone(), dm.to_uppercase()] {
        let made = call_with_token(
            &server,
            Method::POST,
            "/api/chat/rooms",
            Some(json!({"id": id})),
            Some(&eve_token),
        )
        .await;
        assert_detail(&made, 400, "direct conversations");
    }
    let (status, _) = post_form(&server, &dm, &[("username", "eve"), ("msg", "mine")]).await;
    assert_eq!(
        status, 404,
        "a legacy post does not create a direct room's id"
    );
    assert_eq!(
        socket_status(&server, &format!("/ws/{dm}/eve")).await,
        404,
        "nor is a socket open on it"
    );

    let (status, room) = call_with_token(
        &server,
        Method::POST,
        &format!("/api/chat/direct/{bob}"),
        None,
        Some(&alice_token),
    )
    .await;
    assert_eq!(status, 201, "{room}");
    assert_eq!(
        (room["id"].as_str(), room["visibility"].as_str()),
        (Some(dm.as_str()), Some("direct"))
    );
    let (status, _) = call_with_token(
        &server,
        Method::GET,
        &format!("/api/chat/rooms/{dm}/messages"),
        None,
        Some(&eve_token),
    )
    .await;
    assert_eq!(status, 404, "eve sees nothing of it");

    // A database from before ids were reserved may hold a public room under a pair's id:
    // it is never handed out as their direct room.
    let (carol, carol_token) = sign_up(&server, "carol").await;
    let taken = ferrochat::chat::rooms::direct_room_id(&carol, &bob);
    use sea_orm::ConnectionTrait;
    db.connect()
        .await
        .execute_unprepared(&format!(
            "INSERT INTO room (id, name, created_at, owner_id, visibility) \
             VALUES ('{taken}', '{taken}', '2026-01-01 00:00:00', 'eve', 'public')"
        ))
        .await
        .unwrap();
    let answer = call_with_token(
        &server,
        Method::POST,
        &format!("/api/chat/direct/{bob}"),
        None,
        Some(&carol_token),
    )
    .await;
    assert_detail(&answer, 409, "not a direct conversation");
    drop(server);
    db.drop_db().await;
}

/// Item 2: eve's socket (and long-poll) waits on a name nobody has used; alice then makes
/// the room private on the other replica and writes in it. Variant: a public room with
/// eve's socket in it is deleted and made again, private.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_opened_before_a_room_is_private_is_let_go() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let servers = replicas(&db, &redis, 2).await;
    let (a, b) = (&servers[0], &servers[1]);
    let (_, alice_token) = sign_up(a, "alice").await;

    let name = room("club");
    let mut eve = open_socket(b, &format!("/ws/{name}/eve")).await;
    let url = format!("{}/api/chat/{name}", b.url);
    let etag = client().get(&url).send().await.unwrap().headers()["etag"].clone();
    let held = tokio::spawn(async move {
        let held = client()
            .get(format!("{url}?wait=20"))
            .header("If-None-Match", etag);
        held.send().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = call_with_token(
        a,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"id": name, "private": true})),
        Some(&alice_token),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call_with_token(
        a,
        Method::POST,
        &format!("/api/chat/rooms/{name}/messages"),
        Some(json!({"content": "just us"})),
        Some(&alice_token),
    )
    .await;
    assert_eq!(status, 201);
    let (frames, close) = until_closed(&mut eve, Duration::from_secs(10)).await;
    assert!(contents(&frames).is_empty(), "eve read {frames:?}");
    assert_eq!(close.map(|c| c.0), Some(4003), "eve's socket is let go");
    // The held poll is answered with what a name nobody posted in has: nothing new.
    let held = held.await.unwrap();
    assert_eq!(held.status().as_u16(), 304, "the held poll learns nothing");
    assert!(!held.text().await.unwrap().contains("just us"));
    // Nothing remembers the name as open: at once, on both replicas, every door is shut
    // (the Flask original's poll reads it as a name with no messages).
    for server in [a, b] {
        assert_eq!(socket_status(server, &format!("/ws/{name}/eve")).await, 404);
        let res = client()
            .get(format!("{}/api/chat/{name}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(res.headers()["etag"], "\"0-0\"");
        assert_eq!(res.text().await.unwrap(), "");
    }

    // A public room, deleted, then made again private.
    let public = room("lobby");
    let (status, _) = call_with_token(
        a,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"id": public})),
        Some(&alice_token),
    )
    .await;
    assert_eq!(status, 201);
    let mut eve = open_socket(b, &format!("/ws/{public}/eve")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = call_with_token(
        a,
        Method::DELETE,
        &format!("/api/chat/rooms/{public}"),
        None,
        Some(&alice_token),
    )
    .await;
    assert_eq!(status, 200);
    let (frames, close) = until_closed(&mut eve, Duration::from_secs(10)).await;
    assert!(
        frames.iter().any(|f| f["type"] == "room_deleted"),
        "told first: {frames:?}"
    );
    assert_eq!(close.map(|c| c.0), Some(4004), "then let go");
    drop(servers);
    db.drop_db().await;
}

/// Item 3: in open mode, without bob's token, nobody may act as bob's account id.
#[tokio::test(flavor = "multi_thread")]
async fn an_accounts_id_is_not_lent_in_open_mode() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let (bob, bob_token) = sign_up(&server, "bob").await;
    let (status, _) = admin_call(
        &server,
        Method::POST,
        "/api/notifications",
        Some(json!({"user_id": bob, "title": "secret", "body": "private words"})),
    )
    .await;
    assert_eq!(status, 201);

    let refused = [
        (Method::GET, format!("/api/notifications/{bob}"), None),
        (
            Method::GET,
            format!("/api/notifications/{bob}/unread-count"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/notifications/{bob}/read-all"),
            None,
        ),
        (
            Method::POST,
            format!("/api/presence/{bob}/heartbeat?username=eve"),
            None,
        ),
        (Method::DELETE, format!("/api/presence/{bob}"), None),
        (
            Method::POST,
            "/api/chat/rooms/general/messages".to_string(),
            Some(json!({"content": "I am bob", "user_id": bob})),
        ),
    ];
    for (method, path, body) in &refused {
        let answer = call(&server, method.clone(), path, body.clone()).await;
        assert_detail(&answer, 401, "sign in");
    }
    assert_eq!(
        socket_status(&server, &format!("/ws/general/{bob}")).await,
        401
    );
    let upload = client()
        .post(format!("{}/api/files/upload?uploaded_by={bob}", server.url))
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status().as_u16(), 401);
    // Nothing was taken: bob's notification is unread, nobody posted as him.
    let (status, count) = call_with_token(
        &server,
        Method::GET,
        &format!("/api/notifications/{bob}/unread-count"),
        None,
        Some(&bob_token),
    )
    .await;
    assert_eq!((status, count["unread_count"].as_u64()), (200, Some(1)));
    let (_, history) = call(
        &server,
        Method::GET,
        "/api/chat/rooms/general/messages",
        None,
    )
    .await;
    assert!(!history.to_string().contains("I am bob"));
    // An id nobody registered is still anyone's to claim, the seeds' way.
    let (status, _) = call(
        &server,
        Method::GET,
        "/api/notifications/made-up-7/unread-count",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(socket_status(&server, "/ws/general/made-up-7").await, 101);
    drop(server);
    db.drop_db().await;
}

/// Item 6: the files of a deleted private room go with it, rows and bytes; a file whose
/// room has no row is hidden, not open.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_rooms_files_go_with_it() {
    let db = TestDb::create(Backend::Sqlite).await;
    let files_dir = std::env::temp_dir().join(unique_name("ferrochat-files"));
    let server = Server::start_with(
        ServerOptions::new(&db.url).env("ROCKET_FILES_DIR", files_dir.to_str().unwrap()),
    )
    .await;
    let (_, alice_token) = sign_up(&server, "alice").await;
    let secret = room("secret");
    let (status, _) = call_with_token(
        &server,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"id": secret, "private": true})),
        Some(&alice_token),
    )
    .await;
    assert_eq!(status, 201);
    let uploaded: Value = client()
        .post(format!("{}/api/files/upload?room_id={secret}", server.url))
        .bearer_auth(&alice_token)
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"plans".to_vec()).file_name("plans.txt"),
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = uploaded["id"].as_str().expect("uploaded").to_string();
    let stored = || std::fs::read_dir(&files_dir).map_or(0, |d| d.count());
    assert_eq!(stored(), 1);

    let (status, deleted) = call_with_token(
        &server,
        Method::DELETE,
        &format!("/api/chat/rooms/{secret}"),
        None,
        Some(&alice_token),
    )
    .await;
    assert_eq!((status, deleted["files_deleted"].as_u64()), (200, Some(1)));
    assert_eq!(stored(), 0, "its bytes went");
    for path in [
        format!("/api/files/{id}"),
        format!("/api/files/{id}/download"),
    ] {
        assert_eq!(
            call(&server, Method::GET, &path, None).await.0,
            404,
            "{path}"
        );
    }
    let (_, listed) = call(&server, Method::GET, "/api/files", None).await;
    assert!(!listed.to_string().contains(&id));

    // A file row left over from a room that went (a database from before): hidden.
    use sea_orm::ConnectionTrait;
    db.connect()
        .await
        .execute_unprepared(&format!(
            "INSERT INTO stored_file (id, original_name, content_type, size_bytes, uploaded_by, \
             room_id, object_key, created_at) VALUES ('left-1', 'old.txt', 'text/plain', 3, \
             'alice', '{secret}', 'left-1', '2026-01-01 00:00:00')"
        ))
        .await
        .unwrap();
    assert_eq!(
        call(&server, Method::GET, "/api/files/left-1", None)
            .await
            .0,
        404
    );
    let (_, listed) = call(&server, Method::GET, "/api/files", None).await;
    assert!(!listed.to_string().contains("left-1"), "{listed}");
    let (_, listed) = call(
        &server,
        Method::GET,
        &format!("/api/files?room_id={secret}"),
        None,
    )
    .await;
    assert!(!listed.to_string().contains("left-1"), "{listed}");
    drop(server);
    db.drop_db().await;
}

/// Item 15: a file message's link is a download of this server or an `https:` URL, at
/// every door that takes one.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_link_is_never_a_script() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let name = "general";
    let path = format!("/api/chat/rooms/{name}/messages");
    for url in [
        "javascript:alert(document.cookie)",
        "data:text/html,<b>x</b>",
        "/api/auth/logout",
    ] {
        let answer = call(
            &server,
            Method::POST,
            &path,
            Some(json!({"content": "f", "message_type": "file", "file_url": url})),
        )
        .await;
        assert_detail(&answer, 400, "file_url");
    }
    let mut ws = open_socket(&server, &format!("/ws/{name}/u-1")).await;
    send(
        &mut ws,
        json!({"type": "message", "content": "f", "message_type": "file", "file_url": "javascript:alert(1)"}),
    )
    .await;
    let error = next_of(&mut ws, &["error", "message"]).await;
    assert_eq!(error["type"], "error", "{error}");
    let (status, _) = call(
        &server,
        Method::POST,
        &path,
        Some(json!({"content": "f", "message_type": "file", "file_url": "/api/files/1/download"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, history) = call(&server, Method::GET, &path, None).await;
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    drop(server);
    db.drop_db().await;
}

/// Item 10: a private room a caller may not see answers as a room that does not exist,
/// whatever the body.
#[tokio::test(flavor = "multi_thread")]
async fn a_hidden_room_answers_as_a_missing_one() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let (_, olga) = sign_up(&server, "olga").await;
    let (_, eve) = sign_up(&server, "eve").await;
    let hidden = room("hidden");
    let (status, _) = call_with_token(
        &server,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"id": hidden, "private": true})),
        Some(&olga),
    )
    .await;
    assert_eq!(status, 201);
    let missing = room("missing");
    for body in [json!({}), json!({"content": ""}), json!({"content": "hi"})] {
        let mut answers = Vec::new();
        for id in [&hidden, &missing] {
            let path = format!("/api/chat/rooms/{id}/messages");
            let (status, answer) =
                call_with_token(&server, Method::POST, &path, Some(body.clone()), Some(&eve)).await;
            let detail = answer["detail"]
                .as_str()
                .unwrap_or("")
                .replace(id.as_str(), "<id>");
            answers.push((status, detail));
        }
        assert_eq!(answers[0].0, 404, "{body}: {answers:?}");
        assert_eq!(answers[0], answers[1], "{body}: hidden and missing alike");
    }

    // The Flask original's poll answers any name with its lines (none for a new name): a
    // hidden room reads exactly as a name nobody has posted in, as text and as JSON, its
    // ETag and last id too. On the main before, it was 404 against 200.
    let (status, _) = call_with_token(
        &server,
        Method::POST,
        &format!("/api/chat/rooms/{hidden}/messages"),
        Some(json!({"content": "olga's secret"})),
        Some(&olga),
    )
    .await;
    assert_eq!(status, 201);
    let read = |id: String, query: &'static str| {
        let url = format!("{}/api/chat/{id}{query}", server.url);
        let eve = eve.clone();
        async move {
            let res = client().get(url).bearer_auth(eve).send().await.unwrap();
            let header = |name: &str| {
                res.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
            };
            let seen = (
                res.status().as_u16(),
                header("etag"),
                header("x-last-message-id"),
            );
            let body = res.text().await.unwrap().replace(id.as_str(), "<id>");
            (seen, body)
        }
    };
    for query in ["", "?after=0", "?format=json"] {
        let hidden_answer = read(hidden.clone(), query).await;
        let missing_answer = read(missing.clone(), query).await;
        assert_eq!(hidden_answer.0 .0, 200, "{query}");
        assert!(!hidden_answer.1.contains("secret"), "{query}");
        assert_eq!(
            hidden_answer, missing_answer,
            "{query}: hidden and missing alike"
        );
    }
    // A long-poll on it is not woken by the room's messages: it waits its second out, as
    // on a name where nothing happens, and learns nothing.
    let started = std::time::Instant::now();
    let poll = tokio::spawn(read(hidden.clone(), "?after=0&wait=1"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = call_with_token(
        &server,
        Method::POST,
        &format!("/api/chat/rooms/{hidden}/messages"),
        Some(json!({"content": "another secret"})),
        Some(&olga),
    )
    .await;
    assert_eq!(status, 201);
    let (seen, body) = poll.await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "woken early"
    );
    assert_eq!((seen.0, body.as_str()), (200, ""));
    drop(server);
    db.drop_db().await;
}

/// Item 16: signing out revokes the account's tokens everywhere, sockets included: one
/// open on the other replica closes with 4001 (it had been kept until its token expired).
#[tokio::test(flavor = "multi_thread")]
async fn signing_out_closes_the_accounts_sockets_on_every_replica() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let options = ServerOptions::new(&db.url)
            .env("REDIS_URL", &redis.url())
            .env("TOKEN_SECRET", "one secret for both replicas, 32+ bytes");
        servers.push(Server::start_with(options).await);
    }
    for server in &servers {
        let up = eventually(Duration::from_secs(10), || async {
            hub_state(server).await == "up"
        })
        .await;
        assert!(up, "hub connected to Redis");
    }
    let (a, b) = (&servers[0], &servers[1]);
    let (ann, token) = sign_up(a, "ann").await;
    let mut socket = open_socket(b, &format!("/ws/general/{ann}?token={token}")).await;
    let mut guest = open_socket(b, "/ws/general/guest-1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) =
        call_with_token(a, Method::POST, "/api/auth/logout", None, Some(&token)).await;
    assert_eq!(status, 200);
    let (_, close) = until_closed(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(
        close.map(|c| c.0),
        Some(4001),
        "ann's socket on the other replica"
    );
    // Nobody else's socket is touched.
    post_ok(a, "general", &[("username", "g"), ("msg", "still here")]).await;
    let got = messages_until(&mut guest, 1, Duration::from_secs(10)).await;
    assert_eq!(contents(&got), ["still here"]);
    drop(servers);
    db.drop_db().await;
}

/// Item 2, when no event is heard: a room made private behind the server's back (another
/// program on the database, or a change published while Redis was away) still lets its
/// open sockets go, at their next ping once the rule's few seconds are up.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_nobody_announced_lets_sockets_go_at_their_next_ping() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_WS_PING_SECS", "1")).await;
    let (_, olga) = sign_up(&server, "olga").await;
    let name = room("quiet");
    let (status, _) = call_with_token(
        &server,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"id": name})),
        Some(&olga),
    )
    .await;
    assert_eq!(status, 201);
    let mut eve = open_socket(&server, &format!("/ws/{name}/eve")).await;
    use sea_orm::ConnectionTrait;
    db.connect()
        .await
        .execute_unprepared(&format!(
            "UPDATE room SET visibility = 'private' WHERE id = '{name}'"
        ))
        .await
        .unwrap();
    let (_, close) = until_closed(&mut eve, Duration::from_secs(15)).await;
    assert_eq!(close.map(|c| c.0), Some(4003));
    drop(server);
    db.drop_db().await;
}

/// Item 15, for what was stored before: a `javascript:` link already in the table is sent
/// to nobody.
#[tokio::test(flavor = "multi_thread")]
async fn a_stored_script_link_is_sent_as_none() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    post_ok(&server, "general", &[("username", "a"), ("msg", "first")]).await;
    use sea_orm::ConnectionTrait;
    db.connect()
        .await
        .execute_unprepared(
            "UPDATE message SET message_type = 'file', file_url = 'javascript:alert(1)'",
        )
        .await
        .unwrap();
    let (_, history) = call(
        &server,
        Method::GET,
        "/api/chat/rooms/general/messages",
        None,
    )
    .await;
    assert_eq!(history[0]["file_url"], Value::Null, "{history}");
    let mut ws = open_socket(&server, "/ws/general/u-1?since=0").await;
    let replayed = messages_until(&mut ws, 1, Duration::from_secs(10)).await;
    assert_eq!(replayed[0]["file_url"], Value::Null, "{replayed:?}");
    drop(server);
    db.drop_db().await;
}

/// Item 16's other side: a page whose session cookie was revoked elsewhere (signed out on
/// another device) goes on as a guest in open mode, and the cookie goes; its polling is
/// never stopped by a 401. A bearer token that no longer holds is still 401.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_cookie_leaves_an_open_mode_page_a_guest() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let (_, token) = sign_up(&server, "ann").await;
    let (status, _) = call_with_token(
        &server,
        Method::POST,
        "/api/auth/logout",
        None,
        Some(&token),
    )
    .await;
    assert_eq!(status, 200);
    let poll = client()
        .get(format!("{}/api/chat/general", server.url))
        .header("Cookie", format!("ferrochat_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status().as_u16(), 200);
    let dropped = poll
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap_or("").starts_with("ferrochat_session=;"));
    assert!(dropped, "the stale cookie is removed");
    let (status, _) =
        call_with_token(&server, Method::GET, "/api/chat/rooms", None, Some(&token)).await;
    assert_eq!(status, 401, "a bearer token is told");
    drop(server);
    db.drop_db().await;
}

/// A registered account is mentionable by its name from its registration, never seen
/// online; and in open mode, 60 guests heartbeating under that name neither receive its
/// mentions nor push it out of the count of users a mention reaches (on the main before,
/// the 50 most recently seen squatters were told and the account was not).
#[tokio::test(flavor = "multi_thread")]
async fn an_accounts_name_is_its_own_in_mentions() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let name = unique_name("dana");
    let (_, dana) = sign_up(&server, &name).await;
    let room = room("mention");
    post_ok(
        &server,
        &room,
        &[("username", "ann"), ("msg", &format!("@{name} first"))],
    )
    .await;
    let unread = |token: String| {
        let server = &server;
        async move {
            let (_, me) =
                call_with_token(server, Method::GET, "/api/auth/me", None, Some(&token)).await;
            let id = me["user_id"].as_str().unwrap().to_string();
            let path = format!("/api/notifications/{id}/unread-count");
            call_with_token(server, Method::GET, &path, None, Some(&token))
                .await
                .1["unread_count"]
                .as_u64()
                .unwrap()
        }
    };
    let told = eventually(Duration::from_secs(5), || {
        let dana = dana.clone();
        let unread = &unread;
        async move { unread(dana).await == 1 }
    })
    .await;
    assert!(
        told,
        "an account never seen online is mentioned by its name"
    );

    for i in 0..60 {
        let path = format!("/api/presence/squat-{i}/heartbeat?username={name}");
        assert_eq!(call(&server, Method::POST, &path, None).await.0, 200);
    }
    post_ok(
        &server,
        &room,
        &[("username", "ann"), ("msg", &format!("@{name} again"))],
    )
    .await;
    let told = eventually(Duration::from_secs(5), || {
        let dana = dana.clone();
        let unread = &unread;
        async move { unread(dana).await == 2 }
    })
    .await;
    assert!(
        told,
        "the account is still told, with 60 guests under its name"
    );
    for i in [0, 30, 59] {
        let path = format!("/api/notifications/squat-{i}");
        assert_eq!(
            call(&server, Method::GET, &path, None).await.1,
            json!([]),
            "squat-{i}"
        );
    }
    drop(server);
    db.drop_db().await;
}

/// Item 16, when no event is heard: an account signed out behind the server's back (the
/// `TokensRevoked` publish lost while Redis was away, here a generation bumped in the
/// database) still has its open sockets closed with 4001, at their next ping once the
/// account's few seconds are up. On the main before, the socket stayed open until its
/// token expired.
#[tokio::test(flavor = "multi_thread")]
async fn a_sign_out_nobody_announced_closes_sockets_at_their_next_ping() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_WS_PING_SECS", "1")).await;
    let (olga_id, olga) = sign_up(&server, "olga").await;
    let name = room("quiet");
    let mut socket = open_socket(&server, &format!("/ws/{name}/{olga_id}?token={olga}")).await;
    use sea_orm::ConnectionTrait;
    db.connect()
        .await
        .execute_unprepared(&format!(
            "UPDATE account SET token_generation = token_generation + 1 WHERE user_id = '{olga_id}'"
        ))
        .await
        .unwrap();
    let (_, close) = until_closed(&mut socket, Duration::from_secs(15)).await;
    assert_eq!(close.map(|c| c.0), Some(4001));
    drop(server);
    db.drop_db().await;
}

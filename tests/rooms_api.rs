//! The room API (`/api/chat/rooms...`, `/api/chat/messages/...`) on
//! every backend: what the ChatFlow app reads, good and bad input, and the one message
//! path (a message posted here reaches sockets and the legacy transcript).

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

on_every_backend!(
    rooms_are_listed_created_and_deleted,
    history_pages_and_searches,
    messages_posted_as_json_reach_every_reader,
    bad_input_gets_a_detail
);

async fn rooms_are_listed_created_and_deleted(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;

    let (status, rooms) = call(&server, Method::GET, "/api/chat/rooms", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for id in ["general", "devops", "random"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    assert!(rooms[0]["name"].is_string());

    let created = call(
        &server,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"id": "ops-war-room", "name": "Ops war room", "description": "incidents"})),
    )
    .await;
    assert_eq!(created.0, 201, "{created:?}");
    assert_eq!(created.1["id"], "ops-war-room");
    assert_eq!(created.1["name"], "Ops war room");
    assert_eq!(created.1["description"], "incidents");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created.1["created_at"].as_str().unwrap()).is_ok()
    );

    let again = call(
        &server,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"id": "ops-war-room", "name": "x"})),
    )
    .await;
    assert_detail(&again, 409, "already exists");

    let (status, room) = call(&server, Method::GET, "/api/chat/rooms/ops-war-room", None).await;
    assert_eq!(
        (status, room["description"].as_str()),
        (200, Some("incidents"))
    );

    // A legacy room comes into being with its first post and is listed.
    post_ok(
        &server,
        "legacy-room",
        &[("username", "old"), ("msg", "hi")],
    )
    .await;
    let (_, rooms) = call(&server, Method::GET, "/api/chat/rooms", None).await;
    assert!(rooms
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == "legacy-room"));

    // Deleting a room deletes its messages; sockets in it hear of it.
    let mut ws = open_socket(&server, "/ws/legacy-room/watcher").await;
    let (status, body) =
        admin_call(&server, Method::DELETE, "/api/chat/rooms/legacy-room", None).await;
    assert_eq!(
        (status, body["messages_deleted"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    assert_eq!(
        next_of(&mut ws, &["room_deleted"]).await["room_id"],
        "legacy-room"
    );
    assert_detail(
        &call(&server, Method::GET, "/api/chat/rooms/legacy-room", None).await,
        404,
        "does not exist",
    );
    assert_eq!(transcript(&server, "legacy-room").await, "");
    assert_detail(
        &admin_call(&server, Method::DELETE, "/api/chat/rooms/legacy-room", None).await,
        404,
        "does not exist",
    );
    // Posting again brings it back, empty but for the new message.
    post_ok(
        &server,
        "legacy-room",
        &[("username", "old"), ("msg", "back")],
    )
    .await;
    assert_eq!(
        lines(&transcript(&server, "legacy-room").await),
        ["old: back"]
    );
    assert_eq!(
        call(&server, Method::GET, "/api/chat/rooms/legacy-room", None)
            .await
            .0,
        200
    );
    db.drop_db().await;
}

async fn history_pages_and_searches(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("hist");
    for i in 1..=120 {
        let text = if i % 10 == 0 {
            format!("Deploy #{i} 100%_done")
        } else {
            format!("m{i}")
        };
        post_ok(&server, &room, &[("username", "u"), ("msg", &text)]).await;
    }
    let get = |q: String| {
        let server = &server;
        async move {
            let (status, body) = call(server, Method::GET, &q, None).await;
            assert_eq!(status, 200, "{q}: {body}");
            body.as_array().unwrap().clone()
        }
    };
    let contents = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["content"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let base = format!("/api/chat/rooms/{room}/messages");

    // Default: the newest 50, oldest first.
    let newest = get(base.clone()).await;
    assert_eq!(newest.len(), 50);
    assert_eq!(newest[0]["content"], "m71");
    assert_eq!(newest[49]["content"], "Deploy #120 100%_done");
    let ids: Vec<i64> = newest.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(newest[0]["room_id"], room.as_str());
    assert_eq!(newest[0]["username"], "u");
    assert_eq!(newest[0]["message_type"], "text");
    assert_eq!(newest[0]["user_id"], Value::Null);
    assert!(
        chrono::DateTime::parse_from_rfc3339(newest[0]["created_at"].as_str().unwrap()).is_ok()
    );

    // Paging back with before=, then forward with after=.
    let older = get(format!("{base}?limit=30&before={}", ids[0])).await;
    assert_eq!(contents(&older).first().map(String::as_str), Some("m41"));
    assert_eq!(
        contents(&older).last().map(String::as_str),
        Some("Deploy #70 100%_done")
    );
    let first_id = get(format!("{base}?limit=200")).await[0]["id"]
        .as_i64()
        .unwrap();
    let forward = get(format!("{base}?limit=3&after={first_id}")).await;
    assert_eq!(contents(&forward), ["m2", "m3", "m4"]);
    assert_eq!(get(format!("{base}?limit=200")).await.len(), 120);
    assert_eq!(get(format!("{base}?limit=1")).await.len(), 1);

    // Search ignores case; % and _ are plain characters.
    let found = get(format!("{base}?q=deploy")).await;
    assert_eq!(found.len(), 12);
    assert_eq!(get(format!("{base}?q=100%25_DONE&limit=5")).await.len(), 5);
    assert_eq!(get(format!("{base}?q=%25")).await.len(), 12);
    assert!(get(format!("{base}?q=_x")).await.is_empty());

    for bad in ["limit=0", "limit=201", "limit=x", "before=abc", "after=1.5"] {
        let answer = call(&server, Method::GET, &format!("{base}?{bad}"), None).await;
        assert_eq!(answer.0, 400, "{bad}: {answer:?}");
        assert!(answer.1["detail"].is_string());
    }
    assert_detail(
        &call(
            &server,
            Method::GET,
            "/api/chat/rooms/nowhere/messages",
            None,
        )
        .await,
        404,
        "does not exist",
    );
    db.drop_db().await;
}

async fn messages_posted_as_json_reach_every_reader(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let mut ws = open_socket(&server, "/ws/devops/watcher").await;
    next_about(&mut ws, "user_joined", "watcher").await;

    let posted = call(
        &server,
        Method::POST,
        "/api/chat/rooms/devops/messages",
        Some(json!({"content": " deploy done ", "username": "ci", "user_id": "bot-1"})),
    )
    .await;
    assert_eq!(posted.0, 201, "{posted:?}");
    let id = posted.1["id"].as_i64().unwrap();
    assert_eq!(posted.1["content"], "deploy done");
    assert_eq!(posted.1["user_id"], "bot-1");

    let live = next_of(&mut ws, &["message"]).await;
    assert_eq!(
        (live["id"].as_i64(), live["content"].as_str()),
        (Some(id), Some("deploy done"))
    );
    assert_eq!(
        lines(&transcript(&server, "devops").await),
        ["ci: deploy done"]
    );

    // What is stored is what was sent: user id, kind and file URL survive the database.
    let file = call(
        &server,
        Method::POST,
        "/api/chat/rooms/devops/messages",
        Some(json!({"content": "plan.pdf", "user_id": "u-9", "message_type": "file", "file_url": "/api/files/x/download"})),
    )
    .await;
    assert_eq!(file.0, 201, "{file:?}");
    let (status, stored) = call(
        &server,
        Method::GET,
        &format!("/api/chat/messages/{}", file.1["id"]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(stored["user_id"], "u-9");
    assert_eq!(stored["username"], "u-9");
    assert_eq!(stored["message_type"], "file");
    assert_eq!(stored["file_url"], "/api/files/x/download");
    let (_, stored) = call(
        &server,
        Method::GET,
        &format!("/api/chat/messages/{id}"),
        None,
    )
    .await;
    assert_eq!(stored["user_id"], "bot-1");

    // Deleting a message: gone from history, transcript and sockets are told.
    let (status, _) = admin_call(
        &server,
        Method::DELETE,
        &format!("/api/chat/messages/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        next_of(&mut ws, &["message_deleted"]).await["id"].as_i64(),
        Some(id)
    );
    assert_detail(
        &call(
            &server,
            Method::GET,
            &format!("/api/chat/messages/{id}"),
            None,
        )
        .await,
        404,
        "does not exist",
    );
    assert_detail(
        &admin_call(
            &server,
            Method::DELETE,
            &format!("/api/chat/messages/{id}"),
            None,
        )
        .await,
        404,
        "does not exist",
    );
    assert_eq!(
        lines(&transcript(&server, "devops").await),
        ["u-9: plan.pdf"]
    );

    let (status, health) = call(&server, Method::GET, "/api/chat/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
    db.drop_db().await;
}

async fn bad_input_gets_a_detail(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let post = |path: &'static str, body: &'static str| {
        let server = &server;
        async move {
            let res = client()
                .post(format!("{}{path}", server.url))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_detail(
        &post("/api/chat/rooms", "{\"id\": ").await,
        400,
        "invalid JSON",
    );
    assert_detail(&post("/api/chat/rooms", "{}").await, 400, "required");
    assert_detail(
        &post("/api/chat/rooms", "{\"id\": \"a/b\"}").await,
        400,
        "'/'",
    );
    assert_detail(
        &post("/api/chat/rooms", "{\"id\": \"rooms\"}").await,
        400,
        "reserved",
    );
    assert_detail(
        &post("/api/chat/rooms/general/messages", "{\"content\": \"  \"}").await,
        400,
        "content",
    );
    assert_detail(
        &post("/api/chat/rooms/general/messages", "[1]").await,
        400,
        "invalid JSON",
    );
    assert_detail(
        &post(
            "/api/chat/rooms/general/messages",
            "{\"content\": \"x\", \"message_type\": \"file\"}",
        )
        .await,
        400,
        "file_url",
    );
    assert_detail(
        &post("/api/chat/rooms/nowhere/messages", "{\"content\": \"x\"}").await,
        404,
        "does not exist",
    );
    assert_detail(
        &call(&server, Method::GET, "/api/chat/messages/abc", None).await,
        400,
        "number",
    );
    assert_detail(
        &call(
            &server,
            Method::GET,
            "/api/chat/rooms/general/nothing",
            None,
        )
        .await,
        404,
        "not found",
    );
    // Nothing was stored by any of them.
    let (_, history) = call(
        &server,
        Method::GET,
        "/api/chat/rooms/general/messages",
        None,
    )
    .await;
    assert_eq!(history, json!([]));
    // The legacy routes keep their plain-text reasons.
    let (status, body) = post_form(&server, "general", &[("username", "x")]).await;
    assert_eq!((status, body.as_str()), (400, "msg is required\n"));
    db.drop_db().await;
}

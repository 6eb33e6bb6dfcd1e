//! The room API (`/api/chat/rooms...`, `/api/chat/messages/...`) on every backend, where a
//! socket is part of it: a deleted room's sockets are told, and a message posted here
//! reaches sockets and the legacy transcript. Its history, search and bad input are in
//! process (`tests/routes.rs`).

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

on_every_backend!(
    rooms_are_listed_created_and_deleted,
    messages_posted_as_json_reach_every_reader
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

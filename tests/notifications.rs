//! `/api/notifications` on every backend, and mentions: `@name` in a message notifies
//! every user id known by that name, live over their sockets.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

on_every_backend!(notifications_are_kept_per_user, mentions_notify_live);

async fn notifications_are_kept_per_user(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let user = unique_name("nina");
    let create = |title: &'static str| {
        let (server, user) = (&server, user.clone());
        async move {
            let answer = call(
                server,
                Method::POST,
                "/api/notifications",
                Some(json!({"user_id": user, "title": title, "body": "b", "notif_type": "system", "room_id": "general", "from_user": "ops"})),
            )
            .await;
            assert_eq!(answer.0, 201, "{answer:?}");
            answer.1
        }
    };
    let first = create("one").await;
    assert_eq!(first["user_id"], user.as_str());
    assert_eq!(first["read"], false);
    assert_eq!(first["notif_type"], "system");
    assert_eq!(first["from_user"], "ops");
    assert_eq!(first["id"].as_str().map(str::len), Some(36));
    create("two").await;
    let third = create("three").await;

    let list = |query: &'static str| {
        let (server, user) = (&server, user.clone());
        async move {
            let (status, body) = call(
                server,
                Method::GET,
                &format!("/api/notifications/{user}{query}"),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body.as_array()
                .unwrap()
                .iter()
                .map(|n| n["title"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("").await, ["three", "two", "one"]);
    assert_eq!(list("?limit=2").await, ["three", "two"]);
    let unread = || {
        let (server, user) = (&server, user.clone());
        async move {
            let (_, body) = call(
                server,
                Method::GET,
                &format!("/api/notifications/{user}/unread-count"),
                None,
            )
            .await;
            body["unread_count"].as_u64().unwrap()
        }
    };
    assert_eq!(unread().await, 3);

    let path = format!("/api/notifications/{}/read", first["id"].as_str().unwrap());
    assert_eq!(call(&server, Method::PATCH, &path, None).await.0, 200);
    assert_eq!(
        call(&server, Method::PATCH, &path, None).await.0,
        200,
        "reading twice is fine"
    );
    assert_eq!(unread().await, 2);
    assert_eq!(list("?unread_only=true").await, ["three", "two"]);

    let (status, body) = call(
        &server,
        Method::PATCH,
        &format!("/api/notifications/{user}/read-all"),
        None,
    )
    .await;
    assert_eq!((status, body["updated"].as_u64()), (200, Some(2)));
    assert_eq!(unread().await, 0);
    assert!(list("?unread_only=true").await.is_empty());

    let path = format!("/api/notifications/{}", third["id"].as_str().unwrap());
    assert_eq!(call(&server, Method::DELETE, &path, None).await.0, 200);
    assert_detail(
        &call(&server, Method::DELETE, &path, None).await,
        404,
        "not found",
    );
    assert_detail(
        &call(&server, Method::PATCH, "/api/notifications/nope/read", None).await,
        404,
        "not found",
    );
    assert_eq!(list("").await, ["two", "one"]);
    // Someone else's list is their own.
    let (_, other) = call(
        &server,
        Method::GET,
        "/api/notifications/someone-else",
        None,
    )
    .await;
    assert_eq!(other, json!([]));

    // Bad input.
    for (body, says) in [
        (json!({"title": "t", "body": "b"}), "invalid JSON"),
        (json!({"user_id": user, "title": " ", "body": "b"}), "title"),
        (
            json!({"user_id": user, "title": "t", "body": "b", "notif_type": "spam"}),
            "notif_type",
        ),
        (json!({"user_id": "", "title": "t", "body": "b"}), "user_id"),
    ] {
        assert_detail(
            &call(&server, Method::POST, "/api/notifications", Some(body)).await,
            400,
            says,
        );
    }
    for query in ["?limit=0", "?limit=500", "?unread_only=maybe"] {
        let answer = call(
            &server,
            Method::GET,
            &format!("/api/notifications/{user}{query}"),
            None,
        )
        .await;
        assert_eq!(answer.0, 400, "{query}");
    }
    let (status, health) = call(&server, Method::GET, "/api/notifications/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
    db.drop_db().await;
}

async fn mentions_notify_live(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("mentions");
    post_ok(&server, &room, &[("msg", "room exists")]).await;
    let bob_name = unique_name("Bob");
    // Bob is on a socket (in another room); a second Bob was seen only through a heartbeat.
    let mut bob = open_socket(&server, &format!("/ws/general/bob-1?username={bob_name}")).await;
    next_about(&mut bob, "user_joined", "bob-1").await;
    let hb = call(
        &server,
        Method::POST,
        &format!("/api/presence/bob-2/heartbeat?username={bob_name}"),
        None,
    )
    .await;
    assert_eq!(hb.0, 200);
    call(&server, Method::DELETE, "/api/presence/bob-2", None).await;

    let mut alice = open_socket(&server, &format!("/ws/{room}/alice-1?username=alice")).await;
    next_about(&mut alice, "user_joined", "alice-1").await;
    let text = format!(
        "hey @{}, look (cc @alice, mail x@{bob_name})",
        bob_name.to_uppercase()
    );
    send(&mut alice, json!({"type": "message", "content": text})).await;

    let notice = next_of(&mut bob, &["notification"]).await;
    assert_eq!(notice["notif_type"], "mention");
    assert_eq!(notice["user_id"], "bob-1");
    assert_eq!(notice["room_id"], room.as_str());
    assert_eq!(notice["from_user"], "alice");
    assert_eq!(notice["body"], text.as_str());
    assert!(notice["title"]
        .as_str()
        .unwrap()
        .contains("alice mentioned you"));

    // The offline Bob has it waiting; Alice, who named herself, has none.
    let stored = eventually(Duration::from_secs(5), || async {
        let (_, body) = call(
            &server,
            Method::GET,
            "/api/notifications/bob-2/unread-count",
            None,
        )
        .await;
        body["unread_count"] == 1
    })
    .await;
    assert!(stored, "the offline user's mention was not stored");
    let (_, listed) = call(
        &server,
        Method::GET,
        "/api/notifications/bob-1?unread_only=true",
        None,
    )
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, own) = call(&server, Method::GET, "/api/notifications/alice-1", None).await;
    assert_eq!(own, json!([]));

    // A legacy post mentions too; its sender has no id, so it is known by name.
    post_ok(
        &server,
        &room,
        &[
            ("username", "curl-user"),
            ("msg", &format!("@{bob_name} ping")),
        ],
    )
    .await;
    let notice: Value = next_of(&mut bob, &["notification"]).await;
    assert_eq!(notice["from_user"], "curl-user");
    db.drop_db().await;
}

/// A mention made on one replica reaches the named user's socket on another, through Redis.
#[tokio::test(flavor = "multi_thread")]
async fn mentions_cross_replicas() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let servers = replicas(&db, &redis, 2).await;
    let name = unique_name("dana");
    let mut dana = open_socket(&servers[1], &format!("/ws/general/dana-1?username={name}")).await;
    next_about(&mut dana, "user_joined", "dana-1").await;
    post_ok(
        &servers[0],
        "general",
        &[("username", "eve"), ("msg", &format!("@{name} over here"))],
    )
    .await;
    let notice = next_of(&mut dana, &["notification"]).await;
    assert_eq!(
        (notice["user_id"].as_str(), notice["from_user"].as_str()),
        (Some("dana-1"), Some("eve"))
    );
    db.drop_db().await;
}

//! Mentions, on every backend: `@name` in a message notifies every user id known by that
//! name, live over their sockets (also on another replica), and keeps it for one who is
//! offline. The `/api/notifications` routes themselves are in process, in
//! `tests/contracts.rs`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

on_every_backend!(mentions_notify_live);

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

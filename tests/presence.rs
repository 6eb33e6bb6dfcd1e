//! `/api/presence`: heartbeats with a TTL, typing, sockets as presence (several tabs are one
//! user), in-process and in Redis across replicas, and Redis going away.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

on_every_backend!(presence_in_one_process);

async fn presence_in_one_process(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    scenario(&server, &server).await;
    db.drop_db().await;
}

/// Two replicas on one Redis: what one records, the other answers.
#[tokio::test(flavor = "multi_thread")]
async fn presence_in_redis_across_replicas() {
    let db = TestDb::create(Backend::Postgres).await;
    let redis = Redis::start().await;
    let servers = replicas(&db, &redis, 2).await;
    scenario(&servers[0], &servers[1]).await;

    // The keys are ChatFlow's, with their TTLs.
    let u = unique_name("keys");
    call(
        &servers[0],
        Method::POST,
        &format!("/api/presence/{u}/heartbeat?username=kim"),
        None,
    )
    .await;
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let name: Option<String> = redis::cmd("GET")
        .arg(format!("presence:user:{u}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("kim"));
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("presence:user:{u}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=30).contains(&ttl), "{ttl}");
    call(
        &servers[0],
        Method::POST,
        &format!("/api/presence/{u}/typing?room_id=general&username=kim"),
        None,
    )
    .await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("presence:typing:general:{u}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=5).contains(&ttl), "{ttl}");

    // A socket's user is renewed while the socket stays open (every 10 s, TTL 30 s).
    let carol = unique_name("carol");
    let _tab = open_socket(&servers[1], &format!("/ws/general/{carol}?username=Carol")).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("presence:user:{carol}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 20, "not renewed: TTL {ttl}");
    let tabs: std::collections::HashMap<String, usize> = redis::cmd("HGETALL")
        .arg(format!("presence:sockets:{carol}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(tabs.values().sum::<usize>(), 1, "{tabs:?}");

    // Redis away: presence answers 503 with a reason, chatting goes on.
    let port = redis.kill();
    let answer = call(
        &servers[1],
        Method::POST,
        &format!("/api/presence/{u}/heartbeat"),
        None,
    )
    .await;
    assert_detail(&answer, 503, "Redis");
    assert_eq!(
        call(&servers[1], Method::GET, "/api/presence/health", None)
            .await
            .0,
        503
    );
    post_ok(
        &servers[1],
        "general",
        &[("username", "kim"), ("msg", "still here")],
    )
    .await;
    let _redis = Redis::start_on(port).await;
    let back = eventually(Duration::from_secs(15), || async {
        call(
            &servers[1],
            Method::POST,
            &format!("/api/presence/{u}/heartbeat"),
            None,
        )
        .await
        .0 == 200
    })
    .await;
    assert!(back, "presence did not come back with Redis");
    assert_eq!(
        call(&servers[0], Method::GET, "/api/presence/health", None)
            .await
            .0,
        200
    );
    db.drop_db().await;
}

async fn online_ids(server: &Server) -> Vec<String> {
    let (status, users) = call(server, Method::GET, "/api/presence", None).await;
    assert_eq!(status, 200, "{users}");
    users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            assert_eq!(u["online"], true);
            u["user_id"].as_str().unwrap().to_string()
        })
        .collect()
}

async fn typing_ids(server: &Server, room: &str) -> Vec<String> {
    let (status, users) = call(
        server,
        Method::GET,
        &format!("/api/presence/rooms/{room}/typing"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_string())
        .collect()
}

async fn scenario(a: &Server, b: &Server) {
    let alice = unique_name("alice");
    let hb = call(
        a,
        Method::POST,
        &format!("/api/presence/{alice}/heartbeat?username=Alice"),
        None,
    )
    .await;
    assert_eq!(
        hb,
        (
            200,
            json!({"status": "ok", "user_id": alice, "online_ttl_seconds": 30})
        )
    );
    assert!(online_ids(b).await.contains(&alice));
    let (_, me) = call(b, Method::GET, &format!("/api/presence/{alice}"), None).await;
    assert_eq!(
        (me["online"].as_bool(), me["username"].as_str()),
        (Some(true), Some("Alice"))
    );

    let (status, body) = call(b, Method::DELETE, &format!("/api/presence/{alice}"), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("offline")));
    assert!(!online_ids(a).await.contains(&alice));
    // Offline, and remembered: name and last seen.
    let (_, me) = call(a, Method::GET, &format!("/api/presence/{alice}"), None).await;
    assert_eq!(me["online"], false);
    assert_eq!(me["username"], "Alice");
    assert!(me["last_seen"].is_string(), "{me}");
    let (_, stranger) = call(a, Method::GET, "/api/presence/never-seen", None).await;
    assert_eq!(
        (stranger["online"].as_bool(), &stranger["last_seen"]),
        (Some(false), &Value::Null)
    );

    // Typing: listed in its room only, gone when stopped, and told to the room's sockets.
    let room = room("typing");
    post_ok(a, &room, &[("msg", "room exists")]).await;
    let mut watcher = open_socket(b, &format!("/ws/{room}/watcher")).await;
    next_about(&mut watcher, "user_joined", "watcher").await;
    let (status, _) = call(
        a,
        Method::POST,
        &format!("/api/presence/{alice}/typing?room_id={room}&username=Alice"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(typing_ids(b, &room).await, std::slice::from_ref(&alice));
    assert!(typing_ids(b, "general").await.iter().all(|u| u != &alice));
    let told = next_of(&mut watcher, &["typing"]).await;
    assert_eq!(
        (told["user_id"].as_str(), told["username"].as_str()),
        (Some(alice.as_str()), Some("Alice"))
    );
    call(
        b,
        Method::DELETE,
        &format!("/api/presence/{alice}/typing?room_id={room}"),
        None,
    )
    .await;
    assert!(typing_ids(a, &room).await.is_empty());
    assert_eq!(
        next_of(&mut watcher, &["stop_typing"]).await["user_id"].as_str(),
        Some(alice.as_str())
    );
    // Room names and user ids may both hold ':': typing in room `<room>:x` as `y` is not
    // typing in `<room>` as `x:y`.
    let colon_room = format!("{room}:x");
    post_ok(a, &colon_room, &[("msg", "room exists")]).await;
    let y = unique_name("y");
    let (status, _) = call(
        a,
        Method::POST,
        &format!("/api/presence/{y}/typing?room_id={colon_room}&username=Y"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(typing_ids(b, &colon_room).await, std::slice::from_ref(&y));
    assert!(typing_ids(b, &room).await.is_empty());
    // Typing from a socket frame counts too, and lapses after 5 s without renewal.
    let mut typist = open_socket(a, &format!("/ws/{room}/{alice}?username=Alice")).await;
    send(&mut typist, json!({"type": "typing"})).await;
    let seen = eventually(Duration::from_secs(5), || async {
        typing_ids(b, &room).await == [alice.clone()]
    })
    .await;
    assert!(seen, "socket typing not listed");
    let lapsed = eventually(Duration::from_secs(9), || async {
        typing_ids(b, &room).await.is_empty()
    })
    .await;
    assert!(lapsed, "typing did not lapse");

    // Sockets are presence: two tabs (on two replicas) are one user until the last closes.
    let bob = unique_name("bob");
    let tab1 = open_socket(a, &format!("/ws/general/{bob}?username=Bob")).await;
    let tab2 = open_socket(b, &format!("/ws/{room}/{bob}?username=Bob")).await;
    let online = eventually(Duration::from_secs(5), || async {
        online_ids(a).await.iter().filter(|u| **u == bob).count() == 1
    })
    .await;
    assert!(online, "a socket's user is online, once");
    drop(tab1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        online_ids(b).await.contains(&bob),
        "one tab closed, one open: still online"
    );
    drop(tab2);
    let offline = eventually(Duration::from_secs(5), || async {
        !online_ids(a).await.contains(&bob)
    })
    .await;
    assert!(offline, "the last tab closed: offline");

    // Bad input.
    assert_detail(
        &call(
            a,
            Method::POST,
            &format!("/api/presence/{bob}/typing"),
            None,
        )
        .await,
        400,
        "room_id",
    );
    let long = "x".repeat(65);
    assert_detail(
        &call(
            a,
            Method::POST,
            &format!("/api/presence/{long}/heartbeat"),
            None,
        )
        .await,
        400,
        "user_id",
    );
    assert_detail(
        &call(
            a,
            Method::POST,
            "/api/presence/u/heartbeat?username=%1b",
            None,
        )
        .await,
        400,
        "username",
    );
    let (status, health) = call(a, Method::GET, "/api/presence/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
}

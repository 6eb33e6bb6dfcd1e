//! `WS /ws/<room_id>/<user_id>`: the ChatFlow contract over a real socket, and the one
//! message path (a legacy POST reaches sockets, a socket message reaches the transcript).

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

on_every_backend!(
    socket_messages_meet_the_legacy_api,
    since_replays_without_gaps_or_repeats
);

async fn socket_messages_meet_the_legacy_api(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let mut alice = open_socket(&server, "/ws/general/u-alice?username=alice").await;
    let mut bob = open_socket(&server, "/ws/general/u-bob?username=bob").await;
    let joined = next_about(&mut alice, "user_joined", "u-bob").await;
    assert_eq!(joined["user_id"], "u-bob");
    assert_eq!(joined["username"], "bob");
    assert_eq!(joined["room_id"], "general");

    send(
        &mut alice,
        json!({"type": "message", "content": "hello bob"}),
    )
    .await;
    for ws in [&mut alice, &mut bob] {
        let m = next_of(ws, &["message"]).await;
        assert_eq!(m["content"], "hello bob");
        assert_eq!(m["username"], "alice");
        assert_eq!(m["user_id"], "u-alice");
        assert_eq!(m["room_id"], "general");
        assert_eq!(m["message_type"], "text");
        assert!(m["id"].as_i64().unwrap() > 0);
        assert!(chrono::DateTime::parse_from_rfc3339(m["timestamp"].as_str().unwrap()).is_ok());
    }
    // The socket's message is in the polled transcript, and a legacy POST reaches sockets.
    assert_eq!(
        lines(&transcript(&server, "general").await),
        ["alice: hello bob"]
    );
    post_ok(
        &server,
        "general",
        &[("username", "carol"), ("msg", "from curl")],
    )
    .await;
    let m = next_of(&mut bob, &["message"]).await;
    assert_eq!(
        (m["username"].as_str(), m["content"].as_str()),
        (Some("carol"), Some("from curl"))
    );
    assert_eq!(m["user_id"], Value::Null);

    assert_eq!(
        next_of(&mut alice, &["message"]).await["content"],
        "from curl"
    );
    // A file message.
    send(&mut bob, json!({"type": "message", "content": "plan.png", "message_type": "file", "file_url": "/api/files/1/download"})).await;
    let m = next_of(&mut alice, &["message"]).await;
    assert_eq!(
        (m["message_type"].as_str(), m["file_url"].as_str()),
        (Some("file"), Some("/api/files/1/download"))
    );

    // Typing reaches the others, not the typist.
    send(&mut alice, json!({"type": "typing"})).await;
    let t = next_of(&mut bob, &["typing"]).await;
    assert_eq!(t["user_id"], "u-alice");
    send(&mut alice, json!({"type": "stop_typing"})).await;
    assert_eq!(
        next_of(&mut bob, &["stop_typing"]).await["username"],
        "alice"
    );

    // Leaving is announced.
    bob.close(None).await.unwrap();
    next_about(&mut alice, "user_left", "u-bob").await;
    db.drop_db().await;
}

async fn since_replays_without_gaps_or_repeats(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = "devops";
    for m in ["one", "two", "three"] {
        post_ok(&server, room, &[("username", "a"), ("msg", m)]).await;
    }
    let json: Value = get_json(&format!("{}/api/chat/{room}?format=json", server.url)).await;
    let first = json["messages"][0]["id"].as_i64().unwrap();
    let mut ws = open_socket(
        &server,
        &format!("/ws/{room}/u1?username=late&since={first}"),
    )
    .await;
    // Posts racing the connection are delivered once, in order, after the history.
    let poster = {
        let url = server.url.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let res = client()
                    .post(format!("{url}/api/chat/devops"))
                    .form(&[("username", "b"), ("msg", &format!("live {i}"))])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 204);
            }
        })
    };
    let mut got = Vec::new();
    let mut ids = Vec::new();
    while got.len() < 22 {
        let m = next_of(&mut ws, &["message"]).await;
        ids.push(m["id"].as_i64().unwrap());
        got.push(m["content"].as_str().unwrap().to_string());
    }
    poster.await.unwrap();
    let mut expected = vec!["two".to_string(), "three".to_string()];
    expected.extend((0..20).map(|i| format!("live {i}")));
    assert_eq!(got, expected);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_get_an_error_and_the_socket_stays() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let mut ws = open_socket(&server, "/ws/random/u1?username=tester").await;
    let cases = [
        Message::Text("{not json".into()),
        Message::Text(json!({"type": "dance"}).to_string()),
        Message::Text(json!({"type": "message"}).to_string()),
        Message::Text(json!({"type": "message", "content": "   "}).to_string()),
        Message::Text(
            json!({"type": "message", "content": "x", "message_type": "file"}).to_string(),
        ),
        Message::Text(
            json!({"type": "message", "content": "x", "message_type": "system"}).to_string(),
        ),
        Message::Text(json!({"type": "message", "content": "x".repeat(70_000)}).to_string()),
        Message::Binary(vec![1, 2, 3]),
    ];
    for frame in cases {
        let what = format!("{:.60}", format!("{frame:?}"));
        ws.send(frame).await.unwrap();
        let e = next_of(&mut ws, &["error", "message"]).await;
        assert_eq!(e["type"], "error", "{what}");
        assert!(e["detail"].as_str().unwrap().len() > 5, "{what}: {e}");
    }
    send(&mut ws, json!({"type": "message", "content": "still here"})).await;
    assert_eq!(
        next_of(&mut ws, &["message"]).await["content"],
        "still here"
    );
    assert_eq!(
        lines(&transcript(&server, "random").await),
        ["tester: still here"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_rooms_go_live_and_bad_names_are_refused() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let ws_url = server.url.replacen("http://", "ws://", 1);
    for (path, status) in [
        ("/ws/bad%01name/u1", 400),
        ("/ws/general/u1?since=abc", 400),
        (&format!("/ws/general/u1?username={}", "n".repeat(65)), 400),
    ] {
        match tokio_tungstenite::connect_async(format!("{ws_url}{path}")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status().as_u16(), status, "{path}");
                let body = String::from_utf8(res.body().clone().unwrap_or_default()).unwrap();
                assert_eq!(body.trim_end().lines().count(), 1, "{path}: {body:?}");
            }
            other => panic!("{path}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    // A room made by a legacy post exists for sockets too.
    post_ok(&server, "brand-new", &[("msg", "first")]).await;
    let mut ws = open_socket(&server, "/ws/brand-new/u1?since=0").await;
    assert_eq!(next_of(&mut ws, &["message"]).await["content"], "first");
    // A room nobody has written in yet (the page of `/<new room>`) goes live at once, as
    // every room of the Flask original exists; its first message makes its row.
    let fresh = room("fresh");
    let (status, _) = call(
        &server,
        Method::GET,
        &format!("/api/chat/rooms/{fresh}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "no row yet");
    let mut first = open_socket(&server, &format!("/ws/{fresh}/u1")).await;
    let mut second = open_socket(&server, &format!("/ws/{fresh}/u2")).await;
    send(
        &mut second,
        json!({"type": "message", "content": "hello, new room"}),
    )
    .await;
    assert_eq!(
        next_of(&mut first, &["message"]).await["content"],
        "hello, new room"
    );
    let (status, _) = call(
        &server,
        Method::GET,
        &format!("/api/chat/rooms/{fresh}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "the first message made the room's row");
    assert_eq!(lines(&transcript(&server, &fresh).await).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_stops_answering_is_dropped() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_WS_PING_SECS", "1")).await;
    let mut watcher = open_socket(&server, "/ws/general/watcher").await;
    // A client that completes the upgrade, then never reads or answers a ping.
    let silent = open_socket(&server, "/ws/general/silent").await;
    next_about(&mut watcher, "user_joined", "silent").await;
    let left = tokio::time::timeout(
        Duration::from_secs(20),
        next_about(&mut watcher, "user_left", "silent"),
    )
    .await;
    assert!(left.is_ok(), "the silent peer is dropped within 20 s");
    drop(silent);
}

/// A socket that keeps falling behind (here: a backlog of 2, and bursts of 40 posts) is
/// closed with 4000 and the `since` to come back with; coming back with it misses nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_keeps_falling_behind_is_told_to_reconnect() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_WS_BACKLOG", "2")).await;
    let room = room("slow");
    post_ok(&server, &room, &[("msg", "room exists")]).await;
    let mut ws = open_socket(&server, &format!("/ws/{room}/slow")).await;
    next_about(&mut ws, "user_joined", "slow").await;

    let mut sent = 0;
    let mut close = None;
    let mut got = Vec::new();
    'bursts: for _ in 0..20 {
        let burst = (0..40).map(|i| {
            let (server, room) = (&server, room.clone());
            async move { post_ok(server, &room, &[("msg", &format!("m{}", sent + i))]).await }
        });
        futures_util::future::join_all(burst).await;
        sent += 40;
        // Read what has come so far, and stop at a close.
        while let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(300), ws.next()).await
        {
            match frame {
                Ok(Message::Close(frame)) => {
                    close = frame;
                    break 'bursts;
                }
                Ok(Message::Text(text)) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["type"] == "message" {
                        got.push(v);
                    }
                }
                Ok(_) => {}
                Err(_) => break 'bursts,
            }
        }
    }
    let close = close.expect("the lagging socket was never closed with a reason");
    assert_eq!(u16::from(close.code), 4000);
    let since = since_in(&close.reason);

    // Coming back with it brings every message after it, once, up to the last one sent.
    let mut again = open_socket(&server, &format!("/ws/{room}/slow?since={since}")).await;
    let before: Vec<Value> = got
        .into_iter()
        .filter(|m| m["id"].as_i64().unwrap() <= since)
        .collect();
    let after = messages_until(&mut again, sent - before.len(), Duration::from_secs(10)).await;
    let (contents, _) = contents_once_each(&[before, after].concat(), "messages");
    // (It joined after "room exists", and without `since` it asked for nothing older.)
    let mut expected: Vec<String> = (0..sent).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(contents, expected);
    db.drop_db().await;
}

/// Past `ws_announce_limit` sockets in a room, joins are not announced to everyone (a
/// crowd joining would be a storm of frames), while messages still reach all.
#[tokio::test(flavor = "multi_thread")]
async fn joins_in_a_crowded_room_are_not_announced() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_WS_ANNOUNCE_LIMIT", "2")).await;
    let room = room("crowd");
    post_ok(&server, &room, &[("msg", "room exists")]).await;
    let mut first = open_socket(&server, &format!("/ws/{room}/first")).await;
    // Each socket announces itself from its own task, so two sockets opened at once may
    // be announced in either order: the second opens once the first is announced.
    assert_eq!(
        next_of(&mut first, &["user_joined"]).await["user_id"],
        "first"
    );
    let _second = open_socket(&server, &format!("/ws/{room}/second")).await;
    assert_eq!(
        next_of(&mut first, &["user_joined"]).await["user_id"],
        "second"
    );
    let _third = open_socket(&server, &format!("/ws/{room}/third")).await;
    post_ok(&server, &room, &[("msg", "after the crowd")]).await;
    // The next frame is the message: the third join was not announced.
    let next = next_of(&mut first, &["user_joined", "message"]).await;
    assert_eq!(
        (next["type"].as_str(), next["content"].as_str()),
        (Some("message"), Some("after the crowd"))
    );
    db.drop_db().await;
}

/// The author-per-frame socket, `/ws/<room_id>`, as the graintrade chat room's clients use it: each message frame
/// names its author (`user_id`), and every socket of the room, at every door, gets it.
#[tokio::test(flavor = "multi_thread")]
async fn the_room_socket_with_an_author_per_frame_chats() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let room = room("seed004");
    let mut buyer = open_socket(&server, &format!("/ws/{room}")).await;
    let mut seller = open_socket(&server, &format!("/ws/{room}")).await;
    let mut chatflow = open_socket(&server, &format!("/ws/{room}/watcher")).await;
    send(
        &mut buyer,
        json!({"type": "message", "content": "Hello, everyone!", "user_id": "user_123"}),
    )
    .await;
    for ws in [&mut seller, &mut buyer, &mut chatflow] {
        let got = next_of(ws, &["message"]).await;
        assert_eq!(
            (
                got["content"].as_str(),
                got["user_id"].as_str(),
                got["username"].as_str(),
                got["room_id"].as_str()
            ),
            (
                Some("Hello, everyone!"),
                Some("user_123"),
                Some("user_123"),
                Some(room.as_str())
            )
        );
        assert!(got["id"].is_i64() && got["timestamp"].is_string(), "{got}");
    }
    assert_eq!(
        lines(&transcript(&server, &room).await),
        ["user_123: Hello, everyone!"]
    );
    // Without a user_id the socket's own guest id is the author; a bad one is refused.
    send(&mut seller, json!({"type": "message", "content": "anon"})).await;
    let got = next_of(&mut buyer, &["message"]).await;
    assert!(
        got["user_id"].as_str().unwrap().starts_with("guest-"),
        "{got}"
    );
    send(
        &mut seller,
        json!({"type": "message", "content": "x", "user_id": "bad\u{1}id"}),
    )
    .await;
    let err = next_of(&mut seller, &["error"]).await;
    assert!(err["detail"].as_str().unwrap().contains("user_id"), "{err}");
    db.drop_db().await;
}

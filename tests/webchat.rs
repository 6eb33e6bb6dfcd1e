//! The relay's client (hhoikoo/multiuser-webchat) against ferrochat, over real sockets: the
//! scenarios of its own tests (`tests/test_e2e.py`, `test_app.py`), here across two
//! replicas on MariaDB and Redis, and its room as a room of every other door.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The next text frame, as JSON; none within `within`.
async fn next_json(ws: &mut Socket, within: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(within, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
            Err(_) => return None,
        }
    }
}

async fn expect_json(ws: &mut Socket) -> Value {
    next_json(ws, Duration::from_secs(10))
        .await
        .expect("a frame within 10 s")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn history(server: &Server, query: &str) -> (u16, Value) {
    let res = client()
        .get(format!("{}/messages{query}", server.url))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Its e2e tests, on two replicas: a message is relayed as the same object to every
/// socket, the sender's too, wherever each is connected; several from two senders reach
/// both in the order they were committed; frames that are not `{text, type, ts}` are
/// dropped and the socket stays open. Then its history, and the room as every other door
/// sees it.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_chats_across_two_replicas() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let room = room("webchat");
    let mut servers = Vec::new();
    for _ in 0..2 {
        let options = ServerOptions::new(&db.url)
            .env("REDIS_URL", &redis.url())
            .env("ROCKET_WEBCHAT_ROOM", &room);
        servers.push(Server::start_with(options).await);
    }
    for s in &servers {
        let up = eventually(Duration::from_secs(10), || async {
            hub_state(s).await == "up"
        })
        .await;
        assert!(up, "hub connected to Redis");
    }
    let (a, b) = (&servers[0], &servers[1]);
    let mut one = open_socket(a, "/ws").await;
    let mut two = open_socket(b, "/ws").await;

    // test_two_clients_can_connect_and_message
    let sent = json!({"text": "Hello from client 1!", "type": "message", "ts": now_ms()});
    send(&mut one, sent.clone()).await;
    assert_eq!(
        expect_json(&mut one).await,
        sent,
        "the sender gets its object back"
    );
    assert_eq!(
        expect_json(&mut two).await,
        sent,
        "the other replica's socket too"
    );

    // test_multiple_messages_between_clients: alternating senders, each message reaching
    // both before the next is sent, as its test sleeps between them.
    let three = [
        json!({"text": "Message 1 from client 1", "type": "message", "ts": 1001}),
        json!({"text": "Message 2 from client 2", "type": "message", "ts": 1002}),
        json!({"text": "Message 3 from client 1", "type": "message", "ts": 1003}),
    ];
    for (i, m) in three.iter().enumerate() {
        let sender = if i % 2 == 0 { &mut one } else { &mut two };
        send(sender, m.clone()).await;
        assert_eq!(&expect_json(&mut one).await, m);
        assert_eq!(&expect_json(&mut two).await, m);
    }

    // test_invalid_message_handling, and every other frame that is not exactly one.
    let bad = [
        "invalid json".to_string(),
        json!({"text": "missing fields"}).to_string(),
        json!({"text": "hi", "type": "message", "ts": "1004"}).to_string(),
        json!({"text": "hi", "type": "message", "ts": 1.5}).to_string(),
        json!({"text": 7, "type": "message", "ts": 1004}).to_string(),
        json!({"text": "hi", "type": "message", "ts": 1004, "extra": true}).to_string(),
        json!({"text": "   ", "type": "message", "ts": 1004}).to_string(),
        json!([1, 2]).to_string(),
        "x".repeat(70_000),
    ];
    for frame in &bad {
        one.send(Message::Text(frame.clone())).await.unwrap();
    }
    one.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
    // Its page sends `type: "chat"`.
    let valid = json!({"type": "chat", "text": "Valid message", "ts": now_ms()});
    send(&mut one, valid.clone()).await;
    assert_eq!(
        expect_json(&mut one).await,
        valid,
        "nothing came of the bad frames"
    );
    assert_eq!(expect_json(&mut two).await, valid);

    // Another door's message: `<username>: <text>`, type message, the stored time in ms.
    let before = now_ms();
    post_ok(
        a,
        &room,
        &[("username", "bob"), ("msg", "from the legacy page")],
    )
    .await;
    for ws in [&mut one, &mut two] {
        let got = expect_json(ws).await;
        assert_eq!(got["text"], "bob: from the legacy page");
        assert_eq!(got["type"], "message");
        let ts = got["ts"].as_i64().unwrap();
        assert!((before - 2000..=now_ms() + 2000).contains(&ts), "{got}");
        assert_eq!(got.as_object().unwrap().len(), 3, "{got}");
    }

    // test_app.py's history: on either replica, oldest first, the same objects.
    for server in [a, b] {
        let (status, body) = history(server, "?minutes=30").await;
        assert_eq!(status, 200);
        let texts: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            texts,
            [
                "Hello from client 1!",
                "Message 1 from client 1",
                "Message 2 from client 2",
                "Message 3 from client 1",
                "Valid message",
                "bob: from the legacy page"
            ]
        );
        assert_eq!(body["messages"][0], sent);
        assert_eq!(body["messages"][4], valid);
    }
    let (status, body) = history(b, "").await;
    assert_eq!(
        (status, body["messages"].as_array().unwrap().len()),
        (200, 6)
    );
    for bad in ["invalid", "-1", "0", "2000", "", "1.5"] {
        let (status, _) = history(a, &format!("?minutes={bad}")).await;
        assert_eq!(status, 400, "minutes={bad}");
    }

    // The room is a room of every other door: the transcript, the room API's history and
    // sockets (the guest's id), with the client's own text as it was typed.
    let lines = lines(&transcript(b, &room).await);
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[4], "guest: Valid message");
    let (status, rows) = call(
        b,
        Method::GET,
        &format!("/api/chat/rooms/{room}/messages"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(rows[0]["content"], "Hello from client 1!");
    assert!(rows[0]["user_id"].as_str().unwrap().starts_with("guest-"));
    let mut watcher = open_socket(b, &format!("/ws/{room}/watcher")).await;
    send(
        &mut one,
        json!({"text": "to everyone", "type": "chat", "ts": 5}),
    )
    .await;
    let seen = next_of(&mut watcher, &["message"]).await;
    assert_eq!(
        (seen["content"].as_str(), seen["username"].as_str()),
        (Some("to everyone"), Some("guest"))
    );
    for ws in [&mut one, &mut two] {
        assert_eq!(expect_json(ws).await["text"], "to everyone");
    }

    // A socket that comes back with `since` gets what it missed, in its own shape.
    let since = rows[3]["id"].as_i64().unwrap();
    let mut back = open_socket(a, &format!("/ws?since={since}")).await;
    assert_eq!(expect_json(&mut back).await, valid);
    assert_eq!(
        expect_json(&mut back).await["text"],
        "bob: from the legacy page"
    );
    assert_eq!(expect_json(&mut back).await["text"], "to everyone");
    // Behind the shipped nginx, as its compose file runs it.
    let nginx = Nginx::start(&[a, b]).await;
    let mut proxied = open_socket(&Server::at(&nginx.url), "/ws").await;
    let through = json!({"text": "through nginx", "type": "chat", "ts": 6});
    send(&mut proxied, through.clone()).await;
    for ws in [&mut proxied, &mut one, &mut two] {
        assert_eq!(expect_json(ws).await, through);
    }
    // The seed-002 sockets hear nothing but messages (no joins of the others).
    for ws in [&mut one, &mut two] {
        assert_eq!(next_json(ws, Duration::from_millis(500)).await, None);
    }
    db.drop_db().await;
}

/// A message it will not take is told to its sender alone, in a frame its page shows as a
/// line; 20,000 distinct bad frames leave the socket open and the memory flat; a flood of
/// frames with limits on ends in close 1008.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_drops_bad_frames_and_closes_floods() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_RATE_LIMITS", "true")
            .env("ROCKET_POSTS_PER_MINUTE", "60")
            .env("ROCKET_POSTS_BURST", "2")
            .env("ROCKET_FRAMES_PER_MINUTE", "60000")
            .env("ROCKET_FRAMES_BURST", "30000"),
    )
    .await;
    let mut ws = open_socket(&server, "/ws").await;
    let mut other = open_socket(&server, "/ws").await;
    for i in 0..3 {
        send(
            &mut ws,
            json!({"text": format!("m{i}"), "type": "chat", "ts": i}),
        )
        .await;
    }
    let mut mine = vec![];
    for _ in 0..3 {
        mine.push(expect_json(&mut ws).await);
    }
    let refused: Vec<_> = mine.iter().filter(|m| m["type"] == "error").collect();
    assert_eq!(refused.len(), 1, "{mine:?}");
    assert!(
        refused[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("[not sent: "),
        "{mine:?}"
    );
    assert_eq!(expect_json(&mut other).await["text"], "m0");
    assert_eq!(expect_json(&mut other).await["text"], "m1");
    assert_eq!(
        next_json(&mut other, Duration::from_millis(300)).await,
        None,
        "only to its sender"
    );

    // Warm up, then 20,000 distinct frames that are each not a message.
    let before = server.rss_bytes();
    for i in 0..20_000 {
        let frame = match i % 4 {
            0 => format!("not json {i}"),
            1 => json!({"text": format!("t{i}")}).to_string(),
            2 => json!({"text": format!("t{i}"), "type": "chat", "ts": format!("{i}")}).to_string(),
            _ => json!({"text": format!("t{i}"), "type": "x".repeat(40 + i % 50), "ts": i})
                .to_string(),
        };
        ws.send(Message::Text(frame)).await.unwrap();
    }
    // Still open, and nothing was sent back for any of them.
    ws.send(Message::Ping(b"still there".to_vec()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Pong(p)))) if p == b"still there" => break,
            Ok(Some(Ok(Message::Pong(_)))) => continue,
            other => panic!("expected the pong after 20,000 dropped frames, got {other:?}"),
        }
    }
    assert_flat(&server, before, "20,000 bad frames on one socket");
    let (_, body) = history(&server, "").await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
    let metrics = get_text(&format!("{}/metrics", server.url)).await;
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferrochat_webchat_frames_dropped_total "))
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(dropped, Some(20_000));
    drop(ws);

    // A flood beyond the frame bucket: close 1008.
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_RATE_LIMITS", "true")
            .env("ROCKET_FRAMES_BURST", "10"),
    )
    .await;
    let mut ws = open_socket(&server, "/ws").await;
    for i in 0..200 {
        if ws.send(Message::Text(format!("junk {i}"))).await.is_err() {
            break;
        }
    }
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected close 1008, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    db.drop_db().await;
}

/// The room is `webchat_room`; a bad one stops the server at start, with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_webchat_room_is_a_setting() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let mut ws = open_socket(&server, "/ws").await;
    send(
        &mut ws,
        json!({"text": "in general", "type": "chat", "ts": 1}),
    )
    .await;
    expect_json(&mut ws).await;
    assert_eq!(
        lines(&transcript(&server, "general").await),
        ["guest: in general"]
    );
    drop(server);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrochat"))
        .env("DATABASE_URL", &db.url)
        .env("ROCKET_PORT", "0")
        .env("ROCKET_WEBCHAT_ROOM", "a/b")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("webchat_room"), "{said}");
    db.drop_db().await;
}

/// Who may call `GET /messages`: whoever may read the room; what stops a flood of it: it is
/// answered from the room's transcript in memory and holds nothing after. 20,000 distinct
/// queries (valid and not) leave the server's memory flat.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_history_queries_leave_memory_flat() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let mut ws = open_socket(&server, "/ws").await;
    for i in 0..50 {
        send(
            &mut ws,
            json!({"text": format!("m{i}"), "type": "chat", "ts": i}),
        )
        .await;
        expect_json(&mut ws).await;
    }
    let http = client();
    for _ in 0..200 {
        assert_eq!(history(&server, "").await.0, 200);
    }
    let before = server.rss_bytes();
    let queries = futures_util::stream::iter(0..20_000).map(|i| {
        // 1 to 1440 are answered; 0, 1441 and up, and the odd ones are refused.
        let minutes = match i % 5 {
            0 => format!("{}", 1441 + i),
            1 => format!("x{i}"),
            _ => format!("{}", i % 1441),
        };
        let url = format!("{}/messages?minutes={minutes}", server.url);
        let http = http.clone();
        async move {
            let res = http.get(url).send().await.unwrap();
            (res.status().as_u16(), minutes)
        }
    });
    let answers: Vec<_> = queries.buffer_unordered(32).collect().await;
    for (status, minutes) in &answers {
        let valid = minutes
            .parse::<u32>()
            .is_ok_and(|m| (1..=1440).contains(&m));
        assert_eq!(*status, if valid { 200 } else { 400 }, "minutes={minutes}");
    }
    assert_flat(&server, before, "20,000 history queries");
    db.drop_db().await;
}

//! Nothing lost, for changes too: every frame that changes a room carries `seq`, one order
//! for a room's messages, edits, reactions and deletions, on every replica. A socket
//! opened again with `?seq=` of the last frame it saw gets every change it missed, once
//! each, in order, then live ones; `GET /api/chat/rooms/<id>/changes?after=` pages the
//! same frames over HTTP; past `change_log_days` a reader is told to `resync`. Over real
//! HTTP and sockets on SQLite, MariaDB and PostgreSQL, across two replicas on Redis and a
//! Redis outage, and across a restart that prunes the log.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

on_every_backend!(a_socket_back_with_its_last_seq_gets_every_change_it_missed);

/// Tokens that hold on every replica, and across a restart.
const SHARED_SECRET: &str = "the changes tests' secret, 32 bytes or more";

async fn edit(server: &Server, id: i64, content: &str, token: &str) {
    let path = format!("/api/chat/messages/{id}");
    let body = json!({ "content": content });
    let (status, answer) =
        call_with_token(server, Method::PATCH, &path, Some(body), Some(token)).await;
    assert_eq!(status, 200, "{answer}");
}

async fn react(server: &Server, method: Method, id: i64, emoji: &str, token: &str) {
    let path = format!("/api/chat/messages/{id}/reactions/{emoji}");
    let (status, answer) = call_with_token(server, method, &path, None, Some(token)).await;
    assert!(status == 200 || status == 204, "{status} {answer}");
}

async fn delete(server: &Server, id: i64, token: &str) {
    let path = format!("/api/chat/messages/{id}");
    let (status, answer) = call_with_token(server, Method::DELETE, &path, None, Some(token)).await;
    assert_eq!(status, 200, "{answer}");
}

async fn changes(server: &Server, room: &str, query: &str, token: Option<&str>) -> (u16, Value) {
    let path = format!("/api/chat/rooms/{room}/changes{query}");
    call_with_token(server, Method::GET, &path, None, token).await
}

/// The frames that change a room, as far as the socket has them within `quiet`.
async fn changes_until_quiet(ws: &mut Socket, quiet: Duration) -> Vec<Value> {
    use futures_util::StreamExt;
    let mut got = Vec::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(quiet, ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value.get("seq").is_some() || value["type"] == "resync" {
                got.push(value);
            }
        }
    }
    got
}

/// `type` and the id each frame is about, in order.
fn summary(frames: &[Value]) -> Vec<(String, i64)> {
    frames
        .iter()
        .map(|f| {
            let id = f["id"].as_i64().or(f["message_id"].as_i64()).unwrap_or(0);
            (f["type"].as_str().unwrap_or("").to_string(), id)
        })
        .collect()
}

fn assert_increasing(frames: &[Value], after: i64) {
    let mut last = after;
    for frame in frames {
        let seq = frame["seq"]
            .as_i64()
            .unwrap_or_else(|| panic!("no seq: {frame}"));
        assert!(seq > last, "seq {seq} after {last}: {frames:?}");
        last = seq;
    }
}

/// ann's socket sees her first message (with its `seq`) and goes away. Meanwhile: a new
/// message, an edit, reactions on and off, a deletion. Opened again with the last `seq`
/// it saw, it gets exactly those changes in the order they were made, each once (the
/// deleted message's own frame and its reaction went with it; its deletion is told), then
/// live ones; `/changes` pages the same frames. `since` and `seq` together are refused;
/// a stranger asking for a private room's changes hears of no such room.
async fn a_socket_back_with_its_last_seq_gets_every_change_it_missed(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (ann_id, ann) = sign_up(&server, &unique_name("ann")).await;
    let (_, eve) = sign_up(&server, &unique_name("eve")).await;
    let room = make_room(&server, "seq", false, &ann).await;
    let path = format!("/ws/{room}/{ann_id}?token={ann}");
    let mut ws = open_socket(&server, &path).await;
    next_about(&mut ws, "user_joined", &ann_id).await;
    let first = posted(&server, &room, "first", &ann).await;
    let seen = next_of(&mut ws, &["message"]).await;
    assert_eq!(seen["id"], first);
    let last_seen = seen["seq"].as_i64().expect("a message frame has its seq");
    drop(ws);

    let second = posted(&server, &room, "second", &ann).await;
    edit(&server, first, "first, edited", &ann).await;
    react(&server, Method::PUT, second, "👍", &ann).await;
    react(&server, Method::PUT, first, "🎉", &ann).await;
    react(&server, Method::DELETE, first, "🎉", &ann).await;
    // Changing nothing is no change: told to nobody.
    react(&server, Method::DELETE, first, "🎉", &ann).await;
    delete(&server, second, &ann).await;

    let mut back = open_socket(&server, &format!("{path}&seq={last_seen}")).await;
    let missed = changes_until_quiet(&mut back, Duration::from_millis(1500)).await;
    assert_eq!(
        summary(&missed),
        [
            ("message_updated".to_string(), first),
            ("reaction_added".to_string(), first),
            ("reaction_removed".to_string(), first),
            ("message_deleted".to_string(), second),
        ],
        "the deleted message went with its reaction, told once: {missed:?}"
    );
    assert_increasing(&missed, last_seen);
    assert_eq!(missed[0]["content"], "first, edited");
    assert_eq!(missed[1]["emoji"], "🎉");
    // Then live ones, after all of them.
    let third = posted(&server, &room, "third", &ann).await;
    let live = next_of(&mut back, &["message"]).await;
    assert_eq!(live["id"], third);
    assert_increasing(&[missed[3].clone(), live.clone()], last_seen);

    // The same frames over HTTP, page by page.
    let (status, all) = changes(&server, &room, &format!("?after={last_seen}"), Some(&ann)).await;
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().unwrap().clone();
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(all[..4], missed[..]);
    assert_eq!(all[4]["id"], third);
    let (_, page) = changes(
        &server,
        &room,
        &format!("?after={last_seen}&limit=2"),
        Some(&ann),
    )
    .await;
    assert_eq!(page.as_array().unwrap()[..], all[..2]);
    let after = page[1]["seq"].as_i64().unwrap();
    let (_, rest) = changes(
        &server,
        &room,
        &format!("?after={after}&limit=500"),
        Some(&ann),
    )
    .await;
    assert_eq!(rest.as_array().unwrap()[..], all[2..]);
    // From the start: the first message too (as it now reads).
    let (_, everything) = changes(&server, &room, "", Some(&ann)).await;
    assert_eq!(everything[0]["type"], "message");
    assert_eq!(everything[0]["content"], "first, edited");

    for bad in ["?after=x", "?after=-1", "?limit=0", "?limit=501"] {
        assert_eq!(
            changes(&server, &room, bad, Some(&ann)).await.0,
            400,
            "{bad}"
        );
    }
    assert_eq!(
        socket_status(&server, &format!("{path}&seq=1&since=1")).await,
        400
    );
    let hidden = make_room(&server, "hidden", true, &ann).await;
    posted(&server, &hidden, "ours", &ann).await;
    for token in [Some(eve.as_str()), None] {
        assert_eq!(changes(&server, &hidden, "", token).await.0, 404);
    }
    db.drop_db().await;
}

/// Two replicas on MariaDB and Redis: changes made on one reach the other's sockets live,
/// each with its `seq`; a socket that goes away meanwhile and comes back on the other
/// replica with its last `seq` gets exactly what it missed. While Redis is down, changes
/// made on one replica reach the other's sockets once it is back (read from the log).
#[tokio::test(flavor = "multi_thread")]
async fn changes_reach_every_replica_and_survive_a_redis_outage() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let options = ServerOptions::new(&db.url)
            .env("REDIS_URL", &redis.url())
            .env("TOKEN_SECRET", SHARED_SECRET);
        servers.push(Server::start_with(options).await);
    }
    let (a, b) = (&servers[0], &servers[1]);
    for server in [a, b] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                hub_state(server).await == "up"
            })
            .await
        );
    }
    let (ann_id, ann) = sign_up(a, &unique_name("ann")).await;
    let room = make_room(a, "replicas", false, &ann).await;
    let path = format!("/ws/{room}/{ann_id}?token={ann}");
    let mut on_b = open_socket(b, &path).await;
    next_about(&mut on_b, "user_joined", &ann_id).await;
    let first = posted(a, &room, "first", &ann).await;
    next_of(&mut on_b, &["message"]).await;
    edit(a, first, "first!", &ann).await;
    let edited = next_of(&mut on_b, &["message_updated"]).await;
    let last_seen = edited["seq"].as_i64().unwrap();
    drop(on_b);

    react(a, Method::PUT, first, "👀", &ann).await;
    let second = posted(b, &room, "second", &ann).await;
    delete(a, second, &ann).await;
    let mut back = open_socket(b, &format!("{path}&seq={last_seen}")).await;
    let missed = changes_until_quiet(&mut back, Duration::from_millis(1500)).await;
    assert_eq!(
        summary(&missed),
        [
            ("reaction_added".to_string(), first),
            ("message_deleted".to_string(), second),
        ],
        "the deleted message's own frame went with it: {missed:?}"
    );
    assert_increasing(&missed, last_seen);

    // Redis goes away; an edit on a is not heard on b until it is back.
    let port = redis.kill();
    assert!(
        eventually(Duration::from_secs(10), || async {
            hub_state(b).await == "down"
        })
        .await
    );
    edit(a, first, "said while Redis was away", &ann).await;
    let redis = Redis::start_on(port).await;
    let caught = next_of(&mut back, &["message_updated"]).await;
    assert_eq!(caught["content"], "said while Redis was away");
    assert!(caught["seq"].as_i64().unwrap() > missed[1]["seq"].as_i64().unwrap());
    // Nothing twice after it.
    let after = changes_until_quiet(&mut back, Duration::from_millis(1500)).await;
    assert!(after.is_empty(), "{after:?}");
    drop(servers);
    drop(redis);
    db.drop_db().await;
}

/// With `change_log_days = 0` a restart prunes every change: a reader coming back with a
/// `seq` from before is told to `resync` (socket and HTTP), and live changes follow; one
/// asking from after the pruned changes is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_from_before_what_is_kept_is_told_to_resync() {
    let db = TestDb::create(Backend::Sqlite).await;
    let options = || {
        ServerOptions::new(&db.url)
            .env("ROCKET_CHANGE_LOG_DAYS", "0")
            .env("TOKEN_SECRET", SHARED_SECRET)
    };
    let server = Server::start_with(options()).await;
    let (ann_id, ann) = sign_up(&server, &unique_name("ann")).await;
    let room = make_room(&server, "pruned", false, &ann).await;
    let first = posted(&server, &room, "first", &ann).await;
    edit(&server, first, "edited", &ann).await;
    let (_, log) = changes(&server, &room, "", Some(&ann)).await;
    let edit_seq = log[1]["seq"].as_i64().unwrap();
    server.stop();

    let server = Server::start_with(options()).await;
    let before = first << 20;
    // The restart prunes at once, in the background.
    let told = eventually(Duration::from_secs(10), || async {
        let (status, told) = changes(&server, &room, &format!("?after={before}"), Some(&ann)).await;
        status == 200 && told == json!([{"type": "resync", "room_id": room}])
    })
    .await;
    assert!(
        told,
        "a reader from before the pruned edit is told to resync"
    );
    let (_, fine) = changes(&server, &room, &format!("?after={edit_seq}"), Some(&ann)).await;
    assert_eq!(fine, json!([]));
    let path = format!("/ws/{room}/{ann_id}?token={ann}&seq={before}");
    let mut ws = open_socket(&server, &path).await;
    let resync = next_of(&mut ws, &["resync"]).await;
    assert_eq!(resync, json!({"type": "resync", "room_id": room}));
    let next = posted(&server, &room, "after the restart", &ann).await;
    assert_eq!(next_of(&mut ws, &["message"]).await["id"], next);
    db.drop_db().await;
}

//! Bots over real HTTP and WebSocket: an admin makes one for some rooms; its token reads
//! and posts there at every door (the Flask original's POST and poll, the JSON API, the
//! room socket) as a bot, and is 403 in every other room; lists show it its rooms only; it
//! cannot make rooms, hooks or direct conversations; deleting it refuses its token at
//! once and closes its socket, on this replica and on another. A bot in a private room
//! only as a member is in process, in `tests/integrations.rs`.

mod common;

use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn make_bot(server: &Server, name: &str, rooms: &[&str]) -> (String, String) {
    let (status, bot) = admin_call(
        server,
        Method::POST,
        "/api/bots",
        Some(json!({"name": name, "rooms": rooms})),
    )
    .await;
    assert_eq!(status, 201, "{bot}");
    (
        bot["id"].as_str().unwrap().to_string(),
        bot["token"].as_str().unwrap().to_string(),
    )
}

async fn legacy_post(server: &Server, room: &str, token: &str, msg: &str) -> u16 {
    client()
        .post(format!("{}/api/chat/{room}", server.url))
        .bearer_auth(token)
        .form(&[("msg", msg)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn bots_keep_to_their_rooms(backend: Backend) {
    let db = TestDb::create(backend).await;
    let redis = Redis::start().await;
    // Two replicas that take each other's tokens (one secret, as a deployment's).
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let options = ServerOptions::new(&db.url)
            .env("REDIS_URL", &redis.url())
            .env(
                "TOKEN_SECRET",
                "the bot test's shared secret, 32 bytes or more",
            );
        replicas.push(Server::start_with(options).await);
    }
    for r in &replicas {
        let up = eventually(Duration::from_secs(10), || async {
            hub_state(r).await == "up"
        })
        .await;
        assert!(up, "hub connected to Redis");
    }
    let server = &replicas[0];
    let (_, ann) = sign_up(server, &unique_name("ann")).await;
    let (ours, theirs) = (room("ours"), room("theirs"));
    for r in [&ours, &theirs] {
        post_ok(server, r, &[("username", "setup"), ("msg", "room exists")]).await;
    }

    // Only an admin makes one; its name is taken like a person's; its rooms must exist.
    let body = json!({"name": "deploy-bot", "rooms": [ours]});
    assert_eq!(
        call_with_token(
            server,
            Method::POST,
            "/api/bots",
            Some(body.clone()),
            Some(&ann)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(server, Method::POST, "/api/bots", Some(body)).await.0,
        401
    );
    let missing = json!({"name": "x-bot", "rooms": ["no-such-room-anywhere"]});
    assert_eq!(
        admin_call(server, Method::POST, "/api/bots", Some(missing))
            .await
            .0,
        404
    );
    let none = json!({"name": "x-bot", "rooms": []});
    assert_eq!(
        admin_call(server, Method::POST, "/api/bots", Some(none))
            .await
            .0,
        400
    );
    let name = unique_name("deploy");
    let (id, token) = make_bot(server, &name, &[&ours]).await;
    assert!(id.starts_with("bot:"), "{id}");
    let again = json!({"name": name.to_uppercase(), "rooms": [ours]});
    assert_eq!(
        admin_call(server, Method::POST, "/api/bots", Some(again))
            .await
            .0,
        409
    );
    let (status, _) = call(
        server,
        Method::POST,
        "/api/auth/register",
        Some(json!({"username": name, "password": "long enough"})),
    )
    .await;
    assert_eq!(status, 409, "a person cannot take a bot's name");
    // It has no password.
    let (status, _) = call(
        server,
        Method::POST,
        "/api/auth/login",
        Some(json!({"username": name, "password": "!bot"})),
    )
    .await;
    assert_eq!(status, 401);

    // Its room, at every door: as itself, a bot.
    assert_eq!(
        legacy_post(server, &ours, &token, "from the form").await,
        204
    );
    let (status, posted) =
        say_json(server, &ours, json!({"content": "from the API"}), &token).await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(
        (posted["user_id"].as_str(), posted["bot"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    let mut ws = open_socket(server, &format!("/ws/{ours}/{id}?token={token}")).await;
    send(
        &mut ws,
        json!({"type": "message", "content": "from the socket"}),
    )
    .await;
    let frame = next_of(&mut ws, &["message"]).await;
    assert_eq!(
        (frame["content"].as_str(), frame["bot"].as_bool()),
        (Some("from the socket"), Some(true))
    );
    let text = client()
        .get(format!("{}/api/chat/{ours}", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 200);
    let text = text.text().await.unwrap();
    assert!(text.contains(&format!("{name}: from the form")), "{text}");

    // Any other room: 403 to read or post, at every door, whether it exists or not.
    assert_eq!(legacy_post(server, &theirs, &token, "no").await, 403);
    assert_eq!(
        say_json(server, &theirs, json!({"content": "no"}), &token)
            .await
            .0,
        403
    );
    for path in [
        format!("/api/chat/{theirs}"),
        format!("/api/chat/rooms/{theirs}/messages"),
        "/api/chat/rooms/never-made-room/messages".to_string(),
    ] {
        let status = client()
            .get(format!("{}{path}", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 403, "{path}");
    }
    assert_eq!(
        socket_status(server, &format!("/ws/{theirs}/{id}?token={token}")).await,
        403
    );

    // Lists show it its room alone; search finds nothing elsewhere.
    post_ok(
        server,
        &theirs,
        &[("username", "x"), ("msg", "needle elsewhere")],
    )
    .await;
    post_ok(server, &ours, &[("username", "x"), ("msg", "needle here")]).await;
    let (_, rooms) =
        call_with_token(server, Method::GET, "/api/chat/rooms", None, Some(&token)).await;
    let ids: Vec<&str> = rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ours.as_str()]);
    let (_, hits) = call_with_token(
        server,
        Method::GET,
        "/api/search?q=needle",
        None,
        Some(&token),
    )
    .await;
    let found: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [ours.as_str()]);
    // The rooms are chosen by the query, not after it: a page of one is still whole when
    // the newest hit is in another room.
    post_ok(
        server,
        &theirs,
        &[("username", "x"), ("msg", "needle newer elsewhere")],
    )
    .await;
    let (_, hits) = call_with_token(
        server,
        Method::GET,
        "/api/search?q=needle&limit=1",
        None,
        Some(&token),
    )
    .await;
    assert_eq!(hits.as_array().map(Vec::len), Some(1), "{hits}");
    assert_eq!(hits[0]["room_id"], ours.as_str());

    // Mentioned in a room not on its list, a bot hears nothing of it; in its own, it does.
    let mention = format!("@{name} look");
    post_ok(
        server,
        &theirs,
        &[("username", "x"), ("msg", &format!("{mention} elsewhere"))],
    )
    .await;
    post_ok(
        server,
        &ours,
        &[("username", "x"), ("msg", &format!("{mention} here"))],
    )
    .await;
    let path = format!("/api/notifications/{id}");
    let heard = eventually(Duration::from_secs(10), || async {
        let (_, list) = call_with_token(server, Method::GET, &path, None, Some(&token)).await;
        list.as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    assert!(heard, "the bot was not told of a mention in its own room");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, list) = call_with_token(server, Method::GET, &path, None, Some(&token)).await;
    let rooms: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["room_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(rooms, [ours.as_str()], "{list}");

    // What a bot may not do.
    let (status, body) = call_with_token(
        server,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"name": unique_name("botroom")})),
        Some(&token),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (ann_id, _) = sign_up(server, &unique_name("bea")).await;
    let path = format!("/api/chat/direct/{ann_id}");
    assert_eq!(
        call_with_token(server, Method::POST, &path, None, Some(&token))
            .await
            .0,
        403
    );
    let hook = json!({"room_id": ours, "name": "h"});
    assert_eq!(
        call_with_token(server, Method::POST, "/api/hooks", Some(hook), Some(&token))
            .await
            .0,
        403
    );

    // Listed for the admin, without its token.
    let (status, listed) = admin_call(server, Method::GET, "/api/bots", None).await;
    assert_eq!(status, 200);
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["rooms"], json!([ours]));
    assert!(mine.get("token").is_none());

    // Deleted: its token is refused here at once and on the other replica within 2 s, and
    // its socket closes as at a sign-out.
    let mut other_ws = open_socket(&replicas[1], &format!("/ws/{ours}/{id}?token={token}")).await;
    let path = format!("/api/bots/{id}");
    assert_eq!(
        call_with_token(server, Method::DELETE, &path, None, Some(&ann))
            .await
            .0,
        403
    );
    assert_eq!(admin_call(server, Method::DELETE, &path, None).await.0, 204);
    assert_eq!(admin_call(server, Method::DELETE, &path, None).await.0, 404);
    assert_eq!(legacy_post(server, &ours, &token, "after").await, 401);
    let refused_there = eventually(Duration::from_secs(3), || async {
        legacy_post(&replicas[1], &ours, &token, "after").await == 401
    })
    .await;
    assert!(
        refused_there,
        "the other replica still takes the deleted bot's token"
    );
    for socket in [&mut ws, &mut other_ws] {
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(frame)) = socket.next().await {
                if let Message::Close(frame) = frame {
                    return frame.map(|f| u16::from(f.code));
                }
            }
            None
        })
        .await
        .expect("the bot's socket was not closed");
        assert_eq!(closed, Some(4001));
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_bots_keep_to_their_rooms() {
    bots_keep_to_their_rooms(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_bots_keep_to_their_rooms() {
    bots_keep_to_their_rooms(Backend::Postgres).await;
}

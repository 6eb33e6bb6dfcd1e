//! Conversations beyond posting, over real HTTP and sockets on SQLite, MariaDB and
//! PostgreSQL: editing a message (`PATCH /api/chat/messages/<id>`), who may in open mode,
//! and every reader told: the room's sockets on every replica, the JSON history, the Flask
//! original's transcript (same time and author, the new text, a new ETag); reactions
//! (`PUT`/`DELETE /api/chat/messages/<id>/reactions/<emoji>`), once per user and emoji,
//! 20 emoji a message, counted in the history with `me`, told to the sockets. An edit in a
//! room one cannot see, and in required mode, are in process, in `tests/contracts.rs`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

on_every_backend!(
    only_the_author_or_an_admin_edits_and_every_reader_sees_it,
    reactions_count_once_per_user_and_every_reader_sees_them,
    a_reply_shows_what_it_answers_until_that_is_deleted
);

/// A public room made by the holder of `token`.
async fn public_room(server: &Server, prefix: &str, token: &str) -> String {
    make_room(server, prefix, false, token).await
}

async fn edit(server: &Server, id: i64, body: Value, token: Option<&str>) -> (u16, Value) {
    let path = format!("/api/chat/messages/{id}");
    call_with_token(server, Method::PATCH, &path, Some(body), token).await
}

/// Open mode: ann (signed in) posts; anonymous callers, bob and a wrong token may not
/// edit it (401, 403, 403); ann may, and so may the admin. Her socket's room hears
/// `message_updated` with the new text and `edited_at`; the JSON history and the legacy
/// transcript show the new text in the same line (same time, same author), and a poll
/// holding the old ETag reads again. Content follows the post rules.
async fn only_the_author_or_an_admin_edits_and_every_reader_sees_it(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (ann_id, ann) = sign_up(&server, &unique_name("ann")).await;
    let (_, bob) = sign_up(&server, &unique_name("bob")).await;
    let room = public_room(&server, "edits", &ann).await;
    let (status, posted) = say_json(&server, &room, json!({"content": "teh plan"}), &ann).await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(posted["edited_at"], Value::Null);
    let id = posted["id"].as_i64().unwrap();
    let transcript = |etag: Option<String>| {
        let url = format!("{}/api/chat/{room}", server.url);
        async move {
            let mut req = client().get(url);
            if let Some(etag) = etag {
                req = req.header("If-None-Match", etag);
            }
            let res = req.send().await.unwrap();
            let etag = res.headers()["etag"].to_str().unwrap().to_string();
            (res.status().as_u16(), etag, res.text().await.unwrap())
        }
    };
    let (_, etag_before, before) = transcript(None).await;
    assert!(before.ends_with(": teh plan"), "{before}");

    let mut watcher = open_socket(&server, &format!("/ws/{room}/watcher")).await;
    next_about(&mut watcher, "user_joined", "watcher").await;

    // Who may not: nobody anonymous, not another user, not a wrong token.
    let fixed = json!({"content": "the plan"});
    assert_detail(
        &edit(&server, id, fixed.clone(), None).await,
        401,
        "sign in",
    );
    assert_detail(
        &edit(&server, id, fixed.clone(), Some(&bob)).await,
        403,
        "author",
    );
    assert_eq!(
        edit(&server, id, fixed.clone(), Some("not-a-token"))
            .await
            .0,
        401
    );
    // Content as a post's: blank, control characters and over-long text are 400.
    assert_eq!(
        edit(&server, id, json!({"content": "  "}), Some(&ann))
            .await
            .0,
        400
    );
    assert_eq!(edit(&server, id, json!({}), Some(&ann)).await.0, 400);
    assert_eq!(
        edit(&server, id, json!({"content": "a\u{1b}[2J"}), Some(&ann))
            .await
            .0,
        400
    );
    let long = "x".repeat(4097);
    assert_eq!(
        edit(&server, id, json!({"content": long}), Some(&ann))
            .await
            .0,
        400
    );
    // Not a message: 404; not a number: 400.
    assert_eq!(
        edit(&server, id + 1000, fixed.clone(), Some(&ann)).await.0,
        404
    );
    assert_eq!(
        call_with_token(
            &server,
            Method::PATCH,
            "/api/chat/messages/x",
            Some(fixed.clone()),
            Some(&ann)
        )
        .await
        .0,
        400
    );
    let (_, _, unchanged) = transcript(None).await;
    assert_eq!(unchanged, before, "nothing refused changed the text");

    // The author may.
    let (status, edited) = edit(&server, id, fixed.clone(), Some(&ann)).await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["content"], "the plan");
    assert_eq!(edited["id"], id);
    assert_eq!(edited["user_id"], ann_id.as_str());
    assert_eq!(edited["created_at"], posted["created_at"]);
    let edited_at = edited["edited_at"].as_str().expect("edited_at").to_string();
    assert!(chrono::DateTime::parse_from_rfc3339(&edited_at).is_ok());

    let frame = next_of(&mut watcher, &["message_updated"]).await;
    assert_eq!(frame["id"], id);
    assert_eq!(frame["room_id"], room.as_str());
    assert_eq!(frame["content"], "the plan");
    assert_eq!(frame["edited_at"], edited_at.as_str());

    let (_, history) = call(
        &server,
        Method::GET,
        &format!("/api/chat/rooms/{room}/messages"),
        None,
    )
    .await;
    assert_eq!(history[0]["content"], "the plan");
    assert_eq!(history[0]["edited_at"], edited_at.as_str());
    // The Flask original's line: same time, same author, the new text; its ETag moved, so
    // a poll that held the old one reads the new text.
    let (status, etag_after, after) = transcript(Some(etag_before.clone())).await;
    assert_eq!(status, 200, "a poll holding the old ETag reads again");
    assert_ne!(etag_after, etag_before);
    assert_eq!(after, before.replace("teh plan", "the plan"));

    // The admin may too; a second edit is seen again.
    let (status, again) = edit(
        &server,
        id,
        json!({"content": "the plan, v2"}),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let frame = next_of(&mut watcher, &["message_updated"]).await;
    assert_eq!(frame["content"], "the plan, v2");
    let (_, _, last) = transcript(None).await;
    assert!(last.ends_with(": the plan, v2"), "{last}");
    db.drop_db().await;
}

/// Two replicas on MariaDB and Redis: an edit made on one reaches the sockets of the
/// room on the other, and the other's cached transcript reads the new text; a reaction
/// too.
#[tokio::test(flavor = "multi_thread")]
async fn an_edit_reaches_every_replica() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let servers = replicas(&db, &redis, 2).await;
    let (a, b) = (&servers[0], &servers[1]);
    let (_, ann) = sign_up(a, &unique_name("ann")).await;
    let room = public_room(a, "replicas", &ann).await;
    let mut on_b = open_socket(b, &format!("/ws/{room}/reader")).await;
    next_about(&mut on_b, "user_joined", "reader").await;
    let (_, posted) = say_json(a, &room, json!({"content": "frist"}), &ann).await;
    let id = posted["id"].as_i64().unwrap();
    next_of(&mut on_b, &["message"]).await;
    // b holds the room's transcript in memory from here.
    let text = client()
        .get(format!("{}/api/chat/{room}", b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.ends_with(": frist"));

    let (status, _) = edit(a, id, json!({"content": "first"}), Some(&ann)).await;
    assert_eq!(status, 200);
    let frame = next_of(&mut on_b, &["message_updated"]).await;
    assert_eq!(
        (frame["id"].as_i64(), frame["content"].as_str()),
        (Some(id), Some("first"))
    );
    let text = client()
        .get(format!("{}/api/chat/{room}", b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.ends_with(": first"), "{text}");
    // A reaction made on a is heard on b.
    let (status, _) = react(a, Method::PUT, id, "👀", (Some(&ann), None)).await;
    assert_eq!(status, 200);
    let frame = next_of(&mut on_b, &["reaction_added"]).await;
    assert_eq!(
        (frame["message_id"].as_i64(), frame["emoji"].as_str()),
        (Some(id), Some("👀"))
    );
    drop(servers);
    db.drop_db().await;
}

async fn react(
    server: &Server,
    method: Method,
    id: i64,
    emoji: &str,
    as_whom: (Option<&str>, Option<&str>),
) -> (u16, Value) {
    let (token, user_id) = as_whom;
    let emoji = percent_encoding::utf8_percent_encode(emoji, percent_encoding::NON_ALPHANUMERIC);
    let query = user_id.map_or(String::new(), |u| format!("?user_id={u}"));
    let path = format!("/api/chat/messages/{id}/reactions/{emoji}{query}");
    call_with_token(server, method, &path, None, token).await
}

/// Open mode: bob (signed in) and a guest naming itself react; a second PUT changes
/// nothing and tells nobody; who is who holds (no id of an account without its token,
/// no one else's id when signed in); the history counts each emoji with `me` for the
/// reader; a DELETE takes one's own off; a message holds 20 different emoji at most; a
/// message of a private room is 404 to a stranger.
async fn reactions_count_once_per_user_and_every_reader_sees_them(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (ann_id, ann) = sign_up(&server, &unique_name("ann")).await;
    let (bob_id, bob) = sign_up(&server, &unique_name("bob")).await;
    let room = public_room(&server, "reacts", &ann).await;
    let (_, posted) = say_json(&server, &room, json!({"content": "lunch?"}), &ann).await;
    assert_eq!(posted["reactions"], json!([]));
    let id = posted["id"].as_i64().unwrap();
    let mut watcher = open_socket(&server, &format!("/ws/{room}/watcher")).await;
    next_about(&mut watcher, "user_joined", "watcher").await;

    let (status, answer) = react(&server, Method::PUT, id, "👍", (Some(&bob), None)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"message_id": id, "emoji": "👍", "count": 1, "me": true})
    );
    let frame = next_of(&mut watcher, &["reaction_added", "reaction_removed"]).await;
    // Numbered after the message it is about (`domain::seq`).
    assert_eq!(frame["seq"], (id << 20) + 1);
    assert_eq!(
        frame,
        json!({"type": "reaction_added", "message_id": id, "room_id": room, "emoji": "👍",
            "user_id": bob_id, "count": 1, "seq": (id << 20) + 1})
    );
    // Again: the same answer, and no frame (the next one is the guest's).
    let (status, again) = react(&server, Method::PUT, id, "👍", (Some(&bob), None)).await;
    assert_eq!((status, again["count"].as_u64()), (200, Some(1)));
    let (status, _) = react(&server, Method::PUT, id, "👍", (None, Some("guest-1"))).await;
    assert_eq!(status, 200);
    let frame = next_of(&mut watcher, &["reaction_added", "reaction_removed"]).await;
    assert_eq!(
        (frame["user_id"].as_str(), frame["count"].as_u64()),
        (Some("guest-1"), Some(2))
    );

    // Who is who.
    assert_eq!(
        react(&server, Method::PUT, id, "👍", (None, None)).await.0,
        400
    );
    assert_eq!(
        react(&server, Method::PUT, id, "👍", (None, Some(&ann_id)))
            .await
            .0,
        401
    );
    assert_eq!(
        react(&server, Method::PUT, id, "👍", (Some(&bob), Some(&ann_id)))
            .await
            .0,
        403
    );
    // What is a reaction.
    for bad in ["a", "👍👍", ":No:", " "] {
        assert_eq!(
            react(&server, Method::PUT, id, bad, (Some(&bob), None))
                .await
                .0,
            400,
            "{bad:?}"
        );
    }
    assert_eq!(
        react(&server, Method::PUT, id, ":+1:", (Some(&ann), None))
            .await
            .0,
        200
    );
    let frame = next_of(&mut watcher, &["reaction_added", "reaction_removed"]).await;
    assert_eq!(
        (frame["emoji"].as_str(), frame["count"].as_u64()),
        (Some(":+1:"), Some(1))
    );
    assert_eq!(
        react(&server, Method::PUT, id + 1000, "👍", (Some(&bob), None))
            .await
            .0,
        404
    );

    // The history counts them, in the order they first came, with `me` for its reader.
    let history = |token: Option<String>, query: &'static str| {
        let path = format!("/api/chat/rooms/{room}/messages{query}");
        let server = &server;
        async move {
            let (status, body) =
                call_with_token(server, Method::GET, &path, None, token.as_deref()).await;
            assert_eq!(status, 200, "{body}");
            body[0]["reactions"].clone()
        }
    };
    assert_eq!(
        history(Some(bob.clone()), "").await,
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": ":+1:", "count": 1, "me": false}])
    );
    assert_eq!(
        history(None, "?user_id=guest-1").await,
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": ":+1:", "count": 1, "me": false}])
    );
    let (_, one) = call_with_token(
        &server,
        Method::GET,
        &format!("/api/chat/messages/{id}"),
        None,
        Some(&ann),
    )
    .await;
    assert_eq!(
        one["reactions"][1],
        json!({"emoji": ":+1:", "count": 1, "me": true})
    );

    // Taking one's own off: 204 and a frame; again: 204 and none.
    let (status, _) = react(&server, Method::DELETE, id, "👍", (Some(&bob), None)).await;
    assert_eq!(status, 204);
    let frame = next_of(&mut watcher, &["reaction_added", "reaction_removed"]).await;
    assert_eq!(
        (
            frame["type"].as_str(),
            frame["user_id"].as_str(),
            frame["count"].as_u64()
        ),
        (Some("reaction_removed"), Some(bob_id.as_str()), Some(1))
    );
    assert_eq!(
        react(&server, Method::DELETE, id, "👍", (Some(&bob), None))
            .await
            .0,
        204
    );

    // 20 different emoji a message: 2 so far, 18 more, then no 21st; one already there
    // may still be added by someone else.
    for i in 0..18 {
        let emoji = format!(":e{i}:");
        assert_eq!(
            react(&server, Method::PUT, id, &emoji, (Some(&bob), None))
                .await
                .0,
            200
        );
    }
    let (status, full) = react(
        &server,
        Method::PUT,
        id,
        ":one-too-many:",
        (Some(&bob), None),
    )
    .await;
    assert_eq!(status, 400, "{full}");
    assert!(full["detail"].as_str().unwrap().contains("20"), "{full}");
    assert_eq!(
        react(&server, Method::PUT, id, ":e3:", (Some(&ann), None))
            .await
            .0,
        200
    );
    let frame = next_of(&mut watcher, &["reaction_removed", "reaction_added"]).await;
    assert_eq!(
        frame["emoji"], ":e0:",
        "the next frame after the removal is the next change"
    );

    // A private room's message is 404 to a stranger, signed in or naming itself.
    let hidden = make_room(&server, "hidden", true, &ann).await;
    let (_, secret) = say_json(&server, &hidden, json!({"content": "ours"}), &ann).await;
    let secret = secret["id"].as_i64().unwrap();
    assert_eq!(
        react(&server, Method::PUT, secret, "👍", (Some(&bob), None))
            .await
            .0,
        404
    );
    assert_eq!(
        react(&server, Method::PUT, secret, "👍", (None, Some("guest-1")))
            .await
            .0,
        404
    );

    // A message deleted takes its reactions with it.
    let (status, _) = call_with_token(
        &server,
        Method::DELETE,
        &format!("/api/chat/messages/{id}"),
        None,
        Some(&ann),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        react(&server, Method::PUT, id, "👍", (Some(&bob), None))
            .await
            .0,
        404
    );
    db.drop_db().await;
}

/// A reply (JSON API or socket frame) names a message of its room: it carries `reply_to`
/// and a preview of the original (author, first 140 characters) in what it is posted
/// with, on the sockets and in the history; a message of another room, or none, is 400;
/// once the original is deleted the reply keeps `reply_to` and shows no preview.
async fn a_reply_shows_what_it_answers_until_that_is_deleted(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (_, ann) = sign_up(&server, &unique_name("ann")).await;
    let (_, bob) = sign_up(&server, &unique_name("bob")).await;
    let room = public_room(&server, "replies", &ann).await;
    let other = public_room(&server, "elsewhere", &ann).await;
    let post = |room: String, body: Value, token: String| {
        let server = &server;
        async move { say_json(server, &room, body, &token).await }
    };
    let long = format!("{} and then some", "é".repeat(150));
    let (_, original) = post(room.clone(), json!({"content": long}), ann.clone()).await;
    let original_id = original["id"].as_i64().unwrap();
    let (_, elsewhere) = post(other.clone(), json!({"content": "not here"}), ann.clone()).await;
    let mut watcher = open_socket(&server, &format!("/ws/{room}/watcher")).await;
    next_about(&mut watcher, "user_joined", "watcher").await;

    let preview = json!({"id": original_id, "username": original["username"],
        "content": "é".repeat(140)});
    let (status, reply) = post(
        room.clone(),
        json!({"content": "agreed", "reply_to": original_id}),
        bob.clone(),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["reply_to"], original_id);
    assert_eq!(reply["reply_preview"], preview);
    let frame = next_of(&mut watcher, &["message"]).await;
    assert_eq!(
        (frame["content"].as_str(), &frame["reply_preview"]),
        (Some("agreed"), &preview)
    );

    // By a socket frame too.
    send(
        &mut watcher,
        json!({"type": "message", "content": "me too", "reply_to": original_id}),
    )
    .await;
    let frame = next_of(&mut watcher, &["message"]).await;
    assert_eq!(
        (frame["content"].as_str(), &frame["reply_preview"]),
        (Some("me too"), &preview)
    );
    // Not a message of this room, or none at all: 400 at both doors, nothing stored.
    for answered in [elsewhere["id"].as_i64().unwrap(), original_id + 1000] {
        let (status, answer) = post(
            room.clone(),
            json!({"content": "x", "reply_to": answered}),
            bob.clone(),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        send(
            &mut watcher,
            json!({"type": "message", "content": "x", "reply_to": answered}),
        )
        .await;
        let error = next_of(&mut watcher, &["error", "message"]).await;
        assert_eq!(error["type"], "error", "{error}");
    }

    let history = |room: String| {
        let server = &server;
        async move {
            call(
                server,
                Method::GET,
                &format!("/api/chat/rooms/{room}/messages"),
                None,
            )
            .await
            .1
        }
    };
    let listed = history(room.clone()).await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "the original and two replies: {listed:?}");
    assert_eq!(listed[0]["reply_to"], Value::Null);
    assert_eq!(listed[0]["reply_preview"], Value::Null);
    assert_eq!(listed[1]["reply_preview"], preview);

    let (status, _) = call_with_token(
        &server,
        Method::DELETE,
        &format!("/api/chat/messages/{original_id}"),
        None,
        Some(&ann),
    )
    .await;
    assert_eq!(status, 200);
    let listed = history(room.clone()).await;
    assert_eq!(listed[0]["reply_to"], original_id);
    assert_eq!(listed[0]["reply_preview"], Value::Null);
    db.drop_db().await;
}

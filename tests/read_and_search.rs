//! Read state, over real HTTP and sockets on SQLite, MariaDB and PostgreSQL:
//! `POST /api/chat/rooms/<id>/read` moves a user's mark forward only and tells all their
//! sockets; `GET /api/chat/unread` counts what came after it that is not their own, and
//! their mentions. Which rooms are counted for whom (private rooms, open mode's named
//! guests) and search across rooms (`GET /api/search`, its 401 and a flood's 429 in
//! required mode) are in process, in `tests/contracts.rs`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

on_every_backend!(a_read_mark_moves_forward_counts_what_is_unread_and_reaches_every_device);

async fn mark(server: &Server, room: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let path = format!("/api/chat/rooms/{room}/read");
    call_with_token(server, Method::POST, &path, Some(body), token).await
}

async fn unread(server: &Server, query: &str, token: Option<&str>) -> (u16, Value) {
    let path = format!("/api/chat/unread{query}");
    call_with_token(server, Method::GET, &path, None, token).await
}

/// The line of `room` in an unread list, if it is there.
fn line<'a>(list: &'a Value, room: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|l| l["room_id"] == room)
}

/// ann reads a public room bob talks in. Before her first mark the room is not in her
/// list; after it, `unread` counts bob's messages after the mark and not hers, and
/// `mentions` the one naming her (her mention notification). Her socket in another room
/// hears `read` at each move. A mark behind hers changes nothing; one past the newest
/// message stops at it; nonsense is a 400.
async fn a_read_mark_moves_forward_counts_what_is_unread_and_reaches_every_device(
    backend: Backend,
) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let ann_name = unique_name("ann");
    let (ann_id, ann) = sign_up(&server, &ann_name).await;
    let (_, bob) = sign_up(&server, &unique_name("bob")).await;
    let room = make_room(&server, "reading", false, &bob).await;
    let lobby = make_room(&server, "lobby", false, &bob).await;
    let mut device = open_socket(&server, &format!("/ws/{lobby}/{ann_id}?token={ann}")).await;
    next_about(&mut device, "user_joined", &ann_id).await;

    let first = posted(&server, &room, "one", &bob).await;
    posted(&server, &room, "two", &bob).await;
    posted(&server, &room, "mine", &ann).await;
    posted(&server, &room, "three", &bob).await;
    let newest = posted(&server, &room, &format!("@{ann_name} look"), &bob).await;

    let (status, list) = unread(&server, "", Some(&ann)).await;
    assert_eq!(status, 200, "{list}");
    assert!(line(&list, &room).is_none(), "not read yet: {list}");

    let (status, answer) = mark(&server, &room, json!({"last_read_id": first}), Some(&ann)).await;
    assert_eq!(status, 204, "{answer}");
    let frame = next_of(&mut device, &["read"]).await;
    assert_eq!(
        frame,
        json!({"type": "read", "room_id": room, "last_read_id": first})
    );
    // The mention notification is written just after the message: wait for it.
    let counted = eventually(Duration::from_secs(10), || async {
        let (_, list) = unread(&server, "", Some(&ann)).await;
        line(&list, &room).is_some_and(|l| l["mentions"] == 1)
    })
    .await;
    assert!(counted, "the mention is counted");
    let (_, list) = unread(&server, "", Some(&ann)).await;
    assert_eq!(
        line(&list, &room),
        Some(
            &json!({"room_id": room, "last_read_id": first, "unread": 3, "mentions": 1,
            "capped": false})
        )
    );

    // Backwards: nothing moves.
    let (status, _) = mark(&server, &room, json!({"last_read_id": 0}), Some(&ann)).await;
    assert_eq!(status, 204);
    let (_, list) = unread(&server, "", Some(&ann)).await;
    assert_eq!(line(&list, &room).unwrap()["last_read_id"], first);

    // Past the newest: the newest, and nothing is unread.
    let (status, _) = mark(
        &server,
        &room,
        json!({"last_read_id": newest + 1000}),
        Some(&ann),
    )
    .await;
    assert_eq!(status, 204);
    // The backwards mark told nobody: the next frame is this move.
    let frame = next_of(&mut device, &["read"]).await;
    assert_eq!(frame["last_read_id"], newest);
    let (_, list) = unread(&server, "", Some(&ann)).await;
    assert_eq!(
        line(&list, &room),
        Some(
            &json!({"room_id": room, "last_read_id": newest, "unread": 0, "mentions": 0,
            "capped": false})
        )
    );
    // Something new from bob counts again; ann's own does not.
    posted(&server, &room, "four", &bob).await;
    posted(&server, &room, "mine again", &ann).await;
    let (_, list) = unread(&server, "", Some(&ann)).await;
    assert_eq!(line(&list, &room).unwrap()["unread"], 1);

    for bad in [
        json!({}),
        json!({"last_read_id": -1}),
        json!({"last_read_id": "x"}),
    ] {
        let (status, answer) = mark(&server, &room, bad.clone(), Some(&ann)).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let (status, _) = mark(
        &server,
        "no-such-room-here",
        json!({"last_read_id": 1}),
        Some(&ann),
    )
    .await;
    assert_eq!(status, 404);
    db.drop_db().await;
}

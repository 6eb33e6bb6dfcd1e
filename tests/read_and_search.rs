//! Read state and search across rooms, over real HTTP and sockets on SQLite, MariaDB and
//! PostgreSQL: `POST /api/chat/rooms/<id>/read` moves a user's mark forward only and tells
//! all their sockets; `GET /api/chat/unread` counts what came after it that is not their
//! own, and their mentions, in the rooms they may read and no other; `GET /api/search`
//! finds words in every room the caller may read, through each database's full-text
//! index, kept in step by edits and deletes.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

on_every_backend!(
    a_read_mark_moves_forward_counts_what_is_unread_and_reaches_every_device,
    unread_counts_are_for_rooms_one_may_read,
    search_finds_words_in_every_room_one_may_read_and_no_other,
);

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

/// A private room is in its members' lists from the start (never marked: everything in
/// it is unread) and in no one else's: a stranger's mark there is 404. An anonymous
/// caller in open mode names itself with `user_id` (an account's id only with its token:
/// 401), and sees public rooms only.
async fn unread_counts_are_for_rooms_one_may_read(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (_, olga) = sign_up(&server, &unique_name("olga")).await;
    let (ann_id, ann) = sign_up(&server, &unique_name("ann")).await;
    let (_, eve) = sign_up(&server, &unique_name("eve")).await;
    let hidden = make_room(&server, "hidden", true, &olga).await;
    let (status, _) = call_with_token(
        &server,
        Method::POST,
        &format!("/api/chat/rooms/{hidden}/members"),
        Some(json!({"user_id": ann_id})),
        Some(&olga),
    )
    .await;
    assert_eq!(status, 201);
    posted(&server, &hidden, "for members", &olga).await;
    posted(&server, &hidden, "only", &olga).await;

    let (_, list) = unread(&server, "", Some(&ann)).await;
    assert_eq!(
        line(&list, &hidden),
        Some(
            &json!({"room_id": hidden, "last_read_id": 0, "unread": 2, "mentions": 0,
            "capped": false})
        )
    );
    let (_, list) = unread(&server, "", Some(&olga)).await;
    assert_eq!(line(&list, &hidden).unwrap()["unread"], 0, "her own");

    let (status, _) = mark(&server, &hidden, json!({"last_read_id": 1}), Some(&eve)).await;
    assert_eq!(status, 404);
    let (status, _) = mark(
        &server,
        &hidden,
        json!({"last_read_id": 1, "user_id": "guest-1"}),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, list) = unread(&server, "", Some(&eve)).await;
    assert!(line(&list, &hidden).is_none(), "{list}");

    // Anonymous, open mode.
    let public = make_room(&server, "public", false, &olga).await;
    let last = posted(&server, &public, "hello", &olga).await;
    assert_eq!(unread(&server, "", None).await.0, 400, "who?");
    assert_eq!(
        unread(&server, &format!("?user_id={ann_id}"), None).await.0,
        401
    );
    let (status, _) = mark(&server, &public, json!({"last_read_id": last}), None).await;
    assert_eq!(status, 400);
    let (status, _) = call_with_token(
        &server,
        Method::POST,
        &format!("/api/chat/rooms/{public}/read?user_id=guest-2"),
        Some(json!({"last_read_id": last})),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, list) = unread(&server, "?user_id=guest-2", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!([{"room_id": public, "last_read_id": last, "unread": 0, "mentions": 0,
            "capped": false}])
    );
    // Someone else's id, signed in: 403.
    assert_eq!(unread(&server, "?user_id=guest-2", Some(&ann)).await.0, 403);

    // A deleted room leaves every list.
    let (status, _) = call_with_token(
        &server,
        Method::DELETE,
        &format!("/api/chat/rooms/{hidden}"),
        None,
        Some(&olga),
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = unread(&server, "", Some(&ann)).await;
    assert!(line(&list, &hidden).is_none(), "{list}");
    db.drop_db().await;
}

async fn search(server: &Server, query: &str, token: Option<&str>) -> (u16, Value) {
    call_with_token(
        server,
        Method::GET,
        &format!("/api/search?{query}"),
        None,
        token,
    )
    .await
}

/// The ids of what a search found, newest first.
fn ids(found: &Value) -> Vec<i64> {
    found
        .as_array()
        .map(|a| a.iter().map(|m| m["id"].as_i64().unwrap()).collect())
        .unwrap_or_default()
}

/// ann's words in a public room, her own private room and olga's private room (ann is
/// not in it): ann finds hers and the public room's, eve and an anonymous caller the
/// public room's only, the admin all. A word matches a whole word, or with `*` the start of
/// one, any case; all words must be there; the snippet marks them. An edit and a delete change what is
/// found at once. `limit` and `before` page; bad queries are 400.
async fn search_finds_words_in_every_room_one_may_read_and_no_other(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (_, ann) = sign_up(&server, &unique_name("ann")).await;
    let (_, olga) = sign_up(&server, &unique_name("olga")).await;
    let (_, eve) = sign_up(&server, &unique_name("eve")).await;
    let public = make_room(&server, "square", false, &ann).await;
    let own = make_room(&server, "notes", true, &ann).await;
    let hidden = make_room(&server, "vault", true, &olga).await;
    // A word no other test writes, so other tests' rooms on a shared database do not
    // answer too.
    let word = unique_name("zork").replace(['-', '_'], "");
    let in_public = posted(
        &server,
        &public,
        &format!("The {word}ing of <b>version</b> two"),
        &ann,
    )
    .await;
    let in_own = posted(&server, &own, &format!("{word} notes for me"), &ann).await;
    let in_hidden = posted(&server, &hidden, &format!("secret {word} plan"), &olga).await;
    posted(&server, &public, "nothing to see", &ann).await;

    // `word*`: the start of a word, any case.
    let q = format!("q={}*", word.to_uppercase());
    let (status, found) = search(&server, &q, Some(&ann)).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(ids(&found), [in_own, in_public]);
    let hit = &found[1];
    assert_eq!(hit["room_id"], public);
    assert_eq!(
        hit["content"],
        format!("The {word}ing of <b>version</b> two")
    );
    assert_eq!(
        hit["snippet"],
        format!("The <mark>{word}ing</mark> of &lt;b&gt;version&lt;/b&gt; two")
    );
    assert!(hit["created_at"].is_string() && hit["username"].is_string());
    for token in [Some(eve.as_str()), None] {
        assert_eq!(ids(&search(&server, &q, token).await.1), [in_public]);
    }
    assert_eq!(
        ids(&search(&server, &q, Some(ADMIN_TOKEN)).await.1),
        [in_hidden, in_own, in_public]
    );
    // Without a star, whole words only.
    let whole = format!("q={word}");
    assert_eq!(ids(&search(&server, &whole, Some(&ann)).await.1), [in_own]);
    // Every word must be there; a short and a common word too.
    let both = format!("q={word}*+version");
    assert_eq!(
        ids(&search(&server, &both, Some(&ann)).await.1),
        [in_public]
    );
    let short = format!("q=of+{word}*");
    assert_eq!(
        ids(&search(&server, &short, Some(&ann)).await.1),
        [in_public]
    );
    let none = format!("q={word}*+absent");
    assert_eq!(
        ids(&search(&server, &none, Some(&ann)).await.1),
        Vec::<i64>::new()
    );

    // Paging, newest first.
    let (_, page) = search(&server, &format!("{q}&limit=1"), Some(&ann)).await;
    assert_eq!(ids(&page), [in_own]);
    let (_, page) = search(&server, &format!("{q}&limit=1&before={in_own}"), Some(&ann)).await;
    assert_eq!(ids(&page), [in_public]);

    // Edited and deleted: found no more.
    let (status, _) = call_with_token(
        &server,
        Method::PATCH,
        &format!("/api/chat/messages/{in_public}"),
        Some(json!({"content": "said otherwise"})),
        Some(&ann),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call_with_token(
        &server,
        Method::DELETE,
        &format!("/api/chat/messages/{in_own}"),
        None,
        Some(&ann),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&search(&server, &q, Some(&ann)).await.1),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&search(&server, "q=otherwise", Some(&ann)).await.1),
        [in_public]
    );

    for bad in [
        "",
        "q=",
        "q=x",
        "q=%21%3F%21",
        "q=ok&limit=0",
        "q=ok&limit=101",
        "q=ok&before=x",
    ] {
        let answer = search(&server, bad, Some(&ann)).await;
        assert_eq!(answer.0, 400, "{bad}: {}", answer.1);
    }
    let long = format!("q={}", "y".repeat(201));
    assert_eq!(search(&server, &long, Some(&ann)).await.0, 400);
    db.drop_db().await;
}

/// Required mode, limits on: searching needs an identity (401), and a flood of searches
/// is told when to come back (429 with `Retry-After`) while other reads go on.
#[tokio::test(flavor = "multi_thread")]
async fn searches_need_an_identity_in_required_mode_and_a_flood_is_stopped() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_AUTH", "required")).await;
    let (_, ann) = sign_up(&server, &unique_name("ann")).await;
    assert_eq!(search(&server, "q=hello", None).await.0, 401);
    let mut statuses = Vec::new();
    for i in 0..40 {
        let res = client()
            .get(format!("{}/api/search?q=word{i}", server.url))
            .bearer_auth(&ann)
            .send()
            .await
            .unwrap();
        statuses.push((
            res.status().as_u16(),
            res.headers().contains_key("retry-after"),
        ));
    }
    assert_eq!(statuses[0], (200, false));
    let refused = statuses.iter().filter(|s| **s == (429, true)).count();
    assert!(refused >= 10, "30 a minute, 10 at once: {statuses:?}");
    assert_eq!(unread(&server, "", Some(&ann)).await.0, 200);
    db.drop_db().await;
}

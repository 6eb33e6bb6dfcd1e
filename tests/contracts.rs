//! The room API's and notifications' HTTP contracts in process (`tests/app`), on the three
//! databases (SQLite here, MariaDB and PostgreSQL with `FERROCHAT_TEST_DATABASE`, as
//! `scripts/test` runs them): `/api/notifications` kept per user; unread counts for the
//! rooms one may read and no other; search across every room one may read, and in
//! required mode its 401 and a flood's 429; an edit refused in a room one cannot see, and
//! in required mode the signed-in author's. No socket, no second replica, no outage: what
//! the sockets are told is in `tests/notifications.rs`, `tests/read_and_search.rs` and
//! `tests/conversations.rs`.

mod app;

use app::{assert_detail, unique, Persona, TestApp};
use rocket::http::{Header, Method};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// Posts `body` to the room through the JSON API as `who`.
async fn say_json(app: &TestApp, room: &str, body: Value, who: &Persona) -> (u16, Value) {
    let path = format!("/api/chat/rooms/{room}/messages");
    app.call(who, Method::Post, &path, Some(body)).await
}

/// Posts `content` to the room as `who`; its id.
async fn posted(app: &TestApp, room: &str, content: &str, who: &Persona) -> i64 {
    let (status, body) = say_json(app, room, json!({ "content": content }), who).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

// Notifications.

#[rocket::async_test]
async fn notifications_are_kept_per_user() {
    let app = TestApp::new().await;
    let anonymous = app.anonymous();
    let user = unique("nina");
    let create = |title: &'static str| {
        let (app, anonymous, user) = (&app, &anonymous, user.clone());
        async move {
            let answer = app
                .call(
                    anonymous,
                    Method::Post,
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
        let (app, anonymous, user) = (&app, &anonymous, user.clone());
        async move {
            let (status, body) = app
                .call(
                    anonymous,
                    Method::Get,
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
        let (app, anonymous, user) = (&app, &anonymous, user.clone());
        async move {
            let (_, body) = app
                .call(
                    anonymous,
                    Method::Get,
                    &format!("/api/notifications/{user}/unread-count"),
                    None,
                )
                .await;
            body["unread_count"].as_u64().unwrap()
        }
    };
    assert_eq!(unread().await, 3);

    let path = format!("/api/notifications/{}/read", first["id"].as_str().unwrap());
    assert_eq!(
        app.call(&anonymous, Method::Patch, &path, None).await.0,
        200
    );
    assert_eq!(
        app.call(&anonymous, Method::Patch, &path, None).await.0,
        200,
        "reading twice is fine"
    );
    assert_eq!(unread().await, 2);
    assert_eq!(list("?unread_only=true").await, ["three", "two"]);

    let (status, body) = app
        .call(
            &anonymous,
            Method::Patch,
            &format!("/api/notifications/{user}/read-all"),
            None,
        )
        .await;
    assert_eq!((status, body["updated"].as_u64()), (200, Some(2)));
    assert_eq!(unread().await, 0);
    assert!(list("?unread_only=true").await.is_empty());

    let path = format!("/api/notifications/{}", third["id"].as_str().unwrap());
    assert_eq!(
        app.call(&anonymous, Method::Delete, &path, None).await.0,
        200
    );
    assert_detail(
        &app.call(&anonymous, Method::Delete, &path, None).await,
        404,
        "not found",
    );
    assert_detail(
        &app.call(
            &anonymous,
            Method::Patch,
            "/api/notifications/nope/read",
            None,
        )
        .await,
        404,
        "not found",
    );
    assert_eq!(list("").await, ["two", "one"]);
    // Someone else's list is their own.
    let (_, other) = app
        .call(
            &anonymous,
            Method::Get,
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
            &app.call(&anonymous, Method::Post, "/api/notifications", Some(body))
                .await,
            400,
            says,
        );
    }
    for query in ["?limit=0", "?limit=500", "?unread_only=maybe"] {
        let answer = app
            .call(
                &anonymous,
                Method::Get,
                &format!("/api/notifications/{user}{query}"),
                None,
            )
            .await;
        assert_eq!(answer.0, 400, "{query}");
    }
    let (status, health) = app
        .call(&anonymous, Method::Get, "/api/notifications/health", None)
        .await;
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
}

// Read marks and unread counts.

async fn mark(app: &TestApp, room: &str, body: Value, who: &Persona) -> (u16, Value) {
    let path = format!("/api/chat/rooms/{room}/read");
    app.call(who, Method::Post, &path, Some(body)).await
}

async fn unread(app: &TestApp, query: &str, who: &Persona) -> (u16, Value) {
    let path = format!("/api/chat/unread{query}");
    app.call(who, Method::Get, &path, None).await
}

/// The line of `room` in an unread list, if it is there.
fn line<'a>(list: &'a Value, room: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|l| l["room_id"] == room)
}

/// A private room is in its members' lists from the start (never marked: everything in
/// it is unread) and in no one else's: a stranger's mark there is 404. An anonymous
/// caller in open mode names itself with `user_id` (an account's id only with its token:
/// 401), and sees public rooms only.
#[rocket::async_test]
async fn unread_counts_are_for_rooms_one_may_read() {
    let app = TestApp::new().await;
    let anonymous = app.anonymous();
    let olga = app.signed_in("olga").await;
    let ann = app.signed_in("ann").await;
    let ann_id = ann.user_id.clone().unwrap();
    let eve = app.signed_in("eve").await;
    let hidden = app.make_room("hidden", true, &olga).await;
    let (status, _) = app
        .call(
            &olga,
            Method::Post,
            &format!("/api/chat/rooms/{hidden}/members"),
            Some(json!({"user_id": ann_id})),
        )
        .await;
    assert_eq!(status, 201);
    posted(&app, &hidden, "for members", &olga).await;
    posted(&app, &hidden, "only", &olga).await;

    let (_, list) = unread(&app, "", &ann).await;
    assert_eq!(
        line(&list, &hidden),
        Some(
            &json!({"room_id": hidden, "last_read_id": 0, "unread": 2, "mentions": 0,
            "capped": false})
        )
    );
    let (_, list) = unread(&app, "", &olga).await;
    assert_eq!(line(&list, &hidden).unwrap()["unread"], 0, "her own");

    let (status, _) = mark(&app, &hidden, json!({"last_read_id": 1}), &eve).await;
    assert_eq!(status, 404);
    let (status, _) = mark(
        &app,
        &hidden,
        json!({"last_read_id": 1, "user_id": "guest-1"}),
        &anonymous,
    )
    .await;
    assert_eq!(status, 404);
    let (_, list) = unread(&app, "", &eve).await;
    assert!(line(&list, &hidden).is_none(), "{list}");

    // Anonymous, open mode.
    let public = app.make_room("public", false, &olga).await;
    let last = posted(&app, &public, "hello", &olga).await;
    assert_eq!(unread(&app, "", &anonymous).await.0, 400, "who?");
    assert_eq!(
        unread(&app, &format!("?user_id={ann_id}"), &anonymous)
            .await
            .0,
        401
    );
    let (status, _) = mark(&app, &public, json!({"last_read_id": last}), &anonymous).await;
    assert_eq!(status, 400);
    let (status, _) = app
        .call(
            &anonymous,
            Method::Post,
            &format!("/api/chat/rooms/{public}/read?user_id=guest-2"),
            Some(json!({"last_read_id": last})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, list) = unread(&app, "?user_id=guest-2", &anonymous).await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!([{"room_id": public, "last_read_id": last, "unread": 0, "mentions": 0,
            "capped": false}])
    );
    // Someone else's id, signed in: 403.
    assert_eq!(unread(&app, "?user_id=guest-2", &ann).await.0, 403);

    // A deleted room leaves every list.
    let (status, _) = app
        .call(
            &olga,
            Method::Delete,
            &format!("/api/chat/rooms/{hidden}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, list) = unread(&app, "", &ann).await;
    assert!(line(&list, &hidden).is_none(), "{list}");
}

// Search across rooms.

async fn search(app: &TestApp, query: &str, who: &Persona) -> (u16, Value) {
    app.call(who, Method::Get, &format!("/api/search?{query}"), None)
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
#[rocket::async_test]
async fn search_finds_words_in_every_room_one_may_read_and_no_other() {
    let app = TestApp::new().await;
    let ann = app.signed_in("ann").await;
    let olga = app.signed_in("olga").await;
    let eve = app.signed_in("eve").await;
    let public = app.make_room("square", false, &ann).await;
    let own = app.make_room("notes", true, &ann).await;
    let hidden = app.make_room("vault", true, &olga).await;
    // A word no other test writes (each test has a database of its own here, but a word of
    // its own costs nothing and keeps the test right on a shared one).
    let word = unique("zork").replace(['-', '_'], "");
    let in_public = posted(
        &app,
        &public,
        &format!("The {word}ing of <b>version</b> two"),
        &ann,
    )
    .await;
    let in_own = posted(&app, &own, &format!("{word} notes for me"), &ann).await;
    let in_hidden = posted(&app, &hidden, &format!("secret {word} plan"), &olga).await;
    posted(&app, &public, "nothing to see", &ann).await;

    // `word*`: the start of a word, any case.
    let q = format!("q={}*", word.to_uppercase());
    let (status, found) = search(&app, &q, &ann).await;
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
    for who in [&eve, &app.anonymous()] {
        assert_eq!(ids(&search(&app, &q, who).await.1), [in_public]);
    }
    assert_eq!(
        ids(&search(&app, &q, &app.admin()).await.1),
        [in_hidden, in_own, in_public]
    );
    // Without a star, whole words only.
    let whole = format!("q={word}");
    assert_eq!(ids(&search(&app, &whole, &ann).await.1), [in_own]);
    // Every word must be there; a short and a common word too.
    let both = format!("q={word}*+version");
    assert_eq!(ids(&search(&app, &both, &ann).await.1), [in_public]);
    let short = format!("q=of+{word}*");
    assert_eq!(ids(&search(&app, &short, &ann).await.1), [in_public]);
    let none = format!("q={word}*+absent");
    assert_eq!(ids(&search(&app, &none, &ann).await.1), Vec::<i64>::new());

    // Paging, newest first.
    let (_, page) = search(&app, &format!("{q}&limit=1"), &ann).await;
    assert_eq!(ids(&page), [in_own]);
    let (_, page) = search(&app, &format!("{q}&limit=1&before={in_own}"), &ann).await;
    assert_eq!(ids(&page), [in_public]);

    // Edited and deleted: found no more.
    let (status, _) = app
        .call(
            &ann,
            Method::Patch,
            &format!("/api/chat/messages/{in_public}"),
            Some(json!({"content": "said otherwise"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .call(
            &ann,
            Method::Delete,
            &format!("/api/chat/messages/{in_own}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&search(&app, &q, &ann).await.1), Vec::<i64>::new());
    assert_eq!(ids(&search(&app, "q=otherwise", &ann).await.1), [in_public]);

    for bad in [
        "",
        "q=",
        "q=x",
        "q=%21%3F%21",
        "q=ok&limit=0",
        "q=ok&limit=101",
        "q=ok&before=x",
    ] {
        let answer = search(&app, bad, &ann).await;
        assert_eq!(answer.0, 400, "{bad}: {}", answer.1);
    }
    let long = format!("q={}", "y".repeat(201));
    assert_eq!(search(&app, &long, &ann).await.0, 400);
}

/// Required mode, limits on: searching needs an identity (401), and a flood of searches
/// is told when to come back (429 with `Retry-After`) while other reads go on.
#[rocket::async_test]
async fn searches_need_an_identity_in_required_mode_and_a_flood_is_stopped() {
    // `auth = "required"`, whose abuse limits are on: `searches_per_minute` is 30.
    let app = TestApp::with(&[("auth", "required")]).await;
    let ann = app.signed_in("ann").await;
    let token = ann.token.clone().unwrap();
    // The limits count per client address (and user): every call of this test comes from
    // one, as a real client's would.
    let from: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let (status, _) = app
        .call_from(
            from,
            &app.anonymous(),
            Method::Get,
            "/api/search?q=hello",
            None,
        )
        .await;
    assert_eq!(status, 401);
    let mut statuses = Vec::new();
    for i in 0..40 {
        let res = app
            .client
            .get(format!("/api/search?q=word{i}"))
            .remote(from)
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .dispatch()
            .await;
        statuses.push((res.status().code, res.headers().contains("retry-after")));
    }
    assert_eq!(statuses[0], (200, false));
    let refused = statuses.iter().filter(|s| **s == (429, true)).count();
    assert!(refused >= 10, "30 a minute, 10 at once: {statuses:?}");
    let (status, _) = app
        .call_from(from, &ann, Method::Get, "/api/chat/unread", None)
        .await;
    assert_eq!(status, 200);
}

// Edits.

async fn edit(app: &TestApp, id: i64, body: Value, who: &Persona) -> (u16, Value) {
    let path = format!("/api/chat/messages/{id}");
    app.call(who, Method::Patch, &path, Some(body)).await
}

/// A message of a private room is 404 to whoever is not in it, signed in or not, the
/// same as a message that does not exist; its text is untouched.
#[rocket::async_test]
async fn an_edit_is_refused_in_a_room_one_cannot_see() {
    let app = TestApp::new().await;
    let olga = app.signed_in("olga").await;
    let eve = app.signed_in("eve").await;
    let hidden = app.make_room("hidden", true, &olga).await;
    let (_, posted) = say_json(&app, &hidden, json!({"content": "ours"}), &olga).await;
    let id = posted["id"].as_i64().unwrap();
    for who in [&eve, &app.anonymous()] {
        let (status, answer) = edit(&app, id, json!({"content": "mine now"}), who).await;
        let (missing, _) = edit(&app, id + 1000, json!({"content": "x"}), who).await;
        assert_eq!((status, missing), (404, 404), "{answer}");
    }
    let (_, history) = app
        .call(
            &olga,
            Method::Get,
            &format!("/api/chat/rooms/{hidden}/messages"),
            None,
        )
        .await;
    assert_eq!(history[0]["content"], "ours");
}

/// Required mode: an edit without a token is 401 before anything else, another user's is
/// 403, the author's 200.
#[rocket::async_test]
async fn in_required_mode_an_edit_is_the_signed_in_authors() {
    let app = TestApp::with(&[("auth", "required")]).await;
    let ann = app.signed_in("ann").await;
    let bob = app.signed_in("bob").await;
    let room = app.make_room("required", false, &ann).await;
    let (_, posted) = say_json(&app, &room, json!({"content": "draft"}), &ann).await;
    let id = posted["id"].as_i64().unwrap();
    let body = json!({"content": "final"});
    assert_eq!(edit(&app, id, body.clone(), &app.anonymous()).await.0, 401);
    assert_eq!(edit(&app, id, body.clone(), &bob).await.0, 403);
    let (status, edited) = edit(&app, id, body, &ann).await;
    assert_eq!((status, edited["content"].as_str()), (200, Some("final")));
}

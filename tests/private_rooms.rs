//! Private rooms and direct conversations over real HTTP and sockets, in both modes, on
//! SQLite, MariaDB and PostgreSQL: a non-member gets 404 at every door (the legacy poll,
//! long-poll and post, the JSON API and its search, sockets, files, typing) and nothing
//! of the room; the owner shares it; a removed member's socket is closed with 4003.

mod common;

use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The status of a plain request (any body), with an optional bearer token.
async fn status_of(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> u16 {
    let mut req = client().request(method, format!("{}{path}", server.url));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(form) = form {
        req = req.form(form);
    }
    req.send().await.unwrap().status().as_u16()
}

/// The status of the Flask original's poll, where a hidden room reads as a name nobody
/// has posted in (200, no lines, the ETag of no messages): counted as that door's 404.
async fn legacy_read_status(server: &Server, path: &str, token: Option<&str>) -> u16 {
    let mut req = client().get(format!("{}{path}", server.url));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let nothing = res.headers().get("etag").and_then(|e| e.to_str().ok()) == Some("\"0-0\"");
    let body = res.text().await.unwrap();
    match status {
        200 if nothing && body.is_empty() => 404,
        other => other,
    }
}

/// Every door of `room`, as `token` (none: anonymous) calls it: (door, status).
async fn doors(
    server: &Server,
    room: &str,
    user_id: &str,
    token: Option<&str>,
) -> Vec<(String, u16)> {
    let mut seen = Vec::new();
    let mut door = |name: &str, status: u16| seen.push((name.to_string(), status));
    door(
        "legacy GET",
        legacy_read_status(server, &format!("/api/chat/{room}"), token).await,
    );
    door(
        "legacy long-poll",
        legacy_read_status(server, &format!("/api/chat/{room}?after=0&wait=1"), token).await,
    );
    door(
        "legacy POST",
        status_of(
            server,
            Method::POST,
            &format!("/api/chat/{room}"),
            token,
            Some(&[("username", "x"), ("msg", "let me in")]),
        )
        .await,
    );
    let api = |method, path: String, body| {
        let path = path.clone();
        async move { call_with_token(server, method, &path, body, token).await.0 }
    };
    door(
        "GET room",
        api(Method::GET, format!("/api/chat/rooms/{room}"), None).await,
    );
    door(
        "history",
        api(
            Method::GET,
            format!("/api/chat/rooms/{room}/messages"),
            None,
        )
        .await,
    );
    door(
        "search",
        api(
            Method::GET,
            format!("/api/chat/rooms/{room}/messages?q=secret"),
            None,
        )
        .await,
    );
    door(
        "JSON post",
        api(
            Method::POST,
            format!("/api/chat/rooms/{room}/messages"),
            Some(json!({"content": "let me in"})),
        )
        .await,
    );
    door(
        "members",
        api(Method::GET, format!("/api/chat/rooms/{room}/members"), None).await,
    );
    door(
        "files of the room",
        api(Method::GET, format!("/api/files?room_id={room}"), None).await,
    );
    door(
        "typing",
        api(
            Method::POST,
            format!("/api/presence/{user_id}/typing?room_id={room}"),
            None,
        )
        .await,
    );
    door(
        "who is typing",
        api(
            Method::GET,
            format!("/api/presence/rooms/{room}/typing"),
            None,
        )
        .await,
    );
    let token_query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    door(
        "socket",
        socket_status(server, &format!("/ws/{room}/{user_id}{token_query}")).await,
    );
    seen
}

async fn a_private_room_is_invisible_to_non_members(backend: Backend) {
    for mode in ["open", "required"] {
        let db = TestDb::create(backend).await;
        let server = Server::start_with(ServerOptions::new(&db.url).env("ROCKET_AUTH", mode)).await;
        let (olga_id, olga) = sign_up(&server, "olga").await;
        let (bob_id, bob) = sign_up(&server, "bob").await;
        let (mia_id, mia) = sign_up(&server, "mia").await;
        let room = room("priv");
        let (status, created) = call_with_token(
            &server,
            Method::POST,
            "/api/chat/rooms",
            Some(json!({"id": room, "private": true})),
            Some(&olga),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["visibility"], "private");
        let (status, posted) = call_with_token(
            &server,
            Method::POST,
            &format!("/api/chat/rooms/{room}/messages"),
            Some(json!({"content": "the secret plan"})),
            Some(&olga),
        )
        .await;
        assert_eq!(status, 201, "{posted}");
        let message = format!("/api/chat/messages/{}", posted["id"]);
        let upload = client()
            .post(format!("{}/api/files/upload?room_id={room}", server.url))
            .bearer_auth(&olga)
            .multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(b"plan".to_vec()).file_name("plan.txt"),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), 201);
        let file: Value = upload.json().await.unwrap();
        let file = format!("/api/files/{}", file["id"].as_str().unwrap());

        // Bob, signed in but no member, and anyone anonymous: 404 at every door (in
        // required mode anonymous is 401 first).
        let anonymous = if mode == "open" { 404 } else { 401 };
        for (who, token, user, expected) in [
            ("bob", Some(bob.as_str()), bob_id.as_str(), 404),
            ("anonymous", None, "bob", anonymous),
        ] {
            for (door, status) in doors(&server, &room, user, token).await {
                assert_eq!(status, expected, "{mode}: {who} at {door}");
            }
            for path in [&message, &file, &format!("{file}/download")] {
                let status = call_with_token(&server, Method::GET, path, None, token)
                    .await
                    .0;
                assert_eq!(status, expected, "{mode}: {who} reading {path}");
            }
            let (_, rooms) =
                call_with_token(&server, Method::GET, "/api/chat/rooms", None, token).await;
            let listed = rooms
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["id"] == room.as_str());
            assert!(!listed, "{mode}: {who} sees the room listed");
            let (_, files) = call_with_token(&server, Method::GET, "/api/files", None, token).await;
            let listed = files
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| f["room_id"] == room.as_str());
            assert!(!listed, "{mode}: {who} sees the room's file listed");
        }
        // Nothing bob tried was stored.
        let (_, history) = call_with_token(
            &server,
            Method::GET,
            &format!("/api/chat/rooms/{room}/messages"),
            None,
            Some(&olga),
        )
        .await;
        assert_eq!(history.as_array().unwrap().len(), 1, "{mode}: {history}");

        // An admin (the admin token) sees it at every HTTP door.
        for (door, status) in doors(&server, &room, &bob_id, Some(ADMIN_TOKEN)).await {
            let ok = [200, 201, 204, 304].contains(&status);
            // The admin token is no user: a socket needs a user's token.
            assert!(
                ok || door == "socket",
                "{mode}: the admin at {door}: {status}"
            );
        }

        // Only the owner shares it: bob cannot add himself, nor can mia.
        let add = |token: String, user: String| {
            let (server, room) = (&server, room.clone());
            async move {
                call_with_token(
                    server,
                    Method::POST,
                    &format!("/api/chat/rooms/{room}/members"),
                    Some(json!({"user_id": user})),
                    Some(&token),
                )
                .await
                .0
            }
        };
        assert_eq!(add(bob.clone(), bob_id.clone()).await, 404, "{mode}");
        assert_eq!(add(olga.clone(), bob_id.clone()).await, 201, "{mode}");
        assert_eq!(
            add(olga.clone(), bob_id.clone()).await,
            200,
            "{mode}: twice"
        );
        assert_eq!(
            add(bob.clone(), mia_id.clone()).await,
            403,
            "{mode}: a member adding"
        );

        // Now bob is in: every door opens.
        for (door, status) in doors(&server, &room, &bob_id, Some(&bob)).await {
            let ok = [200, 201, 204, 304, 101].contains(&status);
            assert!(ok, "{mode}: member bob at {door}: {status}");
        }
        let mut bob_ws = open_socket(&server, &format!("/ws/{room}/{bob_id}?token={bob}")).await;
        // Mia is known (a heartbeat) but not in the room: a mention does not reach her.
        let (status, _) = call_with_token(
            &server,
            Method::POST,
            &format!("/api/presence/{mia_id}/heartbeat"),
            None,
            Some(&mia),
        )
        .await;
        assert!(status < 300, "{mode}: heartbeat {status}");
        call_with_token(
            &server,
            Method::POST,
            &format!("/api/chat/rooms/{room}/messages"),
            Some(json!({"content": "@mia @bob look"})),
            Some(&olga),
        )
        .await;
        let got = messages_until(&mut bob_ws, 1, Duration::from_secs(5)).await;
        assert!(
            got.iter().any(|m| m["content"] == "@mia @bob look"),
            "{mode}: {got:?}"
        );
        let count = |token: String, user: String| {
            let server = &server;
            async move {
                call_with_token(
                    server,
                    Method::GET,
                    &format!("/api/notifications/{user}/unread-count"),
                    None,
                    Some(&token),
                )
                .await
                .1["unread_count"]
                    .as_i64()
            }
        };
        assert!(
            eventually(Duration::from_secs(5), || {
                let count = count(bob.clone(), bob_id.clone());
                async move { count.await == Some(1) }
            })
            .await,
            "{mode}: bob, a member, is notified"
        );
        assert_eq!(
            count(mia.clone(), mia_id.clone()).await,
            Some(0),
            "{mode}: mia is not"
        );

        // Removed, bob's socket closes with 4003 and the doors shut again.
        let (status, _) = call_with_token(
            &server,
            Method::DELETE,
            &format!("/api/chat/rooms/{room}/members/{bob_id}"),
            None,
            Some(&olga),
        )
        .await;
        assert_eq!(status, 204, "{mode}");
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(frame)) = bob_ws.next().await {
                if let Message::Close(frame) = frame {
                    return frame.map(|f| u16::from(f.code));
                }
            }
            None
        })
        .await;
        assert_eq!(
            closed,
            Ok(Some(4003)),
            "{mode}: the removed member's socket"
        );
        assert_eq!(
            legacy_read_status(&server, &format!("/api/chat/{room}"), Some(&bob)).await,
            404,
            "{mode}"
        );
        let _ = olga_id;
        server.stop();
        db.drop_db().await;
    }
}

async fn a_direct_conversation_is_its_two_peoples(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (ann_id, ann) = sign_up(&server, "ann").await;
    let (bob_id, bob) = sign_up(&server, "bob").await;
    let (eve_id, eve) = sign_up(&server, "eve").await;
    let direct = |token: String, other: String| {
        let server = &server;
        async move {
            call_with_token(
                server,
                Method::POST,
                &format!("/api/chat/direct/{other}"),
                None,
                Some(&token),
            )
            .await
        }
    };
    let (status, room) = direct(ann.clone(), bob_id.clone()).await;
    assert_eq!(status, 201, "{room}");
    let (status, same) = direct(bob.clone(), ann_id.clone()).await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(room["id"], same["id"]);
    assert_eq!(room["visibility"], "direct");
    let id = room["id"].as_str().unwrap().to_string();
    // They chat over the socket and the legacy door; eve sees nothing of it.
    let mut bob_ws = open_socket(&server, &format!("/ws/{id}/{bob_id}?token={bob}")).await;
    let status = client()
        .post(format!("{}/api/chat/{id}", server.url))
        .bearer_auth(&ann)
        .form(&[("msg", "hi bob")])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let got = messages_until(&mut bob_ws, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["username"], "ann");
    for (door, status) in doors(&server, &id, &eve_id, Some(&eve)).await {
        assert_eq!(status, 404, "eve at {door}");
    }
    assert_eq!(
        call(
            &server,
            Method::POST,
            &format!("/api/chat/direct/{bob_id}"),
            None
        )
        .await
        .0,
        401,
        "a direct conversation needs a signed-in caller"
    );
    assert_eq!(
        direct(ann.clone(), ann_id.clone()).await.0,
        400,
        "with oneself"
    );
    server.stop();
    db.drop_db().await;
}

on_every_backend!(
    a_private_room_is_invisible_to_non_members,
    a_direct_conversation_is_its_two_peoples
);

/// On MariaDB, whose databases are made `utf8mb4_unicode_ci` as a real user's are, ids
/// compare byte for byte in SQL as they do in Rust: a signed-in `BOB` or `bob ` is not
/// `bob`, so neither is a member of his private room, nor sees his room's files or his
/// notifications. And every id column of the schema has a binary collation, so one added
/// later without it shows here.
#[tokio::test(flavor = "multi_thread")]
async fn ids_differing_in_case_or_trailing_spaces_are_other_users_on_mariadb() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use sea_orm::{ConnectionTrait, Statement};
    let db = TestDb::create(Backend::MariaDb).await;
    let secret = "the shop's HS256 secret, well over thirty-two bytes";
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_AUTH", "required")
            .env("JWT_SECRET", secret),
    )
    .await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let signed_in = |sub: &'static str, name: &'static str| {
        let token = encode(
            &Header::default(),
            &json!({"sub": sub, "name": name, "exp": exp}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let server = &server;
        async move {
            let (status, me) =
                call_with_token(server, Method::GET, "/api/auth/me", None, Some(&token)).await;
            assert_eq!(status, 200, "{me}");
            (me["user_id"].as_str().unwrap().to_string(), token)
        }
    };
    let (_, alice) = signed_in("alice", "Alice").await;
    let (bob_id, bob) = signed_in("bob", "Bob").await;
    let impostors = [
        signed_in("BOB", "Upper").await,
        signed_in("bob ", "Spaced").await,
    ];
    let room = room("plans");
    let (status, created) = call_with_token(
        &server,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"id": room, "private": true})),
        Some(&alice),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, added) = call_with_token(
        &server,
        Method::POST,
        &format!("/api/chat/rooms/{room}/members"),
        Some(json!({"user_id": bob_id})),
        Some(&alice),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let upload = client()
        .post(format!("{}/api/files/upload?room_id={room}", server.url))
        .bearer_auth(&bob)
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"plan".to_vec()).file_name("plan.txt"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    let file: Value = upload.json().await.unwrap();
    let file = format!("/api/files/{}", file["id"].as_str().unwrap());
    let sql = db.connect().await;
    sql.execute_raw(Statement::from_sql_and_values(
        sea_orm::DbBackend::MySql,
        "INSERT INTO notification (id, user_id, title, body, notif_type, is_read, created_at) \
         VALUES ('n-1', ?, 'for bob', 'the plan is secret', 'mention', 0, NOW(6))",
        [bob_id.clone().into()],
    ))
    .await
    .unwrap();
    let path_id = |id: &str| id.replace(' ', "%20");
    let unread = |token: String, id: String| {
        let server = &server;
        async move {
            let path = format!("/api/notifications/{}/unread-count", path_id(&id));
            call_with_token(server, Method::GET, &path, None, Some(&token)).await
        }
    };

    // Bob himself: the room, its file and his notification.
    assert_eq!(
        call_with_token(&server, Method::GET, &file, None, Some(&bob))
            .await
            .0,
        200
    );
    assert_eq!(
        unread(bob.clone(), bob_id.clone()).await.1["unread_count"],
        1
    );

    for (id, token) in &impostors {
        assert_ne!(id, &bob_id);
        for (door, status) in doors(&server, &room, &path_id(id), Some(token)).await {
            assert_eq!(status, 404, "{id:?} at {door}");
        }
        for path in [file.clone(), format!("{file}/download")] {
            let status = call_with_token(&server, Method::GET, &path, None, Some(token))
                .await
                .0;
            assert_eq!(status, 404, "{id:?} reading {path}");
        }
        let (_, files) =
            call_with_token(&server, Method::GET, "/api/files", None, Some(token)).await;
        assert_eq!(files, json!([]), "{id:?} lists files");
        let (_, rooms) =
            call_with_token(&server, Method::GET, "/api/chat/rooms", None, Some(token)).await;
        assert!(
            !rooms
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == room.as_str()),
            "{id:?} sees the room listed"
        );
        let (status, listed) = call_with_token(
            &server,
            Method::GET,
            &format!("/api/notifications/{}", path_id(id)),
            None,
            Some(token),
        )
        .await;
        assert_eq!((status, listed), (200, json!([])), "{id:?}'s notifications");
        assert_eq!(
            unread(token.clone(), id.clone()).await.1["unread_count"],
            0,
            "{id:?}'s unread count"
        );
        let path = format!("/api/notifications/{}/read-all", path_id(id));
        call_with_token(&server, Method::PATCH, &path, None, Some(token)).await;
    }
    assert_eq!(
        unread(bob.clone(), bob_id.clone()).await.1["unread_count"],
        1,
        "bob's notification is still unread"
    );

    // Every id column, as the schema now stands.
    let rows = sql
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::MySql,
            "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME), COLLATION_NAME \
             FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND COLLATION_NAME IS NOT NULL \
             AND (COLUMN_NAME IN ('id', 'room', 'uploaded_by', 'name_key', 'object_key') \
                  OR COLUMN_NAME LIKE '%\\_id')",
        ))
        .await
        .unwrap();
    let columns: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            (
                row.try_get_by_index(0).unwrap(),
                row.try_get_by_index(1).unwrap(),
            )
        })
        .collect();
    assert!(columns.len() >= 15, "{columns:?}");
    for (column, collation) in &columns {
        assert!(
            collation.ends_with("_bin"),
            "{column} compares by {collation}"
        );
    }
    server.stop();
    db.drop_db().await;
}

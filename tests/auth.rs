//! Identity and permissions over real HTTP and sockets: accounts and tokens, `auth =
//! "required"` at every door, who may delete what, other applications' JWTs, and sockets
//! whose token expires.

mod common;

use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Another application's HS256 secret, as the tests' servers take it.
const SHOP_SECRET: &str = "shared with the shop, 32 bytes or more";

/// A JWT of another application (the shop), signed with `secret`.
fn shop_jwt(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn required(db: &TestDb) -> ServerOptions {
    ServerOptions::new(&db.url)
        .env("ROCKET_AUTH", "required")
        .env("ROCKET_ADMINS", "[\"root\"]")
}

async fn as_user(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> (u16, Value) {
    call_with_token(server, method, path, body, Some(token)).await
}

async fn post_form_as(
    server: &Server,
    room: &str,
    fields: &[(&str, &str)],
    token: Option<&str>,
) -> u16 {
    let mut req = client()
        .post(format!("{}/api/chat/{room}", server.url))
        .form(fields);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn register_sign_in_and_out() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let (user_id, token) = sign_up(&server, "Ann").await;
    let taken = call(
        &server,
        Method::POST,
        "/api/auth/register",
        Some(json!({"username": "ann", "password": "another one"})),
    )
    .await;
    assert_detail(&taken, 409, "taken");
    let short = call(
        &server,
        Method::POST,
        "/api/auth/register",
        Some(json!({"username": "bob", "password": "short"})),
    )
    .await;
    assert_detail(&short, 400, "at least 8");
    let wrong = call(
        &server,
        Method::POST,
        "/api/auth/login",
        Some(json!({"username": "ann", "password": "wrong password"})),
    )
    .await;
    assert_detail(&wrong, 401, "wrong username or password");

    let me = as_user(&server, Method::GET, "/api/auth/me", None, &token).await;
    assert_eq!(
        me,
        (
            200,
            json!({"user_id": user_id, "username": "Ann", "roles": []})
        )
    );
    assert_detail(
        &call(&server, Method::GET, "/api/auth/me", None).await,
        401,
        "not signed in",
    );

    // Signing in sets the session cookie, which then is the identity.
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let res = http
        .post(format!("{}/api/auth/login", server.url))
        .json(&json!({"username": "ANN", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["ferrochat_session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: not Secure");
    let me: Value = http
        .get(format!("{}/api/auth/me", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user_id"], user_id.as_str());
    http.post(format!("{}/api/auth/logout", server.url))
        .send()
        .await
        .unwrap();
    let after = http
        .get(format!("{}/api/auth/me", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    // A token that is not valid is 401, not silently anonymous.
    let forged = as_user(&server, Method::GET, "/api/chat/rooms", None, "not-a-token").await;
    assert_detail(&forged, 401, "not valid");
    db.drop_db().await;
}

on_every_backend!(required_mode_at_every_door, who_may_delete_what);

/// In `required` mode, an anonymous call is 401 at every door but the page, sign-in and
/// health and the probes; signed in, the identity wins over any name or id the client writes.
async fn required_mode_at_every_door(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start_with(required(&db)).await;
    let room = room("req");
    for (method, path) in [
        (Method::GET, format!("/api/chat/{room}")),
        (Method::GET, format!("/api/chat/{room}?wait=1")),
        (Method::GET, "/api/chat/rooms".to_string()),
        (Method::GET, "/api/chat/rooms/general".to_string()),
        (
            Method::GET,
            "/api/chat/rooms/general/messages?q=x".to_string(),
        ),
        (Method::GET, "/api/presence".to_string()),
        (Method::POST, "/api/presence/u1/heartbeat".to_string()),
        (Method::GET, "/api/notifications/u1".to_string()),
        (Method::GET, "/api/files".to_string()),
    ] {
        let (status, body) = call(&server, method.clone(), &path, None).await;
        assert_eq!(status, 401, "anonymous {method} {path}: {body}");
    }
    assert_eq!(
        post_form_as(&server, &room, &[("username", "a"), ("msg", "hi")], None).await,
        401
    );
    let res = client()
        .get(format!("{}/api/chat/{room}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        res.text().await.unwrap().lines().count(),
        1,
        "one plain line on the legacy route"
    );
    let ws = tokio_tungstenite::connect_async(format!(
        "{}/ws/general/u1",
        server.url.replacen("http://", "ws://", 1)
    ))
    .await;
    assert!(ws.is_err(), "an anonymous socket is refused");
    // Probes carry no token: an orchestrator must reach them.
    for path in [
        "/",
        &format!("/{room}"),
        "/health",
        "/health/live",
        "/health/ready",
    ] {
        assert_eq!(
            client()
                .get(format!("{}{path}", server.url))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }

    let (ann_id, ann) = sign_up(&server, "ann").await;
    let (bob_id, _bob) = sign_up(&server, "bob").await;
    // The legacy form's username is ignored: the message is Ann's.
    assert_eq!(
        post_form_as(
            &server,
            &room,
            &[("username", "mallory"), ("msg", "hello")],
            Some(&ann)
        )
        .await,
        204
    );
    let res = client()
        .get(format!("{}/api/chat/{room}", server.url))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(lines(&res.text().await.unwrap()), ["ann: hello"]);
    // The JSON API's user_id and username too.
    let (status, posted) = as_user(
        &server,
        Method::POST,
        &format!("/api/chat/rooms/{room}/messages"),
        Some(json!({"content": "as bob?", "user_id": bob_id, "username": "bob"})),
        &ann,
    )
    .await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(
        (posted["user_id"].as_str(), posted["username"].as_str()),
        (Some(ann_id.as_str()), Some("ann"))
    );
    // Another's socket path, presence, notifications: 403.
    let other = tokio_tungstenite::connect_async(format!(
        "{}/ws/{room}/{bob_id}?token={ann}",
        server.url.replacen("http://", "ws://", 1)
    ))
    .await;
    match other {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("another's socket was opened: {:?}", other.map(|_| ())),
    }
    for (method, path) in [
        (Method::POST, format!("/api/presence/{bob_id}/heartbeat")),
        (Method::GET, format!("/api/notifications/{bob_id}")),
        (
            Method::PATCH,
            format!("/api/notifications/{bob_id}/read-all"),
        ),
    ] {
        assert_eq!(
            as_user(&server, method.clone(), &path, None, &ann).await.0,
            403,
            "{method} {path}"
        );
    }
    // Her own socket, by ?token=: what she sends is hers.
    let mut ws = open_socket(&server, &format!("/ws/{room}/{ann_id}?token={ann}")).await;
    send(
        &mut ws,
        json!({"type": "message", "content": "from the socket"}),
    )
    .await;
    let got = next_of(&mut ws, &["message"]).await;
    assert_eq!(
        (got["username"].as_str(), got["user_id"].as_str()),
        (Some("ann"), Some(ann_id.as_str()))
    );
    // The author-per-frame socket: a frame's user_id must be her own; hers, or none, is her.
    let mut room_ws = open_socket(&server, &format!("/ws/{room}?token={ann}")).await;
    send(
        &mut room_ws,
        json!({"type": "message", "content": "as bob", "user_id": bob_id}),
    )
    .await;
    let refused = next_of(&mut room_ws, &["error", "message"]).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("signed in as"),
        "{refused}"
    );
    send(
        &mut room_ws,
        json!({"type": "message", "content": "as me", "user_id": ann_id}),
    )
    .await;
    let got = next_of(&mut room_ws, &["message"]).await;
    assert_eq!(
        (
            got["content"].as_str(),
            got["user_id"].as_str(),
            got["username"].as_str()
        ),
        (Some("as me"), Some(ann_id.as_str()), Some("ann"))
    );
    let anonymous = tokio_tungstenite::connect_async(format!(
        "{}/ws/{room}",
        server.url.replacen("http://", "ws://", 1)
    ))
    .await;
    match anonymous {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!(
            "an anonymous room socket was opened: {:?}",
            other.map(|_| ())
        ),
    }
    db.drop_db().await;
}

/// Who may delete what, by caller: anonymous, another user, the author, the room's owner,
/// the uploader, an admin (a user whose id is in `admins`, or the admin token).
async fn who_may_delete_what(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start_with(
        required(&db)
            .env("ROCKET_ADMINS", "[\"ext:root\"]")
            .env("JWT_SECRET", SHOP_SECRET),
    )
    .await;
    let (_, olga) = sign_up(&server, "olga").await; // the room's owner
    let (_, ann) = sign_up(&server, "ann").await; // the author
    let (_, bob) = sign_up(&server, "bob").await; // someone else
                                                  // An admin by id: the one id of theirs known before the server starts is an external one.
    let root = shop_jwt(
        SHOP_SECRET,
        json!({"sub": "root", "name": "root", "exp": unix_now() + 600}),
    );
    let room = room("perm");
    let (status, _) = as_user(
        &server,
        Method::POST,
        "/api/chat/rooms",
        Some(json!({"id": room})),
        &olga,
    )
    .await;
    assert_eq!(status, 201);
    let post = |token: String| {
        let server = &server;
        let room = room.clone();
        async move {
            let (status, m) = as_user(
                server,
                Method::POST,
                &format!("/api/chat/rooms/{room}/messages"),
                Some(json!({"content": "x"})),
                &token,
            )
            .await;
            assert_eq!(status, 201);
            m["id"].as_i64().unwrap()
        }
    };
    // (caller, may delete Ann's message)
    let table: [(&str, Option<&str>, u16); 6] = [
        ("anonymous", None, 401),
        ("another user", Some(&bob), 403),
        ("the author", Some(&ann), 200),
        ("the room's owner", Some(&olga), 200),
        ("an admin by id", Some(&root), 200),
        ("the admin token", Some(ADMIN_TOKEN), 200),
    ];
    for (who, token, expected) in table {
        let id = post(ann.clone()).await;
        let (status, body) = call_with_token(
            &server,
            Method::DELETE,
            &format!("/api/chat/messages/{id}"),
            None,
            token,
        )
        .await;
        assert_eq!(status, expected, "{who} deleting a message: {body}");
    }
    // Files: the uploader or an admin.
    let upload = client()
        .post(format!(
            "{}/api/files/upload?uploaded_by=someone-else",
            server.url
        ))
        .bearer_auth(&ann)
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"hi".to_vec()).file_name("a.txt"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 403, "uploading in someone else's name");
    let upload = client()
        .post(format!("{}/api/files/upload", server.url))
        .bearer_auth(&ann)
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"hi".to_vec()).file_name("a.txt"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    let file: Value = upload.json().await.unwrap();
    let file_path = format!("/api/files/{}", file["id"].as_str().unwrap());
    assert_eq!(
        as_user(&server, Method::DELETE, &file_path, None, &bob)
            .await
            .0,
        403
    );
    assert_eq!(
        as_user(&server, Method::DELETE, &file_path, None, &ann)
            .await
            .0,
        200
    );
    // The room: its owner or an admin; not the author of a message in it.
    let room_path = format!("/api/chat/rooms/{room}");
    assert_eq!(
        as_user(&server, Method::DELETE, &room_path, None, &ann)
            .await
            .0,
        403
    );
    assert_eq!(
        as_user(&server, Method::DELETE, &room_path, None, &olga)
            .await
            .0,
        200
    );
    db.drop_db().await;
}

/// Another application's tokens (as Centrifugo takes them): `sub` (as `ext:<sub>`) and
/// `name`, `exp` enforced; a wrong key, an expired token or `alg: none` is 401.
#[tokio::test(flavor = "multi_thread")]
async fn another_applications_jwts_are_identities() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(required(&db).env("JWT_SECRET", SHOP_SECRET)).await;
    let now = unix_now();
    let token = |secret: &str, exp: i64| {
        shop_jwt(
            secret,
            json!({"sub": "shop-42", "name": "Seller", "exp": exp}),
        )
    };
    let good = token(SHOP_SECRET, now + 600);
    let me = as_user(&server, Method::GET, "/api/auth/me", None, &good).await;
    assert_eq!(
        (me.0, me.1["user_id"].as_str(), me.1["username"].as_str()),
        (200, Some("ext:shop-42"), Some("Seller"))
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(json!({"sub": "shop-42", "exp": now + 600}).to_string())
    );
    for (what, bad) in [
        (
            "a wrong key",
            token("not the key, though 32 bytes long", now + 600),
        ),
        ("expired", token(SHOP_SECRET, now - 600)),
        ("alg none", none),
    ] {
        let answer = as_user(&server, Method::GET, "/api/chat/rooms", None, &bad).await;
        assert_eq!(answer.0, 401, "{what}: {:?}", answer.1);
    }
    db.drop_db().await;
}

/// Another application's token names its own users, never ours, and makes nobody an
/// admin by the name it says: `admins` lists ids. It is held to `nbf`, the configured
/// `iss` and `aud`, and a lifetime of at most `jwt_max_ttl_secs`.
#[tokio::test(flavor = "multi_thread")]
async fn another_applications_jwts_cannot_borrow_an_account_or_be_admin() {
    let db = TestDb::create(Backend::Sqlite).await;
    let shared = "ours, shared by both servers, 32 bytes or more";
    let options = || {
        required(&db)
            .env("TOKEN_SECRET", shared)
            .env("JWT_SECRET", SHOP_SECRET)
            .env("ROCKET_JWT_ISSUER", "https://shop.example")
            .env("ROCKET_JWT_AUDIENCE", "ferrochat")
    };
    // `admins` as it used to be written: a name. Whoever registers it is no admin.
    let server = Server::start_with(options()).await;
    let (alice_id, _) = sign_up(&server, "alice").await;
    let (root_id, root) = sign_up(&server, "Root").await;
    let roles = |answer: (u16, Value)| (answer.0, answer.1["roles"].clone());
    assert_eq!(
        roles(as_user(&server, Method::GET, "/api/auth/me", None, &root).await),
        (200, json!([])),
        "a name in admins makes nobody an admin"
    );
    let now = unix_now();
    let shop = |claims: Value| {
        let mut all = json!({"iss": "https://shop.example", "aud": "ferrochat", "exp": now + 600});
        all.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        shop_jwt(SHOP_SECRET, all)
    };
    let me = as_user(
        &server,
        Method::GET,
        "/api/auth/me",
        None,
        &shop(json!({"sub": "x", "name": "root"})),
    )
    .await;
    assert_eq!(
        (me.0, me.1["user_id"].as_str(), me.1["roles"].clone()),
        (200, Some("ext:x"), json!([])),
        "{me:?}"
    );
    // A subject equal to alice's id is the shop's user of that id, not alice.
    let not_alice = shop(json!({"sub": alice_id, "name": "alice"}));
    let me = as_user(&server, Method::GET, "/api/auth/me", None, &not_alice).await;
    assert_eq!(me.1["user_id"], format!("ext:{alice_id}"), "{me:?}");
    let (status, _) = as_user(
        &server,
        Method::GET,
        &format!("/api/notifications/{alice_id}"),
        None,
        &not_alice,
    )
    .await;
    assert_eq!(status, 403, "alice's notifications");
    for (what, claims, why) in [
        (
            "not before later",
            json!({"sub": "x", "nbf": now + 600}),
            "not valid yet",
        ),
        (
            "for ever",
            json!({"sub": "x", "exp": 1i64 << 62}),
            "longer than 86400 s",
        ),
        (
            "issued two days ago",
            json!({"sub": "x", "iat": now - 2 * 86400}),
            "longer than",
        ),
        (
            "another issuer",
            json!({"sub": "x", "iss": "https://evil.example"}),
            "issuer",
        ),
        (
            "another audience",
            json!({"sub": "x", "aud": "another"}),
            "audience",
        ),
    ] {
        let answer = as_user(&server, Method::GET, "/api/auth/me", None, &shop(claims)).await;
        assert_detail(&answer, 401, why);
        println!("{what}: {:?}", answer.1);
    }
    let no_issuer = shop_jwt(
        SHOP_SECRET,
        json!({"sub": "x", "aud": "ferrochat", "exp": now + 600}),
    );
    assert_detail(
        &as_user(&server, Method::GET, "/api/auth/me", None, &no_issuer).await,
        401,
        "not valid",
    );
    server.stop();

    // Admins by id: a local account's, and the shop's user `boss` as `ext:boss`.
    let server = Server::start_with(
        options().env("ROCKET_ADMINS", &json!([root_id, "ext:boss"]).to_string()),
    )
    .await;
    assert_eq!(
        roles(as_user(&server, Method::GET, "/api/auth/me", None, &root).await),
        (200, json!(["admin"]))
    );
    let boss = shop(json!({"sub": "boss"}));
    assert_eq!(
        roles(as_user(&server, Method::GET, "/api/auth/me", None, &boss).await),
        (200, json!(["admin"]))
    );
    let not_boss = shop(json!({"sub": "BOSS", "name": "boss"}));
    assert_eq!(
        roles(as_user(&server, Method::GET, "/api/auth/me", None, &not_boss).await),
        (200, json!([]))
    );
    db.drop_db().await;
}

/// Signing out ends every session of the account, on every replica: tokens, not only
/// the cookie. Both replicas share the database (where the revocation is) and nothing
/// else.
#[tokio::test(flavor = "multi_thread")]
async fn signing_out_revokes_the_accounts_tokens_on_every_replica() {
    let db = TestDb::create(Backend::Sqlite).await;
    let options = || required(&db).env("TOKEN_SECRET", "ours, shared by both replicas, 32+ bytes");
    let a = Server::start_with(options()).await;
    let b = Server::start_with(options()).await;
    let (_, laptop) = sign_up(&a, "ann").await;
    let (status, phone) = call(
        &b,
        Method::POST,
        "/api/auth/login",
        Some(json!({"username": "ann", "password": "correct horse"})),
    )
    .await;
    assert_eq!(status, 200);
    let phone = phone["token"].as_str().unwrap().to_string();
    for (server, token) in [(&a, &laptop), (&b, &laptop), (&a, &phone), (&b, &phone)] {
        assert_eq!(
            as_user(server, Method::GET, "/api/auth/me", None, token)
                .await
                .0,
            200
        );
    }
    let (status, _) = as_user(&a, Method::POST, "/api/auth/logout", None, &laptop).await;
    assert_eq!(status, 200);
    for token in [&laptop, &phone] {
        assert_detail(
            &as_user(&a, Method::GET, "/api/auth/me", None, token).await,
            401,
            "revoked",
        );
    }
    let revoked_on_b = eventually(Duration::from_secs(10), || async {
        as_user(&b, Method::GET, "/api/auth/me", None, &phone)
            .await
            .0
            == 401
            && as_user(&b, Method::GET, "/api/chat/rooms", None, &laptop)
                .await
                .0
                == 401
    })
    .await;
    assert!(revoked_on_b, "the other replica still takes the tokens");
    // Signing in again makes a token that works.
    let (status, again) = call(
        &b,
        Method::POST,
        "/api/auth/login",
        Some(json!({"username": "ann", "password": "correct horse"})),
    )
    .await;
    assert_eq!(status, 200);
    let again = again["token"].as_str().unwrap();
    assert_eq!(
        as_user(&a, Method::GET, "/api/auth/me", None, again)
            .await
            .0,
        200
    );
    db.drop_db().await;
}

/// `POST /api/auth/password` changes the password given the current one; every other
/// token stops working; the old password no longer signs in.
#[tokio::test(flavor = "multi_thread")]
async fn changing_the_password_revokes_the_other_tokens() {
    let db = TestDb::create(Backend::Sqlite).await;
    // Sign-ins per address are not what this test is about: ample for all its calls.
    let server = Server::start_with(required(&db).env("ROCKET_SIGN_INS_PER_HOUR", "360000")).await;
    let (_, laptop) = sign_up(&server, "ann").await;
    let (_, phone) = call(
        &server,
        Method::POST,
        "/api/auth/login",
        Some(json!({"username": "ann", "password": "correct horse"})),
    )
    .await;
    let phone = phone["token"].as_str().unwrap().to_string();
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    assert_detail(
        &call(
            &server,
            Method::POST,
            "/api/auth/password",
            Some(change("correct horse", "battery staple")),
        )
        .await,
        401,
        "sign in",
    );
    assert_detail(
        &as_user(
            &server,
            Method::POST,
            "/api/auth/password",
            Some(change("wrong horse", "battery staple")),
            &laptop,
        )
        .await,
        403,
        "current password is wrong",
    );
    assert_detail(
        &as_user(
            &server,
            Method::POST,
            "/api/auth/password",
            Some(change("correct horse", "short")),
            &laptop,
        )
        .await,
        400,
        "at least 8",
    );
    assert_detail(
        &as_user(
            &server,
            Method::POST,
            "/api/auth/password",
            Some(json!({"new_password": 7})),
            &laptop,
        )
        .await,
        400,
        "invalid JSON",
    );
    assert_eq!(
        as_user(&server, Method::GET, "/api/auth/me", None, &phone)
            .await
            .0,
        200
    );
    let (status, changed) = as_user(
        &server,
        Method::POST,
        "/api/auth/password",
        Some(change("correct horse", "battery staple")),
        &laptop,
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let new = changed["token"].as_str().unwrap();
    assert_eq!(
        as_user(&server, Method::GET, "/api/auth/me", None, new)
            .await
            .0,
        200
    );
    for token in [&laptop, &phone] {
        assert_detail(
            &as_user(&server, Method::GET, "/api/auth/me", None, token).await,
            401,
            "revoked",
        );
    }
    let sign_in = |password: &str| {
        call(
            &server,
            Method::POST,
            "/api/auth/login",
            Some(json!({"username": "ann", "password": password})),
        )
    };
    assert_eq!(sign_in("correct horse").await.0, 401);
    assert_eq!(sign_in("battery staple").await.0, 200);
    // A stolen token does not make guessing the password any easier than signing in.
    let mut statuses = Vec::new();
    for i in 0..7 {
        let answer = as_user(
            &server,
            Method::POST,
            "/api/auth/password",
            Some(change(&format!("guess {i}"), "mine now, thanks")),
            new,
        )
        .await;
        statuses.push(answer.0);
    }
    // The right password signing in just before cleared the count.
    assert_eq!(statuses, [403, 403, 403, 403, 403, 429, 429]);
    db.drop_db().await;
}

/// A token secret shorter than 32 bytes is refused at start, with a one-line reason that
/// does not repeat it.
#[tokio::test(flavor = "multi_thread")]
async fn short_secrets_are_refused_at_start() {
    let db = TestDb::create(Backend::Sqlite).await;
    for (name, secret) in [
        ("TOKEN_SECRET", "hunter2hunter2"),
        ("JWT_SECRET", "shop-secret"),
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferrochat"))
            .env_remove("TOKEN_SECRET")
            .env_remove("JWT_SECRET")
            .env(
                "ROCKET_CONFIG",
                std::path::Path::new(REPO).join("Rocket.toml"),
            )
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", "0")
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "info")
            .env(name, secret)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut exited = false;
        for _ in 0..300 {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} of {} bytes: the server started", secret.len());
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{name}: started");
        let log = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let line = log
            .lines()
            .find(|l| l.contains("cannot start"))
            .unwrap_or_else(|| panic!("{name}: {log}"));
        assert!(
            line.contains(&format!("{name} is {} bytes", secret.len())),
            "{line}"
        );
        assert!(line.contains("at least 32"), "{line}");
        assert!(
            !log.contains(secret),
            "{name}: the secret is in the log: {log}"
        );
    }
    db.drop_db().await;
}

/// A socket whose token expires is closed with 4001: sign in again.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_closes_when_its_token_expires() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(required(&db).env("ROCKET_TOKEN_TTL_SECS", "2")).await;
    let (user_id, token) = sign_up(&server, "ann").await;
    let mut ws = open_socket(&server, &format!("/ws/general/{user_id}?token={token}")).await;
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = ws.next().await {
            if let Ok(Message::Close(Some(close))) = frame {
                return Some(u16::from(close.code));
            }
        }
        None
    })
    .await
    .expect("the socket was not closed");
    assert_eq!(code, Some(4001));
    // And the token no longer opens one.
    let again = tokio_tungstenite::connect_async(format!(
        "{}/ws/general/{user_id}?token={token}",
        server.url.replacen("http://", "ws://", 1)
    ))
    .await;
    assert!(again.is_err());
    db.drop_db().await;
}

/// Guessing a password stops after a few tries (rate limits are on in required mode).
#[tokio::test(flavor = "multi_thread")]
async fn guessing_a_password_is_stopped() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(required(&db)).await;
    sign_up(&server, "ann").await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (status, _) = call(
            &server,
            Method::POST,
            "/api/auth/login",
            Some(json!({"username": "ann", "password": format!("guess {i}")})),
        )
        .await;
        statuses.push(status);
    }
    assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    db.drop_db().await;
}

/// Only wrong passwords count, per account name and address: a stranger's guesses from
/// elsewhere do not lock the owner out, and still stop the stranger.
#[tokio::test(flavor = "multi_thread")]
async fn a_strangers_wrong_passwords_do_not_lock_the_owner_out() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(required(&db).env("ROCKET_TRUSTED_PROXIES", "[\"127.0.0.1\"]")).await;
    // Through a trusted proxy, one address per request, as every proxy writes it.
    let sign_in = |from: &'static str, password: String| {
        let server = &server;
        async move {
            client()
                .post(format!("{}/api/auth/login", server.url))
                .header("X-Forwarded-For", from)
                .json(&json!({"username": "ann", "password": password}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    sign_up(&server, "ann").await;
    let mut stranger = Vec::new();
    for i in 0..8 {
        stranger.push(sign_in("203.0.113.66", format!("guess {i}")).await);
    }
    assert_eq!(stranger, [401, 401, 401, 401, 401, 429, 429, 429]);
    for _ in 0..3 {
        assert_eq!(sign_in("198.51.100.7", "correct horse".into()).await, 200);
    }
    assert_eq!(
        sign_in("203.0.113.66", "correct horse".into()).await,
        429,
        "still stopped"
    );
    db.drop_db().await;
}

/// Signed in, a user has buckets of their own: people behind one address do not share
/// them, and one account's flood is stopped whoever else posts from there.
#[tokio::test(flavor = "multi_thread")]
async fn limits_count_per_user_when_signed_in() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        required(&db)
            .env("ROCKET_POSTS_PER_MINUTE", "1")
            .env("ROCKET_POSTS_BURST", "3"),
    )
    .await;
    let (_, ann) = sign_up(&server, "ann").await;
    let (_, bob) = sign_up(&server, "bob").await;
    let room = room("per-user");
    let fields = [("msg", "hi")];
    for _ in 0..3 {
        assert_eq!(post_form_as(&server, &room, &fields, Some(&ann)).await, 204);
    }
    let res = client()
        .post(format!("{}/api/chat/{room}", server.url))
        .bearer_auth(&ann)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let reason = res.text().await.unwrap();
    assert!(reason.contains("from this user"), "{reason}");
    // Bob, from the same address, has his own.
    for _ in 0..3 {
        assert_eq!(post_form_as(&server, &room, &fields, Some(&bob)).await, 204);
    }
    assert_eq!(post_form_as(&server, &room, &fields, Some(&bob)).await, 429);
    server.stop();
    db.drop_db().await;
}

/// The relay's page in required mode: nobody anonymous reads or chats; signed in on this
/// site, its socket and history carry the session cookie, and what it sends is the
/// signed-in user's.
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_in_required_mode() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(required(&db)).await;
    let ws_url = format!("{}/ws", server.url.replacen("http://", "ws://", 1));
    match tokio_tungstenite::connect_async(ws_url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!(
            "an anonymous relay socket was opened: {:?}",
            other.map(|_| ())
        ),
    }
    let res = client()
        .get(format!("{}/messages", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let (_, token) = sign_up(&server, "ann").await;
    let cookie = format!("ferrochat_session={token}");
    let mut request = ws_url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let sent = json!({"type": "chat", "text": "signed in", "ts": 9});
    send(&mut ws, sent.clone()).await;
    let echoed = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                break serde_json::from_str::<Value>(&text).unwrap()
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no echo: {other:?}"),
        }
    };
    assert_eq!(echoed, sent);
    let res = client()
        .get(format!("{}/messages", server.url))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["messages"], json!([sent]));
    let res = client()
        .get(format!("{}/api/chat/general", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(lines(&res.text().await.unwrap()), ["ann: signed in"]);
    db.drop_db().await;
}

/// A name with zero-width or bidi-control characters looks like another: refused at
/// registration and as a posted name.
#[tokio::test(flavor = "multi_thread")]
async fn names_with_invisible_characters_are_refused() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    sign_up(&server, "ann").await;
    for invisible in ['\u{200B}', '\u{200D}', '\u{202E}', '\u{2066}', '\u{FEFF}'] {
        let name = format!("an{invisible}n");
        let answer = call(
            &server,
            Method::POST,
            "/api/auth/register",
            Some(json!({"username": name, "password": "correct horse"})),
        )
        .await;
        assert_detail(&answer, 400, "invisible characters");
        let (status, body) = post_form(
            &server,
            &room("names"),
            &[("username", &name), ("msg", "hi")],
        )
        .await;
        assert_eq!(status, 400, "{invisible:?}: {body}");
        let answer = call(
            &server,
            Method::POST,
            "/api/chat/rooms/general/messages",
            Some(json!({"content": "hi", "username": name})),
        )
        .await;
        assert_detail(&answer, 400, "invisible characters");
    }
    db.drop_db().await;
}

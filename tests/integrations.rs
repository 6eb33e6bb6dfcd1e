//! Incoming hooks' and bots' HTTP contracts in process (`tests/app`), on the three
//! databases (SQLite here, MariaDB and PostgreSQL with `FERROCHAT_TEST_DATABASE`, as
//! `scripts/test` runs them): who may make, list and delete a hook; Grafana's and
//! Alertmanager's real Slack payloads and the legacy `payload=` form posted as a bot's;
//! refusals as one plain line, 404 for a wrong id or secret, 415 for plain text; nobody
//! passing for a hook; hooks gone with their room; a private room's hook; a bucket per hook
//! and made-up hook URLs limited per address; a bot in a private room only as a member. No
//! socket, no second replica, no process: what a socket is told, replicas and memory are in
//! `tests/hooks.rs` and `tests/bots.rs`.

mod app;

use app::{lines, unique, Persona, TestApp};
use rocket::http::{ContentType, Header, Method};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// The client address hook posts come from (the abuse limits count it).
fn from() -> SocketAddr {
    "198.51.100.7:40000".parse().unwrap()
}

/// Posts `body` to a hook URL with its content type: the status, the `Retry-After`
/// header and the plain answer.
async fn post_hook_raw(
    app: &TestApp,
    url: &str,
    content_type: ContentType,
    body: String,
) -> (u16, Option<String>, String) {
    let res = app
        .client
        .post(url.to_string())
        .remote(from())
        .header(content_type)
        .body(body)
        .dispatch()
        .await;
    let status = res.status().code;
    let retry_after = res.headers().get_one("Retry-After").map(str::to_string);
    (
        status,
        retry_after,
        res.into_string().await.unwrap_or_default(),
    )
}

/// Posts `body` to a hook URL as JSON: the status and the plain answer.
async fn post_hook(app: &TestApp, url: &str, body: &Value) -> (u16, String) {
    let (status, _, text) = post_hook_raw(app, url, ContentType::JSON, body.to_string()).await;
    (status, text)
}

async fn make_hook(app: &TestApp, who: &Persona, room: &str, name: &str) -> (u16, Value) {
    app.call(
        who,
        Method::Post,
        "/api/hooks",
        Some(json!({"room_id": room, "name": name})),
    )
    .await
}

/// The room's transcript (the Flask original's `GET /api/chat/<room>`), read anonymously.
async fn transcript(app: &TestApp, room: &str) -> String {
    let res = app.client.get(format!("/api/chat/{room}")).dispatch().await;
    assert_eq!(res.status().code, 200, "GET /api/chat/{room}");
    res.into_string().await.unwrap_or_default()
}

async fn lines_now(app: &TestApp, room: &str) -> usize {
    lines(&transcript(app, room).await).len()
}

/// The Slack payload Grafana's Slack contact point sends (trimmed of its image URL).
fn grafana() -> Value {
    json!({
        "channel": "#ops", "username": "Grafana", "icon_emoji": ":grafana:",
        "text": "[FIRING:1] DiskFull (prod)",
        "attachments": [{
            "color": "#D63232", "title": "[FIRING:1] DiskFull (prod)",
            "title_link": "http://grafana.example/alerting/list",
            "text": "**Firing**\nValue: B=97\nLabels:\n - alertname = DiskFull",
            "footer": "Grafana v11.2.0", "footer_icon": "https://grafana.com/static/assets/img/fav32.png",
            "ts": 1733500000, "mrkdwn_in": ["text"]
        }],
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "ignored when text is given"}}]
    })
}

/// Alertmanager's `slack_configs` default: no top-level text, the alert in an attachment.
fn alertmanager() -> Value {
    json!({
        "channel": "#alerts", "username": "Alertmanager",
        "attachments": [{
            "title": "[FIRING:2] HighLatency api",
            "title_link": "http://alertmanager.example/#/alerts?receiver=slack",
            "text": "p99 latency over 1 s on api-1, api-2",
            "fallback": "[FIRING:2] HighLatency api | http://alertmanager.example/#/alerts?receiver=slack",
            "callback_id": "", "footer": "", "color": "danger", "mrkdwn_in": ["fallback", "pretext", "text"]
        }]
    })
}

fn uuid_like(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

// Incoming hooks.

/// Who may make one, what the tools send, refusals, listing, deleting, gone with the room.
/// What a socket in the room is told is in `tests/hooks.rs`.
#[rocket::async_test]
async fn hooks_post_as_a_bot() {
    let app = TestApp::new().await;
    let owner = app.signed_in("owner").await;
    let other = app.signed_in("other").await;
    let room = app.make_room("ops", false, &owner).await;

    // Who may make one: the owner and the admin; another user 403, a guest 401.
    assert_eq!(make_hook(&app, &other, &room, "x").await.0, 403);
    let (status, body) = make_hook(&app, &app.anonymous(), &room, "x").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        make_hook(&app, &owner, "no-such-room-at-all", "x").await.0,
        404
    );
    assert_eq!(make_hook(&app, &owner, &room, "  ").await.0, 400);
    let (status, hook) = make_hook(&app, &owner, &room, "CI").await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!(hook["room_id"], room.as_str());
    assert_eq!(hook["created_by"], owner.user_id.as_deref().unwrap());
    let url = hook["url"].as_str().unwrap().to_string();
    let id = hook["id"].as_str().unwrap().to_string();
    let secret = url.rsplit('/').next().unwrap().to_string();
    assert!(
        url.starts_with(&format!("/hooks/{id}/")) && secret.len() == 64,
        "{url}"
    );
    let (status, by_admin) = make_hook(&app, &app.admin(), &room, "deploy").await;
    assert_eq!(status, 201, "{by_admin}");

    // Posted as the hook's, a bot's.
    let (status, said) = post_hook(&app, &url, &json!({"text": "build 42 passed"})).await;
    assert_eq!((status, said.as_str()), (200, "ok"));

    // What the tools send.
    assert_eq!(post_hook(&app, &url, &grafana()).await.0, 200);
    assert_eq!(post_hook(&app, &url, &alertmanager()).await.0, 200);
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "payload",
            &json!({"text": "from the legacy form"}).to_string(),
        )
        .finish();
    assert_eq!(
        post_hook_raw(&app, &url, ContentType::Form, form).await.0,
        200
    );
    let lines = lines(&transcript(&app, &room).await);
    assert_eq!(lines[0], "CI: build 42 passed");
    assert_eq!(lines[1], "Grafana: [FIRING:1] DiskFull (prod)");
    assert!(
        lines[2].starts_with("Alertmanager: [FIRING:2] HighLatency api↵p99 latency"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "CI: from the legacy form");
    let (_, history) = app
        .call(
            &app.anonymous(),
            Method::Get,
            &format!("/api/chat/rooms/{room}/messages"),
            None,
        )
        .await;
    assert!(history.as_array().unwrap().iter().all(|m| m["bot"] == true));

    // Refusals: one plain line each, nothing posted.
    let refused = [
        (json!({"username": "x"}), 400, "text is required"),
        (json!({"text": "y".repeat(4097)}), 400, "4096"),
    ];
    for (body, status, says) in refused {
        let (got, said) = post_hook(&app, &url, &body).await;
        assert_eq!(got, status, "{said}");
        assert!(
            said.contains(says) && !said.trim_end().contains('\n'),
            "{said:?}"
        );
    }
    let wrong_secret = format!("/hooks/{id}/{}", "0".repeat(64));
    assert_eq!(
        post_hook(&app, &wrong_secret, &json!({"text": "x"}))
            .await
            .0,
        404
    );
    let made_up = format!("/hooks/{}/{secret}", "1".repeat(36));
    assert_eq!(
        post_hook(&app, &made_up, &json!({"text": "x"})).await.0,
        404
    );
    let text = post_hook_raw(&app, &url, ContentType::Plain, "text=plain".into()).await;
    assert_eq!(text.0, 415);
    assert_eq!(lines_now(&app, &room).await, 4, "a refused post was stored");

    // Nobody may pass for the hook.
    let (status, body) = app
        .call(
            &app.anonymous(),
            Method::Post,
            &format!("/api/chat/rooms/{room}/messages"),
            Some(json!({"content": "I am the bot", "user_id": format!("hook:{id}")})),
        )
        .await;
    assert_eq!(status, 401, "{body}");

    // Listing: the owner sees both (no secret), another user none, the admin all.
    let (status, listed) = app.call(&owner, Method::Get, "/api/hooks", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(listed[0].get("url").is_none(), "{listed}");
    let (_, listed) = app.call(&other, Method::Get, "/api/hooks", None).await;
    assert_eq!(listed, json!([]));
    let path = format!("/api/hooks?room_id={room}");
    assert_eq!(app.call(&other, Method::Get, &path, None).await.0, 403);

    // Deleting: another user may not; the owner may, and the URL is dead at once.
    let path = format!("/api/hooks/{id}");
    assert_eq!(app.call(&other, Method::Delete, &path, None).await.0, 403);
    assert_eq!(app.call(&owner, Method::Delete, &path, None).await.0, 204);
    assert_eq!(post_hook(&app, &url, &json!({"text": "x"})).await.0, 404);

    // A deleted room takes its hooks with it: the hook cannot make it again.
    let deploy = by_admin["url"].as_str().unwrap().to_string();
    let path = format!("/api/chat/rooms/{room}");
    assert_eq!(
        app.call(&app.admin(), Method::Delete, &path, None).await.0,
        200
    );
    assert_eq!(post_hook(&app, &deploy, &json!({"text": "x"})).await.0, 404);
    assert_eq!(
        app.call(&app.anonymous(), Method::Get, &path, None).await.0,
        404
    );
}

/// A hook of a private room posts there: members read it, strangers do not.
#[rocket::async_test]
async fn a_private_rooms_hook_posts_for_its_members_only() {
    let app = TestApp::new().await;
    let owner = app.signed_in("owner").await;
    let stranger = app.signed_in("stranger").await;
    let room = app.make_room("secret", true, &owner).await;
    let (status, hook) = make_hook(&app, &owner, &room, "cron").await;
    assert_eq!(status, 201, "{hook}");
    let url = hook["url"].as_str().unwrap();
    assert_eq!(
        post_hook(&app, url, &json!({"text": "nightly ok"})).await.0,
        200
    );
    let path = format!("/api/chat/rooms/{room}/messages");
    let (status, history) = app.call(&owner, Method::Get, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(history[0]["content"], "nightly ok");
    let (status, _) = app.call(&stranger, Method::Get, &path, None).await;
    assert_eq!(status, 404);
    // A stranger cannot make one there, nor learn that the room exists.
    assert_eq!(make_hook(&app, &stranger, &room, "x").await.0, 404);
}

/// Each hook has its own bucket: past `hook_posts_per_minute`, 429 with Retry-After,
/// whoever calls; another hook is not held by it.
#[rocket::async_test]
async fn each_hook_has_its_own_limit() {
    // 9 a minute: 3 at once.
    let app = TestApp::with(&[("rate_limits", "true"), ("hook_posts_per_minute", "9")]).await;
    let owner = app.signed_in("owner").await;
    let room = app.make_room("busy", false, &owner).await;
    let first = make_hook(&app, &owner, &room, "one").await.1["url"]
        .as_str()
        .unwrap()
        .to_string();
    let second = make_hook(&app, &owner, &room, "two").await.1["url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            post_hook(&app, &first, &json!({"text": format!("n{i}")}))
                .await
                .0,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let (status, retry_after, text) = post_hook_raw(
        &app,
        &first,
        ContentType::JSON,
        json!({"text": "again"}).to_string(),
    )
    .await;
    assert_eq!(status, 429);
    let wait: u64 = retry_after.unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(text.starts_with("too many posts through this hook"));
    assert_eq!(
        post_hook(&app, &second, &json!({"text": "free"})).await.0,
        200
    );
}

/// Made-up hook URLs cost a database read each: past `hook_lookups_per_minute` from one
/// address they are 429 before any read, while a hook this replica holds still posts.
#[rocket::async_test]
async fn made_up_hook_urls_are_limited_per_address() {
    // 9 a minute: 3 at once.
    let app = TestApp::with(&[("rate_limits", "true"), ("hook_lookups_per_minute", "9")]).await;
    let owner = app.signed_in("owner").await;
    let room = app.make_room("alerts", false, &owner).await;
    let real = make_hook(&app, &owner, &room, "am").await.1["url"]
        .as_str()
        .unwrap()
        .to_string();
    // Its first post reads it (one lookup); it is held from then on.
    assert_eq!(post_hook(&app, &real, &json!({"text": "a"})).await.0, 200);
    let made_up = |i: usize| format!("/hooks/{}/{i:064}", uuid_like(i));
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(post_hook(&app, &made_up(i), &json!({"text": "x"})).await.0);
    }
    assert_eq!(statuses, [404, 404, 429, 429]);
    let (status, retry_after, text) = post_hook_raw(
        &app,
        &made_up(9),
        ContentType::JSON,
        json!({"text": "x"}).to_string(),
    )
    .await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some());
    assert!(text.starts_with("too many unknown hook URLs from this address"));
    // An id that is no UUID is refused without a read, and the held hook still posts.
    assert_eq!(
        post_hook(&app, "/hooks/made-up/x", &json!({"text": "x"}))
            .await
            .0,
        404
    );
    assert_eq!(post_hook(&app, &real, &json!({"text": "b"})).await.0, 200);
}

// Bots.

/// A private room's owner lets a bot in as a member; a bot made for a private room it is
/// not a member of reads nothing there.
#[rocket::async_test]
async fn a_bot_reads_a_private_room_only_as_a_member() {
    let app = TestApp::new().await;
    let owner = app.signed_in("owner").await;
    let room = app.make_room("private", true, &owner).await;
    let (status, bot) = app
        .call(
            &app.admin(),
            Method::Post,
            "/api/bots",
            Some(json!({"name": unique("helper"), "rooms": [room]})),
        )
        .await;
    assert_eq!(status, 201, "{bot}");
    let id = bot["id"].as_str().unwrap().to_string();
    let token = bot["token"].as_str().unwrap().to_string();
    let as_bot = Persona {
        token: Some(token.clone()),
        user_id: Some(id.clone()),
        username: "bot".into(),
    };
    let path = format!("/api/chat/rooms/{room}/messages");
    assert_eq!(app.call(&as_bot, Method::Get, &path, None).await.0, 404);
    let (status, body) = app
        .call(
            &owner,
            Method::Post,
            &format!("/api/chat/rooms/{room}/members"),
            Some(json!({"user_id": id})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.call(&as_bot, Method::Get, &path, None).await.0, 200);
    let said = json!({"content": "hello from the bot"});
    assert_eq!(
        app.call(&as_bot, Method::Post, &path, Some(said)).await.0,
        201
    );
    // The room deleted, the bot cannot make it again by posting to it.
    let path = format!("/api/chat/rooms/{room}");
    assert_eq!(
        app.call(&app.admin(), Method::Delete, &path, None).await.0,
        200
    );
    let status = app
        .client
        .post(format!("/api/chat/{room}"))
        .header(ContentType::Form)
        .header(Header::new("Authorization", format!("Bearer {token}")))
        .body("msg=again")
        .dispatch()
        .await
        .status()
        .code;
    assert_eq!(status, 404);
    assert_eq!(
        app.call(&app.admin(), Method::Get, &path, None).await.0,
        404
    );
}

//! Incoming webhooks over real HTTP: made by a room's owner or an admin, posted to by
//! the payloads Slack-speaking tools really send (Grafana, Alertmanager, the legacy form),
//! seen as a bot's message by every door, refused as 404 for a wrong id or secret, limited
//! per hook, gone with their room (on every replica, though each keeps the hooks it posted
//! through lately); and 20,000 made-up hook URLs leave memory flat.

mod common;

use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// Posts `body` to a hook URL as JSON: the status and the plain answer.
async fn post_hook(server: &Server, url: &str, body: &Value) -> (u16, String) {
    let res = client()
        .post(format!("{}{url}", server.url))
        .json(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

async fn make_hook(server: &Server, token: &str, room: &str, name: &str) -> (u16, Value) {
    call_with_token(
        server,
        Method::POST,
        "/api/hooks",
        Some(json!({"room_id": room, "name": name})),
        Some(token),
    )
    .await
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

async fn hooks_post_as_a_bot(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (owner_id, owner) = sign_up(&server, &unique_name("owner")).await;
    let (_, other) = sign_up(&server, &unique_name("other")).await;
    let room = make_room(&server, "ops", false, &owner).await;

    // Who may make one: the owner and the admin; another user 403, a guest 401.
    assert_eq!(make_hook(&server, &other, &room, "x").await.0, 403);
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/hooks",
        Some(json!({"room_id": room, "name": "x"})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        make_hook(&server, &owner, "no-such-room-at-all", "x")
            .await
            .0,
        404
    );
    assert_eq!(make_hook(&server, &owner, &room, "  ").await.0, 400);
    let (status, hook) = make_hook(&server, &owner, &room, "CI").await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!(hook["room_id"], room.as_str());
    assert_eq!(hook["created_by"], owner_id.as_str());
    let url = hook["url"].as_str().unwrap().to_string();
    let id = hook["id"].as_str().unwrap().to_string();
    let secret = url.rsplit('/').next().unwrap().to_string();
    assert!(
        url.starts_with(&format!("/hooks/{id}/")) && secret.len() == 64,
        "{url}"
    );
    let (status, by_admin) = admin_call(
        &server,
        Method::POST,
        "/api/hooks",
        Some(json!({"room_id": room, "name": "deploy"})),
    )
    .await;
    assert_eq!(status, 201, "{by_admin}");

    // A socket in the room sees each post as the hook's, a bot's.
    let mut ws = open_socket(&server, &format!("/ws/{room}/watcher")).await;
    let (status, said) = post_hook(&server, &url, &json!({"text": "build 42 passed"})).await;
    assert_eq!((status, said.as_str()), (200, "ok"));
    let frame = next_of(&mut ws, &["message"]).await;
    assert_eq!(frame["content"], "build 42 passed");
    assert_eq!(frame["username"], "CI");
    assert_eq!(frame["bot"], true);
    assert_eq!(frame["user_id"], format!("hook:{id}"));

    // What the tools send.
    assert_eq!(post_hook(&server, &url, &grafana()).await.0, 200);
    assert_eq!(post_hook(&server, &url, &alertmanager()).await.0, 200);
    let form = client()
        .post(format!("{}{url}", server.url))
        .form(&[(
            "payload",
            json!({"text": "from the legacy form"}).to_string(),
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let lines = lines(&transcript(&server, &room).await);
    assert_eq!(lines[0], "CI: build 42 passed");
    assert_eq!(lines[1], "Grafana: [FIRING:1] DiskFull (prod)");
    assert!(
        lines[2].starts_with("Alertmanager: [FIRING:2] HighLatency api↵p99 latency"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "CI: from the legacy form");
    let (_, history) = call(
        &server,
        Method::GET,
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
        let (got, said) = post_hook(&server, &url, &body).await;
        assert_eq!(got, status, "{said}");
        assert!(
            said.contains(says) && !said.trim_end().contains('\n'),
            "{said:?}"
        );
    }
    let wrong_secret = format!("/hooks/{id}/{}", "0".repeat(64));
    assert_eq!(
        post_hook(&server, &wrong_secret, &json!({"text": "x"}))
            .await
            .0,
        404
    );
    let made_up = format!("/hooks/{}/{secret}", "1".repeat(36));
    assert_eq!(
        post_hook(&server, &made_up, &json!({"text": "x"})).await.0,
        404
    );
    let text = client()
        .post(format!("{}{url}", server.url))
        .body("text=plain")
        .header("Content-Type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    assert_eq!(
        lines_now(&server, &room).await,
        4,
        "a refused post was stored"
    );

    // Nobody may pass for the hook.
    let (status, body) = call(
        &server,
        Method::POST,
        &format!("/api/chat/rooms/{room}/messages"),
        Some(json!({"content": "I am the bot", "user_id": format!("hook:{id}")})),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // Listing: the owner sees both (no secret), another user none, the admin all.
    let (status, listed) =
        call_with_token(&server, Method::GET, "/api/hooks", None, Some(&owner)).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(listed[0].get("url").is_none(), "{listed}");
    let (_, listed) = call_with_token(&server, Method::GET, "/api/hooks", None, Some(&other)).await;
    assert_eq!(listed, json!([]));
    let path = format!("/api/hooks?room_id={room}");
    assert_eq!(
        call_with_token(&server, Method::GET, &path, None, Some(&other))
            .await
            .0,
        403
    );

    // Deleting: another user may not; the owner may, and the URL is dead at once.
    let path = format!("/api/hooks/{id}");
    assert_eq!(
        call_with_token(&server, Method::DELETE, &path, None, Some(&other))
            .await
            .0,
        403
    );
    assert_eq!(
        call_with_token(&server, Method::DELETE, &path, None, Some(&owner))
            .await
            .0,
        204
    );
    assert_eq!(post_hook(&server, &url, &json!({"text": "x"})).await.0, 404);

    // A deleted room takes its hooks with it: the hook cannot make it again.
    let deploy = by_admin["url"].as_str().unwrap().to_string();
    let path = format!("/api/chat/rooms/{room}");
    assert_eq!(
        admin_call(&server, Method::DELETE, &path, None).await.0,
        200
    );
    assert_eq!(
        post_hook(&server, &deploy, &json!({"text": "x"})).await.0,
        404
    );
    assert_eq!(call(&server, Method::GET, &path, None).await.0, 404);
    db.drop_db().await;
}

/// A replica keeps a hook it posted through for a while (no row read per post): a deletion
/// on another replica, of the hook or of its room, reaches it through the hub at once.
#[tokio::test]
async fn a_hook_deleted_on_one_replica_is_dead_on_every_one() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let servers = replicas(&db, &redis, 2).await;
    let (a, b) = (&servers[0], &servers[1]);
    let (_, owner) = sign_up(a, &unique_name("owner")).await;
    let room = make_room(a, "ops", false, &owner).await;
    let mut urls = Vec::new();
    for name in ["one", "two"] {
        let (status, hook) = make_hook(a, &owner, &room, name).await;
        assert_eq!(status, 201, "{hook}");
        let url = hook["url"].as_str().unwrap().to_string();
        // Each replica has posted through it: both keep it.
        for server in [a, b] {
            assert_eq!(post_hook(server, &url, &json!({"text": "up"})).await.0, 200);
        }
        urls.push((hook["id"].as_str().unwrap().to_string(), url));
    }

    let path = format!("/api/hooks/{}", urls[0].0);
    assert_eq!(
        call_with_token(a, Method::DELETE, &path, None, Some(&owner))
            .await
            .0,
        204
    );
    assert_eq!(post_hook(a, &urls[0].1, &json!({"text": "x"})).await.0, 404);
    let gone = eventually(Duration::from_secs(2), || async {
        post_hook(b, &urls[0].1, &json!({"text": "x"})).await.0 == 404
    })
    .await;
    assert!(
        gone,
        "the other replica refuses the deleted hook within 2 s"
    );
    let before = lines_now(b, &room).await;
    assert_eq!(
        post_hook(b, &urls[1].1, &json!({"text": "still"})).await.0,
        200
    );
    assert_eq!(
        lines_now(b, &room).await,
        before + 1,
        "the other hook still posts"
    );

    // The room goes, with its hooks: the one that replica B kept must not make it again,
    // whatever B answers before it hears (every answer is checked, not only the last).
    let path = format!("/api/chat/rooms/{room}");
    assert_eq!(admin_call(a, Method::DELETE, &path, None).await.0, 200);
    let gone = eventually(Duration::from_secs(2), || async {
        let status = post_hook(b, &urls[1].1, &json!({"text": "x"})).await.0;
        assert_eq!(call(a, Method::GET, &path, None).await.0, 404, "made again");
        status == 404
    })
    .await;
    assert!(
        gone,
        "the deleted room's hook is refused on the other replica"
    );
    assert_eq!(call(b, Method::GET, &path, None).await.0, 404);
    db.drop_db().await;
}

async fn lines_now(server: &Server, room: &str) -> usize {
    lines(&transcript(server, room).await).len()
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_hooks_post_as_a_bot() {
    hooks_post_as_a_bot(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_hooks_post_as_a_bot() {
    hooks_post_as_a_bot(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_hooks_post_as_a_bot() {
    hooks_post_as_a_bot(Backend::Postgres).await;
}

/// A hook of a private room posts there: members read it, strangers do not.
#[tokio::test(flavor = "multi_thread")]
async fn a_private_rooms_hook_posts_for_its_members_only() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let (_, owner) = sign_up(&server, &unique_name("owner")).await;
    let (_, stranger) = sign_up(&server, &unique_name("stranger")).await;
    let room = make_room(&server, "secret", true, &owner).await;
    let (status, hook) = make_hook(&server, &owner, &room, "cron").await;
    assert_eq!(status, 201, "{hook}");
    let url = hook["url"].as_str().unwrap();
    assert_eq!(
        post_hook(&server, url, &json!({"text": "nightly ok"}))
            .await
            .0,
        200
    );
    let path = format!("/api/chat/rooms/{room}/messages");
    let (status, history) = call_with_token(&server, Method::GET, &path, None, Some(&owner)).await;
    assert_eq!(status, 200);
    assert_eq!(history[0]["content"], "nightly ok");
    let (status, _) = call_with_token(&server, Method::GET, &path, None, Some(&stranger)).await;
    assert_eq!(status, 404);
    // A stranger cannot make one there, nor learn that the room exists.
    assert_eq!(make_hook(&server, &stranger, &room, "x").await.0, 404);
}

/// Each hook has its own bucket: past `hook_posts_per_minute`, 429 with Retry-After,
/// whoever calls; another hook is not held by it.
#[tokio::test(flavor = "multi_thread")]
async fn each_hook_has_its_own_limit() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_RATE_LIMITS", "true")
            // 9 a minute: 3 at once.
            .env("ROCKET_HOOK_POSTS_PER_MINUTE", "9"),
    )
    .await;
    let (_, owner) = sign_up(&server, &unique_name("owner")).await;
    let room = make_room(&server, "busy", false, &owner).await;
    let first = make_hook(&server, &owner, &room, "one").await.1["url"]
        .as_str()
        .unwrap()
        .to_string();
    let second = make_hook(&server, &owner, &room, "two").await.1["url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            post_hook(&server, &first, &json!({"text": format!("n{i}")}))
                .await
                .0,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let res = client()
        .post(format!("{}{first}", server.url))
        .json(&json!({"text": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(res
        .text()
        .await
        .unwrap()
        .starts_with("too many posts through this hook"));
    assert_eq!(
        post_hook(&server, &second, &json!({"text": "free"}))
            .await
            .0,
        200
    );
}

/// Made-up hook URLs cost a database read each: past `hook_lookups_per_minute` from one
/// address they are 429 before any read, while a hook this replica holds still posts.
#[tokio::test(flavor = "multi_thread")]
async fn made_up_hook_urls_are_limited_per_address() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_RATE_LIMITS", "true")
            // 9 a minute: 3 at once.
            .env("ROCKET_HOOK_LOOKUPS_PER_MINUTE", "9"),
    )
    .await;
    let (_, owner) = sign_up(&server, &unique_name("owner")).await;
    let room = make_room(&server, "alerts", false, &owner).await;
    let real = make_hook(&server, &owner, &room, "am").await.1["url"]
        .as_str()
        .unwrap()
        .to_string();
    // Its first post reads it (one lookup); it is held from then on.
    assert_eq!(
        post_hook(&server, &real, &json!({"text": "a"})).await.0,
        200
    );
    let made_up = |i: usize| format!("/hooks/{}/{i:064}", uuid_like(i));
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            post_hook(&server, &made_up(i), &json!({"text": "x"}))
                .await
                .0,
        );
    }
    assert_eq!(statuses, [404, 404, 429, 429]);
    let res = client()
        .post(format!("{}{}", server.url, made_up(9)))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert!(res
        .text()
        .await
        .unwrap()
        .starts_with("too many unknown hook URLs from this address"));
    // An id that is no UUID is refused without a read, and the held hook still posts.
    assert_eq!(
        post_hook(&server, "/hooks/made-up/x", &json!({"text": "x"}))
            .await
            .0,
        404
    );
    assert_eq!(
        post_hook(&server, &real, &json!({"text": "b"})).await.0,
        200
    );
}

/// 20,000 made-up hook URLs: each a 404, and the server's memory stays flat.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_made_up_hooks_are_404_and_memory_stays_flat() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let http = client();
    let knock = |i: usize| {
        let (http, base) = (http.clone(), server.url.clone());
        async move {
            // Half with ids that are UUIDs (a lookup each), half that are not.
            let id = if i % 2 == 0 {
                uuid_like(i)
            } else {
                format!("made-up-{i}")
            };
            http.post(format!("{base}/hooks/{id}/{i:064}"))
                .json(&json!({"text": "hello"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    for i in 0..200 {
        assert_eq!(knock(i).await.unwrap(), 404);
    }
    let before = server.rss_bytes();
    let statuses: Vec<_> = futures_util::stream::iter(200..20_200)
        .map(knock)
        .buffer_unordered(64)
        .collect()
        .await;
    let wrong: Vec<_> = statuses
        .iter()
        .filter(|s| !matches!(s, Ok(404)))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_flat(&server, before, "20,000 made-up hook URLs");
}

fn uuid_like(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

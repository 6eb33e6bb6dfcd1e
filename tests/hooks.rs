//! Incoming webhooks over real HTTP and WebSocket: a hook's post seen by a room's socket
//! as a bot's (the three databases); a hook or its room deleted on one replica is dead on
//! every one, though each keeps the hooks it posted through lately; and 20,000 made-up
//! hook URLs leave memory flat. Who may make, list and delete hooks, the tools' payloads,
//! refusals, a private room's hook and the limits are in process, in
//! `tests/integrations.rs`.

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

/// What a socket in the room is told of a hook's post: the hook's, a bot's. The rest of
/// the hook's contract (who may make one, the tools' payloads, refusals, listing,
/// deleting) is in `tests/integrations.rs`.
async fn a_socket_sees_a_hooks_post_as_a_bot(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (_, owner) = sign_up(&server, &unique_name("owner")).await;
    let room = make_room(&server, "ops", false, &owner).await;
    let (status, hook) = make_hook(&server, &owner, &room, "CI").await;
    assert_eq!(status, 201, "{hook}");
    let url = hook["url"].as_str().unwrap().to_string();
    let id = hook["id"].as_str().unwrap().to_string();

    // A socket in the room sees each post as the hook's, a bot's.
    let mut ws = open_socket(&server, &format!("/ws/{room}/watcher")).await;
    let (status, said) = post_hook(&server, &url, &json!({"text": "build 42 passed"})).await;
    assert_eq!((status, said.as_str()), (200, "ok"));
    let frame = next_of(&mut ws, &["message"]).await;
    assert_eq!(frame["content"], "build 42 passed");
    assert_eq!(frame["username"], "CI");
    assert_eq!(frame["bot"], true);
    assert_eq!(frame["user_id"], format!("hook:{id}"));
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
async fn sqlite_a_socket_sees_a_hooks_post_as_a_bot() {
    a_socket_sees_a_hooks_post_as_a_bot(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_a_socket_sees_a_hooks_post_as_a_bot() {
    a_socket_sees_a_hooks_post_as_a_bot(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_socket_sees_a_hooks_post_as_a_bot() {
    a_socket_sees_a_hooks_post_as_a_bot(Backend::Postgres).await;
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

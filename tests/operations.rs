//! How the server is run: the embedded default, the seed's `MYSQL_URI`, a database the
//! Flask original already filled, a database that goes away and comes back, and messages
//! written by another process.

mod common;

use common::*;
use sea_orm::ConnectionTrait;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_needs_no_configuration_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let options = || ServerOptions {
        database_url: None,
        env: Vec::new(),
        cwd: Some(dir.path().to_path_buf()),
    };
    let server = Server::start_with(options()).await;
    let room = room("embedded");
    post_ok(&server, &room, &[("username", "a"), ("msg", "kept")]).await;
    server.stop();
    assert!(
        dir.path().join("ferrochat.db").exists(),
        "the SQLite file is in the working folder"
    );
    let server = Server::start_with(options()).await;
    assert_eq!(lines(&transcript(&server, &room).await), ["a: kept"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_mysql_uri_works_unchanged() {
    let db = TestDb::create(Backend::MariaDb).await;
    // The form the seed's compose file uses: SQLAlchemy dialect+driver.
    let uri = db.url.replacen("mysql://", "mysql+pymysql://", 1);
    let server = Server::start_with(ServerOptions {
        database_url: None,
        env: vec![("MYSQL_URI".into(), uri)],
        cwd: None,
    })
    .await;
    let room = room("uri");
    post_ok(
        &server,
        &room,
        &[("username", "a"), ("msg", "via MYSQL_URI")],
    )
    .await;
    assert_eq!(
        lines(&transcript(&server, &room).await),
        ["a: via MYSQL_URI"]
    );
    assert!(
        server.log().iter().any(|l| l.contains("mysql://")),
        "{:?}",
        server.log()
    );
    // The message really is in that MariaDB database.
    let direct = db.connect().await;
    let row = direct
        .query_one_raw(sea_orm::Statement::from_string(
            direct.get_database_backend(),
            format!("SELECT username, text FROM message WHERE room = '{room}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "text").unwrap(), "via MYSQL_URI");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_the_flask_original_filled_is_adopted() {
    let db = TestDb::create(Backend::MariaDb).await;
    let direct = db.connect().await;
    // The table exactly as Flask-SQLAlchemy creates it for the seed's model.
    direct
        .execute_unprepared(
            "CREATE TABLE message (
                id INTEGER NOT NULL AUTO_INCREMENT,
                room VARCHAR(100),
                timestamp DATETIME,
                username VARCHAR(100),
                text TEXT,
                PRIMARY KEY (id)
            )",
        )
        .await
        .unwrap();
    direct
        .execute_unprepared("CREATE INDEX ix_message_room ON message (room)")
        .await
        .unwrap();
    direct
        .execute_unprepared(
            "INSERT INTO message (room, timestamp, username, text) VALUES
             ('general', '2025-03-04 05:06:07', 'old', 'written by Flask'),
             ('other', '2025-03-04 05:06:08', 'old', 'elsewhere')",
        )
        .await
        .unwrap();
    let server = Server::start(&db.url).await;
    let text = transcript(&server, "general").await;
    assert!(text.ends_with("] old: written by Flask"), "{text}");
    post_ok(
        &server,
        "general",
        &[("username", "new"), ("msg", "from ferrochat")],
    )
    .await;
    assert_eq!(
        lines(&transcript(&server, "general").await),
        ["old: written by Flask", "new: from ferrochat"]
    );
    db.drop_db().await;
}

/// The database link is cut under a running server: health and posts say 503 with a
/// reason, polls of a room already read keep answering, nothing accepted is lost, and
/// everything works again when the link is back, without a restart.
async fn database_outage_and_recovery(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (proxy, proxied) = database_behind_proxy(&db).await;
    let server =
        Server::start_with(ServerOptions::new(&proxied).env("ROCKET_DB_TIMEOUT_SECS", "1")).await;
    let room = room("outage");
    post_ok(&server, &room, &[("username", "a"), ("msg", "before")]).await;
    let before = transcript(&server, &room).await;

    proxy.cut().await;
    let health = client()
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["database"]["state"], "down");
    let (status, reason) = post_form(&server, &room, &[("username", "a"), ("msg", "during")]).await;
    assert_eq!(status, 503, "{reason}");
    assert_eq!(reason.trim_end().lines().count(), 1);
    assert!(reason.contains("database"), "{reason}");
    // Pollers of a room already read are still answered, with everything accepted so far.
    assert_eq!(transcript(&server, &room).await, before);
    // A room never read cannot be answered without the database: 503, not an empty 200.
    let res = client()
        .get(format!(
            "{}/api/chat/{}",
            server.url,
            common::room("unread")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    // The JSON API says so as its clients read it, for every mount on the database.
    use reqwest::Method;
    for (method, path, body) in [
        (Method::GET, "/api/chat/rooms".to_string(), None),
        (
            Method::GET,
            format!("/api/chat/rooms/{room}/messages"),
            None,
        ),
        (
            Method::POST,
            format!("/api/chat/rooms/{room}/messages"),
            Some(serde_json::json!({"content": "x"})),
        ),
        (Method::GET, "/api/notifications/u1".to_string(), None),
        (Method::GET, "/api/files".to_string(), None),
    ] {
        assert_detail(
            &call(&server, method, &path, body).await,
            503,
            "database unavailable",
        );
    }
    assert_eq!(
        call(&server, Method::GET, "/api/chat/health", None).await.0,
        503
    );
    assert_eq!(
        call(&server, Method::GET, "/api/notifications/health", None)
            .await
            .0,
        503
    );

    proxy.restore();
    let url = format!("{}/health", server.url);
    assert!(
        eventually(Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                client()
                    .get(url)
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            }
        })
        .await,
        "health back to 200 without a restart"
    );
    post_ok(&server, &room, &[("username", "a"), ("msg", "after")]).await;
    assert_eq!(
        lines(&transcript(&server, &room).await),
        ["a: before", "a: after"]
    );
    let (status, history) = call(
        &server,
        reqwest::Method::GET,
        &format!("/api/chat/rooms/{room}/messages"),
        None,
    )
    .await;
    assert_eq!((status, history.as_array().map(Vec::len)), (200, Some(2)));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_outage_and_recovery() {
    database_outage_and_recovery(Backend::MariaDb).await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_outage_and_recovery() {
    database_outage_and_recovery(Backend::Postgres).await
}

/// Messages written by another process on the same database (another replica, a script)
/// reach a room this server already holds in memory, within the refresh period.
async fn messages_from_elsewhere_appear(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_TRANSCRIPT_REFRESH_MS", "200"))
            .await;
    let other = Server::start(&db.url).await;
    let room = room("shared");
    post_ok(&server, &room, &[("username", "here"), ("msg", "one")]).await;
    assert_eq!(lines(&transcript(&server, &room).await), ["here: one"]);
    post_ok(&other, &room, &[("username", "there"), ("msg", "two")]).await;
    let (url, expected) = (
        server.url.clone(),
        vec!["here: one".to_string(), "there: two".to_string()],
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let (url, room, expected) = (url.clone(), room.clone(), expected.clone());
            async move {
                let text = client()
                    .get(format!("{url}/api/chat/{room}"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                lines(&text) == expected
            }
        })
        .await
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_messages_from_elsewhere_appear() {
    messages_from_elsewhere_appear(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_messages_from_elsewhere_appear() {
    messages_from_elsewhere_appear(Backend::MariaDb).await
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_messages_from_elsewhere_appear() {
    messages_from_elsewhere_appear(Backend::Postgres).await
}

/// Liveness touches nothing; readiness follows the database.
#[tokio::test(flavor = "multi_thread")]
async fn liveness_and_readiness_probes() {
    let db = TestDb::create(Backend::MariaDb).await;
    let (proxy, url) = database_behind_proxy(&db).await;
    let server =
        Server::start_with(ServerOptions::new(&url).env("ROCKET_DB_TIMEOUT_SECS", "1")).await;
    let get = |path: &str| {
        let url = format!("{}{path}", server.url);
        async move {
            let res = client().get(url).send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(get("/health/live").await.0, 200);
    let (status, body) = get("/health/ready").await;
    assert_eq!(
        (status, body["checks"]["database"].as_str()),
        (200, Some("up"))
    );
    proxy.cut().await;
    let (status, body) = get("/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("database"),
        "{body}"
    );
    // The process itself still answers: no restart for a database that is away.
    assert_eq!(get("/health/live").await.0, 200);
    proxy.restore();
    assert!(
        eventually(Duration::from_secs(10), || async {
            get("/health/ready").await.0 == 200
        })
        .await
    );
    db.drop_db().await;
}

/// SIGTERM: readiness says 503 at once while everything else is still served, a new
/// socket is refused with 503, open sockets are closed with 1012 and a `since` after the
/// drain, nothing accepted is lost, and the process exits 0 within the grace.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_server_drains_then_closes_sockets_with_1012() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let db = TestDb::create(Backend::Sqlite).await;
    let options = || {
        ServerOptions::new(&db.url)
            .env("ROCKET_SHUTDOWN_DRAIN_SECS", "2")
            .env("ROCKET_SHUTDOWN_GRACE_SECS", "10")
    };
    let mut server = Server::start_with(options()).await;
    let room = room("stopping");
    post_ok(&server, &room, &[("username", "a"), ("msg", "before")]).await;
    let status = |path: &str| {
        let url = format!("{}{path}", server.url);
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/health/ready").await, 200);
    let mut ws = open_socket(&server, &format!("/ws/{room}/stayer")).await;
    assert_eq!(
        next_of(&mut ws, &["user_joined"]).await["user_id"],
        "stayer"
    );

    let signalled = std::time::Instant::now();
    server.terminate();
    assert!(
        eventually(Duration::from_millis(500), || async {
            status("/health/ready").await == 503
        })
        .await,
        "readiness says 503 at once"
    );
    // Still serving: health, posts (delivered to the open socket), reads.
    assert_eq!(status("/health").await, 200);
    assert_eq!(status("/health/live").await, 200);
    post_ok(
        &server,
        &room,
        &[("username", "a"), ("msg", "during the drain")],
    )
    .await;
    let during = next_of(&mut ws, &["message"]).await;
    assert_eq!(during["content"], "during the drain");
    let ws_url = server.url.replacen("http://", "ws://", 1);
    match tokio_tungstenite::connect_async(format!("{ws_url}/ws/{room}/late")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 503)
        }
        other => panic!("a new socket while draining: {:?}", other.map(|_| ())),
    }
    // After the drain, the open socket is told to reconnect, with where to resume.
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.expect("a close frame"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected close 1012, got {other:?}"),
        }
    };
    assert!(
        signalled.elapsed() >= Duration::from_millis(1900),
        "sockets stay open through the drain"
    );
    assert_eq!(u16::from(close.code), 1012);
    let since = since_in(&close.reason);
    assert!(since < during["id"].as_i64().unwrap());
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "exits 0 within the grace"
    );

    // Coming back (here: the same server restarted) with that since misses nothing.
    let server = Server::start_with(options()).await;
    assert_eq!(
        lines(&transcript(&server, &room).await),
        ["a: before", "a: during the drain"]
    );
    let mut again = open_socket(&server, &format!("/ws/{room}/stayer?since={since}")).await;
    assert_eq!(
        next_of(&mut again, &["message"]).await["content"],
        "during the drain"
    );
    db.drop_db().await;
}

/// Replicas started at the same moment on a fresh database (a Deployment's first pods,
/// `docker compose up --scale`) all come up: they migrate in turn, not all at once.
async fn replicas_started_together_on_a_fresh_database_all_come_up(backend: Backend) {
    let db = TestDb::create(backend).await;
    let servers = futures_util::future::join_all(
        (0..4).map(|_| Server::start_with(ServerOptions::new(&db.url))),
    )
    .await;
    for server in &servers {
        post_ok(server, "together", &[("username", "a"), ("msg", "hi")]).await;
    }
    assert_eq!(lines(&transcript(&servers[0], "together").await).len(), 4);
    drop(servers);
    db.drop_db().await;
}

mod together {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn mariadb() {
        replicas_started_together_on_a_fresh_database_all_come_up(Backend::MariaDb).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres() {
        replicas_started_together_on_a_fresh_database_all_come_up(Backend::Postgres).await
    }
}

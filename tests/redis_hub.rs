//! Replicas sharing one database and a real Redis: a message posted to one reaches
//! sockets, long-polls and cached transcripts on the others; when Redis dies and comes
//! back mid-traffic nothing accepted is lost or delivered twice. Each test runs its own
//! `redis-server`, so it can kill it.

mod common;

use common::*;
use std::time::Duration;

on_every_backend!(replicas_writing_at_once_reach_every_reader_in_id_order);

async fn replica(db: &TestDb, redis: &str) -> Server {
    Server::start_with(
        ServerOptions::new(&db.url)
            .env("REDIS_URL", redis)
            // Long enough that only the hub can explain a fresh transcript.
            .env("ROCKET_TRANSCRIPT_REFRESH_MS", "600000"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_on_one_replica_reaches_every_reader_on_another() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let (a, b) = (
        replica(&db, &redis.url()).await,
        replica(&db, &redis.url()).await,
    );
    let room = room("shared");
    post_ok(&a, &room, &[("username", "a"), ("msg", "first")]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            hub_state(&b).await == "up"
        })
        .await
    );
    // B holds the room in memory, a socket and a long-poll are open on B.
    assert_eq!(lines(&transcript(&b, &room).await), ["a: first"]);
    let mut ws = open_socket(&b, &format!("/ws/{room}/reader")).await;
    let tag = client()
        .get(format!("{}/api/chat/{room}", b.url))
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let poll = tokio::spawn({
        let url = format!("{}/api/chat/{room}?wait=20", b.url);
        async move {
            client()
                .get(url)
                .header("If-None-Match", tag)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    post_ok(&a, &room, &[("username", "a"), ("msg", "second")]).await;
    let got = messages_until(&mut ws, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["content"], "second");
    assert_eq!(lines(&poll.await.unwrap()), ["a: first", "a: second"]);
    assert_eq!(
        lines(&transcript(&b, &room).await),
        ["a: first", "a: second"]
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_dying_mid_traffic_loses_and_doubles_nothing() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let (a, b) = (
        replica(&db, &redis.url()).await,
        replica(&db, &redis.url()).await,
    );
    let room = room("outage");
    post_ok(&a, &room, &[("username", "a"), ("msg", "m0")]).await;
    for server in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                hub_state(server).await == "up"
            })
            .await
        );
    }
    assert_eq!(lines(&transcript(&b, &room).await).len(), 1);
    let mut on_b = open_socket(&b, &format!("/ws/{room}/reader-b")).await;
    let mut on_a = open_socket(&a, &format!("/ws/{room}/reader-a")).await;

    // Traffic on both replicas while Redis dies and comes back.
    let writer = |server_url: String, tag: &'static str| {
        let room = room.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                let res = client()
                    .post(format!("{server_url}/api/chat/{room}"))
                    .form(&[("username", tag), ("msg", &format!("{tag}{i}"))])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 204, "posts go on without Redis");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (wa, wb) = (writer(a.url.clone(), "a"), writer(b.url.clone(), "b"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let port = redis.kill();
    assert!(
        eventually(Duration::from_secs(10), || async {
            hub_state(&b).await == "down"
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let redis = Redis::start_on(port).await;
    wa.await.unwrap();
    wb.await.unwrap();
    for server in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(15), || async {
                hub_state(server).await == "up"
            })
            .await
        );
    }

    let mut expected: Vec<String> = (0..30)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    expected.sort();
    for (name, ws) in [("socket on A", &mut on_a), ("socket on B", &mut on_b)] {
        let got = messages_until(ws, expected.len(), Duration::from_secs(10)).await;
        let (contents, _) = contents_once_each(&got, name);
        assert_eq!(contents, expected, "{name}: every message");
    }
    for server in [&a, &b] {
        let text = transcript(server, &room).await;
        assert_eq!(lines(&text).len(), 61, "{text}");
    }
    drop(redis);
    db.drop_db().await;
}

/// Three replicas writing into one room at once, as fast as they can: every reader on every
/// replica gets the room in id order, each message once, whether it listens on a socket or
/// reads `?after=` the last id it has, as the page does. Ids are global and two replicas
/// commit independently, so this holds only because a room's messages are handed on after
/// their predecessors (`realtime::order`). On every backend: the rooms are locked and their
/// last ids read in each one's dialect (SQLite, one file, has one writer at a time).
async fn replicas_writing_at_once_reach_every_reader_in_id_order(backend: Backend) {
    const WRITERS_PER_REPLICA: usize = 3;
    const POSTS: usize = 25;
    let total = 3 * WRITERS_PER_REPLICA * POSTS;
    let db = TestDb::create(backend).await;
    let redis = Redis::start().await;
    let replicas = replicas(&db, &redis, 3).await;
    let room = room("race");
    post_ok(&replicas[0], &room, &[("username", "s"), ("msg", "start")]).await;
    let start = get_json(&format!("{}/api/chat/{room}?format=json", replicas[0].url)).await
        ["last_id"]
        .as_i64()
        .unwrap();
    let mut sockets = Vec::new();
    for (n, r) in replicas.iter().enumerate() {
        sockets.push(open_socket(r, &format!("/ws/{room}/reader{n}")).await);
    }
    let pages: Vec<_> = replicas
        .iter()
        .map(|r| {
            let url = format!("{}/api/chat/{room}", r.url);
            tokio::spawn(async move {
                let (mut last, mut ids) = (start, Vec::new());
                let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
                while ids.len() < total && tokio::time::Instant::now() < deadline {
                    let page = get_json(&format!("{url}?after={last}&wait=5&format=json")).await;
                    ids.extend(
                        page["messages"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|m| m["id"].as_i64().unwrap()),
                    );
                    last = page["last_id"].as_i64().unwrap();
                }
                ids
            })
        })
        .collect();

    let writers: Vec<_> = replicas
        .iter()
        .flat_map(|r| (0..WRITERS_PER_REPLICA).map(move |w| (r.url.clone(), w)))
        .enumerate()
        .map(|(n, (url, _))| {
            let room = room.clone();
            tokio::spawn(async move {
                for i in 0..POSTS {
                    let res = client()
                        .post(format!("{url}/api/chat/{room}"))
                        .form(&[("username", format!("w{n}")), ("msg", format!("w{n}-{i}"))])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 204);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }

    // From the database (the rooms API, 200 a page): a replica's transcript may still be
    // waiting for the last message from another.
    let mut stored: Vec<i64> = Vec::new();
    loop {
        let after = stored.last().copied().unwrap_or(start);
        let page = get_json(&format!(
            "{}/api/chat/rooms/{room}/messages?after={after}&limit=200",
            replicas[0].url
        ))
        .await;
        let ids: Vec<i64> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        if ids.is_empty() {
            break;
        }
        stored.extend(ids);
    }
    assert_eq!(stored.len(), total);
    for (n, ws) in sockets.iter_mut().enumerate() {
        let got = messages_until(ws, total, Duration::from_secs(15)).await;
        contents_once_each(&got, &format!("socket on replica {n}"));
        let ids: Vec<i64> = got.iter().map(|m| m["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, stored, "socket on replica {n}: the room as stored");
    }
    for (n, page) in pages.into_iter().enumerate() {
        assert_eq!(
            page.await.unwrap(),
            stored,
            "page reading ?after= on replica {n}"
        );
    }
    drop(redis);
    db.drop_db().await;
}

/// A Redis that speaks only TLS (`rediss://`), its certificate signed by an authority of
/// the test's own, as a managed Redis or a cluster's own CA would: replicas given that
/// authority (`redis_ca_file`) share the hub through it, and a message posted on one
/// reaches a socket on the other; a replica not given it does not trust the server, and
/// its hub stays down (readiness says so) while it goes on serving its own readers.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_a_hub_that_speaks_only_tls() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is required (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "1",
                "-subj",
                "/CN=ferrochat test CA",
            ][..],
            &ec[..],
            &["-keyout", &at("ca.key"), "-out", &at("ca.pem")],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-subj", "/CN=127.0.0.1"][..],
            &ec[..],
            &["-keyout", &at("redis.key"), "-out", &at("redis.csr")],
        ]
        .concat(),
    );
    std::fs::write(
        at("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        &at("redis.csr"),
        "-CA",
        &at("ca.pem"),
        "-CAkey",
        &at("ca.key"),
        "-CAcreateserial",
        "-extfile",
        &at("ext"),
        "-out",
        &at("redis.pem"),
    ]);

    let port = free_port();
    let tls_port = port.to_string();
    let _redis = Redis::launch(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &at("redis.pem"),
            "--tls-key-file",
            &at("redis.key"),
            "--tls-ca-cert-file",
            &at("ca.pem"),
            "--tls-auth-clients",
            "no",
        ],
    )
    .await;

    let db = TestDb::create(Backend::Sqlite).await;
    let url = format!("rediss://127.0.0.1:{port}");
    let trusting = |db: &TestDb| {
        Server::start_with(
            ServerOptions::new(&db.url)
                .env("REDIS_URL", &url)
                .env("ROCKET_REDIS_CA_FILE", &at("ca.pem")),
        )
    };
    let (a, b) = (trusting(&db).await, trusting(&db).await);
    for server in [&a, &b] {
        let up = eventually(Duration::from_secs(10), || async {
            hub_state(server).await == "up"
        });
        assert!(
            up.await,
            "a replica given the CA did not reach the TLS hub: {:?}",
            server.log()
        );
    }
    let room = room("tls");
    let mut ws = open_socket(&b, &format!("/ws/{room}/reader")).await;
    post_ok(&a, &room, &[("username", "a"), ("msg", "over TLS")]).await;
    let got = messages_until(&mut ws, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the message did not cross the TLS hub");
    assert_eq!(got[0]["content"], "over TLS");

    // Public authorities only: the test's CA is none of them.
    let doubting = Server::start_with(ServerOptions::new(&db.url).env("REDIS_URL", &url)).await;
    // It tried, and said why it would not go on.
    let refused = eventually(Duration::from_secs(10), || async {
        doubting
            .log()
            .iter()
            .any(|line| line.contains("UnknownIssuer"))
    });
    assert!(
        refused.await,
        "no certificate refusal in the log: {:?}",
        doubting.log()
    );
    assert_ne!(
        hub_state(&doubting).await,
        "up",
        "a server trusted a certificate no authority it knows signed"
    );
    post_ok(
        &doubting,
        &room,
        &[("username", "c"), ("msg", "still served")],
    )
    .await;
    assert!(lines(&transcript(&doubting, &room).await).contains(&"c: still served".to_string()));
}

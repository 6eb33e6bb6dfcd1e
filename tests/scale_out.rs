//! The real deployment, natively: Debian's nginx with `deploy/nginx.conf` in front of three
//! ferrochat replicas on one MariaDB database and one Redis. Socket and polling clients
//! land on different replicas and all see every message once; Redis is killed and
//! restarted mid-traffic and still nothing is lost or doubled.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_behind_nginx_with_redis_dying_mid_traffic() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let replicas = replicas(&db, &redis, 3).await;
    let nginx = Nginx::start(&replicas.iter().collect::<Vec<_>>()).await;
    // nginx stands in for a server: the helpers take its address.
    let front = Server::at(&nginx.url);
    let room = room("scaled");
    post_ok(&front, &room, &[("username", "a"), ("msg", "m0")]).await;

    // Sockets through nginx: round robin spreads them over the replicas.
    let mut sockets = Vec::new();
    for i in 0..6 {
        sockets.push(open_socket(&front, &format!("/ws/{room}/reader{i}")).await);
    }
    // A long-polling client through nginx.
    let poller = {
        let url = format!("{}/api/chat/{room}", nginx.url);
        tokio::spawn(async move {
            let mut etag: Option<String> = None;
            let mut seen = String::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
            while tokio::time::Instant::now() < deadline {
                let mut req = client().get(format!("{url}?wait=5"));
                if let Some(tag) = &etag {
                    req = req.header("If-None-Match", tag);
                }
                let Ok(res) = req.send().await else { continue };
                etag = res
                    .headers()
                    .get("etag")
                    .map(|t| t.to_str().unwrap().to_string());
                if res.status() == 200 {
                    seen = res.text().await.unwrap();
                    if lines(&seen).len() == 61 {
                        break;
                    }
                }
            }
            seen
        })
    };

    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (url, room) = (nginx.url.clone(), room.clone());
            tokio::spawn(async move {
                for i in 0..30 {
                    let res = client()
                        .post(format!("{url}/api/chat/{room}"))
                        .form(&[("username", format!("w{w}")), ("msg", format!("w{w}-{i}"))])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 204);
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = redis.kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let redis = Redis::start_on(port).await;
    for w in writers {
        w.await.unwrap();
    }
    for r in &replicas {
        assert!(
            eventually(Duration::from_secs(15), || async {
                hub_state(r).await == "up"
            })
            .await
        );
    }

    let mut expected: Vec<String> = (0..2)
        .flat_map(|w| (0..30).map(move |i| format!("w{w}-{i}")))
        .collect();
    expected.sort();
    for (n, ws) in sockets.iter_mut().enumerate() {
        let got = messages_until(ws, expected.len(), Duration::from_secs(10)).await;
        let (contents, _) = contents_once_each(&got, &format!("socket {n}"));
        assert_eq!(contents, expected, "socket {n}: every message");
    }
    let polled = poller.await.unwrap();
    assert_eq!(
        lines(&polled).len(),
        61,
        "the long-polling client saw everything: {polled}"
    );
    // Every replica's transcript is the same, whole and in id order.
    let reference = transcript(&replicas[0], &room).await;
    assert_eq!(lines(&reference).len(), 61);
    for r in &replicas[1..] {
        assert_eq!(transcript(r, &room).await, reference);
    }
    let json: Value = get_json(&format!("{}/api/chat/{room}?format=json", nginx.url)).await;
    let ids: Vec<i64> = json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    drop(redis);
    db.drop_db().await;
}

/// A replica dies mid-traffic (SIGKILL, no goodbye): nginx sends the next posts to the
/// others, every post that got its 204 is kept and reaches the sockets on the surviving
/// replicas, and a socket that was on the dead one reconnects with `since` and misses
/// nothing either.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_dying_mid_traffic_loses_nothing_accepted() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let mut replicas = replicas(&db, &redis, 3).await;
    let nginx = Nginx::start(&replicas.iter().collect::<Vec<_>>()).await;
    let room = room("failover");
    post_ok(&replicas[0], &room, &[("username", "a"), ("msg", "start")]).await;
    let start_id = {
        let json: Value =
            get_json(&format!("{}/api/chat/{room}?format=json", replicas[0].url)).await;
        json["last_id"].as_i64().unwrap()
    };
    // One socket straight on each survivor, one on the replica that will die.
    let mut survivors = [
        open_socket(&replicas[0], &format!("/ws/{room}/s0?since={start_id}")).await,
        open_socket(&replicas[1], &format!("/ws/{room}/s1?since={start_id}")).await,
    ];
    let mut doomed = open_socket(&replicas[2], &format!("/ws/{room}/d?since={start_id}")).await;

    let writer = {
        let (url, room) = (nginx.url.clone(), room.clone());
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..60 {
                let msg = format!("m{i}");
                let res = client()
                    .post(format!("{url}/api/chat/{room}"))
                    .form(&[("username", "w"), ("msg", &msg)])
                    .send()
                    .await;
                // A post in flight on the dying replica may fail: it was never accepted.
                if res.is_ok_and(|r| r.status() == 204) {
                    accepted.push(msg);
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let dead = replicas.pop().unwrap();
    drop(dead); // SIGKILL
    let mut accepted = writer.await.unwrap();
    assert!(
        accepted.len() >= 55,
        "nginx moved the posts to the living replicas: {}",
        accepted.len()
    );
    accepted.sort();
    // What is stored: every accepted post, and maybe one the dying replica committed but
    // could not answer. Readers must get exactly this.
    let stored: Vec<String> = {
        // From the database, not from a transcript that the last message may not have
        // reached yet.
        let json: Value = get_json(&format!(
            "{}/api/chat/rooms/{room}/messages?after={start_id}&limit=200",
            replicas[0].url
        ))
        .await;
        let mut texts: Vec<String> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect();
        texts.sort();
        texts
    };
    assert!(
        accepted.iter().all(|msg| stored.contains(msg)) && stored.len() <= accepted.len() + 1,
        "every accepted post is stored: {accepted:?} / {stored:?}"
    );

    let received = |got: Vec<Value>| {
        let (contents, max) = contents_once_each(&got, "socket");
        (contents, max.unwrap_or(start_id))
    };
    for ws in survivors.iter_mut() {
        let (contents, _) =
            received(messages_until(ws, stored.len(), Duration::from_secs(10)).await);
        assert_eq!(contents, stored);
    }
    // The socket on the dead replica got part of it; reconnecting with `since` through
    // nginx brings the rest, once.
    let (mut seen, last) =
        received(messages_until(&mut doomed, usize::MAX, Duration::from_millis(500)).await);
    let front = Server::at(&nginx.url);
    let mut again = open_socket(&front, &format!("/ws/{room}/d?since={last}")).await;
    let (rest, _) = received(
        messages_until(
            &mut again,
            stored.len() - seen.len(),
            Duration::from_secs(10),
        )
        .await,
    );
    seen.extend(rest);
    seen.sort();
    assert_eq!(seen, stored);
    for r in &replicas {
        let text = transcript(r, &room).await;
        assert_eq!(lines(&text).len(), stored.len() + 1, "{text}");
    }
    db.drop_db().await;
}

//! Cheap polling on `GET /api/chat/<room>`: ETag and 304, `after`, `wait` (long-poll) and
//! JSON, over real HTTP. Clients that send none of it get exactly the original answer.

mod common;

use common::*;
use std::time::{Duration, Instant};

on_every_backend!(
    etag_and_not_modified,
    after_and_json,
    long_poll,
    a_big_room_answers_its_newest_messages_whole
);

async fn get(url: &str, etag: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(tag) = etag {
        req = req.header("If-None-Match", tag);
    }
    req.send().await.unwrap()
}

fn etag_of(res: &reqwest::Response) -> String {
    res.headers()["etag"].to_str().unwrap().to_string()
}

async fn etag_and_not_modified(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("etag");
    let url = format!("{}/api/chat/{room}", server.url);
    post_ok(&server, &room, &[("username", "a"), ("msg", "one")]).await;

    let first = get(&url, None).await;
    assert_eq!(first.status(), 200);
    let tag = etag_of(&first);
    assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
    let body = first.text().await.unwrap();

    let again = get(&url, Some(&tag)).await;
    assert_eq!(again.status(), 304);
    assert_eq!(etag_of(&again), tag);
    assert_eq!(again.text().await.unwrap(), "");

    post_ok(&server, &room, &[("username", "a"), ("msg", "two")]).await;
    let changed = get(&url, Some(&tag)).await;
    assert_eq!(changed.status(), 200);
    assert_ne!(etag_of(&changed), tag);
    let text = changed.text().await.unwrap();
    assert_eq!(text, format!("{body}\n{}", text.lines().nth(1).unwrap()));
    assert_eq!(lines(&text), ["a: one", "a: two"]);
    db.drop_db().await;
}

async fn after_and_json(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("after");
    let url = format!("{}/api/chat/{room}", server.url);
    for m in ["one", "two", "three"] {
        post_ok(&server, &room, &[("username", "zoë"), ("msg", m)]).await;
    }
    let res = get(&format!("{url}?format=json"), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let last: i64 = res.headers()["x-last-message-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["room"], room.as_str());
    let messages = json["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    let ids: Vec<i64> = messages.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(json["last_id"].as_i64().unwrap(), last);
    assert_eq!(ids[2], last);
    assert_eq!(messages[0]["username"], "zoë");
    assert_eq!(messages[0]["text"], "one");
    let stamp = messages[0]["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{stamp}"
    );

    // Accept: application/json is the same as format=json.
    let res = client()
        .get(&url)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["messages"],
        json["messages"]
    );

    // Only the lines after a known id, as text and as JSON.
    let text = get(&format!("{url}?after={}", ids[0]), None)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(lines(&text), ["zoë: two", "zoë: three"]);
    let later: serde_json::Value = get(&format!("{url}?after={}&format=json", ids[1]), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(later["messages"].as_array().unwrap().len(), 1);
    assert_eq!(later["messages"][0]["text"], "three");
    let none = get(&format!("{url}?after={last}"), None).await;
    assert_eq!(none.status(), 200);
    assert_eq!(none.text().await.unwrap(), "");

    for bad in ["after=abc", "wait=-1", "wait=soon", "format=xml"] {
        let res = get(&format!("{url}?{bad}"), None).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(res.text().await.unwrap().trim_end().lines().count(), 1);
    }
    db.drop_db().await;
}

async fn long_poll(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = room("wait");
    let url = format!("{}/api/chat/{room}", server.url);
    post_ok(&server, &room, &[("username", "a"), ("msg", "one")]).await;
    let tag = etag_of(&get(&url, None).await);

    // Nothing new: held for the wait, then 304.
    let started = Instant::now();
    let res = get(&format!("{url}?wait=1"), Some(&tag)).await;
    assert_eq!(res.status(), 304);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "held for the wait"
    );

    // A message arrives while the poll is held: answered at once, with it.
    let held = tokio::spawn({
        let (url, tag) = (url.clone(), tag.clone());
        async move {
            let started = Instant::now();
            let res = get(&format!("{url}?wait=20"), Some(&tag)).await;
            (
                res.status().as_u16(),
                res.text().await.unwrap(),
                started.elapsed(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    post_ok(&server, &room, &[("username", "b"), ("msg", "two")]).await;
    let (status, text, took) = held.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(lines(&text), ["a: one", "b: two"]);
    assert!(
        took < Duration::from_secs(10),
        "answered when the message came, not at the end: {took:?}"
    );

    // The same with `after`: only the new line comes back.
    let json: serde_json::Value = get(&format!("{url}?format=json"), None)
        .await
        .json()
        .await
        .unwrap();
    let last = json["last_id"].as_i64().unwrap();
    let held = tokio::spawn({
        let url = url.clone();
        async move {
            get(&format!("{url}?after={last}&wait=20"), None)
                .await
                .text()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    post_ok(&server, &room, &[("username", "c"), ("msg", "three")]).await;
    assert_eq!(lines(&held.await.unwrap()), ["c: three"]);
    db.drop_db().await;
}

/// A room larger than a socket replay's page (500) is answered whole on its first read,
/// and a room larger than `transcript_max_messages` answers its newest that many, for the
/// whole transcript and for `?after=`: no poll reads or sends a room without bound.
async fn a_big_room_answers_its_newest_messages_whole(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url).env("ROCKET_TRANSCRIPT_MAX_MESSAGES", "300"),
    )
    .await;
    let (big, small) = (room("big"), room("big-520"));
    for i in 0..400 {
        post_ok(
            &server,
            &big,
            &[("username", "p"), ("msg", &format!("m{i:03}"))],
        )
        .await;
    }
    for i in 0..520 {
        post_ok(
            &server,
            &small,
            &[("username", "p"), ("msg", &format!("s{i:03}"))],
        )
        .await;
    }
    let whole = lines(&transcript(&server, &big).await);
    assert_eq!(whole.len(), 300, "the newest 300");
    assert!(whole[0].ends_with("p: m100"), "{}", whole[0]);
    assert!(whole[299].ends_with("p: m399"), "{}", whole[299]);
    let url = format!("{}/api/chat/{big}?format=json&after=0", server.url);
    let json: serde_json::Value = get(&url, None).await.json().await.unwrap();
    assert_eq!(json["messages"].as_array().unwrap().len(), 300);
    // A fresh server, nothing cached: its first read of a 520-message room is whole.
    server.stop();
    let again = Server::start(&db.url).await;
    let first = lines(&transcript(&again, &small).await);
    assert_eq!(first.len(), 520);
    assert!(first[0].ends_with("p: s000"), "{}", first[0]);
    again.stop();
    db.drop_db().await;
}

/// What `GET /api/chat/<room>` answers when the client accepts `encoding`: its status,
/// `Content-Encoding`, `Vary`, and the body as sent.
async fn get_encoded(url: &str, encoding: Option<&str>) -> (u16, Option<String>, String, Vec<u8>) {
    let mut req = client().get(url);
    if let Some(encoding) = encoding {
        req = req.header("Accept-Encoding", encoding);
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (coding, vary) = (
        header("content-encoding"),
        header("vary").unwrap_or_default(),
    );
    let status = res.status().as_u16();
    (status, coding, vary, res.bytes().await.unwrap().to_vec())
}

fn gunzip(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn unbrotli(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut text = String::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// The transcript, compressed when the client asks (brotli before gzip, never a coding
/// it refuses with q=0), the same text once decompressed, a tenth of the bytes or less for
/// a room of 300 lines, as text and as JSON; `Vary: Accept-Encoding` on every answer; a
/// client that asks for nothing gets exactly the bytes it always did; a new message makes a
/// new compressed body.
#[tokio::test(flavor = "multi_thread")]
async fn the_transcript_is_compressed_for_clients_that_ask() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let room = room("compressed");
    for i in 0..300 {
        let msg = format!("message {i}: the quick brown fox jumps over the lazy dog");
        post_ok(&server, &room, &[("username", "ann"), ("msg", &msg)]).await;
    }
    let url = format!("{}/api/chat/{room}", server.url);
    let (status, coding, vary, plain) = get_encoded(&url, None).await;
    assert_eq!((status, coding), (200, None));
    assert_eq!(vary, "Accept-Encoding");
    let plain = String::from_utf8(plain).unwrap();
    assert_eq!(lines(&plain).len(), 300);

    for (asks, gets) in [
        ("gzip, deflate, br", "br"),
        ("br", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip;q=0.5", "gzip"),
        ("x-gzip", "gzip"),
    ] {
        let (status, coding, vary, body) = get_encoded(&url, Some(asks)).await;
        assert_eq!((status, coding.as_deref()), (200, Some(gets)), "{asks}");
        assert_eq!(vary, "Accept-Encoding");
        assert!(
            body.len() * 10 <= plain.len(),
            "{gets}: {} bytes",
            body.len()
        );
        let text = if gets == "br" {
            unbrotli(&body)
        } else {
            gunzip(&body)
        };
        assert_eq!(text, plain, "{asks}");
    }
    for refused in ["identity", "br;q=0, gzip;q=0", "deflate", ""] {
        let (_, coding, _, body) = get_encoded(&url, Some(refused)).await;
        assert_eq!(coding, None, "{refused:?}");
        assert_eq!(body, plain.as_bytes(), "{refused:?}");
    }
    // A new version: compressed anew.
    post_ok(&server, &room, &[("username", "bob"), ("msg", "one more")]).await;
    let (_, _, _, body) = get_encoded(&url, Some("br")).await;
    assert!(unbrotli(&body).ends_with("bob: one more"));
    // The JSON form too, once per version.
    let json_url = format!("{url}?format=json");
    let (_, coding, _, plain_json) = get_encoded(&json_url, None).await;
    assert_eq!(coding, None);
    for (asks, decode) in [("br", unbrotli as fn(&[u8]) -> String), ("gzip", gunzip)] {
        let (status, coding, vary, body) = get_encoded(&json_url, Some(asks)).await;
        assert_eq!(
            (status, coding.as_deref(), vary.as_str()),
            (200, Some(asks), "Accept-Encoding")
        );
        assert!(
            body.len() * 5 <= plain_json.len(),
            "{asks}: {} bytes",
            body.len()
        );
        assert_eq!(decode(&body).as_bytes(), plain_json, "{asks}");
    }
    // A page after an id goes as it is.
    let (_, coding, _, _) = get_encoded(&format!("{url}?after=1"), Some("br")).await;
    assert_eq!(coding, None);
    db.drop_db().await;
}

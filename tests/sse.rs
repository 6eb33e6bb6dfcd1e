//! A room's changes as server-sent events, `GET /api/chat/rooms/<id>/events`, over real
//! HTTP against real server processes: each change of the room is an event whose `id:` is
//! its `seq`; a client back with `Last-Event-ID` (or `?seq=`) gets every change after it
//! once, then live ones, on any replica; the room socket's access rules and cap hold; a
//! stopping server ends each stream after a `retry:` field; the shipped nginx passes events
//! on at once and the `:` comment line comes every 25 s; thousands of streams opened and
//! dropped leave memory flat. The stream is read with a small parser of the format's lines.

mod common;

use common::*;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

on_every_backend!(a_stream_back_with_its_last_id_gets_every_change_it_missed);

/// Tokens that hold on every replica.
const SHARED_SECRET: &str = "the event stream tests' secret, 32 bytes or more";

/// What an event stream sends, as its lines say it.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// A `:` line: the keep-alive, or why the stream ends.
    Comment(String),
    /// An event: its `id:`, its `data:` (JSON), its `retry:` (milliseconds).
    Event {
        id: Option<i64>,
        data: Option<Value>,
        retry: Option<u64>,
    },
}

enum Next {
    Item(Item),
    /// The server ended the stream.
    End,
    /// Nothing within the time given.
    Quiet,
}

/// The fields of the event being read.
#[derive(Default)]
struct Fields {
    id: Option<i64>,
    data: Vec<String>,
    retry: Option<u64>,
    any: bool,
}

/// An open event stream.
struct Events {
    res: reqwest::Response,
    buf: Vec<u8>,
    fields: Fields,
    items: VecDeque<Item>,
    ended: bool,
}

/// Request headers, as (name, value).
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A client with no deadline for a whole answer: a stream is open as long as a test likes.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// `GET /api/chat/rooms/<room>/events<query>` with these headers: the answer.
async fn request(
    base: &str,
    room: &str,
    query: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = http().get(format!("{base}/api/chat/rooms/{room}/events{query}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    tokio::time::timeout(Duration::from_secs(10), req.send())
        .await
        .expect("the stream's header within 10 s")
        .expect("GET events")
}

/// A refusal: its status and JSON body.
async fn refused(base: &str, room: &str, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let res = request(base, room, query, headers).await;
    let status = res.status().as_u16();
    assert_ne!(status, 200, "{room}{query} {headers:?} was let in");
    let body = res.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl Events {
    /// Opens the stream, which must be let in.
    async fn open(base: &str, room: &str, query: &str, headers: &[(&str, &str)]) -> Events {
        let res = request(base, room, query, headers).await;
        let status = res.status().as_u16();
        if status != 200 {
            panic!("{room}{query}: {status} {}", res.text().await.unwrap());
        }
        let kind = res.headers()["content-type"].to_str().unwrap();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Events {
            res,
            buf: Vec::new(),
            fields: Fields::default(),
            items: VecDeque::new(),
            ended: false,
        }
    }

    /// Takes in bytes read: each whole line is a field, a comment, or the blank line that
    /// ends an event.
    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8(line).expect("UTF-8 lines");
            let line = line.trim_end_matches('\n').trim_end_matches('\r');
            if line.is_empty() {
                let fields = std::mem::take(&mut self.fields);
                if fields.any {
                    let data = (!fields.data.is_empty()).then(|| {
                        let text = fields.data.join("\n");
                        serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("data is JSON: {e}: {text}"))
                    });
                    self.items.push_back(Item::Event {
                        id: fields.id,
                        data,
                        retry: fields.retry,
                    });
                }
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                self.items
                    .push_back(Item::Comment(comment.trim().to_string()));
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            self.fields.any = true;
            match name {
                "id" => self.fields.id = Some(value.parse().expect("a numeric id")),
                "data" => self.fields.data.push(value.to_string()),
                "retry" => self.fields.retry = Some(value.parse().expect("retry in ms")),
                other => panic!("a field the server does not send: {other}"),
            }
        }
    }

    async fn next(&mut self, within: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(item) = self.items.pop_front() {
                return Next::Item(item);
            }
            if self.ended {
                return Next::End;
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Err(_) => return Next::Quiet,
                Ok(Ok(Some(bytes))) => self.feed(&bytes),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// The next event with data (comments skipped): its id and its frame.
    async fn next_event(&mut self, within: Duration) -> (Option<i64>, Value) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Item(Item::Event {
                    id, data: Some(v), ..
                }) => return (id, v),
                Next::Item(_) => continue,
                Next::End => panic!("the stream ended"),
                Next::Quiet => panic!("no event within {within:?}"),
            }
        }
    }

    /// Events with data until none comes for `quiet` (or the stream ends).
    async fn until_quiet(&mut self, quiet: Duration) -> Vec<(Option<i64>, Value)> {
        let mut got = Vec::new();
        loop {
            match self.next(quiet).await {
                Next::Item(Item::Event {
                    id, data: Some(v), ..
                }) => got.push((id, v)),
                Next::Item(_) => continue,
                Next::End | Next::Quiet => return got,
            }
        }
    }

    /// Everything until the stream ends (at most `within`): what ended it, and whether it
    /// did end.
    async fn until_end(&mut self, within: Duration) -> (Vec<Item>, bool) {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Item(item) => got.push(item),
                Next::End => return (got, true),
                Next::Quiet => return (got, false),
            }
        }
    }
}

/// `type` and the message each frame is about, in order.
fn summary(events: &[(Option<i64>, Value)]) -> Vec<(String, i64)> {
    events
        .iter()
        .map(|(_, f)| {
            let id = f["id"].as_i64().or(f["message_id"].as_i64()).unwrap_or(0);
            (f["type"].as_str().unwrap_or("").to_string(), id)
        })
        .collect()
}

fn expect(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(t, id)| (t.to_string(), *id)).collect()
}

/// Each event's id is its frame's `seq`, and each is above the one before (and `after`).
fn assert_ids_are_seqs(events: &[(Option<i64>, Value)], after: i64) {
    let mut last = after;
    for (id, frame) in events {
        let id = id.unwrap_or_else(|| panic!("no id: {frame}"));
        assert_eq!(
            Some(id),
            frame["seq"].as_i64(),
            "the id is the seq: {frame}"
        );
        assert!(id > last, "id {id} after {last}: {events:?}");
        last = id;
    }
}

async fn edit(server: &Server, id: i64, content: &str, token: &str) {
    let path = format!("/api/chat/messages/{id}");
    let body = serde_json::json!({ "content": content });
    let (status, answer) =
        call_with_token(server, Method::PATCH, &path, Some(body), Some(token)).await;
    assert_eq!(status, 200, "{answer}");
}

async fn react(server: &Server, id: i64, emoji: &str, token: &str) {
    let path = format!("/api/chat/messages/{id}/reactions/{emoji}");
    let (status, answer) = call_with_token(server, Method::PUT, &path, None, Some(token)).await;
    assert!(status == 200 || status == 204, "{status} {answer}");
}

async fn delete(server: &Server, id: i64, token: &str) {
    let path = format!("/api/chat/messages/{id}");
    let (status, answer) = call_with_token(server, Method::DELETE, &path, None, Some(token)).await;
    assert_eq!(status, 200, "{answer}");
}

/// ann's stream, opened without a seq, gets nothing from before it opened; then her
/// message, its edit, a reaction and its deletion come in that order, each once, each
/// with `id:` its `seq`, rising. The answer is `text/event-stream`, not to be cached nor
/// buffered by nginx.
#[tokio::test(flavor = "multi_thread")]
async fn live_changes_come_in_order_each_with_its_seq_as_id() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let (_, ann) = sign_up(&server, &unique_name("ann")).await;
    let auth = bearer(&ann);
    let room = make_room(&server, "live", false, &ann).await;
    posted(&server, &room, "before the stream", &ann).await;

    let mut events = Events::open(&server.url, &room, "", &[("authorization", &auth)]).await;
    let headers = events.res.headers();
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    let id = posted(&server, &room, "hello", &ann).await;
    edit(&server, id, "hello, edited", &ann).await;
    react(&server, id, "👍", &ann).await;
    delete(&server, id, &ann).await;
    let got = events.until_quiet(Duration::from_millis(1500)).await;
    assert_eq!(
        summary(&got),
        expect(&[
            ("message", id),
            ("message_updated", id),
            ("reaction_added", id),
            ("message_deleted", id),
        ]),
        "{got:?}"
    );
    assert_ids_are_seqs(&got, 0);
    assert_eq!(got[0].1["content"], "hello");
    assert_eq!(got[1].1["content"], "hello, edited");
    assert_eq!(got[2].1["emoji"], "👍");
    assert_eq!(got[2].1["count"], 1);
    assert_eq!(got[0].1["room_id"], room.as_str());
    db.drop_db().await;
}

/// ann's stream sees her first message and goes away. Meanwhile: a new message, an edit
/// of the first, a reaction, a third message. Back with `Last-Event-ID` of the first, with
/// `?seq=` of it, and with both (`?seq=0` and the header: the header wins), each stream
/// gets exactly those four changes, in order, once, and nothing from before; then a live
/// message, once.
async fn a_stream_back_with_its_last_id_gets_every_change_it_missed(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let (_, ann) = sign_up(&server, &unique_name("ann")).await;
    let auth = bearer(&ann);
    let room = make_room(&server, "resume", false, &ann).await;
    let mut events = Events::open(&server.url, &room, "", &[("authorization", &auth)]).await;
    let first = posted(&server, &room, "first", &ann).await;
    let (last, seen) = events.next_event(Duration::from_secs(10)).await;
    assert_eq!(seen["id"], first);
    let last = last.expect("an id");
    drop(events);

    let second = posted(&server, &room, "second", &ann).await;
    edit(&server, first, "first, edited", &ann).await;
    react(&server, second, "🎉", &ann).await;
    let third = posted(&server, &room, "third", &ann).await;
    let missed = expect(&[
        ("message", second),
        ("message_updated", first),
        ("reaction_added", second),
        ("message", third),
    ]);
    let last_id = last.to_string();
    let seq_query = format!("?seq={last}");
    let with_header = [
        ("authorization", auth.as_str()),
        ("last-event-id", &last_id),
    ];
    let without = [("authorization", auth.as_str())];
    let ways: [(&str, &str, Headers); 3] = [
        ("Last-Event-ID", "", &with_header),
        ("?seq=", &seq_query, &without),
        ("both", "?seq=0", &with_header),
    ];
    let mut backs = Vec::new();
    for (how, query, headers) in &ways {
        let mut back = Events::open(&server.url, &room, query, headers).await;
        let got = back.until_quiet(Duration::from_millis(1500)).await;
        assert_eq!(summary(&got), missed, "{backend:?} {how}: {got:?}");
        assert_ids_are_seqs(&got, last);
        assert_eq!(got[0].1["reactions"][0]["emoji"], "🎉", "as it now reads");
        assert_eq!(got[1].1["content"], "first, edited");
        backs.push((how, back));
    }
    let fourth = posted(&server, &room, "fourth", &ann).await;
    for (how, back) in &mut backs {
        let live = back.until_quiet(Duration::from_millis(1500)).await;
        assert_eq!(summary(&live), expect(&[("message", fourth)]), "{how}");
    }
    drop(backs);
    server.stop();
    db.drop_db().await;
}

/// Two replicas on MariaDB and Redis: a stream on one hears what is posted, edited and
/// reacted on the other, each with its `seq` as id; gone, and back on the other replica
/// with `Last-Event-ID`, it gets what it missed (made on both) once, in order, then live.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_resumes_on_another_replica_without_gap_or_repeat() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let options = ServerOptions::new(&db.url)
            .env("REDIS_URL", &redis.url())
            .env("TOKEN_SECRET", SHARED_SECRET);
        servers.push(Server::start_with(options).await);
    }
    for server in &servers {
        let up = eventually(Duration::from_secs(10), || async {
            hub_state(server).await == "up"
        })
        .await;
        assert!(up, "hub connected to Redis");
    }
    let (r0, r1) = (&servers[0], &servers[1]);
    let (_, ann) = sign_up(r0, &unique_name("ann")).await;
    let auth = bearer(&ann);
    let room = make_room(r0, "replicas", false, &ann).await;
    let mut on_r1 = Events::open(&r1.url, &room, "", &[("authorization", &auth)]).await;
    let first = posted(r0, &room, "first", &ann).await;
    edit(r0, first, "first!", &ann).await;
    let mut heard = Vec::new();
    for _ in 0..2 {
        heard.push(on_r1.next_event(Duration::from_secs(10)).await);
    }
    assert_eq!(
        summary(&heard),
        expect(&[("message", first), ("message_updated", first)])
    );
    assert_ids_are_seqs(&heard, 0);
    let last = heard[1].0.unwrap();
    drop(on_r1);

    react(r0, first, "👀", &ann).await;
    let second = posted(r1, &room, "second", &ann).await;
    let third = posted(r0, &room, "third", &ann).await;
    let last_id = last.to_string();
    let headers = [
        ("authorization", auth.as_str()),
        ("last-event-id", &last_id),
    ];
    let mut on_r0 = Events::open(&r0.url, &room, "", &headers).await;
    let missed = on_r0.until_quiet(Duration::from_millis(1500)).await;
    assert_eq!(
        summary(&missed),
        expect(&[
            ("reaction_added", first),
            ("message", second),
            ("message", third),
        ]),
        "{missed:?}"
    );
    assert_ids_are_seqs(&missed, last);
    let fourth = posted(r1, &room, "fourth", &ann).await;
    let live = on_r0.until_quiet(Duration::from_millis(1500)).await;
    assert_eq!(summary(&live), expect(&[("message", fourth)]));
    assert_ids_are_seqs(&live, missed[2].0.unwrap());
    drop(on_r0);
    drop(servers);
    drop(redis);
    db.drop_db().await;
}

/// The room socket's rules: a private room is 404 to a stranger and to nobody; a member's
/// stream hears the room, and ends once the owner removes them (told why, in a comment);
/// a Last-Event-ID, seq or room name the route does not take is 400 with its reason; with
/// `auth = "required"`, no identity is 401.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_keeps_the_room_socket_s_access_rules() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let (_, olga) = sign_up(&server, &unique_name("olga")).await;
    let (bob_id, bob) = sign_up(&server, &unique_name("bob")).await;
    let room = make_room(&server, "private", true, &olga).await;
    posted(&server, &room, "ours", &olga).await;
    let bob_auth = bearer(&bob);
    for headers in [vec![("authorization", bob_auth.as_str())], vec![]] {
        let answer = refused(&server.url, &room, "", &headers).await;
        assert_detail(&answer, 404, "");
    }

    let public = common::room("bad");
    for (query, headers, says) in [
        ("", vec![("last-event-id", "x")], "Last-Event-ID"),
        ("", vec![("last-event-id", "-1")], "Last-Event-ID"),
        ("", vec![("last-event-id", "")], "Last-Event-ID"),
        ("", vec![("last-event-id", "1.5")], "Last-Event-ID"),
        ("?seq=n", vec![], "seq"),
        ("?seq=-3", vec![], "seq"),
        (
            "?seq=1",
            vec![("last-event-id", "99999999999999999999")],
            "Last-Event-ID",
        ),
    ] {
        let answer = refused(&server.url, &public, query, &headers).await;
        assert_detail(&answer, 400, says);
    }
    let answer = refused(&server.url, "a%2Fb", "", &[]).await;
    assert_detail(&answer, 400, "room");

    let (status, _) = call_with_token(
        &server,
        Method::POST,
        &format!("/api/chat/rooms/{room}/members"),
        Some(serde_json::json!({ "user_id": bob_id })),
        Some(&olga),
    )
    .await;
    assert_eq!(status, 201);
    let mut events = Events::open(&server.url, &room, "", &[("authorization", &bob_auth)]).await;
    let id = posted(&server, &room, "welcome, bob", &olga).await;
    assert_eq!(events.next_event(Duration::from_secs(10)).await.1["id"], id);
    let (status, _) = call_with_token(
        &server,
        Method::DELETE,
        &format!("/api/chat/rooms/{room}/members/{bob_id}"),
        None,
        Some(&olga),
    )
    .await;
    assert_eq!(status, 204);
    let (items, ended) = events.until_end(Duration::from_secs(5)).await;
    assert!(ended, "the removed member's stream ends: {items:?}");
    assert!(
        items.contains(&Item::Comment(
            "you are no longer a member of this room".into()
        )),
        "{items:?}"
    );
    let answer = refused(&server.url, &room, "", &[("authorization", &bob_auth)]).await;
    assert_detail(&answer, 404, "");
    server.stop();

    let required = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&required.url).env("ROCKET_AUTH", "required")).await;
    let answer = refused(&server.url, "general", "", &[]).await;
    assert_detail(&answer, 401, "");
    let (_, ann) = sign_up(&server, &unique_name("ann")).await;
    let mut events = Events::open(
        &server.url,
        "general",
        "",
        &[("authorization", &bearer(&ann))],
    )
    .await;
    let id = posted(&server, "general", "signed in", &ann).await;
    assert_eq!(events.next_event(Duration::from_secs(10)).await.1["id"], id);
    drop(events);
    server.stop();
    required.drop_db().await;
    db.drop_db().await;
}

/// SIGTERM: while the server drains, an open stream still gets what is posted and a new
/// one is refused with 503 (nginx then tries the next replica); once it closes, the open
/// stream ends after a `retry:` field (EventSource reconnects, elsewhere), and the process
/// exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_server_ends_each_stream_after_a_retry_field() {
    let db = TestDb::create(Backend::Sqlite).await;
    let mut server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_SHUTDOWN_DRAIN_SECS", "2")
            .env("ROCKET_SHUTDOWN_GRACE_SECS", "10"),
    )
    .await;
    let room = room("stopping");
    let mut events = Events::open(&server.url, &room, "", &[]).await;
    let signalled = Instant::now();
    server.terminate();
    let draining = eventually(Duration::from_millis(1500), || async {
        request(&server.url, &room, "", &[]).await.status() == 503
    })
    .await;
    assert!(draining, "a new stream is refused with 503 while draining");
    post_ok(
        &server,
        &room,
        &[("username", "a"), ("msg", "during the drain")],
    )
    .await;
    let (id, during) = events.next_event(Duration::from_secs(5)).await;
    assert_eq!(during["content"], "during the drain");
    assert_eq!(id, during["seq"].as_i64());

    let (items, ended) = events.until_end(Duration::from_secs(10)).await;
    assert!(ended, "the stream ends: {items:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(1900),
        "streams stay through the drain"
    );
    match items.last() {
        Some(Item::Event {
            retry: Some(retry), ..
        }) => assert!(*retry <= 5_000, "{retry} ms"),
        other => panic!("the stream's last word is a retry field: {other:?} in {items:?}"),
    }
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "exits 0 within the grace"
    );
    db.drop_db().await;
}

/// Through the shipped nginx in front of two replicas: an event comes through at once (it
/// is not held in nginx's buffers), and an idle stream gets the server's `:` line about
/// 25 s after the first, well inside nginx's read timeout.
#[tokio::test(flavor = "multi_thread")]
async fn through_the_shipped_nginx_events_pass_at_once_and_the_comment_line_keeps_it_open() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let replicas = replicas(&db, &redis, 2).await;
    let nginx = Nginx::start(&[&replicas[0], &replicas[1]]).await;
    let room = room("nginx");
    let opened = Instant::now();
    let mut events = Events::open(&nginx.url, &room, "", &[]).await;
    let sent = Instant::now();
    post_ok(
        &replicas[0],
        &room,
        &[("username", "n"), ("msg", "through nginx")],
    )
    .await;
    let (id, frame) = events.next_event(Duration::from_secs(2)).await;
    assert_eq!(frame["content"], "through nginx");
    assert_eq!(id, frame["seq"].as_i64());
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );

    // Idle now: the next `:` line is the one of the 25 s period.
    let keepalive = loop {
        let left = Duration::from_secs(31).saturating_sub(opened.elapsed());
        match events.next(left).await {
            Next::Item(Item::Comment(_)) if opened.elapsed() >= Duration::from_secs(20) => {
                break opened.elapsed()
            }
            Next::Item(_) => continue,
            Next::End => panic!("the stream ended"),
            Next::Quiet => panic!("no comment line within 30 s"),
        }
    };
    assert!(keepalive <= Duration::from_secs(30), "{keepalive:?}");
    // Still open, and still live.
    post_ok(
        &replicas[1],
        &room,
        &[("username", "n"), ("msg", "still here")],
    )
    .await;
    let (_, frame) = events.next_event(Duration::from_secs(2)).await;
    assert_eq!(frame["content"], "still here");
    drop(events);
    drop(nginx);
    drop(replicas);
    db.drop_db().await;
}

/// With limits on, streams count among a client's sockets (`sockets_per_client`): past the
/// cap, 429 with its reason; one dropped by its client gives its place back at the next
/// comment line (`ws_ping_secs`, 1 s here), which is when the server learns it is gone.
#[tokio::test(flavor = "multi_thread")]
async fn streams_count_among_a_client_s_sockets() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_RATE_LIMITS", "true")
            .env("ROCKET_SOCKETS_PER_CLIENT", "3")
            .env("ROCKET_WS_PING_SECS", "1"),
    )
    .await;
    let room = room("capped");
    let _socket = open_socket(&server, &format!("/ws/{room}/u1")).await;
    let one = Events::open(&server.url, &room, "", &[]).await;
    let _two = Events::open(&server.url, &room, "", &[]).await;
    for _ in 0..3 {
        let answer = refused(&server.url, &room, "", &[]).await;
        assert_detail(&answer, 429, "sockets");
    }
    drop(one);
    let back = eventually(Duration::from_secs(5), || async {
        request(&server.url, &room, "", &[]).await.status() == 200
    })
    .await;
    assert!(back, "the dropped stream's place is given back");
    db.drop_db().await;
}

/// 2,000 streams opened (each reads its first line) and dropped by their clients, after
/// 2,000 before them, leave the server's memory within tens of MB of where it was, once the comment line (1 s here)
/// has shown them gone; the server still streams after.
#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_streams_opened_and_dropped_leave_memory_flat() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_WS_PING_SECS", "1")).await;
    let rooms: Vec<String> = (0..20).map(|_| room("flood")).collect();
    let open_and_drop = |i: usize| {
        let (base, room) = (server.url.clone(), rooms[i % rooms.len()].clone());
        async move {
            let mut events = Events::open(&base, &room, "", &[]).await;
            match events.next(Duration::from_secs(10)).await {
                Next::Item(Item::Comment(_)) => {}
                _ => panic!("no first line"),
            }
        }
    };
    // The first thousands raise the allocator's high-water mark once (some 50 MB on a
    // debug build, and about the same after 6,000): memory is measured after them.
    futures_util::stream::iter(0..2_000)
        .map(open_and_drop)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = server.rss_bytes();
    futures_util::stream::iter(0..2_000)
        .map(open_and_drop)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_flat(&server, before, "2,000 streams opened and dropped");
    let mut events = Events::open(&server.url, &rooms[0], "", &[]).await;
    post_ok(
        &server,
        &rooms[0],
        &[("username", "f"), ("msg", "after the flood")],
    )
    .await;
    let (_, frame) = events.next_event(Duration::from_secs(5)).await;
    assert_eq!(frame["content"], "after the flood");
    db.drop_db().await;
}

//! Outgoing webhooks over real HTTP, to a real receiver in the test that checks every
//! signature: who may make them, private receivers refused (and redirects not followed),
//! every event delivered in order through the receiver's outage with one delivery id per
//! event, a bot that answers, a replica SIGKILLed mid-delivery while another finishes,
//! one stopped with SIGTERM letting its lease go at once,
//! nothing lost across a restart of every replica, and a receiver that never answers
//! holding a bounded number of requests while memory stays flat.
//!
//! The tests run on several threads: the receiver must answer while a test waits on a
//! server's exit (a blocking call), or a request would wait unread and be answered to a
//! sender long gone.

mod common;

use common::*;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the receiver answers.
#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Up,
    Down,
    /// Never answers (holds the connection).
    Hang,
    /// 302 to this URL.
    Redirect(String),
    /// 200 with `{"text": ...}` for a message holding `ping`, else 200.
    Answer(String),
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    delivery: String,
    event: String,
    body: Value,
    /// What it answered.
    status: u16,
    /// Which connection it came on, and when: where a failure needs telling apart.
    from: String,
}

#[derive(Default)]
struct Seen {
    got: Vec<Got>,
    /// Requests whose signature did not verify, or lacked a header.
    unsigned: Vec<String>,
    in_flight: usize,
    max_in_flight: usize,
}

/// A receiver on 127.0.0.1 that verifies each delivery's signature with the secret it is
/// given, records it, and answers as its mode says.
#[derive(Clone)]
struct Receiver {
    url: String,
    mode: Arc<Mutex<Mode>>,
    secrets: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = Receiver {
            url,
            mode: Arc::new(Mutex::new(Mode::Up)),
            secrets: Arc::default(),
            seen: Arc::default(),
        };
        let me = receiver.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let me = me.clone();
                let from = format!(
                    "{:?} {}",
                    conn.peer_addr().ok(),
                    chrono::Utc::now().format("%H:%M:%S%.3f")
                );
                tokio::spawn(async move { me.serve(conn, from).await });
            }
        });
        receiver
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn trust(&self, secret: &str) {
        self.secrets.lock().unwrap().push(secret.to_string());
    }

    fn got(&self) -> Vec<Got> {
        self.seen.lock().unwrap().got.clone()
    }

    /// The events acknowledged (answered 2xx), in the order they came.
    fn delivered(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.status))
            .collect()
    }

    async fn serve(&self, mut conn: TcpStream, from: String) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
        let signed = {
            let timestamp = header("x-ferrochat-timestamp");
            let fresh = timestamp
                .parse::<i64>()
                .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
            let given = header("x-ferrochat-signature");
            fresh
                && self.secrets.lock().unwrap().iter().any(|secret| {
                    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                    mac.update(format!("{timestamp}.{body}").as_bytes());
                    let hex: String = mac
                        .finalize()
                        .into_bytes()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    given == format!("sha256={hex}")
                })
        };
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let mode = self.mode.lock().unwrap().clone();
        let (status, answer) = match &mode {
            Mode::Up => (200, String::new()),
            Mode::Down => (500, String::new()),
            Mode::Hang => (0, String::new()),
            Mode::Redirect(_) => (302, String::new()),
            Mode::Answer(text) => {
                let asks = body["message"]["content"]
                    .as_str()
                    .is_some_and(|c| c.contains("ping"));
                if asks && body["event"] == "message_created" {
                    (200, json!({ "text": text }).to_string())
                } else {
                    (200, String::new())
                }
            }
        };
        {
            let mut seen = self.seen.lock().unwrap();
            if !signed {
                seen.unsigned.push(head.clone());
            }
            seen.got.push(Got {
                delivery: header("x-ferrochat-delivery"),
                event: header("x-ferrochat-event"),
                body: body.clone(),
                status,
                from: format!("{from} read {}", chrono::Utc::now().format("%H:%M:%S%.3f")),
            });
            seen.in_flight += 1;
            seen.max_in_flight = seen.max_in_flight.max(seen.in_flight);
        }
        if mode == Mode::Hang {
            // Until the sender gives up on it and closes the connection.
            let _ = conn.read(&mut chunk).await;
            self.seen.lock().unwrap().in_flight -= 1;
            return;
        }
        let location = match &mode {
            Mode::Redirect(to) => format!("Location: {to}\r\n"),
            _ => String::new(),
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\n{location}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        );
        let _ = conn.write_all(response.as_bytes()).await;
        let _ = conn.shutdown().await;
        self.seen.lock().unwrap().in_flight -= 1;
    }
}

fn allowing_private(db: &TestDb) -> ServerOptions {
    ServerOptions::new(&db.url).env("ROCKET_WEBHOOK_ALLOW_PRIVATE", "true")
}

async fn make_webhook(server: &Server, token: &str, body: Value) -> (u16, Value) {
    call_with_token(
        server,
        Method::POST,
        "/api/webhooks",
        Some(body),
        Some(token),
    )
    .await
}

const ALL_EVENTS: [&str; 4] = [
    "message_created",
    "mention",
    "message_updated",
    "message_deleted",
];

/// What a delivered event says, as `event:content` (`mention` with its names).
fn described(got: &Got) -> String {
    let content = got.body["message"]["content"].as_str().unwrap_or("?");
    match got.event.as_str() {
        "mention" => format!("mention:{content}:{}", got.body["mentions"]),
        event => format!("{event}:{content}"),
    }
}

async fn wait_for(receiver: &Receiver, count: usize, within: Duration) -> Vec<Got> {
    let arrived = eventually(within, || async { receiver.delivered().len() >= count }).await;
    let delivered = receiver.delivered();
    assert!(
        arrived,
        "{count} deliveries expected, {} arrived: {:?}",
        delivered.len(),
        delivered.iter().map(described).collect::<Vec<_>>()
    );
    delivered
}

/// Each delivery id acknowledged once, every request signed.
fn assert_once_each_and_signed(receiver: &Receiver) {
    let delivered = receiver.delivered();
    let ids: HashSet<&str> = delivered.iter().map(|g| g.delivery.as_str()).collect();
    assert_eq!(
        ids.len(),
        delivered.len(),
        "a delivery id acknowledged twice"
    );
    assert!(delivered.iter().all(|g| g.delivery.len() == 36));
    let unsigned = receiver.seen.lock().unwrap().unsigned.clone();
    assert!(unsigned.is_empty(), "unsigned requests: {unsigned:?}");
}

async fn webhooks_deliver_in_order_through_an_outage(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start_with(allowing_private(&db)).await;
    let receiver = Receiver::start().await;
    let (_, owner) = sign_up(&server, &unique_name("owner")).await;
    let room = make_room(&server, "hooked", false, &owner).await;
    let other_room = make_room(&server, "quiet", false, &owner).await;

    let (status, made) = make_webhook(
        &server,
        &owner,
        json!({"url": receiver.url, "events": ALL_EVENTS, "room_id": room, "name": "assistant"}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 64);
    assert_eq!(made["events"], json!(ALL_EVENTS));
    assert_eq!(made["room_id"], room.as_str());
    receiver.trust(secret);
    let id = made["id"].as_str().unwrap().to_string();

    // The receiver is down: the first event fails and holds the ones after it.
    receiver.set(Mode::Down);
    let first = posted(&server, &room, "first", &owner).await;
    posted(&server, &room, "hello @alice and @Bob", &owner).await;
    posted(&server, &other_room, "not this room's", &owner).await;
    let third = posted(&server, &room, "third", &owner).await;
    let (status, edited) = call_with_token(
        &server,
        Method::PATCH,
        &format!("/api/chat/messages/{first}"),
        Some(json!({"content": "first, edited"})),
        Some(&owner),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    let (status, deleted) = call_with_token(
        &server,
        Method::DELETE,
        &format!("/api/chat/messages/{third}"),
        None,
        Some(&owner),
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    let failed = eventually(Duration::from_secs(10), || async {
        receiver.got().len() >= 2
    })
    .await;
    assert!(failed, "the first event was tried, and tried again");
    assert!(receiver.delivered().is_empty());
    receiver.set(Mode::Up);

    // Back up: everything, in order, the retried one under its first delivery id.
    let delivered = wait_for(&receiver, 6, Duration::from_secs(20)).await;
    let told: Vec<String> = delivered.iter().map(described).collect();
    assert_eq!(
        told,
        [
            "message_created:first",
            "message_created:hello @alice and @Bob",
            r#"mention:hello @alice and @Bob:["alice","bob"]"#,
            "message_created:third",
            "message_updated:first, edited",
            "message_deleted:third",
        ]
    );
    let attempts_of_first = receiver
        .got()
        .iter()
        .filter(|g| g.delivery == delivered[0].delivery)
        .count();
    assert!(attempts_of_first >= 2, "retried under the same delivery id");
    assert_once_each_and_signed(&receiver);
    let event = &delivered[0].body;
    assert_eq!(event["event"], "message_created");
    assert_eq!(event["message"]["id"], first);
    assert_eq!(event["message"]["room_id"], room.as_str());
    assert_eq!(event["message"]["bot"], false);

    // The record: newest first, the first event delivered on a later attempt.
    let (status, record) = call_with_token(
        &server,
        Method::GET,
        &format!("/api/webhooks/{id}/deliveries"),
        None,
        Some(&owner),
    )
    .await;
    assert_eq!(status, 200, "{record}");
    let record = record.as_array().unwrap();
    assert_eq!(record.len(), 6);
    let oldest = &record[5];
    assert_eq!(oldest["delivery_id"], delivered[0].delivery.as_str());
    assert_eq!(oldest["state"], "delivered");
    assert_eq!(oldest["status"], 200);
    assert!(oldest["attempts"].as_i64().unwrap() >= 2, "{oldest}");
    assert!(record.iter().all(|r| r["state"] == "delivered"));

    // A bot that answers: its answer is posted into the room, and sent to no webhook.
    receiver.set(Mode::Answer("pong from the assistant".into()));
    posted(&server, &room, "ping?", &owner).await;
    let answered = eventually(Duration::from_secs(10), || async {
        let (_, history) = call_with_token(
            &server,
            Method::GET,
            &format!("/api/chat/rooms/{room}/messages"),
            None,
            Some(&owner),
        )
        .await;
        history.as_array().is_some_and(|all| {
            all.iter()
                .any(|m| m["content"] == "pong from the assistant" && m["bot"] == true)
        })
    })
    .await;
    assert!(answered, "the receiver's answer is in the room");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let last = receiver.delivered();
    assert_eq!(described(last.last().unwrap()), "message_created:ping?");
    assert!(
        !last.iter().any(|g| described(g).contains("pong")),
        "an answer is sent to no webhook"
    );

    // Deleted: nothing more is sent.
    let (status, _) = call_with_token(
        &server,
        Method::DELETE,
        &format!("/api/webhooks/{id}"),
        None,
        Some(&owner),
    )
    .await;
    assert_eq!(status, 204);
    let before = receiver.got().len();
    posted(&server, &room, "after the webhook went", &owner).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.got().len(), before);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_deliver_in_order_through_an_outage_sqlite() {
    webhooks_deliver_in_order_through_an_outage(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_deliver_in_order_through_an_outage_mariadb() {
    webhooks_deliver_in_order_through_an_outage(Backend::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_deliver_in_order_through_an_outage_postgres() {
    webhooks_deliver_in_order_through_an_outage(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn who_may_make_webhooks_and_where_they_may_send() {
    let db = TestDb::create(Backend::Sqlite).await;
    // The default: receivers on private networks are refused.
    let server = Server::start(&db.url).await;
    let (_, owner) = sign_up(&server, &unique_name("owner")).await;
    let (_, stranger) = sign_up(&server, &unique_name("stranger")).await;
    let room = make_room(&server, "owned", false, &owner).await;
    let private = make_room(&server, "secret", true, &owner).await;
    let public_url = "http://8.8.8.8:9/hook";
    let hook =
        |room: &str, url: &str| json!({"url": url, "events": ["message_created"], "room_id": room});

    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.1/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ] {
        let answer = make_webhook(&server, &owner, hook(&room, url)).await;
        assert_detail(&answer, 400, "private network");
    }
    for (body, why) in [
        (
            json!({"url": "ftp://example.com/", "events": ["mention"], "room_id": room}),
            "http",
        ),
        (
            json!({"url": "https://u:p@example.com/", "events": ["mention"], "room_id": room}),
            "password",
        ),
        (
            json!({"url": public_url, "events": ["reaction_added"], "room_id": room}),
            "events",
        ),
        (
            json!({"url": public_url, "events": [], "room_id": room}),
            "events",
        ),
    ] {
        assert_detail(&make_webhook(&server, &owner, body).await, 400, why);
    }

    // Who: the owner for its room; not a stranger (403), nor a guest (401); a private
    // room the stranger cannot see is 404; every room's is the admin's alone.
    assert_eq!(
        make_webhook(&server, &stranger, hook(&room, public_url))
            .await
            .0,
        403
    );
    assert_eq!(
        make_webhook(&server, &stranger, hook(&private, public_url))
            .await
            .0,
        404
    );
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/webhooks",
        Some(hook(&room, public_url)),
    )
    .await;
    assert_eq!(status, 401);
    let every_room = json!({"url": public_url, "events": ["mention"]});
    assert_eq!(
        make_webhook(&server, &owner, every_room.clone()).await.0,
        403
    );
    let (status, global) =
        admin_call(&server, Method::POST, "/api/webhooks", Some(every_room)).await;
    assert_eq!(status, 201, "{global}");
    assert_eq!(global["room_id"], Value::Null);
    let (status, own) = make_webhook(&server, &owner, hook(&room, public_url)).await;
    assert_eq!(status, 201, "{own}");
    assert_eq!(own["name"], "8.8.8.8");
    let own_id = own["id"].as_str().unwrap();

    // Lists: the owner sees its room's, without secrets; the admin all; a stranger none.
    let (_, listed) =
        call_with_token(&server, Method::GET, "/api/webhooks", None, Some(&owner)).await;
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("secret").is_none());
    let (_, all) = admin_call(&server, Method::GET, "/api/webhooks", None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (_, none) =
        call_with_token(&server, Method::GET, "/api/webhooks", None, Some(&stranger)).await;
    assert_eq!(none, json!([]));

    // A stranger cannot see, nor delete, the owner's: 404 as if it did not exist.
    for (method, path) in [
        (Method::DELETE, format!("/api/webhooks/{own_id}")),
        (Method::GET, format!("/api/webhooks/{own_id}/deliveries")),
    ] {
        let (status, _) = call_with_token(&server, method, &path, None, Some(&stranger)).await;
        assert_eq!(status, 404);
    }
    let (status, _) = call_with_token(
        &server,
        Method::DELETE,
        "/api/webhooks/not-a-uuid",
        None,
        Some(&owner),
    )
    .await;
    assert_eq!(status, 404);

    // At most 10 per room.
    for _ in 0..9 {
        assert_eq!(
            make_webhook(&server, &owner, hook(&room, public_url))
                .await
                .0,
            201
        );
    }
    assert_eq!(
        make_webhook(&server, &owner, hook(&room, public_url))
            .await
            .0,
        409
    );

    // The room deleted: its webhooks go with it.
    let (status, _) = admin_call(
        &server,
        Method::DELETE,
        &format!("/api/chat/rooms/{room}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, all) = admin_call(&server, Method::GET, "/api/webhooks", None).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(allowing_private(&db)).await;
    let receiver = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    receiver.set(Mode::Redirect(elsewhere.url.clone()));
    let (_, owner) = sign_up(&server, &unique_name("owner")).await;
    let room = make_room(&server, "moved", false, &owner).await;
    let (status, made) = make_webhook(
        &server,
        &owner,
        json!({"url": receiver.url, "events": ["message_created"], "room_id": room}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    receiver.trust(made["secret"].as_str().unwrap());
    posted(&server, &room, "where does this go", &owner).await;
    let path = format!("/api/webhooks/{}/deliveries", made["id"].as_str().unwrap());
    let recorded = eventually(Duration::from_secs(10), || async {
        let (_, record) = call_with_token(&server, Method::GET, &path, None, Some(&owner)).await;
        record[0]["status"] == 302
    })
    .await;
    assert!(recorded, "the 302 is recorded as a failed attempt");
    let (_, record) = call_with_token(&server, Method::GET, &path, None, Some(&owner)).await;
    assert_eq!(record[0]["state"], "pending", "{record}");
    assert!(
        record[0]["error"].as_str().unwrap().contains("redirect"),
        "{record}"
    );
    assert!(record[0]["next_attempt_at"].is_string());
    assert!(elsewhere.got().is_empty(), "the redirect was not followed");
    db.drop_db().await;
}

/// A webhook on every room to `receiver`, which hangs: `server` is left in the middle of
/// delivering the first event, `m0` posted to `room`.
async fn hang_on_first_event(server: &Server, receiver: &Receiver, room: &str) {
    let (status, made) = admin_call(
        server,
        Method::POST,
        "/api/webhooks",
        Some(json!({"url": receiver.url, "events": ["message_created"]})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    receiver.trust(made["secret"].as_str().unwrap());
    receiver.set(Mode::Hang);
    post_ok(server, room, &[("username", "u"), ("msg", "m0")]).await;
    let hanging = eventually(Duration::from_secs(10), || async {
        receiver.got().len() == 1
    })
    .await;
    assert!(hanging, "the first delivery reached the receiver");
}

/// Two replicas: one is SIGKILLed in the middle of a delivery and the other finishes
/// (after the lease lapses), the interrupted event again under its delivery id; then
/// every replica stops while the receiver is down, and new ones deliver what waited.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_delivery_loses_nothing() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let options = || {
        allowing_private(&db)
            .env("REDIS_URL", &redis.url())
            .env("ROCKET_WEBHOOK_LEASE_SECS", "15")
    };
    let first = Server::start_with(options()).await;
    let receiver = Receiver::start().await;
    let room = room("killed");
    // The first replica is in the middle of delivering the first event when it dies.
    hang_on_first_event(&first, &receiver, &room).await;
    let second = Server::start_with(options()).await;
    for i in 1..10 {
        post_ok(
            &second,
            &room,
            &[("username", "u"), ("msg", &format!("m{i}"))],
        )
        .await;
    }
    receiver.set(Mode::Up);
    drop(first); // SIGKILL

    let delivered = wait_for(&receiver, 10, Duration::from_secs(30)).await;
    let contents: Vec<String> = delivered.iter().map(described).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("message_created:m{i}")).collect();
    assert_eq!(contents, expected);
    let first_id = &receiver.got()[0].delivery;
    assert_eq!(&delivered[0].delivery, first_id, "sent again under its id");
    assert_once_each_and_signed(&receiver);

    // Every replica stops while the receiver is down; what waited is sent by new ones.
    receiver.set(Mode::Down);
    for i in 10..15 {
        post_ok(
            &second,
            &room,
            &[("username", "u"), ("msg", &format!("m{i}"))],
        )
        .await;
    }
    second.stop();
    receiver.set(Mode::Up);
    let _third = Server::start_with(options()).await;
    let delivered = wait_for(&receiver, 15, Duration::from_secs(40)).await;
    let contents: Vec<String> = delivered.iter().map(described).collect();
    let expected: Vec<String> = (0..15).map(|i| format!("message_created:m{i}")).collect();
    let attempts: Vec<(String, String, u16, String)> = receiver
        .got()
        .iter()
        .map(|g| (described(g), g.delivery.clone(), g.status, g.from.clone()))
        .collect();
    assert_eq!(contents, expected, "{attempts:#?}");
    assert_once_each_and_signed(&receiver);
    db.drop_db().await;
}

/// A replica told to stop (SIGTERM) in the middle of a delivery lets the webhook's lease
/// go as it starts draining: another replica sends the event, under the same delivery id,
/// long before the 30 s lease would have lapsed.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_stops_lets_its_webhooks_go_at_once() {
    let db = TestDb::create(Backend::MariaDb).await;
    let redis = Redis::start().await;
    let options = || allowing_private(&db).env("REDIS_URL", &redis.url());
    let mut first = Server::start_with(options()).await;
    let receiver = Receiver::start().await;
    let room = room("stopping");
    hang_on_first_event(&first, &receiver, &room).await;
    let _second = Server::start_with(options()).await;
    receiver.set(Mode::Up);

    let stopped_at = std::time::Instant::now();
    first.terminate();
    assert_eq!(first.wait_exit(Duration::from_secs(20)).await, Some(0));
    let delivered = wait_for(&receiver, 1, Duration::from_secs(30)).await;
    let waited = stopped_at.elapsed();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].delivery,
        receiver.got()[0].delivery,
        "sent again under its id"
    );
    // The lease is 30 s: only a lease let go explains a delivery within 15 s.
    assert!(
        waited < Duration::from_secs(15),
        "the other replica sent it {waited:?} after the stop"
    );
    assert_once_each_and_signed(&receiver);
    db.drop_db().await;
}

/// 40 webhooks to a receiver that never answers, 100 messages: the server holds at most
/// `MAX_IN_FLIGHT` (32) requests to it, and its memory stays flat.
#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_never_answers_holds_a_bounded_number_of_requests() {
    let db = TestDb::create(Backend::MariaDb).await;
    let server = Server::start_with(allowing_private(&db)).await;
    let receiver = Receiver::start().await;
    receiver.set(Mode::Hang);
    for i in 0..40 {
        let (status, made) = admin_call(
            &server,
            Method::POST,
            "/api/webhooks",
            Some(json!({"url": format!("{}/{i}", receiver.url), "events": ["message_created"]})),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        receiver.trust(made["secret"].as_str().unwrap());
    }
    let room = room("silent");
    post_ok(&server, &room, &[("username", "u"), ("msg", "warm up")]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = server.rss_bytes();
    for i in 0..100 {
        post_ok(
            &server,
            &room,
            &[("username", "u"), ("msg", &format!("m{i}"))],
        )
        .await;
    }
    // Two rounds of 5 s time-outs.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let seen = receiver.seen.lock().unwrap().max_in_flight;
    assert!(seen > 0 && seen <= 32, "{seen} requests held at once");
    assert_flat(
        &server,
        before,
        "40 webhooks to a receiver that never answers",
    );
    // Nothing was lost meanwhile: every event still waits, none was given up yet.
    let (_, hooks) = admin_call(&server, Method::GET, "/api/webhooks", None).await;
    let id = hooks[0]["id"].as_str().unwrap();
    let (_, record) = admin_call(
        &server,
        Method::GET,
        &format!("/api/webhooks/{id}/deliveries"),
        None,
    )
    .await;
    let record = record.as_array().unwrap();
    assert_eq!(record.len(), 100, "the newest 100 of 101 are listed");
    assert!(record.iter().all(|r| r["state"] == "pending"), "{record:?}");
    db.drop_db().await;
}

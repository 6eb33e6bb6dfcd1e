//! With `AMQP_URL`, stored messages and joins go to RabbitMQ (the real one on
//! 127.0.0.1:5672, or `FERROCHAT_TEST_AMQP_URL`), and losing RabbitMQ never holds up
//! chatting: events wait and go out when it is back.

mod common;

use common::*;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use std::time::{Duration, Instant};

fn amqp_url() -> String {
    std::env::var("FERROCHAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A queue of the test's own on the exchange: every event, whoever sent it.
async fn listen() -> (Connection, lapin::Consumer) {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (.ci/run starts one)");
    let channel = conn.create_channel().await.unwrap();
    channel
        .exchange_declare(
            "ferrochat.events",
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = channel
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().as_str(),
            "ferrochat.events",
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let consumer = channel
        .basic_consume(
            queue.name().as_str(),
            "test",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (conn, consumer)
}

/// Events about `room` until `count` have come, or 20 s.
async fn events_in(
    consumer: &mut lapin::Consumer,
    room: &str,
    count: usize,
) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(delivery))) = tokio::time::timeout(left, consumer.next()).await else {
            break;
        };
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        let event: Value = serde_json::from_slice(&delivery.data).unwrap();
        let about = event["room_id"]
            .as_str()
            .or(event["message"]["room_id"].as_str());
        if about == Some(room) {
            got.push((delivery.routing_key.to_string(), event));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_and_joins_reach_rabbitmq_and_survive_its_outage() {
    let (_conn, mut consumer) = listen().await;
    let db = TestDb::create(Backend::Sqlite).await;
    // RabbitMQ behind a link the test can cut.
    let upstream = amqp_url()
        .split('@')
        .nth(1)
        .and_then(|h| h.split('/').next())
        .unwrap_or("127.0.0.1:5672")
        .to_string();
    let proxy = Proxy::start(&upstream).await;
    let url = amqp_url().replace(&upstream, &format!("127.0.0.1:{}", proxy.port));
    let server = Server::start_with(ServerOptions::new(&db.url).env("AMQP_URL", &url)).await;
    let up = eventually(Duration::from_secs(10), || async {
        get_json(&format!("{}/health", server.url)).await["events"] == "up"
    })
    .await;
    assert!(up, "never connected to RabbitMQ");

    let room = room("events");
    post_ok(&server, &room, &[("username", "ann"), ("msg", "first")]).await;
    let _ws = open_socket(&server, &format!("/ws/{room}/u-ann?username=ann")).await;
    let got = events_in(&mut consumer, &room, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let (key, created) = &got[0];
    assert_eq!(key, "message_created");
    assert_eq!(created["event"], "message_created");
    assert_eq!(created["message"]["content"], "first");
    assert_eq!(created["message"]["username"], "ann");
    assert!(created["message"]["id"].as_i64().unwrap() > 0);
    let (key, joined) = &got[1];
    assert_eq!(key, "user_joined");
    assert_eq!(
        (joined["user_id"].as_str(), joined["username"].as_str()),
        (Some("u-ann"), Some("ann"))
    );

    // RabbitMQ away: chatting goes on at full speed; the events follow when it is back.
    proxy.cut().await;
    let started = Instant::now();
    for i in 0..20 {
        post_ok(
            &server,
            &room,
            &[("username", "ann"), ("msg", &format!("during {i}"))],
        )
        .await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "posts waited for RabbitMQ"
    );
    assert_eq!(lines(&transcript(&server, &room).await).len(), 21);
    let down = eventually(Duration::from_secs(10), || async {
        get_json(&format!("{}/health", server.url)).await["events"] == "down"
    })
    .await;
    assert!(down, "the outage is not reported");
    proxy.restore();
    let got = events_in(&mut consumer, &room, 20).await;
    let contents: Vec<String> = got
        .iter()
        .map(|(_, e)| e["message"]["content"].as_str().unwrap_or("").to_string())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("during {i}")).collect();
    assert_eq!(contents, expected, "every event, in order, once");
    db.drop_db().await;
}

/// A server told to stop right after a burst of posts sends every event still queued
/// for RabbitMQ before it exits.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_server_sends_the_events_it_still_holds() {
    let (_conn, mut consumer) = listen().await;
    let db = TestDb::create(Backend::Sqlite).await;
    let mut server =
        Server::start_with(ServerOptions::new(&db.url).env("AMQP_URL", &amqp_url())).await;
    let connected = eventually(Duration::from_secs(10), || async {
        get_json(&format!("{}/health", server.url)).await["events"] == "up"
    })
    .await;
    assert!(connected, "RabbitMQ connected");
    let room = room("flush");
    let http = client();
    let posts = futures_util::stream::iter(0..300).map(|i| {
        let (http, url) = (http.clone(), format!("{}/api/chat/{room}", server.url));
        async move {
            let res = http
                .post(url)
                .form(&[("username", "ann"), ("msg", &format!("m{i}"))])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 204);
        }
    });
    posts.buffer_unordered(32).collect::<Vec<()>>().await;
    // (The client keeps its idle keep-alive connections open meanwhile, as a proxy does.)
    server.terminate();
    let exit = server.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(exit, Some(0), "{:#?}", server.log());
    let got = events_in(&mut consumer, &room, 300).await;
    assert_eq!(
        got.iter()
            .filter(|(key, _)| key == "message_created")
            .count(),
        300,
        "every stored message's event went out before the exit"
    );
    db.drop_db().await;
}

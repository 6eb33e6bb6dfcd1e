//! Events for other services (as the graintrade chat room service publishes to RabbitMQ): with
//! `AMQP_URL` set, every stored, edited and deleted message and every join is published as
//! JSON to the durable topic exchange `ferrochat.events`, routing keys `message_created`,
//! `message_updated`, `message_deleted`, `reaction_added`, `reaction_removed` and
//! `user_joined`. Chatting never waits for RabbitMQ: events queue in memory (up to
//! [`BACKLOG`]) while it is away, go out in order when it is back, and past the backlog
//! are dropped and counted.

use crate::domain::sync::backoff;
use crate::domain::{Message, MessageJson, Peer, Shape};
use crate::metrics::METRICS;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const EXCHANGE: &str = "ferrochat.events";
const BACKLOG: usize = 10_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const OFF: u8 = 0;
const DOWN: u8 = 1;
const UP: u8 = 2;

#[derive(Clone)]
pub struct Events {
    tx: Option<mpsc::Sender<(&'static str, Vec<u8>)>>,
    state: Arc<AtomicU8>,
    /// Queued or being published; a stopping server waits for none (bounded).
    pending: Arc<AtomicUsize>,
}

impl Events {
    /// No broker configured: every event is a no-op.
    pub fn off() -> Self {
        Events {
            tx: None,
            state: Arc::new(AtomicU8::new(OFF)),
            pending: Arc::default(),
        }
    }

    /// Starts the publisher; returns at once, connected or not.
    pub fn start(url: String) -> Self {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let state = Arc::new(AtomicU8::new(DOWN));
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(publisher(url, rx, state.clone(), pending.clone()));
        Events {
            tx: Some(tx),
            state,
            pending,
        }
    }

    /// `off`, `down` or `up`, for `/health`.
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            OFF => "off",
            UP => "up",
            _ => "down",
        }
    }

    /// Events not yet confirmed by RabbitMQ.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// The message as the JSON API shows it (`GET /api/chat/messages/<id>`).
    pub fn message_created(&self, row: &Message) {
        if self.tx.is_none() {
            return; // no broker: not even the JSON is built, on every message
        }
        self.send(
            "message_created",
            json!({
                "event": "message_created",
                "message": MessageJson(row, Shape::Api),
            }),
        );
    }

    /// A message edited: its shape as `message_created` gives it, with the new text and
    /// `edited_at`.
    pub fn message_updated(&self, row: &Message) {
        self.message_event("message_updated", row);
    }

    /// A message deleted: its shape as it was.
    pub fn message_deleted(&self, row: &Message) {
        self.message_event("message_deleted", row);
    }

    /// A reaction added or taken off (`reaction_added`, `reaction_removed`): the message,
    /// the emoji, who, and how many of it the message has now.
    pub fn reaction(
        &self,
        room: &str,
        message_id: i64,
        emoji: &str,
        user_id: &str,
        count: u64,
        added: bool,
    ) {
        if self.tx.is_none() {
            return;
        }
        let kind = if added {
            "reaction_added"
        } else {
            "reaction_removed"
        };
        self.send(
            kind,
            json!({
                "event": kind, "message_id": message_id, "room_id": room, "emoji": emoji,
                "user_id": user_id, "count": count,
            }),
        );
    }

    fn message_event(&self, kind: &'static str, row: &Message) {
        if self.tx.is_none() {
            return;
        }
        self.send(
            kind,
            json!({ "event": kind, "message": MessageJson(row, Shape::Api) }),
        );
    }

    pub fn user_joined(&self, room: &str, peer: &Peer, at: chrono::DateTime<chrono::Utc>) {
        if self.tx.is_none() {
            return;
        }
        self.send(
            "user_joined",
            json!({
                "event": "user_joined",
                "room_id": room,
                "user_id": peer.user_id,
                "username": peer.username,
                "timestamp": at,
            }),
        );
    }

    fn send(&self, kind: &'static str, event: Value) {
        let Some(tx) = &self.tx else { return };
        self.pending.fetch_add(1, Ordering::Relaxed);
        if tx.try_send((kind, event.to_string().into_bytes())).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            METRICS
                .events_published
                .with_label_values(&["dropped"])
                .inc();
        }
    }
}

async fn publisher(
    url: String,
    mut rx: mpsc::Receiver<(&'static str, Vec<u8>)>,
    state: Arc<AtomicU8>,
    pending: Arc<AtomicUsize>,
) {
    let mut attempt = 0u32;
    // An event whose publish failed is sent first on the next connection.
    let mut unsent: Option<(&'static str, Vec<u8>)> = None;
    loop {
        // The connection is kept with its channel: dropping it would close both.
        let (_connection, channel) = match tokio::time::timeout(CONNECT_TIMEOUT, open(&url)).await {
            Ok(Ok(opened)) => opened,
            failed => {
                if attempt == 0 {
                    let reason = match failed {
                        Ok(Err(err)) => err.to_string(),
                        _ => "no answer".into(),
                    };
                    tracing::warn!(error = %reason, "RabbitMQ unreachable; events wait in memory and the connection is retried");
                }
                state.store(DOWN, Ordering::Relaxed);
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
        };
        state.store(UP, Ordering::Relaxed);
        tracing::info!(exchange = EXCHANGE, "RabbitMQ connected");
        loop {
            let next = match unsent.take() {
                Some(event) => event,
                None => match rx.recv().await {
                    Some(event) => event,
                    None => return, // shutting down
                },
            };
            let published = async {
                channel
                    .basic_publish(
                        EXCHANGE,
                        next.0,
                        BasicPublishOptions::default(),
                        &next.1,
                        BasicProperties::default()
                            .with_content_type("application/json".into())
                            .with_delivery_mode(2),
                    )
                    .await?
                    .await
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, published).await {
                Ok(Ok(_)) => {
                    pending.fetch_sub(1, Ordering::Relaxed);
                    METRICS
                        .events_published
                        .with_label_values(&["published"])
                        .inc()
                }
                failed => {
                    let reason = match failed {
                        Ok(Err(err)) => err.to_string(),
                        _ => "no answer".into(),
                    };
                    tracing::warn!(error = %reason, "lost RabbitMQ; events wait in memory and the connection is retried");
                    unsent = Some(next);
                    state.store(DOWN, Ordering::Relaxed);
                    attempt = 1;
                    break;
                }
            }
        }
    }
}

/// A channel with publisher confirms on the declared exchange.
async fn open(url: &str) -> Result<(Connection, lapin::Channel), lapin::Error> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            EXCHANGE,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

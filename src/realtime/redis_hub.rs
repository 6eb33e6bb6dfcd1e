//! The hub across replicas: every event goes out to this process's readers at once and to
//! Redis (`PUBLISH room:<room>`); one pattern subscription per process (`room:*`) brings
//! the other replicas' events in. Redis going away never stops chatting here: posts are
//! committed and local readers served as before; the outage is logged once, the
//! connection retried with back-off, and when it is back every message committed
//! meanwhile is read from the database and delivered, so nobody misses one. Messages are
//! handed on in room order (see `realtime::order`).

use super::hub::{HubState, LocalFanout, Subscription};
use super::order::{Admit, RoomOrder};
use super::{Event, Hub};
use crate::chat::Transcripts;
use crate::db::entities::message;
use rocket::futures::future::BoxFuture;
use rocket::futures::StreamExt;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

const CHANNEL_PREFIX: &str = "room:";
/// Events waiting for Redis; past this, while it is away, they are dropped (the messages
/// among them come back from the database when it returns).
const OUTBOX: usize = 10_000;
/// Message ids allocated before the outage may commit after it started: look back this
/// far when catching up. Readers drop what they already have.
const CATCH_UP_MARGIN: i64 = 1_000;

pub struct RedisHub {
    local: Arc<LocalFanout>,
    outbox: mpsc::Sender<(String, Vec<u8>)>,
    origin: String,
    up: Arc<AtomicBool>,
    order: Mutex<RoomOrder>,
    transcripts: Arc<Transcripts>,
    db: DatabaseConnection,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    origin: String,
    event: Event,
    /// For a message: the id of the one before it in its room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev: Option<i64>,
}

impl RedisHub {
    /// Starts the publisher and the subscriber; returns at once, connected or not.
    pub fn start(
        url: &str,
        transcripts: Arc<Transcripts>,
        db: DatabaseConnection,
        backlog: usize,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let (outbox, rx) = mpsc::channel(OUTBOX);
        let origin = format!("{:x}-{:x}", std::process::id(), rand_u64());
        let hub = Arc::new(RedisHub {
            local: Arc::new(LocalFanout::new(backlog)),
            outbox,
            origin,
            up: Arc::new(AtomicBool::new(false)),
            order: Mutex::default(),
            transcripts,
            db,
        });
        tokio::spawn(publisher(client.clone(), rx));
        tokio::spawn(subscriber(client, hub.clone()));
        Ok(hub)
    }

    /// An event other than a message that came from elsewhere, to this process's readers.
    fn deliver(&self, room: &str, event: Event) {
        if matches!(event, Event::MessageDeleted { .. } | Event::RoomDeleted) {
            self.transcripts.forget(room);
        }
        self.local.send(room, event);
    }

    /// Hands a message to the room's transcript and readers if it is next in its room.
    /// Under the order lock, so that two tasks handing on one room's messages (the writer
    /// and the subscriber) cannot swap them.
    fn hand_on(&self, row: Arc<message::Model>, prev: Option<i64>) -> Admit {
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let admit = order.admit(&row.room, row.id, prev);
        if admit == Admit::Now {
            self.transcripts.record(&row);
            let room = row.room.clone();
            self.local.send(&room, Event::Message(row));
        }
        admit
    }

    /// A message from another replica, in room order: if it came before messages it
    /// follows, those are read from the database (they are committed) and handed on first.
    async fn deliver_message(&self, row: Arc<message::Model>, prev: Option<i64>) {
        if let Admit::After(last) = self.hand_on(row.clone(), prev) {
            self.fill(&row.room, last, row.id).await;
            // Handed on even if the database could not be read: late beats lost.
            self.hand_on(row, None);
        }
    }

    /// Hands on the room's messages with ids between `after` and `before`, from the
    /// database.
    async fn fill(&self, room: &str, after: i64, before: i64) {
        let rows = message::Entity::find()
            .filter(message::Column::Room.eq(room))
            .filter(message::Column::Id.gt(after))
            .filter(message::Column::Id.lt(before))
            .order_by_asc(message::Column::Id)
            .all(&self.db)
            .await;
        match rows {
            Ok(rows) => {
                for row in rows {
                    self.hand_on(Arc::new(row), None);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, room, "reading messages still on their way failed")
            }
        }
    }

    /// To the other replicas, through Redis.
    fn send_out(&self, room: &str, event: Event, prev: Option<i64>) {
        let wire = Wire {
            origin: self.origin.clone(),
            event,
            prev,
        };
        if let Ok(payload) = serde_json::to_vec(&wire) {
            // Full outbox: Redis has been away for a while; see OUTBOX.
            let _ = self
                .outbox
                .try_send((format!("{CHANNEL_PREFIX}{room}"), payload));
        }
    }
}

impl Hub for RedisHub {
    fn publish(&self, room: &str, event: Event) {
        match event {
            Event::Message(row) => self.publish_message(row, None),
            event => {
                self.local.send(room, event.clone());
                self.send_out(room, event, None);
            }
        }
    }

    fn publish_message(&self, row: Arc<message::Model>, prev: Option<i64>) {
        // The writer settled the room first, so this is next in it (or the subscriber
        // already read it from the database and handed it on).
        self.hand_on(row.clone(), None);
        let room = row.room.clone();
        self.send_out(&room, Event::Message(row), prev);
    }

    fn settle<'a>(&'a self, room: &'a str, prev: i64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let behind = self
                .order
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .behind(room, prev);
            if let Some(last) = behind {
                self.fill(room, last, prev + 1).await;
            }
        })
    }

    fn subscribe(&self, room: &str) -> Subscription {
        self.local.subscribe(room)
    }

    fn highest_seen(&self) -> i64 {
        self.local.highest_seen()
    }

    fn listeners(&self, room: &str) -> usize {
        self.local.listeners(room)
    }

    fn state(&self) -> HubState {
        let state = if self.up.load(Ordering::Relaxed) {
            "up"
        } else {
            "down"
        };
        HubState {
            kind: "redis",
            state,
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

async fn publisher(client: redis::Client, mut rx: mpsc::Receiver<(String, Vec<u8>)>) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut failures = 0u32;
    while let Some((channel, payload)) = rx.recv().await {
        loop {
            if conn.is_none() {
                match client.get_multiplexed_async_connection().await {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        // Dropped while Redis is away; the subscriber's catch-up brings
                        // the messages back when it returns.
                        failures += 1;
                        tokio::time::sleep(backoff(failures)).await;
                        break;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { break };
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&payload)
                .query_async(c)
                .await;
            match sent {
                Ok(_) => {
                    failures = 0;
                    break;
                }
                Err(_) => {
                    conn = None;
                    failures += 1;
                    if failures > 1 {
                        break;
                    }
                }
            }
        }
    }
}

async fn subscriber(client: redis::Client, hub: Arc<RedisHub>) {
    let mut attempt = 0u32;
    // The highest id seen when the link was lost: catching up starts below it.
    let mut lost_at: Option<i64> = None;
    loop {
        let pubsub = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(format!("{CHANNEL_PREFIX}*")).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        let mut pubsub = match pubsub {
            Ok(pubsub) => pubsub,
            Err(err) => {
                if attempt == 0 {
                    tracing::warn!(error = %err, "Redis unreachable; serving this replica's readers alone and retrying");
                    lost_at.get_or_insert(hub.highest_seen());
                }
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
        };
        hub.up.store(true, Ordering::Relaxed);
        if let Some(seen) = lost_at.take() {
            tracing::info!("Redis is back; catching up from the database");
            catch_up(&hub, seen - CATCH_UP_MARGIN).await;
        } else if attempt > 0 {
            tracing::info!("Redis connected");
        }
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Some(room) = msg.get_channel_name().strip_prefix(CHANNEL_PREFIX) else {
                continue;
            };
            match serde_json::from_slice::<Wire>(msg.get_payload_bytes()) {
                Ok(wire) if wire.origin == hub.origin => {} // delivered locally already
                Ok(Wire {
                    event: Event::Message(row),
                    prev,
                    ..
                }) => hub.deliver_message(row, prev).await,
                Ok(wire) => hub.deliver(room, wire.event),
                Err(err) => tracing::warn!(error = %err, "unreadable event from Redis"),
            }
        }
        drop(messages);
        hub.up.store(false, Ordering::Relaxed);
        tracing::warn!("lost Redis; serving this replica's readers alone and retrying");
        lost_at = Some(hub.highest_seen());
        attempt = 1;
        tokio::time::sleep(backoff(attempt)).await;
    }
}

/// Delivers every message committed after `after` (by any replica), in id order.
async fn catch_up(hub: &RedisHub, after: i64) {
    let mut after = after.max(0);
    loop {
        let rows = message::Entity::find()
            .filter(message::Column::Id.gt(after))
            .order_by_asc(message::Column::Id)
            .limit(1000)
            .all(&hub.db)
            .await;
        match rows {
            Ok(rows) if rows.is_empty() => return,
            Ok(rows) => {
                for row in rows {
                    after = row.id;
                    hub.hand_on(Arc::new(row), None);
                }
            }
            Err(err) => {
                // The next outage's catch-up, or the transcripts' own refresh, covers it.
                tracing::warn!(error = %err, "catching up after Redis failed");
                return;
            }
        }
    }
}

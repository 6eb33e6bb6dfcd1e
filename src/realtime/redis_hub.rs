//! The hub across replicas: every event goes out to this process's readers at once and to
//! Redis (`PUBLISH room:<room>`); one pattern subscription per process (`room:*`) brings
//! the other replicas' events in, as [`Arrival`]s for whoever started the hub. Redis going
//! away never stops chatting here: local readers are served as before; the outage is
//! logged once and the connection retried with back-off, and when it is back an
//! [`Arrival::Reconnected`] says from which message id on others' messages may have been
//! missed.

use super::hub::{HubState, LocalFanout, Subscription};
use super::{Event, Hub};
use crate::domain::sync::{backoff, random_u64};
use rocket::futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

const CHANNEL_PREFIX: &str = "room:";
/// Events waiting for Redis; past this, while it is away, they are dropped (the messages
/// among them are caught up from the database when it returns).
const OUTBOX: usize = 10_000;
/// Arrivals waiting for their reader: past this, reading Redis waits.
const INBOX: usize = 10_000;
/// Message ids allocated before the outage may commit after it started: look back this
/// far when catching up. Readers drop what they already have.
const CATCH_UP_MARGIN: i64 = 1_000;
/// How long before the link was lost changes are read again: a change committed just
/// before may have been published into the outage.
const CATCH_UP_SECONDS: i64 = 30;

/// What comes in from the other replicas.
#[derive(Debug)]
pub enum Arrival {
    /// An event of a room (or a user's channel); for a change of the room (a message
    /// among them), the `seq` of the change before it in the room.
    Event {
        room: String,
        event: Event,
        prev: Option<i64>,
    },
    /// Redis is back after an outage: messages above `after`, and other changes recorded
    /// from `since` on, may have been missed.
    Reconnected {
        after: i64,
        since: chrono::NaiveDateTime,
    },
}

pub struct RedisHub {
    local: LocalFanout,
    outbox: mpsc::Sender<(String, Vec<u8>)>,
    /// In the outbox or being published.
    pending: Arc<AtomicUsize>,
    origin: String,
    up: AtomicBool,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    origin: String,
    event: Event,
    /// For a change of a room: the `seq` of the one before it in the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev: Option<i64>,
}

impl RedisHub {
    /// Starts the publisher and the subscriber; returns at once, connected or not, with
    /// the receiver of what other replicas send.
    pub fn start(
        source: super::RedisSource,
        backlog: usize,
    ) -> Result<(Arc<Self>, mpsc::Receiver<Arrival>), redis::RedisError> {
        let client = source;
        let (outbox, outgoing) = mpsc::channel(OUTBOX);
        let pending = Arc::new(AtomicUsize::new(0));
        let (inbox, arrivals) = mpsc::channel(INBOX);
        let hub = Arc::new(RedisHub {
            local: LocalFanout::new(backlog),
            outbox,
            pending: pending.clone(),
            origin: format!("{:x}-{:x}", std::process::id(), random_u64()),
            up: AtomicBool::new(false),
        });
        tokio::spawn(publisher(client.clone(), outgoing, pending));
        tokio::spawn(subscriber(client, hub.clone(), inbox));
        Ok((hub, arrivals))
    }
}

impl Hub for RedisHub {
    fn deliver(&self, room: &str, event: Event) {
        self.local.send(room, event);
    }

    fn send_out(&self, room: &str, event: Event, prev: Option<i64>) {
        let wire = Wire {
            origin: self.origin.clone(),
            event,
            prev,
        };
        if let Ok(payload) = serde_json::to_vec(&wire) {
            // Full outbox: Redis has been away for a while; see OUTBOX.
            self.pending.fetch_add(1, Ordering::Relaxed);
            if self
                .outbox
                .try_send((format!("{CHANNEL_PREFIX}{room}"), payload))
                .is_err()
            {
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
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

    fn replicated(&self) -> bool {
        true
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

    fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

async fn publisher(
    client: super::RedisSource,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    pending: Arc<AtomicUsize>,
) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut failures = 0u32;
    while let Some((channel, payload)) = rx.recv().await {
        loop {
            if conn.is_none() {
                let connected = match client.client().await {
                    Ok(master) => master.get_multiplexed_async_connection().await,
                    Err(err) => Err(err),
                };
                match connected {
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
        pending.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn subscriber(client: super::RedisSource, hub: Arc<RedisHub>, inbox: mpsc::Sender<Arrival>) {
    let mut attempt = 0u32;
    // The highest id seen, and the time, when the link was lost: catching up starts
    // below and before them.
    let mut lost_at: Option<(i64, chrono::NaiveDateTime)> = None;
    let lost = |hub: &RedisHub| (hub.highest_seen(), crate::domain::now_utc());
    loop {
        let pubsub = async {
            let mut pubsub = client.client().await?.get_async_pubsub().await?;
            pubsub.psubscribe(format!("{CHANNEL_PREFIX}*")).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        let mut pubsub = match pubsub {
            Ok(pubsub) => pubsub,
            Err(err) => {
                if attempt == 0 {
                    tracing::warn!(error = %err, "Redis unreachable; serving this replica's readers alone and retrying");
                    lost_at.get_or_insert(lost(&hub));
                }
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
        };
        hub.up.store(true, Ordering::Relaxed);
        if let Some((seen, at)) = lost_at.take() {
            tracing::info!("Redis is back; catching up from the database");
            let after = (seen - CATCH_UP_MARGIN).max(0);
            let since = at - chrono::Duration::seconds(CATCH_UP_SECONDS);
            if inbox
                .send(Arrival::Reconnected { after, since })
                .await
                .is_err()
            {
                return; // nobody reads arrivals any more: shutting down
            }
        } else if attempt > 0 {
            tracing::info!("Redis connected");
        }
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Some(room) = msg.get_channel_name().strip_prefix(CHANNEL_PREFIX) else {
                continue;
            };
            let arrival = match serde_json::from_slice::<Wire>(msg.get_payload_bytes()) {
                Ok(wire) if wire.origin == hub.origin => continue, // delivered here already
                Ok(wire) => Arrival::Event {
                    room: room.to_string(),
                    event: wire.event,
                    prev: wire.prev,
                },
                Err(err) => {
                    tracing::warn!(error = %err, "unreadable event from Redis");
                    continue;
                }
            };
            if inbox.send(arrival).await.is_err() {
                return;
            }
        }
        drop(messages);
        hub.up.store(false, Ordering::Relaxed);
        tracing::warn!("lost Redis; serving this replica's readers alone and retrying");
        lost_at = Some(lost(&hub));
        attempt = 1;
        tokio::time::sleep(backoff(attempt)).await;
    }
}

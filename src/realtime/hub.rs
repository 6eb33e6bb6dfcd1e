//! The hub: after a message is committed it is published here, and every reader waiting
//! on its room (a long-poll, later a WebSocket) hears of it. One trait, because the hub has
//! two homes: this process alone, and Redis pub/sub when several replicas share a
//! database (see the real-time issue); readers always listen on a local channel.

use crate::db::entities::message;
use rocket::futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many messages a room's channel holds for its slowest reader, by default
/// (`ws_backlog`). One that falls further behind is told so (`RecvError::Lagged`) and
/// reads the messages back from the database.
pub const MESSAGE_CAPACITY: usize = 4096;
/// Typing, joins and leaves: losing some under a burst (ten thousand people joining at
/// once) harms nobody, so their channel is small and its lag is not a reader's fault.
const SIGNAL_CAPACITY: usize = 256;
/// Notifications waiting for one user's slowest socket; the API lists any it misses.
const USER_SIGNAL_CAPACITY: usize = 16;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A message, committed, with its id.
    Message(Arc<message::Model>),
    /// Someone started (`active`) or stopped typing.
    Typing { user: Arc<Peer>, active: bool },
    Joined {
        user: Arc<Peer>,
        at: chrono::DateTime<chrono::Utc>,
    },
    Left {
        user: Arc<Peer>,
        at: chrono::DateTime<chrono::Utc>,
    },
    /// A message was deleted through the API; readers drop it.
    MessageDeleted { id: i64 },
    /// The room was deleted with all its messages.
    RoomDeleted,
    /// A notification (JSON as the notifications API shows it), on its user's channel.
    Notification(Arc<serde_json::Value>),
}

/// The channel of one user's own events (notifications). Room names cannot hold `/`, so
/// it is never a room's.
pub fn user_channel(user_id: &str) -> String {
    format!("user/{user_id}")
}

/// Who is on the other end of a WebSocket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub user_id: String,
    pub username: String,
}

pub trait Hub: Send + Sync {
    /// Sends an event to every reader of the room. It never waits, so the store can
    /// publish in commit order from its writer.
    fn publish(&self, room: &str, event: Event);
    /// A message this replica committed; `prev` is the id of the message before it in its
    /// room when the store knows it (several replicas: see `realtime::order`).
    fn publish_message(&self, row: Arc<message::Model>, _prev: Option<i64>) {
        let room = row.room.clone();
        self.publish(&room, Event::Message(row));
    }
    /// Before this replica hands on its own message whose predecessor in the room is
    /// `prev`: whatever other replicas committed up to `prev` that has not arrived yet is
    /// read from the database and handed on first.
    fn settle<'a>(&'a self, _room: &'a str, _prev: i64) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
    /// The room's events published from now on.
    fn subscribe(&self, room: &str) -> Subscription;
    /// The highest message id this process has seen go through the hub.
    fn highest_seen(&self) -> i64;
    /// How many readers this process has in the room.
    fn listeners(&self, room: &str) -> usize;
    /// For `/health`: which hub, and whether it is connected.
    fn state(&self) -> HubState;
}

#[derive(Clone, Debug, Serialize)]
pub struct HubState {
    pub kind: &'static str,
    pub state: &'static str,
}

/// A room's events, on two channels: messages, which must all arrive, and signals
/// (typing, joins, leaves), which may be dropped.
pub struct Subscription {
    pub messages: broadcast::Receiver<Event>,
    pub signals: broadcast::Receiver<Event>,
}

struct RoomChannels {
    messages: broadcast::Sender<Event>,
    signals: broadcast::Sender<Event>,
}

/// Local fan-out: a pair of broadcast channels per room that has readers.
pub struct LocalFanout {
    rooms: Mutex<HashMap<String, RoomChannels>>,
    highest: AtomicI64,
    backlog: usize,
}

impl Default for LocalFanout {
    fn default() -> Self {
        LocalFanout::new(MESSAGE_CAPACITY)
    }
}

impl LocalFanout {
    pub fn new(backlog: usize) -> Self {
        LocalFanout {
            rooms: Mutex::default(),
            highest: AtomicI64::new(0),
            backlog: backlog.max(1),
        }
    }

    /// How many readers (sockets, held polls) this process has in the room.
    pub fn listeners(&self, room: &str) -> usize {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms
            .get(room)
            .map_or(0, |channels| channels.messages.receiver_count())
    }

    pub fn highest_seen(&self) -> i64 {
        self.highest.load(Ordering::Relaxed)
    }

    pub fn send(&self, room: &str, event: Event) {
        if let Event::Message(row) = &event {
            self.highest.fetch_max(row.id, Ordering::Relaxed);
        }
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channels) = rooms.get(room) {
            let tx = match event {
                Event::Message(_) => &channels.messages,
                _ => &channels.signals,
            };
            // No receiver left: the room's channels go until someone listens again.
            if tx.send(event).is_err() {
                rooms.remove(room);
            }
        }
    }

    pub fn subscribe(&self, room: &str) -> Subscription {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        // A broadcast channel allocates all its slots at once: a user's own channel
        // (notifications only, one per connected user) gets few.
        let (messages, signals) = if room.contains('/') {
            (1, USER_SIGNAL_CAPACITY)
        } else {
            (self.backlog, SIGNAL_CAPACITY)
        };
        let channels = rooms
            .entry(room.to_string())
            .or_insert_with(|| RoomChannels {
                messages: broadcast::channel(messages).0,
                signals: broadcast::channel(signals).0,
            });
        Subscription {
            messages: channels.messages.subscribe(),
            signals: channels.signals.subscribe(),
        }
    }
}

/// The hub of a single process: no configuration, nothing to go down.
#[derive(Default)]
pub struct InProcessHub(LocalFanout);

impl InProcessHub {
    pub fn new(backlog: usize) -> Self {
        InProcessHub(LocalFanout::new(backlog))
    }
}

impl Hub for InProcessHub {
    fn publish(&self, room: &str, event: Event) {
        self.0.send(room, event);
    }

    fn subscribe(&self, room: &str) -> Subscription {
        self.0.subscribe(room)
    }

    fn highest_seen(&self) -> i64 {
        self.0.highest_seen()
    }

    fn listeners(&self, room: &str) -> usize {
        self.0.listeners(room)
    }

    fn state(&self) -> HubState {
        HubState {
            kind: "in-process",
            state: "up",
        }
    }
}

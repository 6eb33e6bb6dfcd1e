//! The hub: after a message is committed it is published here, and every reader waiting
//! on its room (a long-poll, later a WebSocket) hears of it. One trait, because the hub has
//! two homes: this process alone, and Redis pub/sub when several replicas share a
//! database (see the real-time issue); readers always listen on a local channel.

use crate::db::entities::message;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many events a room's channel holds for its slowest reader. One that falls further
/// behind is told so (`RecvError::Lagged`) and reads the messages back from the database.
const ROOM_CHANNEL_CAPACITY: usize = 4096;

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
    /// The room's events published from now on.
    fn subscribe(&self, room: &str) -> broadcast::Receiver<Event>;
    /// The highest message id this process has seen go through the hub.
    fn highest_seen(&self) -> i64;
    /// For `/health`: which hub, and whether it is connected.
    fn state(&self) -> HubState;
}

#[derive(Clone, Debug, Serialize)]
pub struct HubState {
    pub kind: &'static str,
    pub state: &'static str,
}

/// Local fan-out: one broadcast channel per room that has readers.
#[derive(Default)]
pub struct LocalFanout {
    rooms: Mutex<HashMap<String, broadcast::Sender<Event>>>,
    highest: AtomicI64,
}

impl LocalFanout {
    pub fn highest_seen(&self) -> i64 {
        self.highest.load(Ordering::Relaxed)
    }

    pub fn send(&self, room: &str, event: Event) {
        if let Event::Message(row) = &event {
            self.highest.fetch_max(row.id, Ordering::Relaxed);
        }
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = rooms.get(room) {
            // No receiver left: the room's channel goes until someone listens again.
            if tx.send(event).is_err() {
                rooms.remove(room);
            }
        }
    }

    pub fn subscribe(&self, room: &str) -> broadcast::Receiver<Event> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms
            .entry(room.to_string())
            .or_insert_with(|| broadcast::channel(ROOM_CHANNEL_CAPACITY).0)
            .subscribe()
    }
}

/// The hub of a single process: no configuration, nothing to go down.
#[derive(Default)]
pub struct InProcessHub(LocalFanout);

impl Hub for InProcessHub {
    fn publish(&self, room: &str, event: Event) {
        self.0.send(room, event);
    }

    fn subscribe(&self, room: &str) -> broadcast::Receiver<Event> {
        self.0.subscribe(room)
    }

    fn highest_seen(&self) -> i64 {
        self.0.highest_seen()
    }

    fn state(&self) -> HubState {
        HubState {
            kind: "in-process",
            state: "up",
        }
    }
}

//! The hub's trait and its in-process form. One trait, because the hub has two homes: this
//! process alone, and Redis pub/sub when several replicas share a database. Readers always
//! listen on a local channel.

use crate::domain::sync::lock;
use crate::domain::{Message, Notification, Peer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::broadcast;

/// Typing, joins and leaves: losing some under a burst (ten thousand people joining at
/// once) harms nobody, so their channel is small and its lag is not a reader's fault.
const SIGNAL_CAPACITY: usize = 256;
/// Notifications waiting for one user's slowest socket; the API lists any it misses.
const USER_SIGNAL_CAPACITY: usize = 16;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A message, committed, with its id.
    Message(Arc<Message>),
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
    /// A message's text was edited: it as it now is. `seq`: see `domain::seq`; every
    /// change of a room below carries one (0 from a replica that gives none).
    MessageUpdated {
        message: Arc<Message>,
        #[serde(default)]
        seq: i64,
    },
    /// A reaction was added to one of the room's messages, or taken off: how many of
    /// that emoji it has now.
    Reaction {
        message_id: i64,
        emoji: String,
        user_id: String,
        count: u64,
        added: bool,
        #[serde(default)]
        seq: i64,
    },
    /// A message was deleted through the API; readers drop it.
    MessageDeleted {
        id: i64,
        #[serde(default)]
        seq: i64,
    },
    /// The room was deleted with all its messages.
    RoomDeleted {
        #[serde(default)]
        seq: i64,
    },
    /// Who may read the room changed (a member added or removed): readers check again.
    AccessChanged,
    /// The user marked a room read, on their user's channel: all their sockets hear of it.
    Read { room_id: String, last_read_id: i64 },
    /// A notification, on its user's channel.
    Notification(Arc<Notification>),
    /// The user's tokens were revoked (signed out, password changed), on their user's
    /// channel: their sockets close, to be opened again with a token that holds.
    TokensRevoked,
}

impl Event {
    /// The place of a change of its room in the room's history (`domain::seq`); none for
    /// what changes no room (typing, presence, access, a user's own events).
    pub fn seq(&self) -> Option<i64> {
        match self {
            Event::Message(message) => Some(crate::domain::seq::of_message(message.id)),
            Event::MessageUpdated { seq, .. }
            | Event::Reaction { seq, .. }
            | Event::MessageDeleted { seq, .. }
            | Event::RoomDeleted { seq } => Some(*seq),
            _ => None,
        }
    }
}

/// The channel of one user's own events (notifications). Room names cannot hold `/`, so
/// it is never a room's.
pub fn user_channel(user_id: &str) -> String {
    format!("user/{user_id}")
}

pub trait Hub: Send + Sync {
    /// To this replica's readers of the room. Never waits, so it can be called in commit
    /// order under a lock.
    fn deliver(&self, room: &str, event: Event);
    /// To the other replicas, with a message's predecessor in its room (`prev`); nothing
    /// when there are none.
    fn send_out(&self, _room: &str, _event: Event, _prev: Option<i64>) {}
    /// To every reader of the room, here and elsewhere: for events that need no order.
    fn publish(&self, room: &str, event: Event) {
        self.send_out(room, event.clone(), None);
        self.deliver(room, event);
    }
    /// The room's events delivered from now on.
    fn subscribe(&self, room: &str) -> Subscription;
    /// The highest message id this process has delivered.
    fn highest_seen(&self) -> i64;
    /// How many readers this process has in the room.
    fn listeners(&self, room: &str) -> usize;
    /// Whether other replicas share the rooms (so messages need `prev` and a gate).
    fn replicated(&self) -> bool {
        false
    }
    /// For `/health`: which hub, and whether it is connected.
    fn state(&self) -> HubState;

    /// Events handed to the hub and not yet sent on to the other replicas; a stopping
    /// server waits for none (bounded) before it exits.
    fn pending(&self) -> usize {
        0
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct HubState {
    pub kind: &'static str,
    pub state: &'static str,
}

/// A room's events, on two channels: messages, which must all arrive, and signals
/// (typing, joins, leaves), which may be dropped. The room's channels go when its last
/// subscription is dropped, so a room nobody listens to any more (a long-poll of a name
/// nobody uses) holds no memory.
pub struct Subscription {
    pub messages: broadcast::Receiver<Event>,
    pub signals: broadcast::Receiver<Event>,
    room: String,
    rooms: Weak<Rooms>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(rooms) = self.rooms.upgrade() else {
            return;
        };
        let mut rooms = lock(&rooms);
        // Under the lock no one can subscribe meanwhile; ours are the last receivers when
        // each channel counts one (ours, still alive until this returns).
        if let Some(channels) = rooms.get(&self.room) {
            if channels.messages.receiver_count() <= 1 && channels.signals.receiver_count() <= 1 {
                rooms.remove(&self.room);
            }
        }
    }
}

struct RoomChannels {
    messages: broadcast::Sender<Event>,
    signals: broadcast::Sender<Event>,
}

type Rooms = Mutex<HashMap<String, RoomChannels>>;

/// Local fan-out: a pair of broadcast channels per room that has readers.
pub struct LocalFanout {
    rooms: Arc<Rooms>,
    highest: AtomicI64,
    backlog: usize,
}

impl LocalFanout {
    /// `backlog`: messages a room's channel holds for its slowest reader; one that falls
    /// further behind is told so (`RecvError::Lagged`) and reads them back itself.
    pub fn new(backlog: usize) -> Self {
        LocalFanout {
            rooms: Arc::default(),
            highest: AtomicI64::new(0),
            backlog: backlog.max(1),
        }
    }

    pub fn listeners(&self, room: &str) -> usize {
        lock(&self.rooms)
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
        let mut rooms = lock(&self.rooms);
        if let Some(channels) = rooms.get(room) {
            let tx = match event {
                // A room's changes go one way, in `seq` order; a change of who may read
                // must not be dropped in a burst, and must come before the messages that
                // follow it.
                Event::Message(_)
                | Event::MessageUpdated { .. }
                | Event::Reaction { .. }
                | Event::MessageDeleted { .. }
                | Event::RoomDeleted { .. }
                | Event::AccessChanged => &channels.messages,
                _ => &channels.signals,
            };
            // No receiver left: the room's channels go until someone listens again.
            if tx.send(event).is_err() {
                rooms.remove(room);
            }
        }
    }

    pub fn subscribe(&self, room: &str) -> Subscription {
        let mut rooms = lock(&self.rooms);
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
            room: room.to_string(),
            rooms: Arc::downgrade(&self.rooms),
        }
    }
}

/// The hub of a single process: no configuration, nothing to go down.
pub struct InProcessHub(LocalFanout);

impl InProcessHub {
    pub fn new(backlog: usize) -> Self {
        InProcessHub(LocalFanout::new(backlog))
    }
}

impl Hub for InProcessHub {
    fn deliver(&self, room: &str, event: Event) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64) -> Event {
        Event::Message(Arc::new(Message {
            id,
            room: "r".into(),
            timestamp: crate::domain::now_utc(),
            username: "u".into(),
            text: "t".into(),
            user_id: None,
            message_type: crate::domain::MessageType::Text,
            file_url: None,
            client_stamp: None,
            edited_at: None,
            reactions: Vec::new(),
            reply_to: None,
            reply_preview: None,
        }))
    }

    #[tokio::test]
    async fn readers_hear_their_room_only_and_messages_apart_from_signals() {
        let hub = InProcessHub::new(16);
        let mut r = hub.subscribe("r");
        let other = hub.subscribe("other");
        hub.publish("r", message(1));
        hub.publish(
            "r",
            Event::Typing {
                user: Arc::new(Peer {
                    user_id: "u".into(),
                    username: "u".into(),
                }),
                active: true,
            },
        );
        assert!(matches!(r.messages.recv().await, Ok(Event::Message(m)) if m.id == 1));
        assert!(matches!(r.signals.recv().await, Ok(Event::Typing { .. })));
        let mut other = other;
        assert!(other.messages.try_recv().is_err());
        assert_eq!(hub.highest_seen(), 1);
        assert_eq!(hub.listeners("r"), 1);
    }

    #[test]
    fn a_room_goes_with_its_last_subscription() {
        let hub = InProcessHub::new(16);
        let first = hub.subscribe("r");
        let second = hub.subscribe("r");
        drop(first);
        assert_eq!(hub.listeners("r"), 1, "one listener is left");
        hub.deliver("r", message(1));
        drop(second);
        assert!(lock(&hub.0.rooms).is_empty());
        // 20,000 polls of names nobody uses leave nothing behind.
        for i in 0..20_000 {
            let _held = hub.subscribe(&format!("nobody-{i}"));
        }
        assert!(lock(&hub.0.rooms).is_empty());
    }
}

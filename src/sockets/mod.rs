//! Live readers of a room: WebSockets and event streams, between the message pipeline
//! (`delivery`) and the HTTP mounts (`http::ws`, `http::sse`), which keep only the guards
//! and the upgrade.
//!
//! [`Sockets`] is the service a reader opens through: who is there, and where its replay
//! starts ([`Sockets::start`]). A [`Follower`] keeps one reader of one room up to date:
//! each change once and in order (`domain::seq::Sent`), what a lag lost read back from the
//! database, and the reader's right to the room asked again. A [`Session`] is one
//! WebSocket over any stream and sink of frames: `http::ws` hands it the upgraded
//! connection, the tests hand it channels and read the frames it writes.

pub mod session;

pub use session::{
    Session, CLOSE_NO_ACCESS, CLOSE_RECONNECT, CLOSE_RESTART, CLOSE_ROOM_DELETED, CLOSE_SIGN_IN,
    MAX_FRAME,
};

use crate::access::RoomAccess;
use crate::accounts::Accounts;
use crate::chat;
use crate::config::SocketSettings;
use crate::delivery::Delivery;
use crate::domain::seq::{self, Sent};
use crate::domain::sync::random_u64;
use crate::domain::{names, Caller, Error, Limits, Peer, Result, RoomName};
use crate::events::Events;
use crate::lifecycle::Lifecycle;
use crate::metrics::METRICS;
use crate::presence::Presence;
use crate::realtime::{user_channel, Event, Hub, Subscription};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// More lags than this within [`LAG_WINDOW`] and a reader is told to reconnect.
pub const MAX_LAGS: usize = 3;
pub const LAG_WINDOW: Duration = Duration::from_secs(30);

/// What every live reader of this replica shares. Held in an `Arc` by each open socket
/// and stream: the request that opened it is long gone.
pub struct Sockets {
    pub db: DatabaseConnection,
    pub accounts: Arc<Accounts>,
    pub access: Arc<RoomAccess>,
    pub delivery: Delivery,
    pub hub: Arc<dyn Hub>,
    pub events: Events,
    pub presence: Presence,
    pub limits: Limits,
    pub settings: SocketSettings,
    pub lifecycle: Lifecycle,
    /// The one room of the single-room relay (`/ws`, setting `webchat_room`).
    pub relay_room: RoomName,
}

/// Which socket was asked for, and what it says of who is there.
#[derive(Clone, Copy, Debug)]
pub enum Asked<'a> {
    /// `/ws/<room>/<user_id>?username=`: one author for the whole socket.
    AsUser {
        user_id: &'a str,
        username: Option<&'a str>,
    },
    /// `/ws/<room>`: each message frame may name its author.
    Room,
    /// `/ws`: the single-room relay's `{text, type, ts}` frames.
    Relay,
}

/// What a socket speaks, once open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Room frames (`realtime::ServerFrame`), one author per socket.
    OneAuthor,
    /// Room frames whose `user_id` names the author.
    AuthorPerFrame,
    /// The relay's `{text, type, ts}` (`realtime::RelayFrame`), messages only.
    Relay,
}

impl Asked<'_> {
    pub fn dialect(self) -> Dialect {
        match self {
            Asked::AsUser { .. } => Dialect::OneAuthor,
            Asked::Room => Dialect::AuthorPerFrame,
            Asked::Relay => Dialect::Relay,
        }
    }
}

/// Where a reader's replay starts, as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// From now on: nothing older.
    Now,
    /// Every message after this id (and the room's other changes since), then live ones.
    AfterMessage(i64),
    /// Every change of the room after this `seq` (`domain::seq`), then live ones.
    AfterSeq(i64),
}

impl Resume {
    /// From the query's `since` (a message id) and `seq`: one of them, or neither.
    pub fn of(since: Option<i64>, seq: Option<i64>) -> Result<Resume> {
        match (since, seq) {
            (Some(_), Some(_)) => Err(Error::bad_request("give since or seq, not both")),
            (Some(after), None) => Ok(Resume::AfterMessage(after)),
            (None, Some(after)) => Ok(Resume::AfterSeq(after)),
            (None, None) => Ok(Resume::Now),
        }
    }
}

/// A reader, opened: what it listens to, and what it is sent before live changes.
pub struct Start {
    /// The room's changes.
    pub events: Subscription,
    /// The reader's own channel (its notifications, a sign-out), when it was asked for.
    pub own: Option<Subscription>,
    /// The first page of what it missed, oldest first (read on by `seq`).
    pub page: Vec<Event>,
    /// Changes after the `seq` asked for are no longer kept: it is told to reload.
    pub resync: bool,
    /// What counts as sent already.
    pub sent: Sent,
}

/// Why a reader may no longer read its room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutOut {
    /// A sign-out or a new password revoked the token.
    SignedOut,
    /// Taken out of a private room (or the room made private).
    NoLongerMember,
}

impl ShutOut {
    pub fn reason(self) -> &'static str {
        match self {
            ShutOut::SignedOut => "signed out (or the password changed): sign in again",
            ShutOut::NoLongerMember => "you are no longer a member of this room",
        }
    }
}

/// What a reader that lagged (missed changes of its channel) is to do next.
pub enum AfterLag {
    /// Send these (read back from the database), then carry on.
    Missed(Vec<Event>),
    /// It may no longer read the room.
    ShutOut(ShutOut),
    /// It keeps falling behind: reconnect from what it has.
    Reconnect,
    /// What it missed could not be read: reconnect from what it has.
    Unreadable,
}

impl Sockets {
    /// Who a socket is: on `/ws/<room>/<user_id>` the path's user (the caller's own when
    /// signed in, an account's only with its token); elsewhere the caller, or a guest.
    pub async fn peer(&self, caller: &Caller, asked: Asked<'_>) -> Result<Peer> {
        match asked {
            Asked::AsUser { user_id, username } => {
                let user_id = names::user_id(user_id)?;
                self.access.may_act_as(caller, &user_id).await?;
                // Checked as a post's would be; none means the user id. Signed in: their name.
                let username = match &caller.user {
                    Some(user) => user.username.clone(),
                    None => names::username(Some(username.unwrap_or(&user_id)), &self.limits)?,
                };
                Ok(Peer { user_id, username })
            }
            // Who posts is said by each frame, or nobody says (the relay); the socket itself
            // (its presence, its join) is the caller's, or a guest's.
            Asked::Room | Asked::Relay => Ok(match &caller.user {
                Some(user) => user.clone(),
                None => Peer {
                    user_id: format!("guest-{:08x}", random_u64() as u32),
                    username: "guest".to_string(),
                },
            }),
        }
    }

    /// Opens a reader of `room` for `caller`: listens, checks access, reads what it missed.
    ///
    /// Listening starts before access is checked and the history read, so nothing falls
    /// between them: a room made private (or deleted) after the check is heard of by the
    /// reader's `AccessChanged` (or `RoomDeleted`), and a change committed while the replay
    /// is read is either in it or heard (and sent once). A room no one has written in yet
    /// is open, as every room of the Flask original exists: its channel goes with its last
    /// listener, and readers per client are capped by the caller of this.
    pub async fn start(
        &self,
        caller: &Caller,
        room: &RoomName,
        own_channel: Option<&str>,
        resume: Resume,
    ) -> Result<Start> {
        let events = self.hub.subscribe(room.as_str());
        self.access.may_read(caller, room.as_str()).await?;
        let own = own_channel.map(|user_id| self.hub.subscribe(&user_channel(user_id)));
        let db = &self.db;
        let (page, resync, sent) = match resume {
            Resume::AfterSeq(after) => {
                let (resync, page) = chat::changes::resume(db, room.as_str(), after).await?;
                (page, resync, Sent::new(seq::message_id_at(after), after))
            }
            // The messages after `since`, and the room's other changes since the last of
            // them the client has, in one order: a change made while the replay was read
            // is in it, never skipped for coming before the newest message replayed.
            Resume::AfterMessage(after) => {
                let from = seq::of_message(after);
                let page =
                    chat::changes::between(db, room.as_str(), from, None, chat::changes::PAGE)
                        .await?;
                (page, false, Sent::new(after, from))
            }
            // From now on: everything up to the room's last change counts as sent. Read
            // after listening started, so a change committed meanwhile is either below it
            // (skipped when heard) or above it (heard). (Not the hub's highest id seen:
            // ids are shared by every room, and a message of this room committed later on
            // another replica may have a lower id than one of another room seen here.)
            Resume::Now => {
                let head = chat::changes::head(db, room.as_str()).await?;
                (Vec::new(), false, Sent::new(seq::message_id_at(head), head))
            }
        };
        Ok(Start {
            events,
            own,
            page,
            resync,
            sent,
        })
    }
}

/// One reader of one room, kept up to date.
pub struct Follower {
    pub sockets: Arc<Sockets>,
    pub caller: Caller,
    pub room: RoomName,
    /// What it was sent: messages by id, other changes up to a `seq`.
    pub sent: Sent,
    /// When it lagged, within [`LAG_WINDOW`].
    lags: Vec<Instant>,
}

impl Follower {
    pub fn new(sockets: Arc<Sockets>, caller: Caller, room: RoomName, sent: Sent) -> Self {
        Follower {
            sockets,
            caller,
            room,
            sent,
            lags: Vec::new(),
        }
    }

    /// Whether `event` is new to this reader, which it then counts as sent: a message once
    /// (by id), any other change of the room once (its `seq` above the last one sent).
    /// Changes come in `seq` order, so the highest sent is where a reconnect resumes.
    /// Events that are no change of the room (typing, joins) are always new.
    pub fn take(&mut self, event: &Event) -> bool {
        match event {
            Event::Message(row) => {
                if !self.sent.insert(row.id) {
                    return false;
                }
                METRICS.messages_delivered.inc();
                self.sent.seq = self.sent.seq.max(seq::of_message(row.id));
                true
            }
            _ => match event.seq() {
                Some(seq) if seq <= self.sent.seq => false,
                Some(seq) => {
                    self.sent.seq = seq;
                    true
                }
                None => true,
            },
        }
    }

    /// The page after `page` when it was a full one: what was missed is read a page at a
    /// time, on by `seq`. `Ok(None)`: nothing more.
    pub async fn next_page(&self, page: &[Event]) -> Result<Option<Vec<Event>>> {
        let full = page.len() as u64 >= chat::changes::PAGE;
        let Some(last) = page.last().and_then(Event::seq).filter(|_| full) else {
            return Ok(None);
        };
        let room = self.room.as_str();
        let next =
            chat::changes::between(&self.sockets.db, room, last, None, chat::changes::PAGE).await?;
        Ok(Some(next))
    }

    /// Why the caller may no longer read the room, if they may not: their token was
    /// revoked, or they are out of the room. A database that cannot say keeps the reader:
    /// the next change or check asks again.
    pub async fn shut_out(&self) -> Option<ShutOut> {
        let caller = &self.caller;
        if let (Some(user), Some(generation)) = (&caller.user, caller.token_generation) {
            if !self
                .sockets
                .accounts
                .still_holds(&user.user_id, generation)
                .await
            {
                return Some(ShutOut::SignedOut);
            }
        }
        match self.sockets.access.sees(caller, self.room.as_str()).await {
            Ok(false) => Some(ShutOut::NoLongerMember),
            _ => None,
        }
    }

    /// Events were missed (a burst, or a reader that reads slowly): what it missed is read
    /// back from the database, after a check of access, whose change may be among them. A
    /// reader that keeps falling behind is told to reconnect, from what it has.
    pub async fn after_lag(&mut self) -> AfterLag {
        if let Some(why) = self.shut_out().await {
            return AfterLag::ShutOut(why);
        }
        self.lags.retain(|at| at.elapsed() < LAG_WINDOW);
        self.lags.push(Instant::now());
        if self.lags.len() > MAX_LAGS {
            return AfterLag::Reconnect;
        }
        let after = self.sent.seq.min(seq::of_message(self.sent.resume_from()));
        let room = self.room.as_str();
        match chat::changes::between(&self.sockets.db, room, after, None, chat::changes::PAGE).await
        {
            Ok(rows) => AfterLag::Missed(rows),
            Err(err) => {
                tracing::warn!(error = %err, room, "a reader's catching up failed");
                AfterLag::Unreadable
            }
        }
    }
}

/// Resolves once a token expiring at `expires_at` (Unix seconds; valid through that
/// second, as the token check counts it) no longer is; never without one.
pub async fn token_expiry(expires_at: Option<u64>) {
    match expires_at {
        Some(at) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let end = Duration::from_secs(at.saturating_add(1));
            tokio::time::sleep(end.saturating_sub(now)).await
        }
        None => std::future::pending().await,
    }
}

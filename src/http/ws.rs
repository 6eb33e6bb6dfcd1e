//! `WS /ws/<room_id>/<user_id>?username=&since=`: the ChatFlow chat socket;
//! `WS /ws/<room_id>?since=`, seed 004's, whose message frames name their author
//! (`{"type":"message","content","user_id"}`), answered in the same shape; and `WS /ws`,
//! seed 002's one-room socket (the `webchat_room`), which speaks only `{text, type, ts}`
//! (see [`connect_webchat`]).
//!
//! Client frames: `{"type":"message","content"}` (optionally `"message_type":"file"` and
//! `"file_url"`), `{"type":"typing"}`, `{"type":"stop_typing"}`. Server frames: `message`
//! (with `id` and `timestamp`), `typing`, `stop_typing`, `user_joined`, `user_left`, and
//! `error` for a frame it could not take (the connection stays). With `since=<id>` the
//! server first sends every message of the room after that id, then live ones, in id order
//! without gaps or repeats, so a client that reconnects misses nothing.
//!
//! When the server stops (SIGTERM), new sockets get 503 while it drains, then open ones
//! are closed with 1012 (reason `service restart: reconnect with since=<id>`): connect
//! again, through the balancer, and nothing is missed.

use super::client::ClientAddr;
use super::limits::{Bucket, Limiter, SocketLease};
use super::origin::SiteOrigin;
use crate::access::RoomAccess;
use crate::accounts::Accounts;
use crate::chat;
use crate::delivery::Delivery;
use crate::domain::limits::message_id;
use crate::domain::message::{chatflow_message, webchat_message};
use crate::domain::names;
use crate::domain::seq::{self, Sent};
use crate::domain::sync::random_u64;
use crate::domain::{Caller, Error};
use crate::domain::{Limits, Message as ChatMessage, Peer, Result, RoomName};
use crate::events::Events;
use crate::lifecycle::Lifecycle;
use crate::metrics::METRICS;
use crate::presence::Presence;
use crate::realtime::frames::{to_text, NotificationFrame};
use crate::realtime::{
    user_channel, ClientFrame, Event, Hub, RelayFrame, ServerFrame, Subscription,
};
use governor::DefaultDirectRateLimiter;
use rocket::futures::{SinkExt, StreamExt};
use rocket::{get, State};
use rocket_ws::frame::{CloseCode, CloseFrame};
use rocket_ws::{Channel, Config, Message, WebSocket};
use sea_orm::DatabaseConnection;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};

/// Largest client frame taken; a larger one gets an error event.
pub const MAX_FRAME: usize = 64 * 1024;
/// Frames past this are not even read: the connection is closed.
const HARD_FRAME_LIMIT: usize = 1024 * 1024;
/// A write the peer does not take within this long means it stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code telling a client it fell behind and should reconnect with `since`.
pub const CLOSE_RECONNECT: u16 = 4000;
/// Close code telling a client its token expired: sign in again, then reconnect.
pub const CLOSE_SIGN_IN: u16 = 4001;
/// Close code telling a client it may no longer read the room (removed from a private
/// room): reconnecting will not help.
pub const CLOSE_NO_ACCESS: u16 = 4003;
/// Close code telling a client the room was deleted (after its `room_deleted` frame).
pub const CLOSE_ROOM_DELETED: u16 = 4004;
/// Close code of a server that is stopping (1012, "service restart"): reconnect, with
/// `since`, and another replica answers.
pub const CLOSE_RESTART: u16 = 1012;
/// Frames refused in a row before a socket is closed with 1008 (policy violation).
const MAX_STRIKES: u32 = 20;
/// More lags than this within the window and a peer is closed with [`CLOSE_RECONNECT`].
pub(super) const MAX_LAGS: usize = 3;
pub(super) const LAG_WINDOW: Duration = Duration::from_secs(30);

super::mount![connect, connect_room, connect_webchat];

/// How sockets behave (settings `ws_ping_secs`, `ws_announce_limit`).
#[derive(Clone, Copy)]
pub struct SocketSettings {
    /// How often peers are pinged.
    pub ping_secs: u64,
    /// Above this many readers in a room here, joins and leaves are not announced.
    pub announce_limit: usize,
}

/// What a socket's task holds on to after the request that opened it is gone.
#[derive(Clone)]
pub struct SocketState {
    pub db: DatabaseConnection,
    pub accounts: Arc<Accounts>,
    pub access: Arc<RoomAccess>,
    pub delivery: Delivery,
    pub hub: Arc<dyn Hub>,
    pub events: Events,
    pub presence: Presence,
    pub limits: Limits,
    pub limiter: Arc<Limiter>,
    pub settings: SocketSettings,
    pub lifecycle: Lifecycle,
    /// The room of seed 002's socket (`webchat_room`).
    pub webchat_room: RoomName,
}

/// The ChatFlow chat socket. The client sends `ClientFrame`s (among this document's
/// schemas). It is sent JSON objects tagged by `type`: `message` (a message's fields, as
/// `MessageOut`, with `timestamp` for `created_at`), `message_updated` (the same),
/// `reaction_added` and `reaction_removed` (`message_id, room_id, emoji, user_id, count`),
/// `message_deleted` (`id, room_id`), `room_deleted` (`room_id`), each of these with its
/// `seq`; `typing` and `stop_typing` (`user_id, username, room_id`), `user_joined` and
/// `user_left` (the same and `timestamp`), `read` (`room_id, last_read_id`),
/// `notification` (as `NotificationOut`), `resync` (`room_id`) and `error` (`detail`).
#[utoipa::path(tag = "realtime",
    params(("room_id" = String, Path), ("user_id" = String, Path),
        ("username" = Option<String>, Query),
        ("token" = Option<String>, Query, description = "a token, for clients that cannot send headers on a socket"),
        ("since" = Option<i64>, Query, description = "first every message after this id, then live ones"),
        ("seq" = Option<i64>, Query, description = "first every change of the room after this seq (messages, edits, reactions, deletions), then live ones")),
    responses((status = 101, description = "switching to WebSocket"), (status = 400), (status = 401), (status = 403),
        (status = 404, description = "a private room the caller is not in"), (status = 429), (status = 503)))]
#[get("/ws/<room_id>/<user_id>?<username>&<since>&<seq>")]
#[allow(clippy::too_many_arguments)] // each is a part of the request Rocket hands in
pub async fn connect<'r>(
    ws: WebSocket,
    room_id: Result<RoomName>,
    user_id: &'r str,
    username: Option<&'r str>,
    since: Option<&'r str>,
    seq: Option<&'r str>,
    origin: Result<SiteOrigin>,
    client: ClientAddr,
    caller: Caller,
    state: &'r State<SocketState>,
) -> Result<Channel<'r>> {
    let door = Door::ChatFlow { user_id, username };
    let from = From { since, seq };
    open(ws, room_id, door, from, origin, client, caller, state).await
}

/// Seed 004's room socket: the same frames and answers as the ChatFlow socket, but each
/// message frame names its author, `{"type":"message","content","user_id"}` (signed in,
/// it must be the caller's own id, else an error frame; absent: the socket's own id, the
/// caller's or a guest's).
#[utoipa::path(tag = "realtime",
    params(("room_id" = String, Path),
        ("token" = Option<String>, Query, description = "a token, for clients that cannot send headers on a socket"),
        ("since" = Option<i64>, Query, description = "first every message after this id, then live ones"),
        ("seq" = Option<i64>, Query, description = "first every change of the room after this seq, then live ones")),
    responses((status = 101, description = "switching to WebSocket"), (status = 400), (status = 401), (status = 403),
        (status = 404, description = "a private room the caller is not in"), (status = 429), (status = 503)))]
#[get("/ws/<room_id>?<since>&<seq>")]
#[allow(clippy::too_many_arguments)]
pub async fn connect_room<'r>(
    ws: WebSocket,
    room_id: Result<RoomName>,
    since: Option<&'r str>,
    seq: Option<&'r str>,
    origin: Result<SiteOrigin>,
    client: ClientAddr,
    caller: Caller,
    state: &'r State<SocketState>,
) -> Result<Channel<'r>> {
    open(
        ws,
        room_id,
        Door::Room,
        From { since, seq },
        origin,
        client,
        caller,
        state,
    )
    .await
}

/// Seed 002's socket: one room (`webchat_room`). A text frame that is exactly
/// `{"text", "type", "ts"}` (strings and an integer: `RelayIn`) is posted, and comes back as that
/// same object to every socket of the room, the sender's too, on every replica; any other
/// frame is dropped and the socket stays open. Messages from other doors arrive as
/// `{"text": "<username>: <text>", "type": "message", "ts": <ms>}`. A message the server
/// refuses (too many, a database that is away) is answered to its sender alone with
/// `{"text": "[not sent: <reason>]", "type": "error", "ts": <ms>}`, which its page shows
/// as a line. `since=<id>` replays what came after a known message, as on the others.
#[utoipa::path(tag = "realtime",
    params(
        ("token" = Option<String>, Query, description = "a token, for clients that cannot send headers on a socket"),
        ("since" = Option<i64>, Query, description = "first every message after this id, then live ones")),
    responses((status = 101, description = "switching to WebSocket"), (status = 400), (status = 401), (status = 403),
        (status = 200, description = "asked without an upgrade: the chat page of the room named ws, as any /<room> (Rocket hands the request on)", content_type = "text/html"),
        (status = 404, description = "the webchat room is private and the caller is not in it"), (status = 429), (status = 503)))]
#[get("/ws?<since>")]
pub async fn connect_webchat<'r>(
    ws: WebSocket,
    since: Option<&'r str>,
    origin: Result<SiteOrigin>,
    client: ClientAddr,
    caller: Caller,
    state: &'r State<SocketState>,
) -> Result<Channel<'r>> {
    let room = Ok(state.webchat_room.clone());
    open(
        ws,
        room,
        Door::Webchat,
        From { since, seq: None },
        origin,
        client,
        caller,
        state,
    )
    .await
}

/// Where a socket's replay starts, as asked: after a message id (`since`), or after a
/// change of the room (`seq`, see `domain::seq`); neither: from now on.
struct From<'r> {
    since: Option<&'r str>,
    seq: Option<&'r str>,
}

/// What a socket is sent first, and from where live changes are new to it.
struct Replay {
    /// The first page of what it missed, oldest first (read on by `seq`).
    page: Vec<Event>,
    /// Changes after the `seq` asked for are no longer kept: it is told to reload.
    resync: bool,
    /// Messages up to this id it has.
    floor: i64,
    /// Changes up to this `seq` it has.
    seq: i64,
}

/// Which socket route was asked, and what it says of who is there.
enum Door<'r> {
    /// `/ws/<room_id>/<user_id>?username=`: one author for the socket.
    ChatFlow {
        user_id: &'r str,
        username: Option<&'r str>,
    },
    /// `/ws/<room_id>`: each message frame names its author.
    Room,
    /// `/ws`: seed 002's `{text, type, ts}` frames, in the webchat room.
    Webchat,
}

/// What a socket speaks, once open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Speaks {
    /// ChatFlow frames, one author per socket.
    ChatFlow,
    /// ChatFlow frames whose `user_id` names the author (seed 004).
    AuthorPerFrame,
    /// Seed 002's `{text, type, ts}`, messages only.
    Webchat,
}

#[allow(clippy::too_many_arguments)]
async fn open<'r>(
    ws: WebSocket,
    room_id: Result<RoomName>,
    door: Door<'_>,
    from: From<'r>,
    origin: Result<SiteOrigin>,
    client: ClientAddr,
    caller: Caller,
    state: &'r State<SocketState>,
) -> Result<Channel<'r>> {
    origin?;
    if state.lifecycle.stopping() {
        return Err(Error::Unavailable(
            "the server is restarting: connect again".into(),
        ));
    }
    let lease = state.limiter.open_socket(client)?;
    let room = room_id?;
    let since = message_id("since", from.since)?;
    let seq = message_id("seq", from.seq)?;
    if since.is_some() && seq.is_some() {
        return Err(Error::bad_request("give since or seq, not both"));
    }
    let (user_id, username) = match door {
        Door::ChatFlow { user_id, username } => {
            let user_id = names::user_id(user_id)?;
            // The path's user id must be the caller's own when signed in, and an account's
            // only with its token.
            state.access.may_act_as(&caller, &user_id).await?;
            // Checked as a post's would be; none means the user id. Signed in: their name.
            let username = match &caller.user {
                Some(user) => user.username.clone(),
                None => names::username(Some(username.unwrap_or(&user_id)), &state.limits)?,
            };
            (user_id, username)
        }
        // Who posts is said by each frame (seed 004), or nobody says (seed 002); the
        // socket itself (its presence, its join) is the caller's, or a guest's.
        Door::Room | Door::Webchat => match &caller.user {
            Some(user) => (user.user_id.clone(), user.username.clone()),
            None => (
                format!("guest-{:08x}", random_u64() as u32),
                "guest".to_string(),
            ),
        },
    };
    // Listening starts before access is checked and the history read, so nothing falls
    // between them: a room made private (or deleted) after the check is heard of by this
    // socket's `AccessChanged` (or `RoomDeleted`).
    // Without `since` or `seq`, the room's changes are new to the socket from here on:
    // read before listening starts, so every change it then hears comes after.
    let head = match (since, seq) {
        (None, None) => chat::changes::head(&state.db, room.as_str()).await?,
        _ => 0,
    };
    let events = state.hub.subscribe(room.as_str());
    // A room no one has written in yet is open to sockets, as every room of the Flask
    // original exists: the page of `/<new room>` goes live at once. Its socket holds its
    // hub channel only while open (the channel goes with its last listener), and sockets
    // per client are capped, so names made up by the thousand leave nothing behind.
    state.access.may_read(&caller, room.as_str()).await?;
    let peer = Arc::new(Peer { user_id, username });
    let own = state.hub.subscribe(&user_channel(&peer.user_id));
    // Without `since` or `seq`, a peer wants what comes from now on, nothing older: past
    // the room's newest message in the database, which this replica's hub may not have
    // heard of yet when it was committed on another one a moment ago.
    let db = &state.db;
    let replay = match (since, seq) {
        (_, Some(after)) => {
            let (resync, page) = chat::changes::resume(db, room.as_str(), after).await?;
            Replay {
                page,
                resync,
                floor: seq::message_id_at(after),
                seq: after,
            }
        }
        // The messages after `since`, and the room's other changes since the last of
        // them the client has, in one order: a change made while the replay was read is
        // in it, never skipped for coming before the newest message replayed.
        (Some(after), None) => Replay {
            page: chat::changes::between(
                db,
                room.as_str(),
                seq::of_message(after),
                None,
                chat::changes::PAGE,
            )
            .await?,
            resync: false,
            floor: after,
            seq: seq::of_message(after),
        },
        (None, None) => {
            let newest = chat::messages::last_id(db, room.as_str()).await?;
            Replay {
                page: Vec::new(),
                resync: false,
                floor: newest.max(state.hub.highest_seen()),
                seq: head,
            }
        }
    };
    let config = Config {
        max_message_size: Some(HARD_FRAME_LIMIT),
        max_frame_size: Some(HARD_FRAME_LIMIT),
        // Every frame is flushed as it is sent; no 128 KiB buffer per idle socket.
        write_buffer_size: 0,
        ..Config::default()
    };
    let ping_every = Duration::from_secs(state.settings.ping_secs.max(1));
    let speaks = match door {
        Door::ChatFlow { .. } => Speaks::ChatFlow,
        Door::Room => Speaks::AuthorPerFrame,
        Door::Webchat => Speaks::Webchat,
    };
    let session = Session {
        speaks,
        caller,
        frames: state.limiter.frames(),
        strikes: AtomicU32::new(0),
        state: state.inner().clone(),
        room,
        peer,
        ping_every,
        client,
        _lease: lease,
    };
    Ok(ws.config(config).channel(move |stream| {
        let run = session.run(stream, events, own, replay);
        tracing::debug!(bytes = std::mem::size_of_val(&run), "socket state");
        // The socket lives on in a task of its own, so that what Rocket holds for the
        // request that opened it (the request, hyper's header buffer, the dispatch future:
        // about 22 KB) is freed now instead of for as long as the socket stays open.
        tokio::spawn(run);
        Box::pin(async { Ok(()) })
    }))
}

struct Session {
    /// Which frames the socket takes and sends.
    speaks: Speaks,
    /// Who opened the socket; what it posts is posted as them.
    caller: Caller,
    state: SocketState,
    room: RoomName,
    peer: Arc<Peer>,
    ping_every: Duration,
    client: ClientAddr,
    /// This socket's frame bucket (none when limits are off), and how many frames in a
    /// row it refused.
    frames: Option<DefaultDirectRateLimiter>,
    strikes: AtomicU32,
    /// The socket's place among its client's sockets, given back when it closes.
    _lease: SocketLease,
}

enum Flow {
    Continue,
    Close(Option<CloseFrame<'static>>),
}

impl Session {
    async fn run(
        self,
        stream: rocket_ws::stream::DuplexStream,
        events: Subscription,
        mut own: Subscription,
        replay: Replay,
    ) {
        let (mut sink, mut source) = stream.split();
        let mut events = events;
        let mut sent = Sent::new(replay.floor, replay.seq);
        if replay.resync {
            let resync = ServerFrame::Resync {
                room_id: self.room.as_str(),
            };
            if send(&mut sink, to_text(&resync)).await.is_err() {
                return;
            }
        }
        if self
            .replay(&mut sink, &mut sent, replay.page)
            .await
            .is_err()
        {
            return;
        }
        let room = self.room.as_str();
        METRICS.websockets_open.inc();
        // Boxed, as the frame handling below: presence's database and Redis work would
        // otherwise be part of every idle socket's state.
        Box::pin(self.state.presence.socket_opened(&self.peer)).await;
        let joined_at = chrono::Utc::now();
        self.state.events.user_joined(room, &self.peer, joined_at);
        let announce = |hub: &dyn Hub| hub.listeners(room) <= self.state.settings.announce_limit;
        if announce(&*self.state.hub) {
            self.state.hub.publish(
                room,
                Event::Joined {
                    user: self.peer.clone(),
                    at: joined_at,
                },
            );
        }

        let mut lags: Vec<Instant> = Vec::new();
        let mut ping = tokio::time::interval(self.ping_every);
        ping.tick().await;
        let mut heard = Instant::now();
        let closing = self.state.lifecycle.closing();
        tokio::pin!(closing);
        let close = loop {
            let flow = tokio::select! {
                frame = source.next() => match frame {
                    Some(Ok(frame)) => {
                        heard = Instant::now();
                        // Boxed: the database work behind a frame would otherwise make every
                        // idle socket's state as large as its largest query.
                        match Box::pin(self.on_frame(frame)).await {
                            Reply::Nothing => Flow::Continue,
                            Reply::Send(value) => match send(&mut sink, value).await {
                                Ok(()) => Flow::Continue,
                                Err(()) => break None,
                            },
                            // The peer closed: its close frame is answered (queued
                            // by the protocol layer, sent by this flush), so the
                            // client sees a clean closing handshake.
                            Reply::Close => {
                                let _ = tokio::time::timeout(SEND_TIMEOUT, sink.flush()).await;
                                break None;
                            }
                            Reply::CloseWith(frame) => Flow::Close(Some(frame)),
                        }
                    }
                    // The peer went away, or broke the protocol (a frame over the hard limit).
                    _ => break None,
                },
                event = events.messages.recv() => match event {
                    Ok(Event::AccessChanged) => Box::pin(self.still_admitted()).await,
                    // Told, then let go: a room of the same name made later may be private.
                    Ok(event @ Event::RoomDeleted { .. }) => {
                        if let Some(value) = self.outgoing(&event, &mut sent) {
                            let _ = send(&mut sink, value).await;
                        }
                        Flow::Close(Some(CloseFrame {
                            code: CloseCode::from(CLOSE_ROOM_DELETED),
                            reason: "the room was deleted".into(),
                        }))
                    }
                    Ok(event) => match self.outgoing(&event, &mut sent) {
                        Some(value) => match send(&mut sink, value).await {
                            Ok(()) => Flow::Continue,
                            Err(()) => break None,
                        },
                        None => Flow::Continue,
                    },
                    // Events were missed: a burst (thousands joining at once) or a peer
                    // that reads slowly. Messages are read back from the database; a peer
                    // that keeps falling behind is told to reconnect with `since`.
                    Err(RecvError::Lagged(_)) => 'lagged: {
                        // A change of access may be among what was missed.
                        if let closed @ Flow::Close(_) = Box::pin(self.still_admitted()).await {
                            break 'lagged closed;
                        }
                        lags.retain(|at: &Instant| at.elapsed() < LAG_WINDOW);
                        lags.push(Instant::now());
                        let rows = if lags.len() > MAX_LAGS {
                            None
                        } else {
                            let after = sent.seq.min(seq::of_message(sent.resume_from()));
                            Box::pin(chat::changes::between(&self.state.db, room, after, None, chat::changes::PAGE)).await.ok()
                        };
                        match rows {
                            Some(rows) => match Box::pin(self.replay(&mut sink, &mut sent, rows)).await {
                                Ok(()) => Flow::Continue,
                                Err(()) => Flow::Close(None),
                            },
                            None => Flow::Close(Some(CloseFrame {
                                code: CloseCode::from(CLOSE_RECONNECT),
                                reason: format!("too slow: reconnect with seq={} or since={}", sent.seq, sent.resume_from()).into(),
                            })),
                        }
                    }
                    Err(RecvError::Closed) => Flow::Close(None),
                },
                // Typing, joins, leaves, the room's end, and the user's own notifications.
                signal = next_signal(&mut events.signals, &mut own.signals) => match signal {
                    Some(Event::TokensRevoked) if self.caller.user.is_some() => {
                        Flow::Close(Some(CloseFrame {
                            code: CloseCode::from(CLOSE_SIGN_IN),
                            reason: "signed out (or the password changed): sign in again".into(),
                        }))
                    }
                    Some(event) => match self.outgoing(&event, &mut sent) {
                        Some(value) => match send(&mut sink, value).await {
                            Ok(()) => Flow::Continue,
                            Err(()) => break None,
                        },
                        None => Flow::Continue,
                    },
                    None => Flow::Close(None),
                },
                () = &mut closing => Flow::Close(Some(CloseFrame {
                    code: CloseCode::from(CLOSE_RESTART),
                    reason: format!("service restart: reconnect with seq={} or since={}", sent.seq, sent.resume_from()).into(),
                })),
                _ = token_expiry(self.caller.expires_at) => Flow::Close(Some(CloseFrame {
                    code: CloseCode::from(CLOSE_SIGN_IN),
                    reason: "the token expired: sign in again".into(),
                })),
                _ = ping.tick() => {
                    if heard.elapsed() > self.ping_every * 2 + Duration::from_secs(5) {
                        Flow::Close(Some(CloseFrame { code: CloseCode::Away, reason: "no answer to ping".into() }))
                    } else {
                        // A change of access or a sign-out may have gone unheard (Redis
                        // away, a publish lost): each ping asks again, from the rule's
                        // and the account's caches as a rule.
                        match Box::pin(self.still_admitted()).await {
                            closed @ Flow::Close(_) => closed,
                            Flow::Continue => {
                                if send_raw(&mut sink, Message::Ping(Vec::new())).await.is_err() {
                                    break None;
                                }
                                Flow::Continue
                            }
                        }
                    }
                }
            };
            if let Flow::Close(frame) = flow {
                break frame;
            }
        };
        if let Some(frame) = close {
            let _ =
                tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
        }
        if announce(&*self.state.hub) {
            self.state.hub.publish(
                room,
                Event::Left {
                    user: self.peer.clone(),
                    at: chrono::Utc::now(),
                },
            );
        }
        Box::pin(self.state.presence.socket_closed(&self.peer, room)).await;
        METRICS.websockets_open.dec();
    }

    /// Sends `page` (what the peer missed, oldest first), then the pages after it by `seq`,
    /// one page read at a time; what was sent before is skipped. A page the database
    /// cannot give ends the replay: live changes go on, and a gap shows as a lag later.
    async fn replay(
        &self,
        sink: &mut Sink,
        sent: &mut Sent,
        mut page: Vec<Event>,
    ) -> Result<(), ()> {
        let room = self.room.as_str();
        loop {
            let full = page.len() as u64 >= chat::changes::PAGE;
            let Some(last) = page.last().and_then(Event::seq) else {
                return Ok(());
            };
            for event in &page {
                if let Some(value) = self.outgoing(event, sent) {
                    send(sink, value).await?;
                }
            }
            if !full {
                return Ok(());
            }
            page =
                match chat::changes::between(&self.state.db, room, last, None, chat::changes::PAGE)
                    .await
                {
                    Ok(next) => next,
                    Err(_) => return Ok(()),
                };
        }
    }

    /// Whether the caller's token still holds (not revoked by a sign-out or a new
    /// password: else [`CLOSE_SIGN_IN`]) and they may still read the room (after its
    /// members changed: else [`CLOSE_NO_ACCESS`]). A database that cannot say keeps the
    /// socket open: the next change, ping or reconnect checks again.
    async fn still_admitted(&self) -> Flow {
        if let (Some(user), Some(generation)) = (&self.caller.user, self.caller.token_generation) {
            if !self
                .state
                .accounts
                .still_holds(&user.user_id, generation)
                .await
            {
                return Flow::Close(Some(CloseFrame {
                    code: CloseCode::from(CLOSE_SIGN_IN),
                    reason: "signed out (or the password changed): sign in again".into(),
                }));
            }
        }
        match self
            .state
            .access
            .sees(&self.caller, self.room.as_str())
            .await
        {
            Ok(false) => Flow::Close(Some(CloseFrame {
                code: CloseCode::from(CLOSE_NO_ACCESS),
                reason: "you are no longer a member of this room".into(),
            })),
            _ => Flow::Continue,
        }
    }

    async fn on_frame(&self, frame: Message) -> Reply {
        if self.speaks == Speaks::Webchat {
            return self.on_webchat_frame(frame).await;
        }
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(_) => return Reply::Close,
            Message::Binary(_) => return error("binary frames are not supported: send JSON text"),
            _ => return Reply::Nothing, // ping and pong: tungstenite answers pings itself
        };
        if text.len() > MAX_FRAME {
            return error(&format!("frame is larger than {MAX_FRAME} bytes"));
        }
        match self.frame_budget() {
            Budget::Left => {}
            Budget::Over => return error("too many frames: slow down"),
            Budget::Flood(close) => return close,
        }
        let frame = match ClientFrame::parse(&text) {
            Ok(frame) => frame,
            Err(err) => return error(&err),
        };
        match frame {
            ClientFrame::Message {
                content,
                user_id,
                message_type,
                file_url,
                reply_to,
            } => match self
                .store(content, user_id, message_type, file_url, reply_to)
                .await
            {
                Ok(()) => Reply::Nothing, // it comes back through the hub, like everyone's
                Err(err) => error(&err.to_string()),
            },
            ClientFrame::Typing => self.typing(true).await,
            ClientFrame::StopTyping => self.typing(false).await,
        }
    }

    async fn typing(&self, active: bool) -> Reply {
        // A presence store that is away loses the REST view only; sockets are told.
        let _ = self
            .state
            .presence
            .typing(self.room.as_str(), self.peer.clone(), active)
            .await;
        Reply::Nothing
    }

    /// Whether the socket may send this frame: over its bucket it is told (or, on seed
    /// 002's socket, the frame is dropped) while it may be a burst, and closed with 1008
    /// once it is plainly a flood.
    fn frame_budget(&self) -> Budget {
        let Some(frames) = &self.frames else {
            return Budget::Left;
        };
        if frames.check().is_ok() {
            self.strikes.store(0, Ordering::Relaxed);
            return Budget::Left;
        }
        if self.strikes.fetch_add(1, Ordering::Relaxed) >= MAX_STRIKES {
            return Budget::Flood(Reply::CloseWith(CloseFrame {
                code: CloseCode::Policy,
                reason: "too many frames".into(),
            }));
        }
        Budget::Over
    }

    /// A frame of seed 002's socket: its protocol has no error frame, so one that is not a
    /// `{text, type, ts}` object is dropped (and counted); a flood of frames still ends
    /// with close 1008.
    async fn on_webchat_frame(&self, frame: Message) -> Reply {
        let text = match frame {
            Message::Text(text) if text.len() <= MAX_FRAME => text,
            Message::Close(_) => return Reply::Close,
            Message::Ping(_) | Message::Pong(_) => return Reply::Nothing,
            _ => return dropped("not a text frame of at most 64 KiB"),
        };
        match self.frame_budget() {
            Budget::Left => {}
            Budget::Over => return dropped("too many frames"),
            Budget::Flood(close) => return close,
        }
        let user = self.caller.user.as_ref().map(|u| u.user_id.as_str());
        let message = match webchat_message(
            &text,
            &self.peer.username,
            Some(self.peer.user_id.clone()),
            &self.state.limits,
        ) {
            Ok(message) => message,
            Err(err) => return dropped(&err.to_string()),
        };
        // A well-formed message the server will not take is the sender's to know.
        let posted = match self.state.limiter.check(Bucket::Post, self.client, user) {
            Ok(()) => {
                self.state
                    .delivery
                    .post(&self.caller, &self.room, message)
                    .await
            }
            Err(err) => Err(err),
        };
        match posted {
            Ok(_) => Reply::Nothing, // it comes back through the hub, like everyone's
            Err(err) => Reply::Send(to_text(&RelayFrame::not_sent(
                &err.to_string(),
                chrono::Utc::now().timestamp_millis(),
            ))),
        }
    }

    async fn store(
        &self,
        content: Option<String>,
        claimed: Option<String>,
        message_type: Option<String>,
        file_url: Option<String>,
        reply_to: Option<i64>,
    ) -> Result<()> {
        let user = self.caller.user.as_ref().map(|u| u.user_id.as_str());
        self.state.limiter.check(Bucket::Post, self.client, user)?;
        let (author_id, author_name) = self.author(claimed.as_deref())?;
        let mut message = chatflow_message(
            &author_name,
            Some(author_id),
            content.as_deref(),
            message_type.as_deref(),
            file_url,
            &self.state.limits,
        )?;
        message.reply_to = reply_to;
        self.state
            .delivery
            .post(&self.caller, &self.room, message)
            .await?;
        Ok(())
    }

    /// Who a message frame is from: the socket's peer, or on seed 004's socket the
    /// frame's `user_id` (signed in, it must be the caller's own: the identity wins).
    fn author(&self, claimed: Option<&str>) -> Result<(String, String)> {
        let authors_per_frame = self.speaks == Speaks::AuthorPerFrame;
        match claimed {
            Some(claimed) if authors_per_frame && self.caller.user.is_none() => {
                let user_id = names::user_id(claimed)?;
                let username = names::username(Some(&user_id), &self.state.limits)?;
                Ok((user_id, username))
            }
            Some(claimed) if authors_per_frame => {
                self.caller.acts_as(claimed)?;
                Ok((self.peer.user_id.clone(), self.peer.username.clone()))
            }
            _ => Ok((self.peer.user_id.clone(), self.peer.username.clone())),
        }
    }

    /// A message in the frame this socket's clients read.
    fn message_json(&self, row: &ChatMessage) -> String {
        match self.speaks {
            Speaks::Webchat => to_text(&RelayFrame::message(row)),
            Speaks::ChatFlow | Speaks::AuthorPerFrame => to_text(&ServerFrame::message(row)),
        }
    }

    /// The frame an event becomes for this peer, if any.
    fn outgoing(&self, event: &Event, sent: &mut Sent) -> Option<String> {
        let room = self.room.as_str();
        match event {
            // Already sent: with the history, or again after a Redis outage.
            Event::Message(row) if !sent.insert(row.id) => None,
            Event::Message(row) => {
                METRICS.messages_delivered.inc();
                sent.seq = sent.seq.max(seq::of_message(row.id));
                Some(self.message_json(row))
            }
            // Seed 002's clients know of messages only.
            _ if self.speaks == Speaks::Webchat => None,
            // Nobody needs to be told that they themselves are typing.
            Event::Typing { user, .. } if user.user_id == self.peer.user_id => None,
            Event::Typing { user, active } => {
                Some(to_text(&ServerFrame::typing(user, room, *active)))
            }
            Event::Joined { user, at } => {
                Some(to_text(&ServerFrame::presence(user, room, *at, true)))
            }
            Event::Left { user, at } => {
                Some(to_text(&ServerFrame::presence(user, room, *at, false)))
            }
            // The room's other changes, each once, in `seq` order.
            Event::MessageUpdated { seq, .. }
            | Event::Reaction { seq, .. }
            | Event::MessageDeleted { seq, .. }
            | Event::RoomDeleted { seq } => {
                if *seq <= sent.seq {
                    return None;
                }
                sent.seq = *seq;
                ServerFrame::of_change(event, room).map(|frame| to_text(&frame))
            }
            // Handled by the session: it checks whether its caller may still read, or
            // closes.
            Event::AccessChanged | Event::TokensRevoked => None,
            Event::Read {
                room_id,
                last_read_id,
            } => Some(to_text(&ServerFrame::Read {
                room_id,
                last_read_id: *last_read_id,
            })),
            Event::Notification(notification) => notification
                .as_object()
                .map(|fields| to_text(&ServerFrame::Notification(NotificationFrame { fields }))),
        }
    }
}

/// What a socket's frame bucket says of one more frame.
enum Budget {
    Left,
    Over,
    Flood(Reply),
}

enum Reply {
    Nothing,
    /// A frame's text.
    Send(String),
    Close,
    CloseWith(CloseFrame<'static>),
}

fn error(detail: &str) -> Reply {
    Reply::Send(to_text(&ServerFrame::Error { detail }))
}

/// A frame seed 002's socket drops: nothing is sent back (its protocol has no error
/// frame), the reason is logged.
fn dropped(reason: &str) -> Reply {
    METRICS.webchat_frames_dropped.inc();
    tracing::debug!(reason, "seed 002 frame dropped");
    Reply::Nothing
}

/// The next signal from the room or from the user's own channel. Signals missed in a
/// burst are skipped (there is nothing to recover: the API lists missed notifications);
/// `None` when a channel is gone.
async fn next_signal(
    room: &mut broadcast::Receiver<Event>,
    own: &mut broadcast::Receiver<Event>,
) -> Option<Event> {
    loop {
        let got = tokio::select! {
            event = room.recv() => event,
            event = own.recv() => event,
        };
        match got {
            Ok(event) => return Some(event),
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    }
}

/// Resolves once a token expiring at `expires_at` (Unix seconds; valid through that
/// second, as the token check counts it) no longer is; never without one.
pub(super) async fn token_expiry(expires_at: Option<u64>) {
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

type Sink = rocket::futures::stream::SplitSink<rocket_ws::stream::DuplexStream, Message>;

async fn send(sink: &mut Sink, frame: String) -> Result<(), ()> {
    send_raw(sink, Message::Text(frame)).await
}

/// A peer that does not take a frame within [`SEND_TIMEOUT`] has stopped reading: it is
/// dropped rather than let its backlog grow.
async fn send_raw(sink: &mut Sink, frame: Message) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

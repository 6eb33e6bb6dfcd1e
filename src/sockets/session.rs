//! One WebSocket session: the replay, then live changes and the client's frames until
//! either side closes. It reads and writes `rocket_ws::Message`s over any stream and sink,
//! so it runs the same on an upgraded connection (`http::ws`) and on channels (tests).
//!
//! Client frames are `realtime::ClientFrame` (the room dialects) or `RelayFrame` (the
//! relay); what it sends is `ServerFrame` or `RelayFrame`. A frame it cannot take is
//! answered with an `error` frame (dropped, on the relay, whose protocol has none) and the
//! socket stays; a flood of them closes it with 1008.

use super::{AfterLag, Dialect, Follower, ShutOut, Sockets, Start};
use crate::domain::message::{relay_message, room_message as room_frame_message};
use crate::domain::{names, Caller, Message as ChatMessage, Peer, Result};
use crate::metrics::METRICS;
use crate::realtime::frames::to_text;
use crate::realtime::{ClientFrame, Event, Hub, RelayFrame, ServerFrame};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use governor::DefaultDirectRateLimiter;
use rocket_ws::frame::{CloseCode, CloseFrame};
use rocket_ws::Message;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};

/// Largest client frame taken; a larger one gets an error frame.
pub const MAX_FRAME: usize = 64 * 1024;
/// A write the peer does not take within this long means it stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code telling a client it fell behind and should reconnect with `since` or `seq`.
pub const CLOSE_RECONNECT: u16 = 4000;
/// Close code telling a client its token expired: sign in again, then reconnect.
pub const CLOSE_SIGN_IN: u16 = 4001;
/// Close code telling a client it may no longer read the room (removed from a private
/// room): reconnecting will not help.
pub const CLOSE_NO_ACCESS: u16 = 4003;
/// Close code telling a client the room was deleted (after its `room_deleted` frame).
pub const CLOSE_ROOM_DELETED: u16 = 4004;
/// Close code of a server that is stopping (1012, "service restart"): reconnect, with
/// `since` or `seq`, and another replica answers.
pub const CLOSE_RESTART: u16 = 1012;
/// Frames refused in a row before a socket is closed with 1008 (policy violation).
const MAX_STRIKES: u32 = 20;

/// Whether one more message may be posted (the post bucket of the client or user).
pub type PostBudget = Box<dyn Fn() -> Result<()> + Send + Sync>;

pub struct Session {
    /// Which frames the socket takes and sends.
    dialect: Dialect,
    /// Who is on the other end: the author of what it posts (unless a frame names
    /// another, where the dialect allows), whose presence and join it makes.
    peer: Arc<Peer>,
    /// This socket's frame bucket (none when limits are off), and how many frames in a
    /// row it refused.
    frames: Option<DefaultDirectRateLimiter>,
    strikes: AtomicU32,
    posts: PostBudget,
}

enum Flow {
    Continue,
    Close(Option<CloseFrame<'static>>),
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

fn close(code: u16, reason: impl Into<std::borrow::Cow<'static, str>>) -> Flow {
    Flow::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

fn shut_out(why: ShutOut) -> Flow {
    let code = match why {
        ShutOut::SignedOut => CLOSE_SIGN_IN,
        ShutOut::NoLongerMember => CLOSE_NO_ACCESS,
    };
    close(code, why.reason())
}

impl Session {
    pub fn new(
        dialect: Dialect,
        peer: Peer,
        frames: Option<DefaultDirectRateLimiter>,
        posts: PostBudget,
    ) -> Self {
        Session {
            dialect,
            peer: Arc::new(peer),
            frames,
            strikes: AtomicU32::new(0),
            posts,
        }
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Runs the session to its end: `start`'s replay, then live changes and the client's
    /// frames, until either side closes, the caller is shut out or the server stops.
    pub async fn run<S, K, E>(
        self,
        sockets: Arc<Sockets>,
        caller: Caller,
        room: crate::domain::RoomName,
        start: Start,
        mut source: S,
        mut sink: K,
    ) where
        S: Stream<Item = std::result::Result<Message, E>> + Unpin,
        K: Sink<Message> + Unpin,
    {
        let Start {
            mut events,
            own,
            page,
            resync,
            sent,
        } = start;
        let mut own = own;
        let mut follower = Follower::new(sockets.clone(), caller, room, sent);
        if resync {
            let resync = ServerFrame::Resync {
                room_id: follower.room.as_str(),
            };
            if send(&mut sink, to_text(&resync)).await.is_err() {
                return;
            }
        }
        if self.replay(&mut sink, &mut follower, page).await.is_err() {
            return;
        }
        let room = follower.room.clone();
        let room = room.as_str();
        METRICS.websockets_open.inc();
        // Boxed, as the frame handling below: presence's database and Redis work would
        // otherwise be part of every idle socket's state.
        Box::pin(sockets.presence.socket_opened(&self.peer)).await;
        let joined_at = chrono::Utc::now();
        sockets.events.user_joined(room, &self.peer, joined_at);
        let announce = |hub: &dyn Hub| hub.listeners(room) <= sockets.settings.announce_limit;
        if announce(&*sockets.hub) {
            sockets.hub.publish(
                room,
                Event::Joined {
                    user: self.peer.clone(),
                    at: joined_at,
                },
            );
        }

        let ping_every = sockets.settings.ping_every();
        let mut ping = tokio::time::interval(ping_every);
        ping.tick().await;
        let mut heard = Instant::now();
        let closing = sockets.lifecycle.closing();
        tokio::pin!(closing);
        let expires_at = follower.caller.expires_at;
        let close_frame = loop {
            let flow = tokio::select! {
                frame = source.next() => match frame {
                    Some(Ok(frame)) => {
                        heard = Instant::now();
                        // Boxed: the database work behind a frame would otherwise make every
                        // idle socket's state as large as its largest query.
                        match Box::pin(self.on_frame(&sockets, &follower, frame)).await {
                            Reply::Nothing => Flow::Continue,
                            Reply::Send(text) => match send(&mut sink, text).await {
                                Ok(()) => Flow::Continue,
                                Err(()) => break None,
                            },
                            // The peer closed: its close frame is answered (queued by the
                            // protocol layer, sent by this flush), so the client sees a
                            // clean closing handshake.
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
                    Ok(Event::AccessChanged) => match Box::pin(follower.shut_out()).await {
                        Some(why) => shut_out(why),
                        None => Flow::Continue,
                    },
                    // Told, then let go: a room of the same name made later may be private.
                    Ok(event @ Event::RoomDeleted { .. }) => {
                        if let Some(text) = self.outgoing(&event, &mut follower) {
                            let _ = send(&mut sink, text).await;
                        }
                        close(CLOSE_ROOM_DELETED, "the room was deleted")
                    }
                    Ok(event) => match self.outgoing(&event, &mut follower) {
                        Some(text) => match send(&mut sink, text).await {
                            Ok(()) => Flow::Continue,
                            Err(()) => break None,
                        },
                        None => Flow::Continue,
                    },
                    // Events were missed: a burst (thousands joining at once) or a peer
                    // that reads slowly.
                    Err(RecvError::Lagged(_)) => match Box::pin(follower.after_lag()).await {
                        AfterLag::Missed(rows) => {
                            match Box::pin(self.replay(&mut sink, &mut follower, rows)).await {
                                Ok(()) => Flow::Continue,
                                Err(()) => Flow::Close(None),
                            }
                        }
                        AfterLag::ShutOut(why) => shut_out(why),
                        AfterLag::Reconnect => close(CLOSE_RECONNECT, format!(
                            "too slow: reconnect with seq={} or since={}",
                            follower.sent.seq, follower.sent.resume_from()
                        )),
                        AfterLag::Unreadable => close(CLOSE_RECONNECT, format!(
                            "missed changes could not be read: reconnect with seq={} or since={}",
                            follower.sent.seq, follower.sent.resume_from()
                        )),
                    },
                    Err(RecvError::Closed) => Flow::Close(None),
                },
                // Typing, joins, leaves, and the user's own notifications.
                signal = next_signal(&mut events.signals, own.as_mut().map(|own| &mut own.signals)) => match signal {
                    Some(Event::TokensRevoked) if follower.caller.user.is_some() => {
                        shut_out(ShutOut::SignedOut)
                    }
                    Some(event) => match self.outgoing(&event, &mut follower) {
                        Some(text) => match send(&mut sink, text).await {
                            Ok(()) => Flow::Continue,
                            Err(()) => break None,
                        },
                        None => Flow::Continue,
                    },
                    None => Flow::Close(None),
                },
                () = &mut closing => close(CLOSE_RESTART, format!(
                    "service restart: reconnect with seq={} or since={}",
                    follower.sent.seq, follower.sent.resume_from()
                )),
                _ = super::token_expiry(expires_at) => {
                    close(CLOSE_SIGN_IN, "the token expired: sign in again")
                }
                _ = ping.tick() => {
                    if heard.elapsed() > ping_every * 2 + Duration::from_secs(5) {
                        Flow::Close(Some(CloseFrame { code: CloseCode::Away, reason: "no answer to ping".into() }))
                    } else {
                        // A change of access or a sign-out may have gone unheard (Redis
                        // away, a publish lost): each ping asks again, from the rule's
                        // and the account's caches as a rule.
                        match Box::pin(follower.shut_out()).await {
                            Some(why) => shut_out(why),
                            None => {
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
        if let Some(frame) = close_frame {
            let _ =
                tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
        }
        if announce(&*sockets.hub) {
            sockets.hub.publish(
                room,
                Event::Left {
                    user: self.peer.clone(),
                    at: chrono::Utc::now(),
                },
            );
        }
        Box::pin(sockets.presence.socket_closed(&self.peer, room)).await;
        METRICS.websockets_open.dec();
    }

    /// Sends `page` (what the peer missed, oldest first), then the pages after it by `seq`;
    /// what was sent before is skipped. A page the database cannot give ends the replay:
    /// live changes go on, and a gap shows as a lag later.
    async fn replay<K: Sink<Message> + Unpin>(
        &self,
        sink: &mut K,
        follower: &mut Follower,
        mut page: Vec<Event>,
    ) -> std::result::Result<(), ()> {
        loop {
            for event in &page {
                if let Some(text) = self.outgoing(event, follower) {
                    send(sink, text).await?;
                }
            }
            page = match follower.next_page(&page).await {
                Ok(Some(next)) => next,
                Ok(None) | Err(_) => return Ok(()),
            };
        }
    }

    async fn on_frame(&self, sockets: &Sockets, follower: &Follower, frame: Message) -> Reply {
        if self.dialect == Dialect::Relay {
            return self.on_relay_frame(sockets, follower, frame).await;
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
            } => {
                let posted = self
                    .store(
                        sockets,
                        follower,
                        content,
                        user_id,
                        message_type,
                        file_url,
                        reply_to,
                    )
                    .await;
                match posted {
                    Ok(()) => Reply::Nothing, // it comes back through the hub, like everyone's
                    Err(err) => error(&err.to_string()),
                }
            }
            ClientFrame::Typing => self.typing(sockets, follower, true).await,
            ClientFrame::StopTyping => self.typing(sockets, follower, false).await,
        }
    }

    async fn typing(&self, sockets: &Sockets, follower: &Follower, active: bool) -> Reply {
        // A presence store that is away loses the REST view only; sockets are told.
        let room = follower.room.as_str();
        let _ = sockets
            .presence
            .typing(room, self.peer.clone(), active)
            .await;
        Reply::Nothing
    }

    /// Whether the socket may send this frame: over its bucket it is told (or, on the
    /// relay, the frame is dropped) while it may be a burst, and closed with 1008 once it
    /// is plainly a flood.
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

    /// A frame of the relay: its protocol has no error frame, so one that is not a
    /// `{text, type, ts}` object is dropped (and counted); a flood of frames still ends
    /// with close 1008.
    async fn on_relay_frame(
        &self,
        sockets: &Sockets,
        follower: &Follower,
        frame: Message,
    ) -> Reply {
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
        let message = match relay_message(
            &text,
            &self.peer.username,
            Some(self.peer.user_id.clone()),
            &sockets.limits,
        ) {
            Ok(message) => message,
            Err(err) => return dropped(&err.to_string()),
        };
        // A well-formed message the server will not take is the sender's to know.
        let posted = match (self.posts)() {
            Ok(()) => {
                sockets
                    .delivery
                    .post(&follower.caller, &follower.room, message)
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

    #[allow(clippy::too_many_arguments)] // the frame's fields, as the client sent them
    async fn store(
        &self,
        sockets: &Sockets,
        follower: &Follower,
        content: Option<String>,
        claimed: Option<String>,
        message_type: Option<String>,
        file_url: Option<String>,
        reply_to: Option<i64>,
    ) -> Result<()> {
        (self.posts)()?;
        let (author_id, author_name) =
            self.author(sockets, &follower.caller, claimed.as_deref())?;
        let mut message = room_frame_message(
            &author_name,
            Some(author_id),
            content.as_deref(),
            message_type.as_deref(),
            file_url,
            &sockets.limits,
        )?;
        message.reply_to = reply_to;
        sockets
            .delivery
            .post(&follower.caller, &follower.room, message)
            .await?;
        Ok(())
    }

    /// Who a message frame is from: the socket's peer, or where each frame names its
    /// author, the frame's `user_id` (signed in, it must be the caller's own: the identity
    /// wins).
    fn author(
        &self,
        sockets: &Sockets,
        caller: &Caller,
        claimed: Option<&str>,
    ) -> Result<(String, String)> {
        let authors_per_frame = self.dialect == Dialect::AuthorPerFrame;
        match claimed {
            Some(claimed) if authors_per_frame && caller.user.is_none() => {
                let user_id = names::user_id(claimed)?;
                let username = names::username(Some(&user_id), &sockets.limits)?;
                Ok((user_id, username))
            }
            Some(claimed) if authors_per_frame => {
                caller.acts_as(claimed)?;
                Ok((self.peer.user_id.clone(), self.peer.username.clone()))
            }
            _ => Ok((self.peer.user_id.clone(), self.peer.username.clone())),
        }
    }

    /// A message in the frame this socket's clients read.
    fn message_frame(&self, row: &ChatMessage) -> String {
        match self.dialect {
            Dialect::Relay => to_text(&RelayFrame::message(row)),
            Dialect::OneAuthor | Dialect::AuthorPerFrame => to_text(&ServerFrame::message(row)),
        }
    }

    /// The frame an event becomes for this peer, if any.
    fn outgoing(&self, event: &Event, follower: &mut Follower) -> Option<String> {
        // The relay's clients know of messages only.
        if self.dialect == Dialect::Relay && !matches!(event, Event::Message(_)) {
            return None;
        }
        // Already sent: with the history, or again after a Redis outage.
        if !follower.take(event) {
            return None;
        }
        let room = follower.room.as_str();
        match event {
            Event::Message(row) => Some(self.message_frame(row)),
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
            Event::MessageUpdated { .. }
            | Event::Reaction { .. }
            | Event::MessageDeleted { .. }
            | Event::RoomDeleted { .. } => {
                ServerFrame::of_change(event, room).map(|frame| to_text(&frame))
            }
            // The session checks whether its caller may still read, or closes.
            Event::AccessChanged | Event::TokensRevoked => None,
            Event::Read {
                room_id,
                last_read_id,
            } => Some(to_text(&ServerFrame::Read {
                room_id,
                last_read_id: *last_read_id,
            })),
            Event::Notification(notification) => {
                Some(to_text(&ServerFrame::Notification(notification)))
            }
        }
    }
}

fn error(detail: &str) -> Reply {
    Reply::Send(to_text(&ServerFrame::Error { detail }))
}

/// A frame the relay drops: nothing is sent back (its protocol has no error frame), the
/// reason is logged.
fn dropped(reason: &str) -> Reply {
    METRICS.relay_frames_dropped.inc();
    tracing::debug!(reason, "relay frame dropped");
    Reply::Nothing
}

/// The next signal from the room or from the user's own channel. Signals missed in a
/// burst are skipped (there is nothing to recover: the API lists missed notifications);
/// `None` when a channel is gone.
async fn next_signal(
    room: &mut broadcast::Receiver<Event>,
    mut own: Option<&mut broadcast::Receiver<Event>>,
) -> Option<Event> {
    loop {
        let got = tokio::select! {
            event = room.recv() => event,
            Some(event) = async {
                match own.as_mut() {
                    Some(own) => Some(own.recv().await),
                    None => None,
                }
            } => event,
        };
        match got {
            Ok(event) => return Some(event),
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    }
}

async fn send<K: Sink<Message> + Unpin>(
    sink: &mut K,
    frame: String,
) -> std::result::Result<(), ()> {
    send_raw(sink, Message::Text(frame)).await
}

/// A peer that does not take a frame within [`SEND_TIMEOUT`] has stopped reading: it is
/// dropped rather than let its backlog grow.
async fn send_raw<K: Sink<Message> + Unpin>(
    sink: &mut K,
    frame: Message,
) -> std::result::Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

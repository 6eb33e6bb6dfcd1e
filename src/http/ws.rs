//! The sockets' routes: the guards and the upgrade; the session itself is
//! `sockets::Session`. `WS /ws/<room_id>/<user_id>?username=&since=`: the room socket, one
//! author per socket; `WS /ws/<room_id>?since=`, the room socket whose message frames
//! name their author (`{"type":"message","content","user_id"}`), answered in the same
//! shape; and `WS /ws`, the single-room relay (the `webchat_room`), which speaks only
//! `{text, type, ts}` (see [`connect_webchat`]).
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
use super::limits::Bucket;
use super::origin::SiteOrigin;
use super::params::{refused, Cursor};
use super::App;
use crate::domain::{Caller, Error, Result, RoomName};
use crate::sockets::{Asked, Resume, Session};
use rocket::futures::StreamExt;
use rocket::{form, get, FromForm, State};
use rocket_ws::{Channel, Config, WebSocket};

/// Frames past this are not even read: the connection is closed.
const HARD_FRAME_LIMIT: usize = 1024 * 1024;

super::mount![connect, connect_room, connect_webchat];

/// Where a room socket starts: after a message, after a change, or (neither) from now on.
#[derive(FromForm, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResumeParams {
    /// First every message after this id, then live ones.
    #[param(inline, required = false)]
    since: Cursor,
    /// First every change of the room after this seq (messages, edits, reactions,
    /// deletions), then live ones.
    #[param(inline, required = false)]
    seq: Cursor,
}

/// Where the relay's socket starts: after a message, or from now on.
#[derive(FromForm, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SinceParams {
    /// First every message after this id, then live ones.
    #[param(inline, required = false)]
    since: Cursor,
}

/// The room socket. The client sends `ClientFrame`s (among this document's
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
        ResumeParams),
    responses((status = 101, description = "switching to WebSocket"), (status = 400), (status = 401), (status = 403),
        (status = 404, description = "a private room the caller is not in"), (status = 429), (status = 503)))]
#[get("/ws/<room_id>/<user_id>?<username>&<resume..>")]
#[allow(clippy::too_many_arguments)] // each is a part of the request Rocket hands in
pub async fn connect<'r>(
    ws: WebSocket,
    room_id: Result<RoomName>,
    user_id: &'r str,
    username: Option<&'r str>,
    resume: form::Result<'r, ResumeParams>,
    origin: Result<SiteOrigin>,
    client: ClientAddr,
    caller: Caller,
    app: &'r State<App>,
) -> Result<Channel<'r>> {
    let asked = Asked::AsUser { user_id, username };
    let from = resume.map(|r| (r.since, r.seq));
    open(ws, room_id, asked, from, origin, client, caller, app).await
}

/// The room socket with an author per frame: the same frames and answers, but each
/// message frame names its author, `{"type":"message","content","user_id"}` (signed in,
/// it must be the caller's own id, else an error frame; absent: the socket's own id, the
/// caller's or a guest's).
#[utoipa::path(tag = "realtime",
    params(("room_id" = String, Path),
        ("token" = Option<String>, Query, description = "a token, for clients that cannot send headers on a socket"),
        ResumeParams),
    responses((status = 101, description = "switching to WebSocket"), (status = 400), (status = 401), (status = 403),
        (status = 404, description = "a private room the caller is not in"), (status = 429), (status = 503)))]
#[get("/ws/<room_id>?<resume..>")]
#[allow(clippy::too_many_arguments)]
pub async fn connect_room<'r>(
    ws: WebSocket,
    room_id: Result<RoomName>,
    resume: form::Result<'r, ResumeParams>,
    origin: Result<SiteOrigin>,
    client: ClientAddr,
    caller: Caller,
    app: &'r State<App>,
) -> Result<Channel<'r>> {
    let from = resume.map(|r| (r.since, r.seq));
    open(ws, room_id, Asked::Room, from, origin, client, caller, app).await
}

/// The relay socket: one room (`webchat_room`). A text frame that is exactly
/// `{"text", "type", "ts"}` (strings and an integer: `RelayIn`) is posted, and comes back as that
/// same object to every socket of the room, the sender's too, on every replica; any other
/// frame is dropped and the socket stays open. Messages from other doors arrive as
/// `{"text": "<username>: <text>", "type": "message", "ts": <ms>}`. A message the server
/// refuses (too many, a database that is away) is answered to its sender alone with
/// `{"text": "[not sent: <reason>]", "type": "error", "ts": <ms>}`, which its page shows
/// as a line. `since=<id>` replays what came after a known message, as on the others.
#[utoipa::path(tag = "realtime",
    params(("token" = Option<String>, Query, description = "a token, for clients that cannot send headers on a socket"), SinceParams),
    responses((status = 101, description = "switching to WebSocket"), (status = 400), (status = 401), (status = 403),
        (status = 200, description = "asked without an upgrade: the chat page of the room named ws, as any /<room> (Rocket hands the request on)", content_type = "text/html"),
        (status = 404, description = "the webchat room is private and the caller is not in it"), (status = 429), (status = 503)))]
#[get("/ws?<resume..>")]
pub async fn connect_webchat<'r>(
    ws: WebSocket,
    resume: form::Result<'r, SinceParams>,
    origin: Result<SiteOrigin>,
    client: ClientAddr,
    caller: Caller,
    app: &'r State<App>,
) -> Result<Channel<'r>> {
    let room = Ok(app.sockets.relay_room.clone());
    let from = resume.map(|r| (r.since, Cursor(None)));
    open(ws, room, Asked::Relay, from, origin, client, caller, app).await
}

/// Opens a socket: the guards' checks (origin, a server that is not stopping, the
/// client's socket cap, the query), then `Sockets` says who is there and what it is sent
/// first, and the session runs in a task of its own.
#[allow(clippy::too_many_arguments)]
async fn open<'r>(
    ws: WebSocket,
    room: Result<RoomName>,
    asked: Asked<'_>,
    from: form::Result<'_, (Cursor, Cursor)>,
    origin: Result<SiteOrigin>,
    client: ClientAddr,
    caller: Caller,
    app: &'r State<App>,
) -> Result<Channel<'r>> {
    origin?;
    if app.sockets.lifecycle.stopping() {
        return Err(Error::Unavailable(
            "the server is restarting: connect again".into(),
        ));
    }
    let lease = app.limiter.open_socket(client)?;
    let room = room?;
    let (since, seq) = from.map_err(refused)?;
    let resume = Resume::of(since.0, seq.0)?;
    let peer = app.sockets.peer(&caller, asked).await?;
    let start = app
        .sockets
        .start(&caller, &room, Some(&peer.user_id), resume)
        .await?;
    let posts = {
        let limiter = app.limiter.clone();
        let user = caller.user.as_ref().map(|user| user.user_id.clone());
        Box::new(move || limiter.check(Bucket::Post, client, user.as_deref()))
    };
    let session = Session::new(asked.dialect(), peer, app.limiter.frames(), posts);
    let sockets = app.sockets.clone();
    let config = Config {
        max_message_size: Some(HARD_FRAME_LIMIT),
        max_frame_size: Some(HARD_FRAME_LIMIT),
        // Every frame is flushed as it is sent; no 128 KiB buffer per idle socket.
        write_buffer_size: 0,
        ..Config::default()
    };
    Ok(ws.config(config).channel(move |stream| {
        let (sink, source) = stream.split();
        let run = async move {
            session
                .run(sockets, caller, room, start, source, sink)
                .await;
            // The socket's place among its client's sockets, given back as it closes.
            drop(lease);
        };
        tracing::debug!(bytes = std::mem::size_of_val(&run), "socket state");
        // The socket lives on in a task of its own, so that what Rocket holds for the
        // request that opened it (the request, hyper's header buffer, the dispatch future:
        // about 22 KB) is freed now instead of for as long as the socket stays open.
        tokio::spawn(run);
        Box::pin(async { Ok(()) })
    }))
}

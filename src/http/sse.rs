//! `GET /api/chat/rooms/<id>/events`: a room's changes as server-sent events, for clients
//! that would rather not speak WebSocket (a browser's `EventSource`, `curl -N`).
//!
//! Each change of the room (a message, an edit, a reaction added or taken off, a message
//! or the room deleted) is one event: the room socket's frame as JSON in `data:`, its
//! `seq` (`domain::seq`) in `id:`. A client that comes back with the last id it saw
//! (`Last-Event-ID`, which `EventSource` sends by itself, or `?seq=`) gets every change
//! after it, then live ones, each once, on any replica: the room socket's way of doing it,
//! with the same `sockets::Follower`. Typing, joins and the user's own notifications are
//! not sent: they are no change of the room, and have no `seq` to resume from.
//!
//! A comment line (`:`) every `ws_ping_secs` (25 s) keeps proxies from closing an idle
//! stream, and is how a client that went away is noticed (Rocket learns of it only when it
//! writes): its stream, and its place among its client's sockets, go at the next one. When
//! the server stops, each stream ends after a `retry:` field, and `EventSource` reconnects,
//! through the balancer, to another replica.

use super::client::ClientAddr;
use super::limits::SocketLease;
use super::params::{refused, Cursor};
use super::App;
use crate::domain::{Caller, Error, Result, RoomName};
use crate::realtime::{Event as Change, ServerFrame, Subscription};
use crate::sockets::{token_expiry, AfterLag, Follower, Resume, ShutOut, Start};
use rocket::futures::Stream;
use rocket::request::{self, FromRequest, Request};
use rocket::response::stream::{Event, EventStream};
use rocket::response::{self as rocket_response, Responder};
use rocket::{form, get, FromForm, State};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

super::mount![room_events];

/// Where a stream starts, when `Last-Event-ID` does not say.
#[derive(FromForm, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// First every change of the room after this seq, then live ones.
    #[param(inline, required = false)]
    seq: Cursor,
}

/// How long a client told to `retry` waits before it reconnects (`EventSource` reads it
/// from the `retry:` field the stream ends with).
pub const RETRY: Duration = Duration::from_secs(1);

/// The room's changes as server-sent events (`text/event-stream`): each change the room's
/// sockets are sent (`message`, `message_updated`, `reaction_added`, `reaction_removed`,
/// `message_deleted`, `room_deleted`) as its JSON in `data:`, with `id:` its `seq`. With
/// `Last-Event-ID` (or `seq`): first every change after that `seq`, oldest first, each
/// once, then live ones; neither: changes from now on. Asked from before what is kept
/// (`change_log_days`), a `{"type":"resync","room_id"}` event (no id) comes first: reload
/// the history. Both given, the header wins: it is the one `EventSource` keeps up to date
/// when it reconnects to the same URL. A `:` comment line comes every 25 s; the stream ends
/// after `room_deleted`, when the caller may no longer read the room, and when the server
/// stops (after a `retry:` field: reconnect). The room socket's rules and caps apply: a
/// stream counts among the client's sockets (`sockets_per_client`).
#[utoipa::path(tag = "chat",
    params(("id" = String, Path, description = "the room"), EventsParams,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "the id of the last event the client has; wins over seq")),
    responses(
        (status = 200, description = "the room's changes, as server-sent events, until the room is deleted, the caller may no longer read it, or the server stops", content_type = "text/event-stream", body = String),
        (status = 400, description = "a room name, seq or Last-Event-ID the route does not take"),
        (status = 401), (status = 404, description = "a private room the caller is not in"),
        (status = 429, description = "this address holds as many sockets and streams as it may"),
        (status = 503, description = "the server is stopping (connect again, elsewhere), or the database is away")))]
#[get("/rooms/<id>/events?<query..>")]
pub async fn room_events<'r>(
    id: Result<RoomName>,
    query: form::Result<'r, EventsParams>,
    last_event_id: LastEventId<'r>,
    client: ClientAddr,
    caller: Caller,
    app: &'r State<App>,
) -> Result<Streamed<impl Stream<Item = Event> + Send + 'static>> {
    if app.sockets.lifecycle.stopping() {
        return Err(Error::Unavailable(
            "the server is restarting: connect again".into(),
        ));
    }
    let room = id?;
    let asked = query.map_err(refused)?.seq.0;
    let after = seq_of("Last-Event-ID", last_event_id.0)?.or(asked);
    let lease = app.limiter.open_socket(client)?;
    let own = caller.user.as_ref().map(|user| user.user_id.clone());
    let resume = after.map_or(Resume::Now, Resume::AfterSeq);
    let Start {
        events,
        own,
        page,
        resync,
        sent,
    } = app
        .sockets
        .start(&caller, &room, own.as_deref(), resume)
        .await?;
    let every = app.sockets.settings.ping_every();
    let reader = Reader {
        follower: Follower::new(app.sockets.clone(), caller, room, sent),
        _lease: lease,
    };
    let live = Live { events, own };
    Ok(Streamed(
        changes(reader, live, page, resync, every).heartbeat(every),
    ))
}

/// The `Last-Event-ID` header as sent (`EventSource` sends the last `id:` it saw when it
/// reconnects); checked by the route, so a bad one is a 400 with its reason.
pub struct LastEventId<'r>(Option<&'r str>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LastEventId<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        request::Outcome::Success(LastEventId(req.headers().get_one("Last-Event-ID")))
    }
}

/// A `seq` in a header, as given: a whole number, 0 or more (`params::Cursor` reads the
/// query's).
fn seq_of(name: &str, raw: Option<&str>) -> Result<Option<i64>> {
    raw.map(|raw| {
        raw.parse::<i64>()
            .ok()
            .filter(|seq| *seq >= 0)
            .ok_or_else(|| {
                Error::bad_request(format!("{name} must be a seq: a whole number, 0 or more"))
            })
    })
    .transpose()
}

/// An event stream, with `X-Accel-Buffering: no` (nginx then passes each event on at once,
/// whatever its location's `proxy_buffering`); Rocket's own adds `Cache-Control: no-cache`.
pub struct Streamed<S>(EventStream<S>);

impl<'r, S: Stream<Item = Event> + Send + 'r> Responder<'r, 'r> for Streamed<S> {
    fn respond_to(self, req: &'r Request<'_>) -> rocket_response::Result<'r> {
        let mut response = self.0.respond_to(req)?;
        response.set_raw_header("X-Accel-Buffering", "no");
        Ok(response)
    }
}

/// What a stream holds on to once the request's handler returned.
struct Reader {
    follower: Follower,
    /// The stream's place among its client's sockets, given back when it ends.
    _lease: SocketLease,
}

impl Reader {
    /// The event a change becomes, if it is one this reader has not been sent. Its id is
    /// the highest `seq` sent so far, which is its own as changes come in `seq` order: a
    /// client resuming from it misses nothing and gets nothing twice.
    fn outgoing(&mut self, change: &Change) -> Option<Event> {
        let frame = ServerFrame::of_change(change, self.follower.room.as_str())?;
        let event = Event::json(&frame);
        self.follower
            .take(change)
            .then(|| event.id(self.follower.sent.seq.to_string()))
    }
}

/// What a stream listens to: its room, and the caller's own channel when signed in.
struct Live {
    events: Subscription,
    own: Option<Subscription>,
}

/// What woke a stream.
enum Woken {
    Change(std::result::Result<Change, RecvError>),
    Check,
    Revoked,
    Closing,
    Expired,
}

/// The stream: the resync notice or the replay, then live changes, until the room is
/// deleted, the caller is shut out, the server stops or the client goes.
fn changes(
    mut reader: Reader,
    mut live: Live,
    page: Vec<Change>,
    resync: bool,
    check_every: Duration,
) -> EventStream<impl Stream<Item = Event> + Send + 'static> {
    EventStream! {
        if resync {
            yield Event::json(&ServerFrame::Resync { room_id: reader.follower.room.as_str() });
        }
        let mut pending = page;
        let mut check = tokio::time::interval(check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        let sockets = reader.follower.sockets.clone();
        let closing = sockets.lifecycle.closing();
        tokio::pin!(closing);
        let expires_at = reader.follower.caller.expires_at;
        loop {
            // What was missed, a page at a time, read on by `seq`. A page the database
            // cannot give ends the stream: the client comes back with its last id.
            while !pending.is_empty() {
                let mut deleted = false;
                for change in &pending {
                    if let Some(event) = reader.outgoing(change) {
                        deleted |= matches!(change, Change::RoomDeleted { .. });
                        yield event;
                    }
                }
                if deleted {
                    return;
                }
                pending = match reader.follower.next_page(&pending).await {
                    Ok(next) => next.unwrap_or_default(),
                    Err(err) => {
                        tracing::warn!(error = %err, room = reader.follower.room.as_str(), "event stream: replay cut short");
                        return;
                    }
                };
            }
            let woken = tokio::select! {
                change = live.events.messages.recv() => Woken::Change(change),
                _ = check.tick() => Woken::Check,
                () = revoked(&mut live.own) => Woken::Revoked,
                () = &mut closing => Woken::Closing,
                () = token_expiry(expires_at) => Woken::Expired,
            };
            match woken {
                Woken::Change(Ok(Change::AccessChanged)) | Woken::Check => {
                    if let Some(why) = reader.follower.shut_out().await {
                        yield Event::comment(why.reason());
                        return;
                    }
                }
                Woken::Change(Ok(change)) => {
                    if let Some(event) = reader.outgoing(&change) {
                        yield event;
                    }
                    // Told, then let go: a room of the same name made later may be private.
                    if matches!(change, Change::RoomDeleted { .. }) {
                        return;
                    }
                }
                // Changes were missed (a burst, or a client that reads slowly): read back
                // from the database. A client that keeps falling behind is let go: it
                // reconnects with its id.
                Woken::Change(Err(RecvError::Lagged(_))) => match reader.follower.after_lag().await {
                    AfterLag::Missed(rows) => pending = rows,
                    AfterLag::ShutOut(why) => {
                        yield Event::comment(why.reason());
                        return;
                    }
                    AfterLag::Reconnect => {
                        yield Event::comment("too slow: reconnect with Last-Event-ID").with_retry(RETRY);
                        return;
                    }
                    AfterLag::Unreadable => {
                        yield Event::comment("missed changes could not be read: reconnect with Last-Event-ID").with_retry(RETRY);
                        return;
                    }
                },
                Woken::Change(Err(RecvError::Closed)) => return,
                Woken::Revoked => {
                    yield Event::comment(ShutOut::SignedOut.reason());
                    return;
                }
                Woken::Closing => {
                    yield Event::comment("service restart: reconnect with Last-Event-ID").with_retry(RETRY);
                    return;
                }
                Woken::Expired => {
                    yield Event::comment("the token expired: sign in again");
                    return;
                }
            }
        }
    }
}

/// Resolves when the user's tokens are revoked (on their own channel, as their sockets
/// hear it) or the channel is gone; never for a caller who is not signed in.
async fn revoked(own: &mut Option<Subscription>) {
    let Some(own) = own else {
        return std::future::pending().await;
    };
    loop {
        match own.signals.recv().await {
            Ok(Change::TokensRevoked) | Err(RecvError::Closed) => return,
            Ok(_) | Err(RecvError::Lagged(_)) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_is_a_whole_number_of_zero_or_more() {
        assert_eq!(seq_of("seq", None).unwrap(), None);
        assert_eq!(seq_of("seq", Some("0")).unwrap(), Some(0));
        assert_eq!(
            seq_of("Last-Event-ID", Some("1048577")).unwrap(),
            Some(1048577)
        );
        for bad in ["", "-1", "x", "1.5", "99999999999999999999"] {
            let err = seq_of("Last-Event-ID", Some(bad)).unwrap_err();
            assert_eq!(err.status_code(), 400, "{bad:?}");
            assert!(
                err.to_string().starts_with("Last-Event-ID must be"),
                "{err}"
            );
        }
    }
}

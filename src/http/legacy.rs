//! The Flask original's chat: `GET` and `POST /api/chat/<room>`, answered exactly as it
//! does, with cheap polling on top, invisible to clients that send none of it: an `ETag`
//! with `304` on `If-None-Match`, `?after=<id>` for the lines after a known message,
//! `?wait=<seconds>` to hold the request until a message arrives, and the same data as
//! JSON (`?format=json` or `Accept: application/json`). Errors are one line of plain text.

use super::legacy_body::PostBody;
use super::limits::Posting;
use super::params::{self, refused, Format, Wait};
use super::App;
use super::Plain;
use crate::chat::{Encoding, Form, Transcript, View};
use crate::domain::message::new_message;
use crate::domain::{Caller, Error, MessageJson, RoomName, Shape};
use rocket::http::{ContentType, Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use rocket::{get, post, State};
use serde::Serialize;
use std::io::Cursor;
use std::time::Duration;

super::mount![get_transcript, post_message];

/// The legacy POST's fields, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LegacyPost {
    /// `Anonymous` when absent.
    username: Option<String>,
    msg: String,
}

/// One line per message, oldest first; 200 with an empty body for a room with none, since
/// the original page stops polling for good after one failed request. A private room the
/// caller is not in answers the same as a room with none.
#[utoipa::path(tag = "legacy",
    params(("room" = String, Path, description = "any name but rooms, messages and health"),
        PollParams),
    responses((status = 200, description = "one line per message, oldest first; as JSON with format=json or Accept: application/json",
            content((String = "text/plain"), (LegacyTranscript = "application/json"))),
        (status = 304, description = "If-None-Match holds the current ETag"), (status = 400),
        (status = 401)))]
#[get("/<room>?<query..>")]
#[allow(clippy::too_many_arguments)]
async fn get_transcript(
    room: Result<RoomName, Error>,
    query: rocket::form::Result<'_, PollParams>,
    headers: PollHeaders,
    caller: Caller,
    app: &State<App>,
) -> Result<PollAnswer, Plain> {
    let room = room?;
    let query = PollQuery::of(query.map_err(refused)?, &headers);
    // Listening starts before app.access is checked and the room read, so a message committed
    // in between, or the room's being made private, wakes us. Held for as long as the poll
    // is: the room's channel goes with its last listener.
    let mut events = query.wait.map(|_| app.hub.subscribe(room.as_str()));
    // A private room the caller is not in reads as a room nobody has posted in (the
    // original's answer for any name): an empty transcript, never woken by its messages.
    caller.require_identity()?;
    // A bot is told plainly that a room is not one of its own.
    caller.may_use_room(room.as_str())?;
    let mut visible = app.access.sees(&caller, room.as_str()).await?;
    let mut view = match visible {
        true => {
            app.transcripts
                .view(&app.db, &room, query.after, query.json)
                .await?
        }
        false => View::empty(query.after, query.json),
    };
    if let (Some(wait), Some(events)) = (query.wait, events.as_mut()) {
        if query.nothing_new(&view, &headers) {
            // Read again after the wait, so not held meanwhile: a waiter holding it would
            // keep a room's transcript alive after the cache let it go, a copy per waiter.
            drop(view);
            // A message, or a lag (messages were missed), means: read again. A server
            // that is stopping answers at once, and the next poll goes elsewhere.
            let _ = tokio::time::timeout(wait, async {
                tokio::select! {
                    _ = events.messages.recv(), if visible => {}
                    () = app.lifecycle.closing() => {}
                }
            })
            .await;
            // The wake-up may be the caller's leaving the room.
            visible = app.access.sees(&caller, room.as_str()).await?;
            view = match visible {
                true => {
                    app.transcripts
                        .view(&app.db, &room, query.after, query.json)
                        .await?
                }
                false => View::empty(query.after, query.json),
            };
        }
    }
    // The whole transcript (the common poll), as text or JSON, is compressed once per
    // version for every poll of it that accepts it; a page after an id is small and goes
    // as it is.
    let encoding = match (headers.encoding, query.after, visible) {
        (Some(encoding), None, true) => Some(encoding),
        _ => None,
    };
    Ok(if headers.holds(&view.etag) {
        PollAnswer::NotModified(view)
    } else if query.json {
        let encoded = encoding.map(|encoding| {
            let body = || Transcript(json_body(room.as_str(), &view).into());
            let key = (Form::Json, encoding);
            (
                encoding,
                app.transcripts
                    .encoded(room.as_str(), &view.etag, key, body),
            )
        });
        PollAnswer::Json {
            room: room.as_str().to_string(),
            view,
            encoded,
        }
    } else {
        let encoded = encoding.map(|encoding| {
            let key = (Form::Text, encoding);
            let body = || view.text.clone();
            (
                encoding,
                app.transcripts
                    .encoded(room.as_str(), &view.etag, key, body),
            )
        });
        PollAnswer::Text(view, encoded)
    })
}

/// The JSON form of a transcript (`format=json`). Writing it cannot fail (no map with
/// keys that are not strings), so nothing is lost by an empty body in that case.
fn json_body(room: &str, view: &View) -> Vec<u8> {
    let body = JsonTranscript {
        room,
        last_id: view.last_id,
        messages: view
            .rows
            .iter()
            .map(|m| MessageJson(m, Shape::Legacy))
            .collect(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// 204 once the message is committed; nothing is stored on any 4xx.
#[utoipa::path(tag = "legacy",
    params(("room" = String, Path)),
    request_body(content = LegacyPost, content_type = "application/x-www-form-urlencoded",
        description = "also multipart/form-data or JSON with the same fields"),
    responses((status = 204, description = "stored"), (status = 400), (status = 401),
        (status = 404, description = "a private room the caller is not in"), (status = 413),
        (status = 415), (status = 429)))]
#[post("/<room>", data = "<body>")]
async fn post_message(
    room: Result<RoomName, Error>,
    body: Result<PostBody, Error>,
    flood: Result<Posting, Error>,
    caller: Caller,
    app: &State<App>,
) -> Result<Status, Plain> {
    flood?;
    let room = room?;
    let body = body?;
    let message = new_message(body.username.as_deref(), body.msg.as_deref(), &app.limits)?;
    app.delivery.post(&caller, &room, message).await?;
    Ok(Status::NoContent)
}

impl<'r> Responder<'r, 'static> for Transcript {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let bytes = self.0;
        Response::build()
            .status(Status::Ok)
            .header(ContentType::new("text", "plain").with_params(("charset", "utf-8")))
            // One write for the whole body instead of Rocket's default 4 KiB chunks.
            .max_chunk_size(bytes.len().clamp(4096, 1 << 20))
            .sized_body(bytes.len(), Cursor::new(bytes))
            .ok()
    }
}

/// The headers a poll may carry.
pub struct PollHeaders {
    if_none_match: Option<String>,
    /// The compression the client accepts, if any of ours.
    encoding: Option<Encoding>,
    accepts_json: bool,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for PollHeaders {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(PollHeaders {
            if_none_match: req.headers().get_one("If-None-Match").map(str::to_string),
            encoding: Encoding::accepted(req.headers().get_one("Accept-Encoding")),
            accepts_json: req
                .accept()
                .is_some_and(|a| a.preferred().media_type().is_json()),
        })
    }
}

impl PollHeaders {
    /// True when the client already holds this version of the room.
    pub fn holds(&self, etag: &str) -> bool {
        self.if_none_match.as_deref().is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        })
    }
}

/// What a poll is asked for with.
#[derive(rocket::FromForm, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollParams {
    /// Only the lines after this message id.
    #[param(inline, required = false)]
    after: params::Cursor,
    /// Hold the answer up to this many seconds until a message comes.
    #[param(inline, required = false)]
    wait: Wait,
    /// `json`: the same lines as JSON; when absent, as `Accept` asks.
    #[param(inline, required = false)]
    format: Format,
}

/// The query of a poll, checked.
pub struct PollQuery {
    pub after: Option<i64>,
    pub wait: Option<Duration>,
    pub json: bool,
}

impl PollQuery {
    pub fn of(params: PollParams, headers: &PollHeaders) -> Self {
        let json = match params.format {
            Format::Unsaid => headers.accepts_json,
            Format::Json => true,
            Format::Text => false,
        };
        PollQuery {
            after: params.after.0,
            wait: params.wait.0,
            json,
        }
    }

    /// Whether the answer would tell the client nothing new, so a `wait` should hold it.
    pub fn nothing_new(&self, view: &View, headers: &PollHeaders) -> bool {
        headers.holds(&view.etag) || (self.after.is_some() && view.count == 0)
    }
}

pub enum PollAnswer {
    NotModified(View),
    /// The text, and the same compressed as the client accepts.
    Text(View, Option<(Encoding, Transcript)>),
    /// The JSON form, and the same compressed as the client accepts.
    Json {
        room: String,
        view: View,
        encoded: Option<(Encoding, Transcript)>,
    },
}

/// The JSON form of a transcript, for the document (written by [`JsonTranscript`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LegacyTranscript {
    room: String,
    /// The newest message's id (0: none), for `?after=`.
    last_id: i64,
    messages: Vec<LegacyLine>,
}

/// One message of the JSON transcript.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct LegacyLine {
    id: i64,
    room: String,
    username: String,
    text: String,
    timestamp: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
struct JsonTranscript<'a> {
    room: &'a str,
    last_id: i64,
    messages: Vec<MessageJson<'a>>,
}

impl<'r> Responder<'r, 'static> for PollAnswer {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let (mut response, view) = match self {
            PollAnswer::NotModified(view) => (
                Response::build().status(Status::NotModified).finalize(),
                view,
            ),
            PollAnswer::Text(view, None) => (view.text.clone().respond_to(req)?, view),
            PollAnswer::Text(view, Some((encoding, body))) => {
                let mut response = body.respond_to(req)?;
                response.set_header(Header::new("Content-Encoding", encoding.name()));
                (response, view)
            }
            PollAnswer::Json {
                room,
                view,
                encoded,
            } => {
                let (body, encoding) = match encoded {
                    Some((encoding, body)) => (body.0, Some(encoding)),
                    None => (json_body(&room, &view).into(), None),
                };
                let mut response = Response::build()
                    .header(ContentType::JSON)
                    .sized_body(body.len(), Cursor::new(body))
                    .finalize();
                if let Some(encoding) = encoding {
                    response.set_header(Header::new("Content-Encoding", encoding.name()));
                }
                (response, view)
            }
        };
        response.set_header(Header::new("ETag", view.etag.to_string()));
        response.set_header(Header::new("X-Last-Message-Id", view.last_id.to_string()));
        // Polls must reach the server (or revalidate), never be answered by a cache; a
        // cache that keeps one anyway keeps it per encoding.
        response.set_header(Header::new("Cache-Control", "no-cache"));
        response.set_header(Header::new("Vary", "Accept-Encoding"));
        Ok(response)
    }
}

//! Cheap polling on top of `GET /api/chat/<room>`, invisible to clients that send none of
//! it: an `ETag` with `304` on `If-None-Match`, `?after=<id>` for the lines after a known
//! message, `?wait=<seconds>` to hold the request until a message arrives, and the same
//! data as JSON (`?format=json` or `Accept: application/json`).

use super::transcript::View;
use crate::http::Error;
use chrono::{DateTime, Utc};
use rocket::http::{ContentType, Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use serde::Serialize;
use std::io::Cursor;
use std::time::Duration;

/// The longest a poll is held.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The headers a poll may carry.
pub struct PollHeaders {
    if_none_match: Option<String>,
    accepts_json: bool,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for PollHeaders {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(PollHeaders {
            if_none_match: req.headers().get_one("If-None-Match").map(str::to_string),
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

/// The query of a poll, checked.
pub struct PollQuery {
    pub after: Option<i64>,
    pub wait: Option<Duration>,
    pub json: bool,
}

impl PollQuery {
    pub fn parse(
        after: Option<&str>,
        wait: Option<&str>,
        format: Option<&str>,
        headers: &PollHeaders,
    ) -> Result<Self, Error> {
        let after = after
            .map(|a| {
                a.parse::<i64>()
                    .map_err(|_| Error::bad_request("after must be a message id"))
            })
            .transpose()?;
        let wait = wait
            .map(|w| {
                w.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| Duration::from_secs_f64(s).min(MAX_WAIT))
                    .ok_or_else(|| Error::bad_request("wait must be a number of seconds"))
            })
            .transpose()?;
        let json = match format {
            None => headers.accepts_json,
            Some("json") => true,
            Some("text") => false,
            Some(_) => return Err(Error::bad_request("format must be text or json")),
        };
        Ok(PollQuery { after, wait, json })
    }

    /// Whether the answer would tell the client nothing new, so a `wait` should hold it.
    pub fn nothing_new(&self, view: &View, headers: &PollHeaders) -> bool {
        headers.holds(&view.etag) || (self.after.is_some() && view.count == 0)
    }
}

pub enum PollAnswer {
    NotModified(View),
    Text(View),
    Json { room: String, view: View },
}

#[derive(Serialize)]
struct JsonMessage<'a> {
    id: i64,
    room: &'a str,
    username: &'a str,
    text: &'a str,
    timestamp: DateTime<Utc>,
}

#[derive(Serialize)]
struct JsonTranscript<'a> {
    room: &'a str,
    last_id: i64,
    messages: Vec<JsonMessage<'a>>,
}

impl<'r> Responder<'r, 'static> for PollAnswer {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let (mut response, view) = match self {
            PollAnswer::NotModified(view) => (
                Response::build().status(Status::NotModified).finalize(),
                view,
            ),
            PollAnswer::Text(view) => (view.text.clone().respond_to(req)?, view),
            PollAnswer::Json { room, view } => {
                let body = JsonTranscript {
                    room: &room,
                    last_id: view.last_id,
                    messages: view
                        .rows
                        .iter()
                        .map(|m| JsonMessage {
                            id: m.id,
                            room: &m.room,
                            username: &m.username,
                            text: &m.text,
                            timestamp: m.timestamp.and_utc(),
                        })
                        .collect(),
                };
                let body = serde_json::to_vec(&body).map_err(|_| Status::InternalServerError)?;
                let response = Response::build()
                    .header(ContentType::JSON)
                    .sized_body(body.len(), Cursor::new(body))
                    .finalize();
                (response, view)
            }
        };
        response.set_header(Header::new("ETag", view.etag.to_string()));
        response.set_header(Header::new("X-Last-Message-Id", view.last_id.to_string()));
        // Polls must reach the server (or revalidate), never be answered by a cache.
        response.set_header(Header::new("Cache-Control", "no-cache"));
        Ok(response)
    }
}

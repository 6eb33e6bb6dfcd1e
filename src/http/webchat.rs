//! The relay's one-room webchat: `GET /messages?minutes=N`, its history; its socket,
//! `WS /ws`, is with the others in `ws`. Both are the `webchat_room`, a room like any:
//! what its page sends is stored, and in the transcript, the room API's history and every
//! socket of the room, on every replica. With `webchat_page_dir` set, its page is served
//! unchanged: `/webchat`, and its files under `/static`.
//!
//! Who may call: whoever may read the room (anyone, unless it is private; signed in with
//! `auth = "required"`, as the page's session cookie is). What stops a flood: the answer
//! comes from the room's transcript in memory (one database read per refresh period at
//! most), is at most `transcript_max_messages` long, and holds nothing afterwards.

use super::params::{refused, Minutes};
use super::App;
use crate::config::Settings;
use crate::domain::{Caller, MessageJson, Result, Shape};
use rocket::fs::{FileServer, NamedFile, Options};
use rocket::serde::json::Json;
use rocket::{form, get, FromForm, Route, State};
use std::path::PathBuf;

super::mount![history];

/// `{"messages": [{"text", "type", "ts"}, ...]}`, for the document (the answer is
/// written by `MessageJson`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct History {
    messages: Vec<WebchatMessage>,
}

/// A message as the relay's page reads it: its own as it sent them; any other door's as
/// `"<username>: <text>"`, type `message`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct WebchatMessage {
    text: String,
    #[schema(rename = "type")]
    kind: String,
    /// Milliseconds since 1970.
    ts: i64,
}

/// What the relay's history is asked for with.
#[derive(FromForm, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// How far back, in minutes (digits only).
    #[param(inline, required = false)]
    minutes: Minutes,
}

/// The webchat room's messages of the last `minutes` (1 to 1440, 30 when absent), oldest
/// first; the newest `transcript_max_messages` at most.
#[utoipa::path(tag = "webchat", params(HistoryParams),
    responses((status = 200, body = History), (status = 400), (status = 401),
        (status = 404, description = "the webchat room is private and the caller is not in it"),
        (status = 503, description = "the database is away and the room is not in memory")))]
#[get("/messages?<query..>")]
async fn history(
    query: form::Result<'_, HistoryParams>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<serde_json::Value>> {
    let Minutes(minutes) = query.map_err(refused)?.minutes;
    app.access
        .may_read(&caller, app.webchat_room.as_str())
        .await?;
    let from = crate::domain::now_utc() - chrono::Duration::minutes(i64::from(minutes));
    let rows = app
        .transcripts
        .stored_since(&app.db, &app.webchat_room, from)
        .await?;
    let messages: Vec<_> = rows
        .iter()
        .map(|row| MessageJson(row, Shape::Relay))
        .collect();
    Ok(Json(serde_json::json!({ "messages": messages })))
}

/// The relay's page as it is: `/webchat` its `index.html`, its files (`app.js`,
/// `style.css`) under `/static`, after this server's own (whose names differ).
pub fn page(settings: &Settings) -> Option<(Vec<Route>, FileServer)> {
    let dir = settings.chat.webchat_page_dir.as_ref()?;
    // Ranked after the page's own assets (10), so that ours answer first.
    let files = FileServer::new(dir, Options::Missing).rank(11);
    Some((rocket::routes![webchat_page], files))
}

#[get("/webchat")]
async fn webchat_page(app: &State<App>) -> Option<NamedFile> {
    let dir = app.settings.chat.webchat_page_dir.as_ref()?;
    NamedFile::open(PathBuf::from(dir).join("index.html"))
        .await
        .ok()
}

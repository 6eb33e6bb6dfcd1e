//! The chat of the Flask original: `GET` and `POST /api/chat/<room>`.

mod body;
mod store;
mod transcript;
pub mod validate;

pub use store::Store;
pub use transcript::{Transcript, Transcripts};

use crate::config::Settings;
use crate::http::{Error, Result};
use body::PostBody;
use rocket::http::Status;
use rocket::{get, post, routes, Route, State};
use std::time::Duration;
use validate::{Limits, RoomName};

/// Everything the chat routes share.
pub struct Chat {
    pub store: Store,
    pub transcripts: Transcripts,
    limits: Limits,
}

impl Chat {
    pub fn new(store: Store, settings: &Settings) -> Self {
        Chat {
            store,
            transcripts: Transcripts::new(
                Duration::from_millis(settings.transcript_refresh_ms),
                settings.transcript_cache_rooms,
            ),
            limits: Limits {
                max_username_chars: settings.max_username_chars,
                max_message_chars: settings.max_message_chars,
            },
        }
    }
}

pub fn routes() -> Vec<Route> {
    routes![get_transcript, post_message]
}

/// One line per message, oldest first; 200 with an empty body for a room with none, since
/// the original page stops polling for good after one failed request.
#[get("/<room>")]
async fn get_transcript(room: Result<RoomName>, chat: &State<Chat>) -> Result<Transcript> {
    chat.transcripts.get(&chat.store, &room?).await
}

/// 204 once the message is committed; nothing is stored on any 4xx.
#[post("/<room>", data = "<body>")]
async fn post_message(
    room: Result<RoomName>,
    body: Result<PostBody, Error>,
    chat: &State<Chat>,
) -> Result<Status> {
    let room = room?;
    let body = body?;
    let message =
        validate::new_message(body.username.as_deref(), body.msg.as_deref(), &chat.limits)?;
    let row = chat.store.insert(&room, message).await?;
    chat.transcripts.record(&row);
    Ok(Status::NoContent)
}

//! `/api/search`: search across every room the caller may read.

use super::limits::Searching;
use crate::chat::search::{self, SearchQuery};
use crate::domain::{Caller, Result};
use rocket::serde::json::Json;
use rocket::{get, State};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use utoipa::ToSchema;

super::mount![search_messages];

/// A message found: what a list of results shows of it (the whole message, with its
/// reactions and the message it answers, is `GET /api/chat/messages/<id>`).
#[derive(Serialize, ToSchema)]
pub struct SearchHit {
    id: i64,
    room_id: String,
    user_id: Option<String>,
    username: String,
    content: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    /// When its author last edited it; null until then.
    #[schema(value_type = Option<String>, format = DateTime)]
    edited_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Up to 160 characters of its text around the first word found, as HTML: escaped,
    /// each word found inside `<mark>`, `…` where text was left out.
    snippet: String,
}

/// The newest messages whose text holds every word of `q` (2 to 200 characters; a word
/// matches a whole word, or followed by `*` the start of one, ignoring case), newest first, from every room the caller
/// may read and none other: public rooms, and when signed in their own private and direct
/// ones. `before` pages back from a message id.
#[utoipa::path(tag = "chat", params(
        ("q" = String, Query, description = "the words to find, 2 to 200 characters"),
        ("limit" = Option<u64>, Query, description = "1 to 100, default 20"),
        ("before" = Option<i64>, Query, description = "only messages with a smaller id")),
    responses((status = 200, body = Vec<SearchHit>), (status = 400), (status = 401), (status = 429)))]
#[get("/search?<q>&<limit>&<before>")]
async fn search_messages(
    q: Option<&str>,
    limit: Option<&str>,
    before: Option<&str>,
    flood: Result<Searching>,
    caller: Caller,
    db: &State<DatabaseConnection>,
) -> Result<Json<Vec<SearchHit>>> {
    flood?;
    let found = search::search(db, &caller, SearchQuery { q, limit, before }).await?;
    Ok(Json(
        found
            .into_iter()
            .map(|found| {
                let m = found.message;
                SearchHit {
                    id: m.id,
                    room_id: m.room,
                    user_id: m.user_id,
                    username: m.username,
                    content: m.text,
                    created_at: m.timestamp.and_utc(),
                    edited_at: m.edited_at.map(|at| at.and_utc()),
                    snippet: found.snippet,
                }
            })
            .collect(),
    ))
}

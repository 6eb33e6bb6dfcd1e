//! `/api/search`: search across every room the caller may read.

use super::limits::Searching;
use super::params::{refused, Cursor, SearchLimit, SearchText};
use super::App;
use crate::chat::search::SearchQuery;
use crate::domain::{Caller, Result};
use rocket::serde::json::Json;
use rocket::{form, get, FromForm, State};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

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

/// What a search is asked for with.
#[derive(FromForm, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams<'r> {
    /// The words to find: a word matches a whole word, or followed by `*` the start of
    /// one.
    #[param(inline, required = true)]
    q: SearchText<'r>,
    /// How many results at most.
    #[param(inline, required = false)]
    limit: SearchLimit,
    /// Only messages with a smaller id.
    #[param(inline, required = false)]
    before: Cursor,
}

/// The newest messages whose text holds every word of `q` (2 to 200 characters; a word
/// matches a whole word, or followed by `*` the start of one, ignoring case), newest first, from every room the caller
/// may read and none other: public rooms, and when signed in their own private and direct
/// ones. `before` pages back from a message id.
#[utoipa::path(tag = "chat", params(SearchParams),
    responses((status = 200, body = Vec<SearchHit>), (status = 400), (status = 401), (status = 429)))]
#[get("/search?<query..>")]
async fn search_messages(
    query: form::Result<'_, SearchParams<'_>>,
    flood: Result<Searching>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<SearchHit>>> {
    flood?;
    // Who asks comes first (401 in required mode), as before any query is read.
    caller.require_identity()?;
    let SearchParams { q, limit, before } = query.map_err(refused)?;
    let query = SearchQuery {
        q: Some(q.0),
        limit: limit.0,
        before: before.0,
    };
    let found = app.chat.search(&caller, query).await?;
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

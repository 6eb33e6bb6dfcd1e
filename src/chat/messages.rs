//! A room's history: pages, search, one message.

use crate::db::messages::{self as table, Page};
use crate::domain::limits::{message_id, page_limit};
use crate::domain::{Error, Message};
use sea_orm::DatabaseConnection;

/// Longest search text.
const MAX_SEARCH_CHARS: usize = 200;

/// What a history request asks for, as sent.
#[derive(Default)]
pub struct HistoryQuery<'a> {
    pub limit: Option<&'a str>,
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    pub q: Option<&'a str>,
}

/// The room's newest `limit` messages (default 50, at most 200), oldest first. `before`
/// pages back from a message id, `after` forward from one (the oldest after it first);
/// `q` keeps messages whose text holds it, ignoring case. 404 for a room that does not
/// exist.
pub async fn history(
    db: &DatabaseConnection,
    room_id: &str,
    query: HistoryQuery<'_>,
) -> Result<Vec<Message>, Error> {
    let limit = page_limit(query.limit)?;
    let before = message_id("before", query.before)?;
    let after = message_id("after", query.after)?;
    let search = query.q.map(str::trim).filter(|q| !q.is_empty());
    if search.is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS) {
        return Err(Error::bad_request(format!(
            "q is longer than {MAX_SEARCH_CHARS} characters"
        )));
    }
    let room = super::rooms::existing(db, room_id).await?;
    let page = Page {
        before,
        after,
        search,
        limit,
    };
    Ok(table::page(db, &room.id, page).await?)
}

fn parse_id(id: &str) -> Result<i64, Error> {
    id.parse::<i64>()
        .map_err(|_| Error::bad_request("a message id is a number"))
}

/// The message, or 404.
pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Message, Error> {
    let id = parse_id(id)?;
    table::get(db, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("message {id} does not exist")))
}

/// Deletes the message; returns it.
pub async fn delete(db: &DatabaseConnection, id: &str) -> Result<Message, Error> {
    let message = get(db, id).await?;
    table::delete(db, message.id).await?;
    Ok(message)
}

/// Every message of the room after `after`, oldest first: what a socket that reconnects
/// with `since` missed.
pub async fn since(db: &DatabaseConnection, room: &str, after: i64) -> Result<Vec<Message>, Error> {
    Ok(table::in_room_between(db, room, after, None).await?)
}

//! A room's history: pages, search, one message.

use crate::access::RoomAccess;
use crate::db::messages::{self as table, Page};
use crate::domain::message::room_message;
use crate::domain::{Caller, Error, Limits, Message, ReplyPreview, RoomName};
use sea_orm::DatabaseConnection;

/// Longest search text.
pub const MAX_SEARCH_CHARS: usize = 200;

/// What a history request asks for, its numbers checked.
pub struct HistoryQuery<'a> {
    /// How many, 1 to `MAX_PAGE` (the HTTP layer's `PageLimit` checks it).
    pub limit: u64,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub q: Option<&'a str>,
    /// Who reads, for each reaction's `me`, when the caller is not signed in (open mode).
    pub user_id: Option<&'a str>,
}

impl Default for HistoryQuery<'_> {
    fn default() -> Self {
        HistoryQuery {
            limit: crate::domain::limits::DEFAULT_PAGE,
            before: None,
            after: None,
            q: None,
            user_id: None,
        }
    }
}

/// The room's newest `limit` messages (default 50, at most 200), oldest first. `before`
/// pages back from a message id, `after` forward from one (the oldest after it first);
/// `q` keeps messages whose text holds it, ignoring case. 404 for a room that does not
/// exist, or is private and not the caller's.
pub async fn history(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    room_id: &str,
    query: HistoryQuery<'_>,
) -> Result<Vec<Message>, Error> {
    access.may_read(caller, room_id).await?;
    let (limit, before, after) = (query.limit, query.before, query.after);
    let search = query.q.map(str::trim).filter(|q| !q.is_empty());
    if search.is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS) {
        return Err(Error::bad_request(format!(
            "q is longer than {MAX_SEARCH_CHARS} characters"
        )));
    }
    let viewer = viewer(access, caller, query.user_id).await?;
    let room = super::rooms::existing(db, room_id).await?;
    let page = Page {
        before,
        after,
        search,
        limit,
    };
    let mut rows = table::page(db, &room.id, page).await?;
    complete(db, &mut rows, viewer.as_deref()).await?;
    Ok(rows)
}

/// Gives messages read from the table what a reader sees beside their rows: their
/// reactions (with `me` for `viewer`) and the previews of the messages they answer.
pub async fn complete(
    db: &DatabaseConnection,
    messages: &mut [Message],
    viewer: Option<&str>,
) -> Result<(), Error> {
    super::reactions::attach(db, messages, viewer).await?;
    attach_previews(db, messages).await
}

/// The previews of the messages these answer, one read for them all; a reply whose
/// original is deleted keeps `reply_to` and shows none.
async fn attach_previews(db: &DatabaseConnection, messages: &mut [Message]) -> Result<(), Error> {
    let ids: Vec<i64> = messages.iter().filter_map(|m| m.reply_to).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let originals = table::with_ids(db, ids).await?;
    for message in messages {
        // The original of the same room only: an id freed by a deletion may be given
        // again (SQLite without AUTOINCREMENT, MySQL before 8 after a restart), and a
        // reply must never show another room's text.
        message.reply_preview = message
            .reply_to
            .and_then(|id| {
                originals
                    .iter()
                    .find(|o| o.id == id && o.room == message.room)
            })
            .map(ReplyPreview::of);
    }
    Ok(())
}

/// The preview of message `id` for a reply posted to `room`: 400 unless it is a message
/// of that very room (a reply never shows another room's text).
pub async fn answerable(
    db: &DatabaseConnection,
    room: &RoomName,
    id: i64,
) -> Result<ReplyPreview, Error> {
    match table::get(db, id).await? {
        Some(original) if original.room == room.as_str() => Ok(ReplyPreview::of(&original)),
        _ => Err(Error::bad_request(
            "reply_to must be the id of a message of this room",
        )),
    }
}

/// Whose reactions are `me` in what a caller reads: the signed-in caller's, or in open
/// mode the `user_id` an anonymous caller names (as it may act as it), or nobody's.
pub async fn viewer(
    access: &RoomAccess,
    caller: &Caller,
    claimed: Option<&str>,
) -> Result<Option<String>, Error> {
    match (&caller.user, claimed) {
        (Some(user), _) => Ok(Some(user.user_id.clone())),
        (None, Some(_)) => super::acting_user(access, caller, claimed).await.map(Some),
        (None, None) => Ok(None),
    }
}

fn parse_id(id: &str) -> Result<i64, Error> {
    id.parse::<i64>()
        .map_err(|_| Error::bad_request("a message id is a number"))
}

/// The message as a caller asks for it, or 404 (also for one in a private room they are
/// not in).
pub async fn read(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    id: &str,
) -> Result<Message, Error> {
    caller.require_identity()?;
    let message = get(db, id).await?;
    if !access.sees(caller, &message.room).await? {
        return Err(missing(message.id));
    }
    Ok(message)
}

fn missing(id: i64) -> Error {
    Error::not_found(format!("message {id} does not exist"))
}

/// The message, or 404.
pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Message, Error> {
    let id = parse_id(id)?;
    table::get(db, id).await?.ok_or_else(|| missing(id))
}

/// Checks an edit of the message's text: its author's call (signed in) or an admin's;
/// 404 to whoever may not read its room; `content` follows the rules of a post. Returns
/// the message as it stands (with its reactions, as every reader sees them) and its new
/// text, for the pipeline's writer to store (`delivery::Change::Edit`).
pub async fn check_edit(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    id: &str,
    content: Option<&str>,
    limits: &Limits,
) -> Result<(Message, String), Error> {
    let mut message = read(db, access, caller, id).await?;
    caller.require_one_of(
        "edit a message",
        "its author or an admin",
        &[message.user_id.as_deref()],
    )?;
    // The post rules, applied by the one function that applies them to posts.
    let text = room_message(&message.username, None, content, None, None, limits)?.text;
    // Counts without `me`: the edited message goes to every reader alike.
    complete(db, std::slice::from_mut(&mut message), None).await?;
    Ok((message, text))
}

/// Checks a deletion of the message: its author's, its room owner's or an admin's call;
/// 404 to whoever may not read its room. Returns the message, for the writer to delete.
pub async fn check_delete(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    id: &str,
) -> Result<Message, Error> {
    let message = read(db, access, caller, id).await?;
    let owner = crate::db::rooms::get(db, &message.room)
        .await?
        .and_then(|room| room.owner_id);
    caller.require_one_of(
        "delete a message",
        "its author, the room's owner or an admin",
        &[message.user_id.as_deref(), owner.as_deref()],
    )?;
    Ok(message)
}

/// 404 for a message that is gone.
pub fn gone(id: i64) -> Error {
    missing(id)
}

/// The id of the room's newest message, 0 when it has none.
pub async fn last_id(db: &DatabaseConnection, room: &str) -> Result<i64, Error> {
    Ok(table::last_id_in(db, room).await?.unwrap_or(0))
}

/// What a transcript holds of a room: from nothing (`after` 0), its newest `limit`
/// messages; after a known id, the `limit` oldest after it (the rest come with the next
/// read). Oldest first.
pub async fn recent(
    db: &DatabaseConnection,
    room: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<Message>, Error> {
    let page = Page {
        before: None,
        after: (after > 0).then_some(after),
        search: None,
        limit: limit as u64,
    };
    Ok(table::page(db, room, page).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::memory;
    use crate::db::messages::{insert_batch, InsertMode, ToInsert};
    use crate::domain::message::new_message;
    use crate::domain::{Limits, RoomName};

    async fn post(db: &DatabaseConnection, room: &str, texts: &[&str]) -> Vec<i64> {
        crate::chat::Rooms::default()
            .ensure(db, &RoomName::parse(room).unwrap())
            .await
            .unwrap();
        let rows: Vec<ToInsert> = texts
            .iter()
            .map(|t| ToInsert {
                room: room.into(),
                message: new_message(Some("u"), Some(t), &Limits::default()).unwrap(),
            })
            .collect();
        let committed = insert_batch(db, &rows, InsertMode::Returning, false, None)
            .await
            .unwrap();
        committed.into_iter().map(|(m, _)| m.id).collect()
    }

    fn texts(rows: &[Message]) -> Vec<&str> {
        rows.iter().map(|m| m.text.as_str()).collect()
    }

    #[tokio::test]
    async fn history_pages_both_ways_and_searches() {
        let db = memory().await;
        let access = RoomAccess::new(db.clone());
        let ids = post(&db, "r", &["one", "Two", "three", "50% off", "a_b"]).await;
        post(&db, "other", &["two elsewhere"]).await;
        let q = |limit: Option<u64>, before, after, q| HistoryQuery {
            limit: limit.unwrap_or(crate::domain::limits::DEFAULT_PAGE),
            before,
            after,
            q,
            user_id: None,
        };
        let all = history(
            &db,
            &access,
            &Caller::default(),
            "r",
            HistoryQuery::default(),
        )
        .await
        .unwrap();
        assert_eq!(texts(&all), ["one", "Two", "three", "50% off", "a_b"]);
        let newest = history(
            &db,
            &access,
            &Caller::default(),
            "r",
            q(Some(2), None, None, None),
        )
        .await
        .unwrap();
        assert_eq!(texts(&newest), ["50% off", "a_b"]);
        let older = history(
            &db,
            &access,
            &Caller::default(),
            "r",
            q(Some(1), Some(ids[2]), None, None),
        )
        .await
        .unwrap();
        assert_eq!(texts(&older), ["Two"]);
        let forward = history(
            &db,
            &access,
            &Caller::default(),
            "r",
            q(Some(2), None, Some(ids[0]), None),
        )
        .await
        .unwrap();
        assert_eq!(texts(&forward), ["Two", "three"]);
        let found = history(
            &db,
            &access,
            &Caller::default(),
            "r",
            q(None, None, None, Some("TWO")),
        )
        .await
        .unwrap();
        assert_eq!(texts(&found), ["Two"]);
        // LIKE's wildcards match only themselves.
        let percent = history(
            &db,
            &access,
            &Caller::default(),
            "r",
            q(None, None, None, Some("%")),
        )
        .await
        .unwrap();
        assert_eq!(texts(&percent), ["50% off"]);
        let underscore = history(
            &db,
            &access,
            &Caller::default(),
            "r",
            q(None, None, None, Some("_")),
        )
        .await
        .unwrap();
        assert_eq!(texts(&underscore), ["a_b"]);
        // The numbers are checked as the query is parsed (`http::params`); the search
        // text here.
        for bad in [q(None, None, None, Some(&"q".repeat(201)))] {
            assert_eq!(
                history(&db, &access, &Caller::default(), "r", bad)
                    .await
                    .unwrap_err()
                    .status_code(),
                400
            );
        }
        let missing = history(
            &db,
            &access,
            &Caller::default(),
            "nope",
            HistoryQuery::default(),
        )
        .await;
        assert_eq!(missing.unwrap_err().status_code(), 404);
    }

    /// A check, then the row gone: what the pipeline's writer does.
    async fn delete(
        db: &DatabaseConnection,
        access: &RoomAccess,
        caller: &Caller,
        id: &str,
    ) -> Result<Message, Error> {
        let message = check_delete(db, access, caller, id).await?;
        table::delete(db, message.id).await?;
        Ok(message)
    }

    #[tokio::test]
    async fn one_message_is_read_and_deleted_by_id() {
        let db = memory().await;
        let access = RoomAccess::new(db.clone());
        let ids = post(&db, "r", &["a", "b"]).await;
        let id = ids[0].to_string();
        assert_eq!(get(&db, &id).await.unwrap().text, "a");
        let err = delete(&db, &access, &Caller::default(), &id)
            .await
            .unwrap_err();
        assert_eq!(err.status_code(), 403);
        let admin = Caller {
            admin: true,
            ..Caller::default()
        };
        assert_eq!(delete(&db, &access, &admin, &id).await.unwrap().text, "a");
        assert_eq!(get(&db, &id).await.unwrap_err().status_code(), 404);
        assert_eq!(get(&db, "x").await.unwrap_err().status_code(), 400);
        assert_eq!(get(&db, &ids[1].to_string()).await.unwrap().text, "b");
    }
}

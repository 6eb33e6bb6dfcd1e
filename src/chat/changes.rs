//! A room's history of changes by `seq` (`domain::seq`): its messages (each its own
//! record) and its other changes (`db::changes`), merged in one order. What a reader that
//! comes back with the last `seq` it saw reads, on a socket or over HTTP, and what a
//! replica reads to fill a gap in what it was told.

use crate::db::{changes as table, messages};
use crate::domain::seq;
use crate::domain::{Error, Message};
use crate::realtime::Event;
use sea_orm::{AccessMode, DatabaseConnection, DbBackend, IsolationLevel, TransactionTrait};
use std::sync::Arc;

/// Changes read at a time at most.
pub const PAGE: u64 = 500;

/// The record of a change other than a message: its event as JSON (serializing an event
/// cannot fail: every map in it has string keys).
pub fn record(room: &str, seq: i64, event: &Event) -> table::Change {
    let message_id = match event {
        Event::MessageUpdated { message, .. } => Some(message.id),
        Event::Reaction { message_id, .. } => Some(*message_id),
        Event::MessageDeleted { id, .. } => Some(*id),
        _ => None,
    };
    table::Change {
        room_id: room.to_string(),
        seq,
        message_id,
        event: serde_json::to_string(event).unwrap_or_default(),
        created_at: crate::domain::now_utc(),
    }
}

/// The room's changes with a `seq` above `after` and at most `up_to`, oldest first,
/// `limit` at most: its messages (with their reactions and reply previews, as stored now)
/// and its other changes, as their readers were told them.
pub async fn between(
    db: &DatabaseConnection,
    room: &str,
    after: i64,
    up_to: Option<i64>,
    limit: u64,
) -> Result<Vec<Event>, Error> {
    let first_id = seq::message_id_at(after);
    let before_id = up_to.map(|up_to| seq::message_id_at(up_to) + 1);
    // Both reads in one snapshot: read apart, a message committed between them could be
    // missing while a change after it is there, and a reader paging on would skip it.
    let txn = match db.get_database_backend() {
        DbBackend::Sqlite => db.begin().await?,
        _ => {
            db.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?
        }
    };
    let mut rows = messages::in_room_after(&txn, room, first_id, before_id, limit).await?;
    let changes = table::in_room(&txn, room, after, up_to, limit).await?;
    txn.commit().await?;
    super::messages::complete(db, &mut rows, None).await?;
    let mut events: Vec<Event> = rows
        .into_iter()
        .filter(|m| seq::of_message(m.id) > after)
        .map(|m: Message| Event::Message(Arc::new(m)))
        .collect();
    events.extend(changes.into_iter().filter_map(|row| {
        serde_json::from_str::<Event>(&row.event)
            .inspect_err(
                |err| tracing::warn!(error = %err, room, seq = row.seq, "unreadable change"),
            )
            .ok()
    }));
    events.sort_by_key(|event| event.seq().unwrap_or(0));
    events.truncate(limit as usize);
    Ok(events)
}

/// The `seq` of the room's last change (a message or another): what a reader that wants
/// only what comes next starts after.
pub async fn head(db: &DatabaseConnection, room: &str) -> Result<i64, Error> {
    let heads = table::heads(db, &[room]).await?;
    let (change, newest) = heads.get(room).copied().unwrap_or((0, 0));
    Ok(change.max(seq::of_message(newest)))
}

/// Whether changes of the room after `after` are no longer kept (`change_log_days`): a
/// reader asking from there must reload the history.
pub async fn must_resync(db: &DatabaseConnection, room: &str, after: i64) -> Result<bool, Error> {
    Ok(after < table::pruned_through(db, room).await?)
}

/// What a reader coming back from `after` (a socket's or a stream's) is sent first:
/// `true` and nothing when changes after it are no longer kept (it must reload), else the
/// first page of them.
pub async fn resume(
    db: &DatabaseConnection,
    room: &str,
    after: i64,
) -> Result<(bool, Vec<Event>), Error> {
    if must_resync(db, room, after).await? {
        return Ok((true, Vec::new()));
    }
    Ok((false, between(db, room, after, None, PAGE).await?))
}

/// Changes paged at most over HTTP, and by default.
pub const MAX_PAGE: u64 = 500;
pub const DEFAULT_PAGE: u64 = 100;

/// The room's changes after `after` (a `seq`, default 0), oldest first, `limit` at most
/// (default 100, at most 500), for a caller who may read the room (404 otherwise); and
/// whether changes after `after` are no longer kept (then none are given: reload).
pub async fn page(
    db: &DatabaseConnection,
    access: &crate::access::RoomAccess,
    caller: &crate::domain::Caller,
    room_id: &str,
    after: i64,
    limit: u64,
) -> Result<(Vec<Event>, bool), Error> {
    access.may_read(caller, room_id).await?;
    let room = super::rooms::existing(db, room_id).await?;
    if must_resync(db, &room.id, after).await? {
        return Ok((Vec::new(), true));
    }
    Ok((between(db, &room.id, after, None, limit).await?, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::memory;
    use crate::db::messages::{insert_batch, InsertMode, ToInsert};
    use crate::domain::message::new_message;
    use crate::domain::{Limits, RoomName};

    fn message_ids(events: Vec<Event>) -> Vec<i64> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.id),
                _ => None,
            })
            .collect()
    }

    /// What a socket replays, or a gap that is filled, is read a page at a time.
    #[tokio::test]
    async fn a_replay_is_read_a_page_at_a_time() {
        let db = memory().await;
        crate::chat::Rooms::default()
            .ensure(&db, &RoomName::parse("big").unwrap())
            .await
            .unwrap();
        let rows: Vec<ToInsert> = (0..PAGE + 5)
            .map(|i| ToInsert {
                room: "big".into(),
                message: new_message(Some("u"), Some(&format!("m{i}")), &Limits::default())
                    .unwrap(),
            })
            .collect();
        let ids: Vec<i64> = insert_batch(&db, &rows, InsertMode::Returning, false, None)
            .await
            .unwrap()
            .into_iter()
            .map(|(m, _)| m.id)
            .collect();
        let first = message_ids(between(&db, "big", 0, None, PAGE).await.unwrap());
        assert_eq!(first.len() as u64, PAGE);
        let after = seq::of_message(*first.last().unwrap());
        let rest = message_ids(between(&db, "big", after, None, PAGE).await.unwrap());
        assert_eq!(rest.len(), 5);
        assert_eq!(rest.last(), ids.last());
    }
}

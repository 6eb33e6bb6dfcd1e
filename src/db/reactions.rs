//! The `reaction` table: who reacted to which message with which emoji.

use super::entities::{message, reaction};
use crate::domain::ReactionCount;
use sea_orm::sea_query::{LockType, OnConflict, Query};
use sea_orm::TransactionSession;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use std::collections::HashMap;

/// Different emoji one message holds at most.
pub const MAX_PER_MESSAGE: usize = 20;

/// What adding a reaction did.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// Added: now this many of that emoji.
    Now(u64),
    /// The user had reacted so already: this many of that emoji.
    Already(u64),
    /// The message holds [`MAX_PER_MESSAGE`] other emoji already.
    Full,
    /// The message is gone (deleted meanwhile).
    Gone,
}

/// Adds `user_id`'s `emoji` to the message; the row is taken back if it made the
/// message's emoji more than [`MAX_PER_MESSAGE`]. On SQLite the insert comes first (`ON
/// CONFLICT DO NOTHING`), so the transaction takes the one writer's lock at once (a read
/// first would make concurrent reactions fail as busy); elsewhere the message's row is
/// held first, so two new emoji at once cannot both count 19 others, nor one user's two
/// same reactions both be new.
pub async fn add<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    message_id: i64,
    user_id: &str,
    emoji: &str,
) -> Result<Added, DbErr> {
    // Most refusals need no writer's lock: a full message without this emoji is read
    // as full (the check inside the transaction below is the one that holds).
    let held = emoji_of(db, message_id).await?;
    if held.len() >= MAX_PER_MESSAGE && !held.iter().any(|e| e == emoji) {
        return Ok(Added::Full);
    }
    let txn = db.begin().await?;
    let row = reaction::ActiveModel {
        message_id: Set(message_id),
        user_id: Set(user_id.to_string()),
        emoji: Set(emoji.to_string()),
        created_at: Set(crate::domain::now_utc()),
    };
    let backend = txn.get_database_backend();
    let inserted = if backend == DbBackend::Sqlite {
        reaction::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    reaction::Column::MessageId,
                    reaction::Column::Emoji,
                    reaction::Column::UserId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?
    } else {
        let lock = Query::select()
            .column(message::Column::Id)
            .from(message::Entity)
            .and_where(message::Column::Id.eq(message_id))
            .lock(LockType::Update)
            .to_owned();
        if txn.query_all_raw(backend.build(&lock)).await?.is_empty() {
            return Ok(Added::Gone);
        }
        let key = (message_id, user_id.to_string(), emoji.to_string());
        match reaction::Entity::find_by_id(key).one(&txn).await? {
            Some(_) => 0,
            None => {
                reaction::Entity::insert(row)
                    .exec_without_returning(&txn)
                    .await?
            }
        }
    };
    // On SQLite nothing held the message: a delete may have come first, and the row
    // would be left with no message (this writer's lock keeps one from coming now).
    let present = message::Entity::find_by_id(message_id).count(&txn).await? > 0;
    if !present {
        txn.rollback().await?;
        return Ok(Added::Gone);
    }
    if inserted == 0 {
        let count = count(&txn, message_id, emoji).await?;
        txn.commit().await?;
        return Ok(Added::Already(count));
    }
    if emoji_of(&txn, message_id).await?.len() > MAX_PER_MESSAGE {
        txn.rollback().await?;
        return Ok(Added::Full);
    }
    let count = count(&txn, message_id, emoji).await?;
    txn.commit().await?;
    Ok(Added::Now(count))
}

/// Takes `user_id`'s `emoji` off the message: whether it was there, and how many of that
/// emoji are left.
pub async fn remove<C: ConnectionTrait>(
    db: &C,
    message_id: i64,
    user_id: &str,
    emoji: &str,
) -> Result<(bool, u64), DbErr> {
    let removed = reaction::Entity::delete_many()
        .filter(reaction::Column::MessageId.eq(message_id))
        .filter(reaction::Column::UserId.eq(user_id))
        .filter(reaction::Column::Emoji.eq(emoji))
        .exec(db)
        .await?
        .rows_affected;
    Ok((removed > 0, count(db, message_id, emoji).await?))
}

/// The different emoji the message holds. Grouped by the primary key's first two
/// columns, MariaDB and MySQL read one index entry per emoji ("index for group-by") where
/// `DISTINCT` read every reaction: a message with 20,000 reactions made each new one
/// read all the others, twice.
async fn emoji_of<C: ConnectionTrait>(db: &C, message_id: i64) -> Result<Vec<String>, DbErr> {
    reaction::Entity::find()
        .select_only()
        .column(reaction::Column::Emoji)
        .filter(reaction::Column::MessageId.eq(message_id))
        .group_by(reaction::Column::MessageId)
        .group_by(reaction::Column::Emoji)
        .into_tuple()
        .all(db)
        .await
}

async fn count<C: ConnectionTrait>(db: &C, message_id: i64, emoji: &str) -> Result<u64, DbErr> {
    reaction::Entity::find()
        .filter(reaction::Column::MessageId.eq(message_id))
        .filter(reaction::Column::Emoji.eq(emoji))
        .count(db)
        .await
}

/// The reactions of these messages as `viewer` sees them (`me`: the viewer reacted so),
/// each message's in the order their emoji first came. Two statements for a whole page.
pub async fn of(
    db: &impl ConnectionTrait,
    message_ids: &[i64],
    viewer: Option<&str>,
) -> Result<HashMap<i64, Vec<ReactionCount>>, DbErr> {
    let mut out: HashMap<i64, Vec<ReactionCount>> = HashMap::new();
    if message_ids.is_empty() {
        return Ok(out);
    }
    let counts: Vec<(i64, String, i64, chrono::NaiveDateTime)> = reaction::Entity::find()
        .select_only()
        .column(reaction::Column::MessageId)
        .column(reaction::Column::Emoji)
        .column_as(reaction::Column::UserId.count(), "count")
        .column_as(reaction::Column::CreatedAt.min(), "first")
        .filter(reaction::Column::MessageId.is_in(message_ids.iter().copied()))
        .group_by(reaction::Column::MessageId)
        .group_by(reaction::Column::Emoji)
        .order_by_asc(reaction::Column::MessageId)
        .into_tuple()
        .all(db)
        .await?;
    let mine: Vec<(i64, String)> = match viewer {
        Some(viewer) => {
            reaction::Entity::find()
                .select_only()
                .column(reaction::Column::MessageId)
                .column(reaction::Column::Emoji)
                .filter(reaction::Column::MessageId.is_in(message_ids.iter().copied()))
                .filter(reaction::Column::UserId.eq(viewer))
                .into_tuple()
                .all(db)
                .await?
        }
        None => Vec::new(),
    };
    let mut firsts: HashMap<i64, Vec<(chrono::NaiveDateTime, ReactionCount)>> = HashMap::new();
    for (message_id, emoji, count, first) in counts {
        let me = mine.iter().any(|(m, e)| *m == message_id && *e == emoji);
        firsts.entry(message_id).or_default().push((
            first,
            ReactionCount {
                emoji,
                count: count.max(0) as u64,
                me,
            },
        ));
    }
    for (message_id, mut list) in firsts {
        list.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.emoji.cmp(&b.1.emoji)));
        out.insert(message_id, list.into_iter().map(|(_, r)| r).collect());
    }
    Ok(out)
}

/// Deletes the reactions of these messages (a message or a room going).
pub async fn delete_of<C: ConnectionTrait>(db: &C, message_ids: &[i64]) -> Result<(), DbErr> {
    if message_ids.is_empty() {
        return Ok(());
    }
    reaction::Entity::delete_many()
        .filter(reaction::Column::MessageId.is_in(message_ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

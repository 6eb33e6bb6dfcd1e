//! The `message` table's queries. Above this module a message is a `domain::Message`.
//!
//! Inserting: where the database can say which ids a multi-row INSERT generated
//! (`RETURNING`: PostgreSQL, SQLite, MariaDB) a batch is one statement; on MySQL it is one
//! statement per row, since MySQL may give one statement's rows ids that are not
//! consecutive. With several replicas writing (`ordered`), a batch locks its rooms' rows
//! and reads each room's previous message id: see `delivery` for why.

use super::entities::{message, room};
use crate::domain::{seq, Message, NewMessage};
use sea_orm::sea_query::{Expr, Func, LikeExpr, LockType, Order, Query};
use sea_orm::TransactionSession;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, ExprTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use std::collections::{BTreeSet, HashMap};

/// A message to insert, and its room.
pub struct ToInsert {
    pub room: String,
    pub message: NewMessage,
}

/// How a batch of rows is inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertMode {
    /// One multi-row INSERT that returns the generated ids.
    Returning,
    /// MariaDB speaks the MySQL dialect, plus `RETURNING`.
    MariaDbReturning,
    /// One INSERT per row, each reading its own generated id.
    PerRow,
}

/// The best way this database inserts a batch; `use_returning: false` forces one
/// statement per row (for proxies that do not understand `RETURNING`).
pub async fn insert_mode(
    db: &impl ConnectionTrait,
    use_returning: bool,
) -> Result<InsertMode, DbErr> {
    Ok(match db.get_database_backend() {
        _ if !use_returning => InsertMode::PerRow,
        DbBackend::MySql => {
            let version = db
                .query_one_raw(Statement::from_string(
                    DbBackend::MySql,
                    "SELECT VERSION() AS v",
                ))
                .await?
                .and_then(|row| row.try_get::<String>("", "v").ok())
                .unwrap_or_default();
            if supports_returning(&version) {
                InsertMode::MariaDbReturning
            } else {
                InsertMode::PerRow
            }
        }
        _ => InsertMode::Returning,
    })
}

/// `INSERT ... RETURNING` exists in MariaDB from 10.5 on, and not in MySQL.
fn supports_returning(version: &str) -> bool {
    if !version.contains("MariaDB") {
        return false;
    }
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (10, 5)
}

/// A committed message and, when `ordered`, the `seq` of its room's change before it.
pub type Committed = (Message, Option<i64>);

/// What else a batch writes in its transaction for each message: its outgoing webhooks'
/// events (`delivery::webhooks`), so none is lost and none is sent for a message that
/// was not committed.
pub type Outbox<'a> = &'a (dyn Fn(&Message) -> Vec<super::webhooks::NewDelivery> + Sync);

/// Inserts the batch: all rows are committed, or none is. With `ordered`, each row comes
/// with the `seq` (`domain::seq`) of its room's change before it (a message, or another
/// change), read while the batch holds its rooms' locks. `outbox` rows are written in the
/// same transaction.
pub async fn insert_batch(
    db: &(impl ConnectionTrait + TransactionTrait),
    batch: &[ToInsert],
    mode: InsertMode,
    ordered: bool,
    outbox: Option<Outbox<'_>>,
) -> Result<Vec<Committed>, DbErr> {
    let timestamp = crate::domain::now_utc();
    if let (InsertMode::Returning | InsertMode::MariaDbReturning, false, None) =
        (mode, ordered, outbox)
    {
        // One statement is atomic on its own: no BEGIN and COMMIT round trips.
        let ids = insert_returning(db, batch, timestamp, mode).await?;
        return Ok(committed(batch, ids, timestamp, None));
    }
    let txn = db.begin().await?;
    let rooms: BTreeSet<&str> = batch.iter().map(|p| p.room.as_str()).collect();
    let mut last = HashMap::new();
    if ordered {
        lock_rooms(&txn, &rooms).await?;
        let rooms: Vec<&str> = rooms.iter().copied().collect();
        for (room, (change, newest)) in super::changes::heads(&txn, &rooms).await? {
            last.insert(room, std::cmp::max(change, seq::of_message(newest)));
        }
    }
    let ids = match mode {
        InsertMode::PerRow => insert_per_row(&txn, batch, timestamp).await?,
        _ => insert_returning(&txn, batch, timestamp, mode).await?,
    };
    let committed = committed(batch, ids, timestamp, ordered.then_some(last));
    if let Some(outbox) = outbox {
        let rows = committed.iter().flat_map(|(m, _)| outbox(m)).collect();
        super::webhooks::enqueue(&txn, rows, timestamp).await?;
    }
    txn.commit().await?;
    Ok(committed)
}

/// The batch's messages as stored, each with the `seq` before it in its room when the
/// rooms' last changes (`last`) were read.
fn committed(
    batch: &[ToInsert],
    ids: Vec<i64>,
    timestamp: chrono::NaiveDateTime,
    mut last: Option<HashMap<String, i64>>,
) -> Vec<Committed> {
    batch
        .iter()
        .zip(ids)
        .map(|(row, id)| {
            let prev = last.as_mut().map(|last| {
                let last = last.entry(row.room.clone()).or_insert(0);
                std::mem::replace(last, seq::of_message(id))
            });
            let message = Message {
                id,
                room: row.room.clone(),
                timestamp,
                username: row.message.username.clone(),
                text: row.message.text.clone(),
                user_id: row.message.user_id.clone(),
                message_type: row.message.message_type,
                file_url: row.message.file_url.clone(),
                client_stamp: row.message.client_stamp.clone(),
                edited_at: None,
                reactions: Vec::new(),
                reply_to: row.message.reply_to,
                reply_preview: row.message.reply_preview.clone(),
            };
            (message, prev)
        })
        .collect()
}

/// Locks the rooms until the transaction ends, in one order on every replica so two cannot
/// wait on each other; so ids and `seq`s are given in commit order within a room. SQLite
/// has no row locks and lets one writer in at a time: there the transaction writes first
/// (the rooms' rows, unchanged), which makes it the one writer before it reads anything (a
/// transaction that read first could not become the writer later).
pub async fn lock_rooms<C: ConnectionTrait>(txn: &C, rooms: &BTreeSet<&str>) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    if backend == DbBackend::Sqlite {
        let write = Query::update()
            .table(room::Entity)
            .value(
                room::Column::Visibility,
                Expr::col(room::Column::Visibility),
            )
            .and_where(room::Column::Id.is_in(rooms.iter().copied()))
            .to_owned();
        txn.execute_raw(backend.build(&write)).await?;
    } else {
        let lock = Query::select()
            .column(room::Column::Id)
            .from(room::Entity)
            .and_where(room::Column::Id.is_in(rooms.iter().copied()))
            .order_by(room::Column::Id, Order::Asc)
            .lock(LockType::Update)
            .to_owned();
        txn.query_all_raw(backend.build(&lock)).await?;
    }
    Ok(())
}

async fn insert_returning<C: ConnectionTrait>(
    db: &C,
    batch: &[ToInsert],
    timestamp: chrono::NaiveDateTime,
    mode: InsertMode,
) -> Result<Vec<i64>, DbErr> {
    use message::Column;
    let mut insert = Query::insert();
    insert.into_table(message::Entity).columns([
        Column::Room,
        Column::Timestamp,
        Column::Username,
        Column::Text,
        Column::UserId,
        Column::MessageType,
        Column::FileUrl,
        Column::ClientType,
        Column::ClientTs,
        Column::ReplyTo,
    ]);
    for p in batch {
        insert
            .values([
                p.room.clone().into(),
                timestamp.into(),
                p.message.username.clone().into(),
                p.message.text.clone().into(),
                p.message.user_id.clone().into(),
                p.message.message_type.into(),
                p.message.file_url.clone().into(),
                p.message
                    .client_stamp
                    .as_ref()
                    .map(|e| e.kind.clone())
                    .into(),
                p.message.client_stamp.as_ref().map(|e| e.ts).into(),
                p.message.reply_to.into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    let backend = db.get_database_backend();
    let statement = if mode == InsertMode::MariaDbReturning {
        let mut statement = backend.build(&insert);
        statement.sql.push_str(" RETURNING `id`");
        statement
    } else {
        backend.build(insert.returning_col(Column::Id))
    };
    let rows = db.query_all_raw(statement).await?;
    // Rows get their ids in the order of the VALUES list; the order RETURNING lists them
    // in is not promised, so sorting restores it.
    let mut ids = rows
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.len() != batch.len() {
        return Err(DbErr::Custom(format!(
            "inserted {} rows, database returned {} ids",
            batch.len(),
            ids.len()
        )));
    }
    ids.sort_unstable();
    Ok(ids)
}

async fn insert_per_row<C: ConnectionTrait>(
    txn: &C,
    batch: &[ToInsert],
    timestamp: chrono::NaiveDateTime,
) -> Result<Vec<i64>, DbErr> {
    let mut ids = Vec::with_capacity(batch.len());
    for pending in batch {
        let row = message::ActiveModel {
            id: NotSet,
            room: Set(pending.room.clone()),
            timestamp: Set(timestamp),
            username: Set(pending.message.username.clone()),
            text: Set(pending.message.text.clone()),
            user_id: Set(pending.message.user_id.clone()),
            message_type: Set(pending.message.message_type),
            file_url: Set(pending.message.file_url.clone()),
            client_type: Set(pending
                .message
                .client_stamp
                .as_ref()
                .map(|e| e.kind.clone())),
            client_ts: Set(pending.message.client_stamp.as_ref().map(|e| e.ts)),
            edited_at: NotSet,
            reply_to: Set(pending.message.reply_to),
        };
        ids.push(message::Entity::insert(row).exec(txn).await?.last_insert_id);
    }
    Ok(ids)
}

fn all(rows: Vec<message::Model>) -> Vec<Message> {
    rows.into_iter().map(Message::from).collect()
}

/// Messages of a room with an id above `after` (and below `before`), oldest first,
/// `limit` at most.
pub async fn in_room_after<C: ConnectionTrait>(
    db: &C,
    room: &str,
    after: i64,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<Message>, DbErr> {
    let mut query = message::Entity::find()
        .filter(message::Column::Room.eq(room))
        .filter(message::Column::Id.gt(after));
    if let Some(before) = before {
        query = query.filter(message::Column::Id.lt(before));
    }
    Ok(all(query
        .order_by_asc(message::Column::Id)
        .limit(limit)
        .all(db)
        .await?))
}

/// The rooms with messages above `after`, and the lowest such id in each.
pub async fn rooms_after(
    db: &impl ConnectionTrait,
    after: i64,
) -> Result<Vec<(String, i64)>, DbErr> {
    let rows: Vec<(String, Option<i64>)> = message::Entity::find()
        .select_only()
        .column(message::Column::Room)
        .column_as(message::Column::Id.min(), "id")
        .filter(message::Column::Id.gt(after))
        .group_by(message::Column::Room)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(room, id)| id.map(|id| (room, id)))
        .collect())
}

/// What a page of a room's history asks for.
pub struct Page<'a> {
    pub before: Option<i64>,
    pub after: Option<i64>,
    /// Text to search for, ignoring case.
    pub search: Option<&'a str>,
    pub limit: u64,
}

/// The room's newest `limit` messages matching the page, oldest first; forward from
/// `after` (without `before`), the oldest after it.
pub async fn page(
    db: &impl ConnectionTrait,
    room: &str,
    page: Page<'_>,
) -> Result<Vec<Message>, DbErr> {
    let mut query = message::Entity::find().filter(message::Column::Room.eq(room));
    if let Some(before) = page.before {
        query = query.filter(message::Column::Id.lt(before));
    }
    if let Some(after) = page.after {
        query = query.filter(message::Column::Id.gt(after));
    }
    if let Some(q) = page.search {
        let pattern = format!("%{}%", super::escape_like(&q.to_lowercase()));
        query = query.filter(
            Expr::expr(Func::lower(Expr::col(message::Column::Text)))
                .like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    let forward = page.after.is_some() && page.before.is_none();
    let order = if forward { Order::Asc } else { Order::Desc };
    let mut rows = query
        .order_by(message::Column::Id, order)
        .limit(page.limit)
        .all(db)
        .await?;
    if !forward {
        rows.reverse();
    }
    Ok(all(rows))
}

/// Words MySQL's and MariaDB's InnoDB full-text index leaves out (its default stopword
/// list): a search for one of them, or for a word shorter than the index's shortest
/// token (3), is answered by `LIKE` instead, so it still finds what it asks for.
const INNODB_STOPWORDS: [&str; 36] = [
    "a", "about", "an", "are", "as", "at", "be", "by", "com", "de", "en", "for", "from", "how",
    "i", "in", "is", "it", "la", "of", "on", "or", "that", "the", "this", "to", "was", "what",
    "when", "where", "who", "will", "with", "und", "the", "www",
];

/// Messages searched (the newest) when every word of a search is one MySQL's index leaves
/// out.
pub const UNINDEXED_WINDOW: i64 = 50_000;

/// A word to search for: lower-cased letters and digits, and whether it matches the start
/// of a word (`deploy*`) or a whole word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchWord {
    pub text: String,
    pub prefix: bool,
}

/// The newest messages (`before` an id, if given) whose text holds every one of `words`
/// (each a whole word, or the start of one) in the rooms
/// `readable` names (every room when none) and, when given, `only` these (a bot's), newest
/// first, `limit` at most. Each database
/// answers from its own full-text index (see the `search` migration).
pub async fn search(
    db: &impl ConnectionTrait,
    words: &[SearchWord],
    readable: Option<sea_orm::sea_query::SelectStatement>,
    only: Option<&[String]>,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<Message>, DbErr> {
    let mut query = message::Entity::find();
    if let Some(only) = only {
        query = query.filter(message::Column::Room.is_in(only.iter().cloned()));
    }
    match db.get_database_backend() {
        DbBackend::MySql => {
            let (indexed, scanned): (Vec<&SearchWord>, Vec<&SearchWord>) =
                words.iter().partition(|w| {
                    w.text.chars().count() >= 3 && !INNODB_STOPWORDS.contains(&w.text.as_str())
                });
            if !indexed.is_empty() {
                let against: Vec<String> = indexed
                    .iter()
                    .map(|w| format!("+{}{}", w.text, if w.prefix { "*" } else { "" }))
                    .collect();
                query = query.filter(Expr::cust_with_values(
                    "MATCH (text) AGAINST (? IN BOOLEAN MODE)",
                    [against.join(" ")],
                ));
            }
            // Only words the index leaves out: the newest messages are read for them, a
            // bounded window rather than the whole table.
            if indexed.is_empty() {
                let newest = message::Entity::find()
                    .select_only()
                    .column_as(message::Column::Id.max(), "id")
                    .into_tuple::<Option<i64>>()
                    .one(db)
                    .await?
                    .flatten()
                    .unwrap_or(0);
                query = query.filter(message::Column::Id.gt(newest - UNINDEXED_WINDOW));
            }
            for word in scanned {
                let pattern = format!("%{}%", super::escape_like(&word.text));
                query = query.filter(
                    Expr::col(message::Column::Text).like(LikeExpr::new(pattern).escape('\\')),
                );
            }
        }
        DbBackend::Postgres => {
            let tsquery: Vec<String> = words
                .iter()
                .map(|w| format!("{}{}", w.text, if w.prefix { ":*" } else { "" }))
                .collect();
            query = query.filter(Expr::cust_with_values(
                "to_tsvector('simple', text) @@ to_tsquery('simple', $1)",
                [tsquery.join(" & ")],
            ));
        }
        _ => {
            let fts: Vec<String> = words
                .iter()
                .map(|w| format!("\"{}\"{}", w.text, if w.prefix { "*" } else { "" }))
                .collect();
            query = query.filter(Expr::cust_with_values(
                "id IN (SELECT rowid FROM message_fts WHERE message_fts MATCH ?)",
                [fts.join(" AND ")],
            ));
        }
    }
    if let Some(readable) = readable {
        query = query.filter(message::Column::Room.in_subquery(readable));
    }
    if let Some(before) = before {
        query = query.filter(message::Column::Id.lt(before));
    }
    Ok(all(query
        .order_by_desc(message::Column::Id)
        .limit(limit)
        .all(db)
        .await?))
}

/// `%`, `_` and the escape character itself match only themselves.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<Message>, DbErr> {
    Ok(message::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(Message::from))
}

/// The messages of these ids that exist (a page's replies' originals).
pub async fn with_ids(db: &impl ConnectionTrait, ids: Vec<i64>) -> Result<Vec<Message>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(all(message::Entity::find()
        .filter(message::Column::Id.is_in(ids))
        .all(db)
        .await?))
}

/// Sets a message's text and when it was edited; false when there is no such message.
pub async fn set_text<C: ConnectionTrait>(
    db: &C,
    id: i64,
    text: &str,
    edited_at: chrono::NaiveDateTime,
) -> Result<bool, DbErr> {
    let done = message::Entity::update_many()
        .col_expr(message::Column::Text, Expr::value(text))
        .col_expr(message::Column::EditedAt, Expr::value(edited_at))
        .filter(message::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(done.rows_affected > 0)
}

/// Deletes the message with its reactions; true if there was one. The message's row
/// first, as a reaction being added holds it first: never each waiting on the other.
pub async fn delete<C: ConnectionTrait + TransactionTrait>(db: &C, id: i64) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let deleted = message::Entity::delete_by_id(id)
        .exec(&txn)
        .await?
        .rows_affected
        > 0;
    super::reactions::delete_of(&txn, &[id]).await?;
    txn.commit().await?;
    Ok(deleted)
}

/// The id of the room's newest message, if it has one (the (room, id) index answers it).
pub async fn last_id_in(db: &impl ConnectionTrait, room: &str) -> Result<Option<i64>, DbErr> {
    message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .filter(message::Column::Room.eq(room))
        .order_by_desc(message::Column::Id)
        .limit(1)
        .into_tuple::<i64>()
        .one(db)
        .await
}

pub async fn count(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    message::Entity::find().count(db).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn returning_is_used_on_mariadb_10_5_and_later_only() {
        assert!(super::supports_returning("10.11.19-MariaDB-0+deb12u1"));
        assert!(super::supports_returning("11.4.2-MariaDB"));
        assert!(!super::supports_returning("10.4.34-MariaDB"));
        assert!(!super::supports_returning("8.0.36"));
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(crate::db::escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}

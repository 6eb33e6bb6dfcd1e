//! The `room_change` table: a room's changes other than new messages, by `seq`
//! (`domain::seq`), as the JSON of the event readers were told. Above `db` the JSON is a
//! `realtime::Event`; here it is text.

use super::entities::{change_log_pruned, room_change};
use sea_orm::TransactionSession;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use std::collections::HashMap;

pub use room_change::Model as Change;

/// Records the changes (in one statement).
pub async fn insert<C: ConnectionTrait>(db: &C, rows: &[Change]) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    room_change::Entity::insert_many(rows.iter().map(|row| room_change::ActiveModel {
        room_id: Set(row.room_id.clone()),
        seq: Set(row.seq),
        message_id: Set(row.message_id),
        event: Set(row.event.clone()),
        created_at: Set(row.created_at),
    }))
    .exec(db)
    .await
    .map(|_| ())
}

/// Per room: the `seq` of its last change (or the highest pruned) and its newest
/// message's id, each 0 for none; read in the writer's transaction, while the rooms are
/// its own: what the room's next changes are numbered after. One statement, each value
/// answered from the end of an index (a GROUP BY would read every row of each room).
pub async fn heads<C: ConnectionTrait>(
    db: &C,
    rooms: &[&str],
) -> Result<HashMap<String, (i64, i64)>, DbErr> {
    let mut heads = HashMap::new();
    if rooms.is_empty() {
        return Ok(heads);
    }
    let backend = db.get_database_backend();
    let mut binds = super::Binds::new(backend);
    let mut parts = Vec::with_capacity(rooms.len());
    for (i, room) in rooms.iter().enumerate() {
        let index = binds.index(i);
        let (r1, r2, r3) = (binds.bind(*room), binds.bind(*room), binds.bind(*room));
        parts.push(format!(
            "SELECT {index} AS i, \
             (SELECT MAX(seq) FROM room_change WHERE room_id = {r1}) AS seq, \
             (SELECT MAX(through) FROM change_log_pruned WHERE room_id = {r2}) AS pruned, \
             (SELECT MAX(id) FROM message WHERE room = {r3}) AS newest"
        ));
    }
    let sql = parts.join(" UNION ALL ");
    for row in db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, binds.values))
        .await?
    {
        let i: i64 = row.try_get("", "i")?;
        let seq: Option<i64> = row.try_get("", "seq")?;
        let pruned: Option<i64> = row.try_get("", "pruned")?;
        let newest: Option<i64> = row.try_get("", "newest")?;
        if let Some(room) = usize::try_from(i).ok().and_then(|i| rooms.get(i)) {
            heads.insert(
                room.to_string(),
                (
                    seq.unwrap_or(0).max(pruned.unwrap_or(0)),
                    newest.unwrap_or(0),
                ),
            );
        }
    }
    Ok(heads)
}

/// The room's changes with a `seq` above `after` (and at most `up_to`), oldest first,
/// `limit` at most.
pub async fn in_room<C: ConnectionTrait>(
    db: &C,
    room: &str,
    after: i64,
    up_to: Option<i64>,
    limit: u64,
) -> Result<Vec<Change>, DbErr> {
    let mut query = room_change::Entity::find()
        .filter(room_change::Column::RoomId.eq(room))
        .filter(room_change::Column::Seq.gt(after));
    if let Some(up_to) = up_to {
        query = query.filter(room_change::Column::Seq.lte(up_to));
    }
    query
        .order_by_asc(room_change::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

/// The rooms with changes recorded at or after `since`, and the lowest such `seq` in each.
pub async fn rooms_changed_since<C: ConnectionTrait>(
    db: &C,
    since: chrono::NaiveDateTime,
) -> Result<Vec<(String, i64)>, DbErr> {
    let rows: Vec<(String, Option<i64>)> = room_change::Entity::find()
        .select_only()
        .column(room_change::Column::RoomId)
        .column_as(room_change::Column::Seq.min(), "seq")
        .filter(room_change::Column::CreatedAt.gte(since))
        .group_by(room_change::Column::RoomId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(room, seq)| seq.map(|seq| (room, seq)))
        .collect())
}

/// The highest `seq` of the room whose change is no longer kept; 0 if none was pruned.
pub async fn pruned_through<C: ConnectionTrait>(db: &C, room: &str) -> Result<i64, DbErr> {
    Ok(change_log_pruned::Entity::find_by_id(room.to_string())
        .one(db)
        .await?
        .map_or(0, |row| row.through))
}

/// Deletes up to `limit` changes recorded before `before`, remembering per room the
/// highest `seq` deleted; returns how many went.
pub async fn prune<C: ConnectionTrait + sea_orm::TransactionTrait>(
    db: &C,
    before: chrono::NaiveDateTime,
    limit: u64,
) -> Result<u64, DbErr> {
    let old: Vec<(String, i64)> = room_change::Entity::find()
        .select_only()
        .column(room_change::Column::RoomId)
        .column(room_change::Column::Seq)
        .filter(room_change::Column::CreatedAt.lt(before))
        .order_by_asc(room_change::Column::CreatedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if old.is_empty() {
        return Ok(0);
    }
    let mut through: HashMap<&str, i64> = HashMap::new();
    for (room, seq) in &old {
        let top = through.entry(room.as_str()).or_insert(*seq);
        *top = (*top).max(*seq);
    }
    let txn = db.begin().await?;
    for (room, top) in &through {
        raise_pruned(&txn, room, *top).await?;
        room_change::Entity::delete_many()
            .filter(room_change::Column::RoomId.eq(*room))
            .filter(room_change::Column::Seq.lte(*top))
            .filter(room_change::Column::CreatedAt.lt(before))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(old.len() as u64)
}

/// Raises the room's pruned mark to `top`, never lowers it: replicas prune at once.
async fn raise_pruned<C: ConnectionTrait>(db: &C, room: &str, top: i64) -> Result<(), DbErr> {
    let raised = change_log_pruned::Entity::update_many()
        .col_expr(
            change_log_pruned::Column::Through,
            sea_orm::sea_query::Expr::value(top),
        )
        .filter(change_log_pruned::Column::RoomId.eq(room))
        .filter(change_log_pruned::Column::Through.lt(top))
        .exec(db)
        .await?
        .rows_affected;
    if raised > 0 || pruned_through(db, room).await? > 0 {
        return Ok(());
    }
    let row = change_log_pruned::ActiveModel {
        room_id: Set(room.to_string()),
        through: Set(top),
    };
    match change_log_pruned::Entity::insert(row)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(()),
        // Another replica's first mark came first: raise it instead.
        Err(err) if super::error::cause(&err) == super::error::Cause::Duplicate => {
            Box::pin(raise_pruned(db, room, top)).await
        }
        Err(err) => Err(err),
    }
}

/// Forgets the changes of a deleted message (its edits' text among them).
pub async fn forget_message<C: ConnectionTrait>(
    db: &C,
    room: &str,
    message_id: i64,
) -> Result<(), DbErr> {
    room_change::Entity::delete_many()
        .filter(room_change::Column::RoomId.eq(room))
        .filter(room_change::Column::MessageId.eq(message_id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Forgets a deleted room's changes and what was pruned of them.
pub async fn delete_room<C: ConnectionTrait>(db: &C, room: &str) -> Result<(), DbErr> {
    room_change::Entity::delete_many()
        .filter(room_change::Column::RoomId.eq(room))
        .exec(db)
        .await?;
    change_log_pruned::Entity::delete_many()
        .filter(change_log_pruned::Column::RoomId.eq(room))
        .exec(db)
        .await?;
    Ok(())
}

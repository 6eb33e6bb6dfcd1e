//! The `room_read` table: how far each user has read each room, and what came after.
//!
//! Counting what is unread never reads a room's whole history: each count reads at most
//! [`COUNT_CAP`] + 1 rows through the `(room, id)` index (and a user's mentions through
//! `(user_id, room_id, message_id)`), so its cost does not grow with the room. Past the
//! cap the count says so (`capped`) instead of counting on.

use super::entities::{room, room_read};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value,
};

/// Unread messages (and mentions) counted per room at most.
pub const COUNT_CAP: u64 = 1000;
/// Rooms whose counts one statement reads together.
const ROOMS_PER_STATEMENT: usize = 50;

/// The user's mark in the room: the last message they have read, if they ever marked it.
pub async fn get(db: &impl ConnectionTrait, user: &str, room: &str) -> Result<Option<i64>, DbErr> {
    room_read::Entity::find_by_id((user.to_string(), room.to_string()))
        .select_only()
        .column(room_read::Column::LastReadId)
        .into_tuple::<i64>()
        .one(db)
        .await
}

/// Moves the user's mark in the room forward to `last_read_id`; true if it moved. A mark at
/// or beyond it already stays: two tabs marking at once leave the furthest mark, and only
/// a move that happened is told.
pub async fn advance(
    db: &impl ConnectionTrait,
    user: &str,
    room: &str,
    last_read_id: i64,
) -> Result<bool, DbErr> {
    let now = crate::domain::now_utc();
    let moved = room_read::Entity::update_many()
        .col_expr(room_read::Column::LastReadId, Expr::value(last_read_id))
        .col_expr(room_read::Column::UpdatedAt, Expr::value(now))
        .filter(room_read::Column::UserId.eq(user))
        .filter(room_read::Column::RoomId.eq(room))
        .filter(room_read::Column::LastReadId.lt(last_read_id))
        .exec(db)
        .await?
        .rows_affected;
    if moved > 0 {
        return Ok(true);
    }
    if get(db, user, room).await?.is_some() {
        return Ok(false);
    }
    let row = room_read::ActiveModel {
        user_id: Set(user.to_string()),
        room_id: Set(room.to_string()),
        last_read_id: Set(last_read_id),
        updated_at: Set(now),
    };
    // Two first marks at once: the other one's insert wins, and this one moves it on.
    match room_read::Entity::insert(row)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(true),
        Err(err) if super::error::cause(&err) == super::error::Cause::Duplicate => {
            Box::pin(advance(db, user, room, last_read_id)).await
        }
        Err(err) => Err(err),
    }
}

/// The rooms whose unread counts a user sees, each with their mark (0: never marked):
/// the rooms they have marked and may still read (`readable`: a statement of room ids),
/// the most recently marked first, and with `member_of` the private and direct rooms they
/// own or belong to. `limit` of each kind at most.
pub async fn rooms_of(
    db: &impl ConnectionTrait,
    user: &str,
    readable: Option<sea_orm::sea_query::SelectStatement>,
    member_of: bool,
    limit: u64,
) -> Result<Vec<(String, i64)>, DbErr> {
    let mut marked = room_read::Entity::find()
        .select_only()
        .column(room_read::Column::RoomId)
        .column(room_read::Column::LastReadId)
        .filter(room_read::Column::UserId.eq(user));
    if let Some(readable) = readable {
        marked = marked.filter(room_read::Column::RoomId.in_subquery(readable));
    }
    let mut rooms: Vec<(String, i64)> = marked
        .order_by_desc(room_read::Column::UpdatedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if member_of {
        let own: Vec<String> = room::Entity::find()
            .select_only()
            .column(room::Column::Id)
            .filter(room::Column::Visibility.ne(crate::domain::Visibility::Public))
            .filter(super::rooms::visible(Some(user)))
            .order_by_asc(room::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(db)
            .await?;
        let unlisted: Vec<String> = own
            .into_iter()
            .filter(|id| !rooms.iter().any(|(marked, _)| marked == id))
            .collect();
        // Their marks, if they fell outside the most recent ones above.
        let marks: Vec<(String, i64)> = room_read::Entity::find()
            .select_only()
            .column(room_read::Column::RoomId)
            .column(room_read::Column::LastReadId)
            .filter(room_read::Column::UserId.eq(user))
            .filter(room_read::Column::RoomId.is_in(unlisted.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        for id in unlisted {
            let mark = marks
                .iter()
                .find(|(room, _)| *room == id)
                .map_or(0, |m| m.1);
            rooms.push((id, mark));
        }
    }
    Ok(rooms)
}

/// What is new in one room for one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Messages after the mark that are not the user's own, [`COUNT_CAP`] at most.
    pub unread: u64,
    /// Of those, the ones that mention the user (their mention notifications).
    pub mentions: u64,
    /// More came after the mark than were counted.
    pub capped: bool,
}

/// The counts for each of `rooms` (a room and the user's mark in it), in their order:
/// one statement per [`ROOMS_PER_STATEMENT`] rooms, each part reading bounded windows.
pub async fn counts(
    db: &impl ConnectionTrait,
    user: &str,
    rooms: &[(String, i64)],
) -> Result<Vec<Counts>, DbErr> {
    let backend = db.get_database_backend();
    let mut found = Vec::with_capacity(rooms.len());
    for chunk in rooms.chunks(ROOMS_PER_STATEMENT) {
        let mut counts = vec![
            Counts {
                unread: 0,
                mentions: 0,
                capped: false,
            };
            chunk.len()
        ];
        let (sql, values) = statement(backend, user, chunk);
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        for row in rows {
            let i: i64 = row.try_get("", "i")?;
            let seen: i64 = row.try_get("", "seen")?;
            let unread: i64 = row.try_get("", "unread")?;
            let mentions: i64 = row.try_get("", "mentions")?;
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| counts.get_mut(i)) {
                *slot = Counts {
                    unread: (unread.max(0) as u64).min(COUNT_CAP),
                    mentions: (mentions.max(0) as u64).min(COUNT_CAP),
                    capped: seen.max(0) as u64 > COUNT_CAP,
                };
            }
        }
        found.extend(counts);
    }
    Ok(found)
}

/// One part per room, `UNION ALL`ed: the room's index in `rooms`, how many messages came
/// after the mark (up to the cap + 1) and how many of those are not the user's (one read
/// of the window), and the user's mentions after the mark.
fn statement(backend: DbBackend, user: &str, rooms: &[(String, i64)]) -> (String, Vec<Value>) {
    let window = COUNT_CAP + 1;
    let mut binds = super::Binds::new(backend);
    let mut parts = Vec::with_capacity(rooms.len());
    for (i, (room, mark)) in rooms.iter().enumerate() {
        let index = binds.index(i);
        // Bound in the order the placeholders appear in the text.
        let user_1 = binds.bind(user);
        let (user_2, room_2, mark_2) = (
            binds.bind(user),
            binds.bind(room.as_str()),
            binds.bind(*mark),
        );
        let (room_1, mark_1) = (binds.bind(room.as_str()), binds.bind(*mark));
        parts.push(format!(
            "SELECT {index} AS i, COUNT(*) AS seen, \
             COUNT(CASE WHEN w.user_id IS NULL OR w.user_id <> {user_1} THEN 1 END) AS unread, \
             (SELECT COUNT(*) FROM (SELECT n.message_id FROM notification n \
               WHERE n.user_id = {user_2} AND n.room_id = {room_2} \
               AND n.notif_type = 'mention' AND n.message_id > {mark_2} \
               AND EXISTS (SELECT 1 FROM message x WHERE x.id = n.message_id) \
               LIMIT {window}) m) AS mentions \
             FROM (SELECT user_id FROM message WHERE room = {room_1} AND id > {mark_1} \
               ORDER BY id LIMIT {window}) w"
        ));
    }
    (parts.join(" UNION ALL "), binds.values)
}

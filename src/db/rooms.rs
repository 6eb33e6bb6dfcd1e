//! The `room` and `room_member` tables' queries.

use super::entities::{message, reaction, room, room_member, room_read, stored_file};
use crate::domain::Visibility;
use sea_orm::sea_query::{Query, SelectStatement};
use sea_orm::TransactionSession;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

pub use room::Model as Room;
pub use room_member::Model as Member;

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Room>, DbErr> {
    room::Entity::find_by_id(id.to_string()).one(db).await
}

/// The ids of the rooms `user` owns (made signed in), at most 500.
pub async fn owned_by(db: &impl ConnectionTrait, user: &str) -> Result<Vec<String>, DbErr> {
    room::Entity::find()
        .select_only()
        .column(room::Column::Id)
        .filter(room::Column::OwnerId.eq(user))
        .order_by_asc(room::Column::Id)
        .limit(500)
        .into_tuple()
        .all(db)
        .await
}

/// The rooms `user` may read: the public ones, and the private and direct ones they own
/// or are a member of.
pub(super) fn visible(user: Option<&str>) -> Condition {
    let mut visible = Condition::any().add(room::Column::Visibility.eq(Visibility::Public));
    if let Some(user) = user {
        visible = visible.add(room::Column::OwnerId.eq(user)).add(
            room::Column::Id.in_subquery(
                Query::select()
                    .column(room_member::Column::RoomId)
                    .from(room_member::Entity)
                    .and_where(room_member::Column::UserId.eq(user))
                    .to_owned(),
            ),
        );
    }
    visible
}

/// The rooms a caller may see, oldest first (see [`visible`]); with `all` (an admin),
/// every room.
pub async fn list_visible(
    db: &impl ConnectionTrait,
    user: Option<&str>,
    all: bool,
) -> Result<Vec<Room>, DbErr> {
    let mut query = room::Entity::find();
    if !all {
        query = query.filter(visible(user));
    }
    query
        .order_by_asc(room::Column::CreatedAt)
        .order_by_asc(room::Column::Id)
        .all(db)
        .await
}

fn active(row: &Room) -> room::ActiveModel {
    room::ActiveModel {
        id: Set(row.id.clone()),
        name: Set(row.name.clone()),
        description: Set(row.description.clone()),
        created_at: Set(row.created_at),
        owner_id: Set(row.owner_id.clone()),
        visibility: Set(row.visibility),
    }
}

pub async fn insert(db: &impl ConnectionTrait, row: &Room) -> Result<(), DbErr> {
    room::Entity::insert(active(row)).exec(db).await.map(|_| ())
}

/// Makes sure the room has its row, creating it public with no owner (a legacy room, by
/// its first message or file) when it has none. Two first posts at once: the second
/// insert fails on the key, and the room exists all the same.
pub async fn ensure_public(
    db: &impl ConnectionTrait,
    id: &str,
    at: sea_orm::prelude::DateTime,
) -> Result<(), DbErr> {
    // A direct conversation's id gets its row from its two people's asking only, even
    // when an admin, who may write anywhere, posts to it first.
    if crate::domain::names::is_direct_room_id(id) || get(db, id).await?.is_some() {
        return Ok(());
    }
    let row = Room {
        id: id.to_string(),
        name: id.to_string(),
        description: None,
        created_at: at,
        owner_id: None,
        visibility: Visibility::Public,
    };
    match insert(db, &row).await {
        Err(err) if super::error::cause(&err) != super::error::Cause::Duplicate => Err(err),
        _ => Ok(()),
    }
}

/// Creates a room with its first members, together.
pub async fn insert_with_members(
    db: &(impl ConnectionTrait + TransactionTrait),
    row: &Room,
    members: &[String],
) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    room::Entity::insert(active(row)).exec(&txn).await?;
    if !members.is_empty() {
        room_member::Entity::insert_many(members.iter().map(|user| room_member::ActiveModel {
            room_id: Set(row.id.clone()),
            user_id: Set(user.clone()),
            added_at: Set(row.created_at),
        }))
        .exec(&txn)
        .await?;
    }
    txn.commit().await
}

/// What deleting a room took with it.
#[derive(Debug)]
pub struct Deleted {
    pub messages: u64,
    pub files: u64,
    /// The store's keys of the room's files and of their thumbnails, whose rows went with
    /// the room: their bytes are the file store's to delete.
    pub file_keys: Vec<String>,
}

/// Deletes the room, its members, every message in it, its files' rows and its hooks,
/// together.
pub async fn delete_with_messages<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: &str,
) -> Result<Deleted, DbErr> {
    let txn = db.begin().await?;
    reaction::Entity::delete_many()
        .filter(
            reaction::Column::MessageId.in_subquery(
                Query::select()
                    .column(message::Column::Id)
                    .from(message::Entity)
                    .and_where(message::Column::Room.eq(id))
                    .to_owned(),
            ),
        )
        .exec(&txn)
        .await?;
    let messages = message::Entity::delete_many()
        .filter(message::Column::Room.eq(id))
        .exec(&txn)
        .await?
        .rows_affected;
    room_member::Entity::delete_many()
        .filter(room_member::Column::RoomId.eq(id))
        .exec(&txn)
        .await?;
    room_read::Entity::delete_many()
        .filter(room_read::Column::RoomId.eq(id))
        .exec(&txn)
        .await?;
    // Each file's object and its thumbnail's, if it has one.
    let file_keys: Vec<(String, Option<String>)> = stored_file::Entity::find()
        .select_only()
        .column(stored_file::Column::ObjectKey)
        .column(stored_file::Column::ThumbnailKey)
        .filter(stored_file::Column::RoomId.eq(id))
        .into_tuple()
        .all(&txn)
        .await?;
    let file_keys: Vec<String> = file_keys
        .into_iter()
        .flat_map(|(object, thumbnail)| std::iter::once(object).chain(thumbnail))
        .collect();
    let files = stored_file::Entity::delete_many()
        .filter(stored_file::Column::RoomId.eq(id))
        .exec(&txn)
        .await?
        .rows_affected;
    room::Entity::delete_by_id(id.to_string())
        .exec(&txn)
        .await?;
    super::changes::delete_room(&txn, id).await?;
    super::hooks::delete_room(&txn, id).await?;
    super::webhooks::delete_room(&txn, id).await?;
    txn.commit().await?;
    Ok(Deleted {
        messages,
        files,
        file_keys,
    })
}

pub async fn is_member(db: &impl ConnectionTrait, room: &str, user: &str) -> Result<bool, DbErr> {
    Ok(
        room_member::Entity::find_by_id((room.to_string(), user.to_string()))
            .one(db)
            .await?
            .is_some(),
    )
}

/// The room's members, in the order they were added, at most `limit`.
pub async fn members(
    db: &impl ConnectionTrait,
    room: &str,
    limit: u64,
) -> Result<Vec<Member>, DbErr> {
    room_member::Entity::find()
        .filter(room_member::Column::RoomId.eq(room))
        .order_by_asc(room_member::Column::AddedAt)
        .order_by_asc(room_member::Column::UserId)
        .limit(limit)
        .all(db)
        .await
}

pub async fn count_members(db: &impl ConnectionTrait, room: &str) -> Result<u64, DbErr> {
    room_member::Entity::find()
        .filter(room_member::Column::RoomId.eq(room))
        .count(db)
        .await
}

pub async fn add_member(db: &impl ConnectionTrait, member: &Member) -> Result<(), DbErr> {
    room_member::Entity::insert(room_member::ActiveModel {
        room_id: Set(member.room_id.clone()),
        user_id: Set(member.user_id.clone()),
        added_at: Set(member.added_at),
    })
    .exec(db)
    .await
    .map(|_| ())
}

/// Whether there was such a member.
pub async fn remove_member(
    db: &impl ConnectionTrait,
    room: &str,
    user: &str,
) -> Result<bool, DbErr> {
    Ok(room_member::Entity::delete_many()
        .filter(room_member::Column::RoomId.eq(room))
        .filter(room_member::Column::UserId.eq(user))
        .exec(db)
        .await?
        .rows_affected
        > 0)
}

/// The ids of the rooms `user` may read (see [`visible`]), for queries of what is in
/// rooms: a room id without a row is in none, so what was left of a deleted room stays
/// hidden.
pub fn visible_to(user: Option<&str>) -> SelectStatement {
    Query::select()
        .column(room::Column::Id)
        .from(room::Entity)
        .cond_where(visible(user))
        .to_owned()
}

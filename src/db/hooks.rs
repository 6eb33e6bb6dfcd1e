//! The `hook` table: incoming webhooks.

use super::entities::hook;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

pub use hook::Model as Hook;

/// At most this many hooks are listed at once.
pub const LIST_LIMIT: u64 = 500;

pub async fn insert(db: &impl ConnectionTrait, row: &Hook) -> Result<(), DbErr> {
    let active = hook::ActiveModel {
        id: Set(row.id.clone()),
        room_id: Set(row.room_id.clone()),
        name: Set(row.name.clone()),
        secret_hash: Set(row.secret_hash.clone()),
        created_by: Set(row.created_by.clone()),
        created_at: Set(row.created_at),
    };
    hook::Entity::insert(active).exec(db).await.map(|_| ())
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Hook>, DbErr> {
    hook::Entity::find_by_id(id.to_string()).one(db).await
}

/// Hooks of these rooms (every room's when `rooms` is None), oldest first.
pub async fn list(db: &impl ConnectionTrait, rooms: Option<&[String]>) -> Result<Vec<Hook>, DbErr> {
    let mut query = hook::Entity::find();
    if let Some(rooms) = rooms {
        query = query.filter(hook::Column::RoomId.is_in(rooms.iter().cloned()));
    }
    query
        .order_by_asc(hook::Column::CreatedAt)
        .limit(LIST_LIMIT)
        .all(db)
        .await
}

pub async fn delete(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    hook::Entity::delete_by_id(id.to_string())
        .exec(db)
        .await
        .map(|_| ())
}

/// A deleted room's hooks go with it: a hook must not make the room again.
pub async fn delete_room(db: &impl ConnectionTrait, room_id: &str) -> Result<(), DbErr> {
    hook::Entity::delete_many()
        .filter(hook::Column::RoomId.eq(room_id))
        .exec(db)
        .await
        .map(|_| ())
}

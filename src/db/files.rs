//! The `stored_file` table: uploaded files' metadata.

use super::entities::stored_file;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

pub use stored_file::Model as StoredFile;

pub async fn insert(db: &impl ConnectionTrait, row: &StoredFile) -> Result<(), DbErr> {
    let active = stored_file::ActiveModel {
        id: Set(row.id.clone()),
        original_name: Set(row.original_name.clone()),
        content_type: Set(row.content_type.clone()),
        size_bytes: Set(row.size_bytes),
        uploaded_by: Set(row.uploaded_by.clone()),
        room_id: Set(row.room_id.clone()),
        object_key: Set(row.object_key.clone()),
        created_at: Set(row.created_at),
        thumbnail_key: Set(row.thumbnail_key.clone()),
        thumbnail_type: Set(row.thumbnail_type.clone()),
        thumbnail_width: Set(row.thumbnail_width),
        thumbnail_height: Set(row.thumbnail_height),
    };
    stored_file::Entity::insert(active)
        .exec(db)
        .await
        .map(|_| ())
}

/// Files, newest first; with `room`, that room's only; with `only`, those rooms' only (a
/// bot's). Unless `all` (an admin), files of rooms `user` may not read, and of rooms that
/// no longer exist, are left out (see `rooms::visible_to`).
pub async fn list(
    db: &impl ConnectionTrait,
    room: Option<&str>,
    limit: u64,
    user: Option<&str>,
    all: bool,
    only: Option<&[String]>,
) -> Result<Vec<StoredFile>, DbErr> {
    let mut query = stored_file::Entity::find();
    if let Some(only) = only {
        query = query.filter(stored_file::Column::RoomId.is_in(only.iter().cloned()));
    }
    if !all {
        query = query.filter(
            Condition::any()
                .add(stored_file::Column::RoomId.is_null())
                .add(stored_file::Column::RoomId.in_subquery(super::rooms::visible_to(user))),
        );
    }
    if let Some(room) = room {
        query = query.filter(stored_file::Column::RoomId.eq(room));
    }
    query
        .order_by_desc(stored_file::Column::CreatedAt)
        .order_by_desc(stored_file::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<StoredFile>, DbErr> {
    stored_file::Entity::find_by_id(id.to_string())
        .one(db)
        .await
}

pub async fn delete(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    stored_file::Entity::delete_by_id(id.to_string())
        .exec(db)
        .await
        .map(|_| ())
}

//! The `room` table's queries.

use super::entities::{message, room};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

pub use room::Model as Room;

pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<Room>, DbErr> {
    room::Entity::find_by_id(id.to_string()).one(db).await
}

/// Every room, oldest first.
pub async fn list(db: &DatabaseConnection) -> Result<Vec<Room>, DbErr> {
    room::Entity::find()
        .order_by_asc(room::Column::CreatedAt)
        .order_by_asc(room::Column::Id)
        .all(db)
        .await
}

pub async fn insert(db: &DatabaseConnection, row: &Room) -> Result<(), DbErr> {
    let active = room::ActiveModel {
        id: Set(row.id.clone()),
        name: Set(row.name.clone()),
        description: Set(row.description.clone()),
        created_at: Set(row.created_at),
        owner_id: Set(row.owner_id.clone()),
    };
    room::Entity::insert(active).exec(db).await.map(|_| ())
}

/// Deletes the room and every message in it, together; returns how many messages went.
pub async fn delete_with_messages(db: &DatabaseConnection, id: &str) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    let deleted = message::Entity::delete_many()
        .filter(message::Column::Room.eq(id))
        .exec(&txn)
        .await?
        .rows_affected;
    room::Entity::delete_by_id(id.to_string())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(deleted)
}

//! The `notification` table's queries.

use super::entities::notification;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

pub use notification::Model as Notification;

pub async fn insert(db: &impl ConnectionTrait, row: &Notification) -> Result<(), DbErr> {
    insert_many(db, std::slice::from_ref(row)).await
}

/// All in one statement.
pub async fn insert_many(db: &impl ConnectionTrait, rows: &[Notification]) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    notification::Entity::insert_many(rows.iter().map(active))
        .exec(db)
        .await
        .map(|_| ())
}

fn active(row: &Notification) -> notification::ActiveModel {
    notification::ActiveModel {
        id: Set(row.id.clone()),
        user_id: Set(row.user_id.clone()),
        title: Set(row.title.clone()),
        body: Set(row.body.clone()),
        notif_type: Set(row.notif_type),
        room_id: Set(row.room_id.clone()),
        from_user: Set(row.from_user.clone()),
        is_read: Set(row.is_read),
        message_id: Set(row.message_id),
        created_at: Set(row.created_at),
    }
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Notification>, DbErr> {
    notification::Entity::find_by_id(id.to_string())
        .one(db)
        .await
}

/// The user's notifications, newest first.
pub async fn of_user(
    db: &impl ConnectionTrait,
    user_id: &str,
    unread_only: bool,
    limit: u64,
) -> Result<Vec<Notification>, DbErr> {
    let mut query = notification::Entity::find().filter(notification::Column::UserId.eq(user_id));
    if unread_only {
        query = query.filter(notification::Column::IsRead.eq(false));
    }
    query
        .order_by_desc(notification::Column::CreatedAt)
        .order_by_desc(notification::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub async fn unread_count(db: &impl ConnectionTrait, user_id: &str) -> Result<u64, DbErr> {
    notification::Entity::find()
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::IsRead.eq(false))
        .count(db)
        .await
}

/// True if the notification exists (read now, or already).
pub async fn mark_read(db: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    let updated = notification::Entity::update_many()
        .col_expr(notification::Column::IsRead, Expr::value(true))
        .filter(notification::Column::Id.eq(id))
        .exec(db)
        .await?;
    // MySQL counts changed rows only: a second "read" of one notification changes none.
    Ok(updated.rows_affected > 0
        || notification::Entity::find_by_id(id.to_string())
            .one(db)
            .await?
            .is_some())
}

/// How many were unread.
pub async fn mark_all_read(db: &impl ConnectionTrait, user_id: &str) -> Result<u64, DbErr> {
    let updated = notification::Entity::update_many()
        .col_expr(notification::Column::IsRead, Expr::value(true))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::IsRead.eq(false))
        .exec(db)
        .await?;
    Ok(updated.rows_affected)
}

/// True if a row was deleted.
pub async fn delete(db: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    let deleted = notification::Entity::delete_by_id(id.to_string())
        .exec(db)
        .await?;
    Ok(deleted.rows_affected > 0)
}

//! The `chat_user` table: every user id seen, under the name it last used.

use super::entities::chat_user;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

pub use chat_user::Model as User;

/// Inserts the user, or renames it and marks it seen now.
pub async fn upsert(db: &impl ConnectionTrait, user_id: &str, username: &str) -> Result<(), DbErr> {
    let row = chat_user::ActiveModel {
        user_id: Set(user_id.to_string()),
        username: Set(username.to_string()),
        name_key: Set(username.to_lowercase()),
        last_seen: Set(crate::domain::now_utc()),
    };
    chat_user::Entity::insert(row)
        .on_conflict(
            OnConflict::column(chat_user::Column::UserId)
                .update_columns([
                    chat_user::Column::Username,
                    chat_user::Column::NameKey,
                    chat_user::Column::LastSeen,
                ])
                .to_owned(),
        )
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn get(db: &impl ConnectionTrait, user_id: &str) -> Result<Option<User>, DbErr> {
    chat_user::Entity::find_by_id(user_id.to_string())
        .one(db)
        .await
}

/// Users known under any of these lower-cased names, `limit` at most, the most recently
/// seen first.
pub async fn named(
    db: &impl ConnectionTrait,
    name_keys: impl IntoIterator<Item = String>,
    limit: u64,
) -> Result<Vec<User>, DbErr> {
    chat_user::Entity::find()
        .filter(chat_user::Column::NameKey.is_in(name_keys))
        .order_by_desc(chat_user::Column::LastSeen)
        .limit(limit)
        .all(db)
        .await
}

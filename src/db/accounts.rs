//! The `account` table: registered users.

use super::entities::account;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

pub use account::Model as Account;

pub async fn insert(db: &DatabaseConnection, row: &Account) -> Result<(), DbErr> {
    let active = account::ActiveModel {
        user_id: Set(row.user_id.clone()),
        username: Set(row.username.clone()),
        name_key: Set(row.name_key.clone()),
        password_hash: Set(row.password_hash.clone()),
        created_at: Set(row.created_at),
    };
    account::Entity::insert(active).exec(db).await.map(|_| ())
}

/// The account under this name, ignoring case.
pub async fn named(db: &DatabaseConnection, username: &str) -> Result<Option<Account>, DbErr> {
    account::Entity::find()
        .filter(account::Column::NameKey.eq(username.to_lowercase()))
        .one(db)
        .await
}

pub async fn get(db: &DatabaseConnection, user_id: &str) -> Result<Option<Account>, DbErr> {
    account::Entity::find_by_id(user_id.to_string())
        .one(db)
        .await
}

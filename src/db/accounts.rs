//! The `account` table: registered users.

use super::entities::account;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

pub use account::Model as Account;

pub async fn insert(db: &impl ConnectionTrait, row: &Account) -> Result<(), DbErr> {
    let active = account::ActiveModel {
        user_id: Set(row.user_id.clone()),
        username: Set(row.username.clone()),
        name_key: Set(row.name_key.clone()),
        password_hash: Set(row.password_hash.clone()),
        created_at: Set(row.created_at),
        token_generation: Set(row.token_generation),
    };
    account::Entity::insert(active).exec(db).await.map(|_| ())
}

/// The account under this name, ignoring case.
pub async fn named(db: &impl ConnectionTrait, username: &str) -> Result<Option<Account>, DbErr> {
    account::Entity::find()
        .filter(account::Column::NameKey.eq(username.to_lowercase()))
        .one(db)
        .await
}

/// The accounts under any of these lower-cased names (a name is one account's at most).
pub async fn with_names(
    db: &impl ConnectionTrait,
    name_keys: impl IntoIterator<Item = String>,
) -> Result<Vec<Account>, DbErr> {
    account::Entity::find()
        .filter(account::Column::NameKey.is_in(name_keys))
        .all(db)
        .await
}

pub async fn get(db: &impl ConnectionTrait, user_id: &str) -> Result<Option<Account>, DbErr> {
    account::Entity::find_by_id(user_id.to_string())
        .one(db)
        .await
}

/// The account's token generation; None when there is no such account.
pub async fn token_generation(
    db: &impl ConnectionTrait,
    user_id: &str,
) -> Result<Option<i64>, DbErr> {
    account::Entity::find_by_id(user_id.to_string())
        .select_only()
        .column(account::Column::TokenGeneration)
        .into_tuple::<i64>()
        .one(db)
        .await
}

/// Revokes every token of the account handed out so far (and sets a new password hash,
/// when given), in one statement: a password changed is never left with old tokens valid.
pub async fn revoke_tokens(
    db: &impl ConnectionTrait,
    user_id: &str,
    new_password_hash: Option<String>,
) -> Result<(), DbErr> {
    let mut update = account::Entity::update_many()
        .col_expr(
            account::Column::TokenGeneration,
            Expr::col(account::Column::TokenGeneration).add(1),
        )
        .filter(account::Column::UserId.eq(user_id));
    if let Some(hash) = new_password_hash {
        update = update.col_expr(account::Column::PasswordHash, Expr::value(hash));
    }
    update.exec(db).await.map(|_| ())
}

/// Up to `limit` accounts whose name starts with `prefix` (lower-cased), by name.
pub async fn name_starts_with(
    db: &impl ConnectionTrait,
    prefix: &str,
    limit: u64,
) -> Result<Vec<Account>, DbErr> {
    let pattern = format!("{}%", super::escape_like(&prefix.to_lowercase()));
    account::Entity::find()
        .filter(Expr::col(account::Column::NameKey).like(LikeExpr::new(pattern).escape('\\')))
        .order_by_asc(account::Column::NameKey)
        .limit(limit)
        .all(db)
        .await
}

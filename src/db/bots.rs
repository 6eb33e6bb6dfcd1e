//! The `bot` table, beside each bot's row of `account`.

use super::accounts::Account;
use super::entities::{account, bot};
use sea_orm::TransactionSession;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

pub use bot::Model as Bot;

impl Bot {
    /// The room ids on its list.
    pub fn room_ids(&self) -> Vec<String> {
        serde_json::from_str(&self.rooms).unwrap_or_default()
    }

    pub fn may_use(&self, room: &str) -> bool {
        self.room_ids().iter().any(|r| r == room)
    }
}

/// The bot's account and its row, together.
pub async fn insert(
    db: &(impl ConnectionTrait + TransactionTrait),
    account: &Account,
    row: &Bot,
) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    super::accounts::insert(&txn, account).await?;
    let active = bot::ActiveModel {
        user_id: Set(row.user_id.clone()),
        rooms: Set(row.rooms.clone()),
        created_by: Set(row.created_by.clone()),
        created_at: Set(row.created_at),
    };
    bot::Entity::insert(active).exec(&txn).await?;
    txn.commit().await
}

pub async fn get(db: &impl ConnectionTrait, user_id: &str) -> Result<Option<Bot>, DbErr> {
    bot::Entity::find_by_id(user_id.to_string()).one(db).await
}

/// Every bot with its account, oldest first (at most 500).
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<(Bot, Option<Account>)>, DbErr> {
    let bots = bot::Entity::find()
        .order_by_asc(bot::Column::CreatedAt)
        .limit(500)
        .all(db)
        .await?;
    let ids = bots.iter().map(|b| b.user_id.clone());
    let accounts = account::Entity::find()
        .filter(account::Column::UserId.is_in(ids))
        .all(db)
        .await?;
    Ok(bots
        .into_iter()
        .map(|b| {
            let account = accounts.iter().find(|a| a.user_id == b.user_id).cloned();
            (b, account)
        })
        .collect())
}

/// The bot and its account, together: its tokens name an account that is gone.
pub async fn delete(
    db: &(impl ConnectionTrait + TransactionTrait),
    user_id: &str,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let gone = bot::Entity::delete_by_id(user_id.to_string())
        .exec(&txn)
        .await?
        .rows_affected;
    account::Entity::delete_by_id(user_id.to_string())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(gone > 0)
}

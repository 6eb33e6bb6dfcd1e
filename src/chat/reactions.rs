//! Reactions to messages: who reacts, what they may react with, and the counts each reader
//! sees. The rows are `db::reactions`'; telling readers is the pipeline's.

use crate::access::RoomAccess;
use crate::db::reactions::{self as table, Added, MAX_PER_MESSAGE};
use crate::domain::{names, Caller, Error, Message};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};

/// A reaction added or taken off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reacted {
    pub message_id: i64,
    pub room: String,
    pub emoji: String,
    pub user_id: String,
    /// How many reactions of that emoji the message has now.
    pub count: u64,
    pub added: bool,
    /// Whether anything changed: a second PUT, or a DELETE of what is not there, changes
    /// nothing and is told to nobody.
    pub changed: bool,
}

/// Checks a reaction to a message the caller may read (`chat::messages::read`): the
/// emoji (400 for what is none) and who reacts (`chat::acting_user`). Returns both, for
/// the writer to apply.
pub async fn check(
    access: &RoomAccess,
    caller: &Caller,
    emoji: &str,
    claimed: Option<&str>,
) -> Result<(String, String), Error> {
    let emoji = names::reaction(emoji)?;
    let user_id = super::acting_user(access, caller, claimed).await?;
    Ok((emoji, user_id))
}

/// Adds the reaction (`add`) or takes the user's off, idempotent either way; the outer
/// error is the database's, the inner a refusal: 404 for a message deleted meanwhile,
/// 400 for one with [`MAX_PER_MESSAGE`] others already.
pub async fn apply<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    message: &Message,
    emoji: String,
    user_id: String,
    add: bool,
) -> Result<Result<Reacted, Error>, DbErr> {
    let (count, changed) = if add {
        match table::add(db, message.id, &user_id, &emoji).await? {
            Added::Now(count) => (count, true),
            Added::Already(count) => (count, false),
            Added::Gone => {
                return Ok(Err(Error::not_found(format!(
                    "message {} does not exist",
                    message.id
                ))))
            }
            Added::Full => {
                return Ok(Err(Error::bad_request(format!(
                    "a message holds at most {MAX_PER_MESSAGE} different reactions"
                ))))
            }
        }
    } else {
        let (removed, count) = table::remove(db, message.id, &user_id, &emoji).await?;
        (count, removed)
    };
    Ok(Ok(Reacted {
        message_id: message.id,
        room: message.room.clone(),
        emoji,
        user_id,
        count,
        added: add,
        changed,
    }))
}

/// Gives each message its reactions as `viewer` sees them: one read for the whole page.
pub async fn attach(
    db: &DatabaseConnection,
    messages: &mut [Message],
    viewer: Option<&str>,
) -> Result<(), Error> {
    let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
    let mut found = table::of(db, &ids, viewer).await?;
    for message in messages {
        message.reactions = found.remove(&message.id).unwrap_or_default();
    }
    Ok(())
}

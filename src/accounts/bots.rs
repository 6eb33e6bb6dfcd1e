//! Bots: accounts an admin makes for a program, whose token may read and post in the
//! bot's rooms and nowhere else (`Caller::rooms`), at every door that takes a token. A
//! bot has no password (its account's hash is one no password matches) and its id is
//! `bot:<uuid>`, which no person's account can have; its name is taken like a person's.
//! Deleting it deletes its account, so its token is refused at once here and within
//! [`super::REVOCATION_RECHECK`] on other replicas, whose sockets of it are closed as at a
//! sign-out.

use super::{table, taken, Accounts};
use crate::db::bots::{self as bots_table, Bot};
use crate::db::error::{cause, Cause};
use crate::domain::names::{self, RoomName};
use crate::domain::{now_utc, Error, Peer, Result};
use std::time::Duration;

/// A bot's token lasts until the bot is deleted (ten years, in the token's own terms).
const BOT_TOKEN_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);
/// A bot is made for a few rooms.
pub const MAX_BOT_ROOMS: usize = 100;
/// What is stored as a bot's password hash: not a hash, so no password verifies.
const NO_PASSWORD: &str = "!bot";

/// A bot as its maker sees it; `token` only in the answer that made it.
pub struct MadeBot {
    pub user_id: String,
    pub username: String,
    pub rooms: Vec<String>,
    pub created_at: chrono::NaiveDateTime,
    pub token: Option<String>,
}

fn rooms_of(row: &Bot) -> Vec<String> {
    row.room_ids()
}

impl Accounts {
    /// Makes a bot named `name` for `rooms` (each must exist: `exists` says); its token.
    pub async fn create_bot(
        &self,
        name: &str,
        rooms: &[String],
        created_by: Option<&str>,
    ) -> Result<MadeBot> {
        let username = names::username(Some(name), &self.limits)?;
        if name.trim().is_empty() || username == names::DEFAULT_USERNAME {
            return Err(Error::bad_request("choose a name for the bot"));
        }
        if rooms.is_empty() || rooms.len() > MAX_BOT_ROOMS {
            return Err(Error::bad_request(format!(
                "rooms must list 1 to {MAX_BOT_ROOMS} rooms"
            )));
        }
        let mut checked = Vec::with_capacity(rooms.len());
        for room in rooms {
            let room = RoomName::parse(room)?.as_str().to_string();
            if crate::db::rooms::get(&self.db, &room).await?.is_none() {
                return Err(Error::not_found(format!("room {room} does not exist")));
            }
            if !checked.contains(&room) {
                checked.push(room);
            }
        }
        if table::named(&self.db, &username).await?.is_some() {
            return Err(taken(&username));
        }
        let user_id = format!("{}{}", names::BOT_ID_PREFIX, uuid::Uuid::new_v4().simple());
        let created_at = now_utc();
        let account = table::Account {
            user_id: user_id.clone(),
            name_key: username.to_lowercase(),
            username: username.clone(),
            password_hash: NO_PASSWORD.into(),
            created_at,
            token_generation: 0,
        };
        let row = Bot {
            user_id: user_id.clone(),
            rooms: serde_json::to_string(&checked).unwrap_or_else(|_| "[]".into()),
            created_by: created_by.map(str::to_string),
            created_at,
        };
        match bots_table::insert(&self.db, &account, &row).await {
            // A name made at the same moment by someone else: the unique index decides.
            Err(err) if cause(&err) == Cause::Duplicate => return Err(taken(&username)),
            Err(err) => return Err(err.into()),
            Ok(_) => {}
        }
        let peer = Peer {
            user_id: user_id.clone(),
            username: username.clone(),
        };
        let (token, _) = self.tokens.issue_for(&peer, 0, BOT_TOKEN_TTL);
        tracing::info!(bot = %user_id, rooms = checked.len(), "bot made");
        Ok(MadeBot {
            user_id,
            username,
            rooms: checked,
            created_at,
            token: Some(token),
        })
    }

    /// Every bot, oldest first, without tokens.
    pub async fn bots(&self) -> Result<Vec<MadeBot>> {
        let rows = bots_table::list(&self.db).await?;
        Ok(rows
            .into_iter()
            .map(|(bot, account)| MadeBot {
                rooms: rooms_of(&bot),
                username: account.map(|a| a.username).unwrap_or_default(),
                user_id: bot.user_id,
                created_at: bot.created_at,
                token: None,
            })
            .collect())
    }

    /// The rooms a bot's token may use; None for anyone who is not a bot.
    pub async fn bot_rooms(&self, user_id: &str) -> Result<Option<Vec<String>>> {
        if !names::is_bot_account(user_id) {
            return Ok(None);
        }
        // A bot that is gone may use no room (its token is refused anyway).
        let row = bots_table::get(&self.db, user_id).await?;
        Ok(Some(row.as_ref().map(rooms_of).unwrap_or_default()))
    }

    /// Deletes a bot: its token stops working, and its open sockets close.
    pub async fn delete_bot(&self, user_id: &str) -> Result<()> {
        if !names::is_bot_account(user_id) || !bots_table::delete(&self.db, user_id).await? {
            return Err(Error::not_found(format!("bot {user_id} does not exist")));
        }
        crate::domain::sync::lock(&self.generations).remove(user_id);
        crate::domain::sync::lock(&self.verified).retain(|_, v| v.peer.user_id != user_id);
        self.hub.publish(
            &crate::realtime::user_channel(user_id),
            crate::realtime::Event::TokensRevoked,
        );
        tracing::info!(bot = %user_id, "bot deleted");
        Ok(())
    }
}

//! Who may read and write a room, at every door (the legacy poll and post, the JSON API
//! and its search, sockets, files, presence, mentions): the one place these rules live.
//!
//! A room is `public` (anyone the mode lets in), `private` (its owner, its members and
//! admins) or `direct` (its two members and admins). To anyone else a private room does
//! not exist: every door answers 404, as for a room that has no row. Only a proven identity
//! (a token or a session) is a member: in open mode a name or id a client writes proves
//! nothing, so a private room is as closed there as in required mode.
//!
//! Rules are read from the database and kept a few seconds per room, so a poll of a public
//! room costs a map lookup; a change (a room created, shared, deleted) forgets the room at
//! once, and replicas hear of it through the hub (`Event::AccessChanged`, `RoomDeleted`),
//! the time-to-live being the backstop while Redis is away (open sockets ask again at each
//! ping, so a change that went unheard lets them go too). A room without a row is never
//! remembered: it is open until it is created, and may be created private.

use crate::db::rooms as table;
use crate::domain::names;
use crate::domain::sync::lock;
use crate::domain::{Caller, Error, NewMessage, RoomName, Visibility};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a room's rule is trusted before it is read again.
const RULE_TTL: Duration = Duration::from_secs(5);
/// Rooms whose rules are kept at most; past this the record starts over, so made-up room
/// names cannot grow it.
const MAX_RULES: usize = 10_000;
/// Membership answers kept per private room at most.
const MAX_MEMBER_ANSWERS: usize = 1_000;

/// A room's rule, as read.
struct Rule {
    read_at: Instant,
    visibility: Visibility,
    owner: Option<String>,
    /// Users asked about, and whether they are members.
    members: HashMap<String, bool>,
}

/// Rooms' rules, and whose ids are proven identities' (managed state; one per process).
pub struct RoomAccess {
    db: DatabaseConnection,
    rules: Mutex<HashMap<String, Rule>>,
    /// User ids asked about, and whether each is an account's. An answer holds: accounts
    /// are not deleted, and a new one gets an id the server makes, never one a client
    /// named before.
    accounts: Mutex<HashMap<String, bool>>,
}

/// User ids whose answer is kept at most; past this the record starts over, so made-up
/// ids cannot grow it.
const MAX_ACCOUNT_ANSWERS: usize = 10_000;

impl RoomAccess {
    pub fn new(db: DatabaseConnection) -> Self {
        RoomAccess {
            db,
            rules: Mutex::default(),
            accounts: Mutex::default(),
        }
    }

    /// Acting as `user_id` (a socket's path, a message's author, one's notifications,
    /// presence and uploads). Signed in, it must be one's own (403, see
    /// [`Caller::acts_as`]). Without an identity (open mode) an id is taken as claimed,
    /// the seeds' way, unless it belongs to a proven identity, an account or another
    /// application's subject: then only its token may act as it (401), or anyone could
    /// read its notifications and speak in its name.
    pub async fn may_act_as(&self, caller: &Caller, user_id: &str) -> Result<(), Error> {
        caller.acts_as(user_id)?;
        if caller.user.is_some() || caller.admin || !self.is_proven(user_id).await? {
            return Ok(());
        }
        Err(Error::Unauthorized(format!(
            "{user_id} is a registered user's (or a hook's) id: sign in as them to act as them"
        )))
    }

    async fn is_proven(&self, user_id: &str) -> Result<bool, Error> {
        // Another application's users prove themselves with its token; a hook's id is
        // only ever its URL's.
        if names::is_external_id(user_id) || names::is_bot_id(user_id) {
            return Ok(true);
        }
        if let Some(known) = lock(&self.accounts).get(user_id).copied() {
            return Ok(known);
        }
        let account = crate::db::accounts::get(&self.db, user_id).await?.is_some();
        let mut accounts = lock(&self.accounts);
        if accounts.len() >= MAX_ACCOUNT_ANSWERS {
            accounts.clear();
        }
        accounts.insert(user_id.to_string(), account);
        Ok(account)
    }

    /// Reading a room's messages (a poll, a long-poll, history, search, a socket, its
    /// files, who is typing): 401 without an identity in required mode, 404 for a private
    /// room the caller is not in.
    pub async fn may_read(&self, caller: &Caller, room: &str) -> Result<(), Error> {
        caller.require_identity()?;
        caller.may_use_room(room)?;
        if self.sees(caller, room).await? {
            Ok(())
        } else {
            Err(not_found(room))
        }
    }

    /// Posting to a room. A signed-in caller posts as themselves, whatever name and id the
    /// message claims.
    pub async fn may_post(
        &self,
        caller: &Caller,
        room: &RoomName,
        message: &mut NewMessage,
    ) -> Result<(), Error> {
        self.may_read(caller, room.as_str()).await?;
        if let Some(user) = caller.require_identity()? {
            message.username = user.username.clone();
            message.user_id = Some(user.user_id.clone());
        } else if let Some(claimed) = &message.user_id {
            self.may_act_as(caller, claimed).await?;
        }
        Ok(())
    }

    /// Whether `user_id` may read the room (for a mention: is the named user in it?).
    pub async fn user_may_read(&self, user_id: &str, room: &str) -> Result<bool, Error> {
        // A bot hears of its own rooms only, mentions included.
        if names::is_bot_account(user_id) {
            let listed = crate::db::bots::get(&self.db, user_id)
                .await?
                .is_some_and(|bot| bot.may_use(room));
            if !listed {
                return Ok(false);
            }
        }
        self.admits(Some(user_id), room).await
    }

    /// Whether the caller sees the room at all.
    pub async fn sees(&self, caller: &Caller, room: &str) -> Result<bool, Error> {
        if caller.may_use_room(room).is_err() {
            return Ok(false);
        }
        if caller.admin {
            return Ok(true);
        }
        self.admits(caller.user.as_ref().map(|u| u.user_id.as_str()), room)
            .await
    }

    async fn admits(&self, user: Option<&str>, room: &str) -> Result<bool, Error> {
        // The rule, from memory when it is fresh.
        let known = {
            let rules = lock(&self.rules);
            rules
                .get(room)
                .filter(|rule| rule.read_at.elapsed() < RULE_TTL)
                .map(|rule| {
                    let member = user.and_then(|u| rule.members.get(u).copied());
                    (rule.visibility, rule.owner.clone(), member)
                })
        };
        let (visibility, owner, member) = match known {
            Some(known) => known,
            None => {
                let Some(row) = table::get(&self.db, room).await? else {
                    // A room without a row is a legacy room nobody has posted to yet: open,
                    // but for a direct conversation's id, which only its two people's
                    // asking creates. Not remembered: it may be created private a moment
                    // from now, and that must hold at once, not after a time-to-live.
                    return Ok(!names::is_direct_room_id(room));
                };
                let (visibility, owner) = (row.visibility, row.owner_id);
                let mut rules = lock(&self.rules);
                if rules.len() >= MAX_RULES {
                    rules.clear();
                }
                rules.insert(
                    room.to_string(),
                    Rule {
                        read_at: Instant::now(),
                        visibility,
                        owner: owner.clone(),
                        members: HashMap::new(),
                    },
                );
                (visibility, owner, None)
            }
        };
        if visibility == Visibility::Public {
            return Ok(true);
        }
        let Some(user) = user else {
            return Ok(false);
        };
        if owner.as_deref() == Some(user) {
            return Ok(true);
        }
        if let Some(member) = member {
            return Ok(member);
        }
        let member = table::is_member(&self.db, room, user).await?;
        if let Some(rule) = lock(&self.rules).get_mut(room) {
            if rule.members.len() >= MAX_MEMBER_ANSWERS {
                rule.members.clear();
            }
            rule.members.insert(user.to_string(), member);
        }
        Ok(member)
    }

    /// After a room's rule or members changed (here or on another replica), or it went:
    /// the next door reads it again.
    pub fn forget(&self, room: &str) {
        lock(&self.rules).remove(room);
    }

    /// After changes may have gone unheard (Redis was away).
    pub fn forget_all(&self) {
        lock(&self.rules).clear();
    }
}

/// What a caller who may not see a room hears: what they would of a room that does not
/// exist.
pub fn not_found(room: &str) -> Error {
    Error::not_found(format!("room '{room}' does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::memory;
    use crate::db::rooms::{add_member, insert, Member, Room};
    use crate::domain::message::new_message;
    use crate::domain::{now_utc, AuthMode, Limits, Peer};

    fn signed_in(mode: AuthMode, id: &str) -> Caller {
        Caller {
            mode,
            user: Some(Peer {
                user_id: id.into(),
                username: id.to_uppercase(),
            }),
            ..Caller::default()
        }
    }

    async fn private_room(db: &DatabaseConnection, id: &str, owner: &str, members: &[&str]) {
        insert(
            db,
            &Room {
                id: id.into(),
                name: id.into(),
                description: None,
                created_at: now_utc(),
                owner_id: Some(owner.into()),
                visibility: Visibility::Private,
            },
        )
        .await
        .unwrap();
        for m in members {
            add_member(
                db,
                &Member {
                    room_id: id.into(),
                    user_id: (*m).into(),
                    added_at: now_utc(),
                },
            )
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn a_private_room_is_its_owners_members_and_admins() {
        let db = memory().await;
        private_room(&db, "secret", "olga", &["mia"]).await;
        let access = RoomAccess::new(db.clone());
        let status = |r: Result<(), Error>| r.map_err(|e| e.status_code());
        for mode in [AuthMode::Open, AuthMode::Required] {
            let read = |c: Caller| {
                let access = &access;
                async move { status(access.may_read(&c, "secret").await) }
            };
            assert_eq!(
                read(signed_in(mode, "olga")).await,
                Ok(()),
                "{mode:?}: owner"
            );
            assert_eq!(
                read(signed_in(mode, "mia")).await,
                Ok(()),
                "{mode:?}: member"
            );
            assert_eq!(
                read(signed_in(mode, "bob")).await,
                Err(404),
                "{mode:?}: other"
            );
            let admin = Caller {
                mode,
                admin: true,
                ..Caller::default()
            };
            assert_eq!(read(admin).await, Ok(()), "{mode:?}: admin");
            let anonymous = Caller {
                mode,
                ..Caller::default()
            };
            let expected = if mode == AuthMode::Open { 404 } else { 401 };
            assert_eq!(read(anonymous).await, Err(expected), "{mode:?}: anonymous");
            // A public room, and a name with no row, are open to all.
            assert_eq!(
                status(access.may_read(&signed_in(mode, "bob"), "lobby").await),
                Ok(())
            );
        }
        // A post by a non-member is refused before anything is stored; a member's goes
        // under their own name.
        let room = RoomName::parse("secret").unwrap();
        let mut message = new_message(Some("mallory"), Some("hi"), &Limits::default()).unwrap();
        let bob = signed_in(AuthMode::Open, "bob");
        assert_eq!(
            access
                .may_post(&bob, &room, &mut message)
                .await
                .unwrap_err()
                .status_code(),
            404
        );
        access
            .may_post(&signed_in(AuthMode::Open, "mia"), &room, &mut message)
            .await
            .unwrap();
        assert_eq!(message.username, "MIA");
    }

    #[tokio::test]
    async fn a_change_is_seen_once_the_room_is_forgotten() {
        let db = memory().await;
        private_room(&db, "club", "olga", &[]).await;
        let access = RoomAccess::new(db.clone());
        let bob = signed_in(AuthMode::Required, "bob");
        assert!(!access.sees(&bob, "club").await.unwrap());
        add_member(
            &db,
            &Member {
                room_id: "club".into(),
                user_id: "bob".into(),
                added_at: now_utc(),
            },
        )
        .await
        .unwrap();
        // Remembered: the answer holds until the room is forgotten...
        assert!(!access.sees(&bob, "club").await.unwrap());
        access.forget("club");
        assert!(access.sees(&bob, "club").await.unwrap());
        crate::db::rooms::remove_member(&db, "club", "bob")
            .await
            .unwrap();
        access.forget("club");
        assert!(!access.sees(&bob, "club").await.unwrap());
        assert!(access.user_may_read("olga", "club").await.unwrap());
    }
}

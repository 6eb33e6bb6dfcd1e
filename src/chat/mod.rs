//! The chat's rules, callable without HTTP: rooms (which exist, creating, sharing and
//! deleting them), the history of a room, and the transcripts the legacy poll reads from
//! memory. Who may read a room is `access`'s; writing a message is `delivery`'s: it goes
//! through the one pipeline.

pub mod changes;
pub mod hooks;
pub mod messages;
pub mod reactions;
pub mod read_state;
pub mod rooms;
pub mod search;
pub mod transcript;

pub use rooms::Rooms;
pub use transcript::{Encoding, Form, Transcript, Transcripts, View};

use crate::access::RoomAccess;
use crate::domain::{names, Caller, Error, Member, Message, Room};
use crate::realtime::Event;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// What a reader asks of the chat: rooms and their members, a room's history, one
/// message, a room's changes, unread counts and search, each answered only as far as the
/// caller may read (a room they may not see is 404, as one that does not exist). Writing is
/// `delivery`'s: every change goes through the one pipeline.
pub struct Chat {
    db: DatabaseConnection,
    access: Arc<RoomAccess>,
}

impl Chat {
    pub fn new(db: DatabaseConnection, access: Arc<RoomAccess>) -> Self {
        Chat { db, access }
    }

    /// 404 unless the caller may read the room (a room that does not exist yet is public).
    pub async fn may_read(&self, caller: &Caller, room: &str) -> Result<(), Error> {
        self.access.may_read(caller, room).await
    }

    /// The rooms the caller may see, oldest first.
    pub async fn rooms(&self, caller: &Caller) -> Result<Vec<Room>, Error> {
        let rows = rooms::list(&self.db, caller).await?;
        Ok(rows.into_iter().map(Room::from).collect())
    }

    /// One room, if the caller may see it.
    pub async fn room(&self, caller: &Caller, id: &str) -> Result<Room, Error> {
        Ok(rooms::get(&self.db, &self.access, caller, id).await?.into())
    }

    /// A room's members, in the order they were added.
    pub async fn members(&self, caller: &Caller, id: &str) -> Result<Vec<Member>, Error> {
        let rows = rooms::members(&self.db, &self.access, caller, id).await?;
        Ok(rows.into_iter().map(Member::from).collect())
    }

    /// A page of a room's history (`messages::history`).
    pub async fn history(
        &self,
        caller: &Caller,
        room: &str,
        query: messages::HistoryQuery<'_>,
    ) -> Result<Vec<Message>, Error> {
        messages::history(&self.db, &self.access, caller, room, query).await
    }

    /// One message, with its reactions (`me` for whoever reads: the caller, or in open mode
    /// the `user_id` an anonymous caller names) and the message it answers.
    pub async fn message(
        &self,
        caller: &Caller,
        id: &str,
        claimed: Option<&str>,
    ) -> Result<Message, Error> {
        let mut message = messages::read(&self.db, &self.access, caller, id).await?;
        let viewer = messages::viewer(&self.access, caller, claimed).await?;
        messages::complete(
            &self.db,
            std::slice::from_mut(&mut message),
            viewer.as_deref(),
        )
        .await?;
        Ok(message)
    }

    /// A room's changes after a `seq`, and whether those are no longer kept
    /// (`changes::page`).
    pub async fn changes(
        &self,
        caller: &Caller,
        room: &str,
        after: i64,
        limit: u64,
    ) -> Result<(Vec<Event>, bool), Error> {
        changes::page(&self.db, &self.access, caller, room, after, limit).await
    }

    /// The acting user's unread counts (`read_state::unread`).
    pub async fn unread(
        &self,
        caller: &Caller,
        claimed: Option<&str>,
    ) -> Result<Vec<read_state::Unread>, Error> {
        read_state::unread(&self.db, &self.access, caller, claimed).await
    }

    /// Messages across every room the caller may read (`search::search`).
    pub async fn search(
        &self,
        caller: &Caller,
        query: search::SearchQuery<'_>,
    ) -> Result<Vec<search::Found>, Error> {
        search::search(&self.db, caller, query).await
    }
}

/// Who acts (reacts, marks a room read, reads their unread counts): a signed-in caller is
/// themselves (a `user_id` naming anyone else is 403);
/// in open mode an anonymous caller names itself with `user_id`, an account's only with
/// its token (401), as at every door that takes a user id.
pub async fn acting_user(
    access: &RoomAccess,
    caller: &Caller,
    claimed: Option<&str>,
) -> Result<String, Error> {
    match (caller.require_identity()?, claimed) {
        (Some(user), None) => Ok(user.user_id.clone()),
        (Some(user), Some(claimed)) if claimed == user.user_id => Ok(user.user_id.clone()),
        (Some(user), Some(claimed)) => Err(Error::Forbidden(format!(
            "you are signed in as {}, not {claimed}",
            user.user_id
        ))),
        (None, Some(claimed)) => {
            let user_id = names::user_id(claimed)?;
            access.may_act_as(caller, &user_id).await?;
            Ok(user_id)
        }
        (None, None) => Err(Error::bad_request(
            "say who you are: sign in, or name yourself with user_id",
        )),
    }
}

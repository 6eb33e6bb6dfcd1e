//! Read state: how far each user has read each room, and what is unread after that.
//! Marks only move forward; counts read bounded windows (`db::read_marks`). Telling the
//! user's other sockets of a move is the pipeline's.

use crate::access::RoomAccess;
use crate::db::{messages, read_marks};
use crate::domain::{Caller, Error};
use sea_orm::DatabaseConnection;

/// Rooms listed with unread counts at most, of each kind (marked, member of).
const MAX_ROOMS: u64 = 500;

/// A mark that moved: the user's new last read message in the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    pub user_id: String,
    pub room_id: String,
    pub last_read_id: i64,
}

/// Marks the room read up to `last_read_id` for the acting user (see `chat::acting_user`)
/// in a room they may read (404 otherwise). An id past the room's newest message counts
/// as that message, so a mark never hides messages yet to come; a mark at or behind the
/// one kept changes nothing (`None`).
pub async fn mark(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    room_id: &str,
    last_read_id: Option<i64>,
    claimed: Option<&str>,
) -> Result<Option<Moved>, Error> {
    access.may_read(caller, room_id).await?;
    let room = super::rooms::existing(db, room_id).await?;
    let user_id = super::acting_user(access, caller, claimed).await?;
    let wanted = match last_read_id {
        Some(id) if id >= 0 => id,
        _ => {
            return Err(Error::bad_request(
                "last_read_id must be a message id (0 or more)",
            ))
        }
    };
    let newest = messages::last_id_in(db, &room.id).await?.unwrap_or(0);
    let last_read_id = wanted.min(newest);
    if !read_marks::advance(db, &user_id, &room.id, last_read_id).await? {
        return Ok(None);
    }
    Ok(Some(Moved {
        user_id,
        room_id: room.id,
        last_read_id,
    }))
}

/// One room's line of the unread list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unread {
    pub room_id: String,
    pub last_read_id: i64,
    pub counts: read_marks::Counts,
}

/// The acting user's unread counts: every room they have marked and may still read, and
/// (signed in) every private and direct room they own or belong to, marked or not. Only
/// rooms the caller may read: an anonymous caller in open mode names a user, but proves
/// nobody, so sees public rooms only.
pub async fn unread(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    claimed: Option<&str>,
) -> Result<Vec<Unread>, Error> {
    let user_id = super::acting_user(access, caller, claimed).await?;
    let proven = caller.user.as_ref().map(|u| u.user_id.as_str());
    let readable = (!caller.admin).then(|| crate::db::rooms::visible_to(proven));
    let rooms = read_marks::rooms_of(db, &user_id, readable, proven.is_some(), MAX_ROOMS).await?;
    let counts = read_marks::counts(db, &user_id, &rooms).await?;
    let mut found: Vec<Unread> = rooms
        .into_iter()
        .zip(counts)
        .map(|((room_id, last_read_id), counts)| Unread {
            room_id,
            last_read_id,
            counts,
        })
        .collect();
    caller.keep_own_rooms(&mut found, |u| Some(u.room_id.as_str()));
    found.sort_by(|a, b| a.room_id.cmp(&b.room_id));
    Ok(found)
}

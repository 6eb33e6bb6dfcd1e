//! A room and its members, as the services hand them up (the `room` and `room_member`
//! rows stay in `db`).

use super::Visibility;
use chrono::NaiveDateTime;

/// A room: its id is its name in paths (`RoomName`), and its visibility says who reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// When it was created, in UTC.
    pub created_at: NaiveDateTime,
    /// The signed-in user who created it; none for legacy rooms and open mode.
    pub owner_id: Option<String>,
    pub visibility: Visibility,
}

/// A member of a private or direct room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub room_id: String,
    pub user_id: String,
    /// When they were added, in UTC.
    pub added_at: NaiveDateTime,
}

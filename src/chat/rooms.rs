//! Rooms: a legacy room comes into being with its first message; the ChatFlow API creates
//! them with a name and description, lists and deletes them.

use crate::db::rooms::{self as table, Room};
use crate::domain::sync::lock;
use crate::domain::{now_utc, Caller, Error, RoomName};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Another replica may delete a room: a room known to exist is trusted this long.
const KNOWN_ROOM_TTL: Duration = Duration::from_secs(30);
/// Rooms remembered at most; past this the record starts over (rooms come into being by
/// posting, so the record must not grow with every name a client makes up).
const MAX_KNOWN_ROOMS: usize = 10_000;

/// Rooms known to exist in the `room` table and since when, so only a room's first post
/// checks the table.
#[derive(Default)]
pub struct Rooms {
    known: Mutex<HashMap<String, Instant>>,
}

impl Rooms {
    /// Makes sure the room has its row, creating it if it has none.
    pub async fn ensure(&self, db: &DatabaseConnection, room: &RoomName) -> Result<(), Error> {
        let fresh = lock(&self.known)
            .get(room.as_str())
            .is_some_and(|since| since.elapsed() < KNOWN_ROOM_TTL);
        if fresh {
            return Ok(());
        }
        if table::get(db, room.as_str()).await?.is_none() {
            let row = Room {
                id: room.as_str().to_string(),
                name: room.as_str().to_string(),
                description: None,
                created_at: now_utc(),
                owner_id: None,
            };
            // Two first posts at once: the second insert fails on the key, and the room
            // exists all the same.
            if let Err(err) = table::insert(db, &row).await {
                if table::get(db, room.as_str()).await?.is_none() {
                    return Err(err.into());
                }
            }
        }
        let mut known = lock(&self.known);
        if known.len() >= MAX_KNOWN_ROOMS {
            known.clear();
        }
        known.insert(room.as_str().to_string(), Instant::now());
        Ok(())
    }

    /// After a room is deleted here: its next post checks the table again.
    pub fn forget(&self, room: &str) {
        lock(&self.known).remove(room);
    }
}

/// The room as a caller asks for it, or 404.
pub async fn get(db: &DatabaseConnection, caller: &Caller, id: &str) -> Result<Room, Error> {
    caller.require_identity()?;
    existing(db, id).await
}

/// The room, or 404.
pub async fn existing(db: &DatabaseConnection, id: &str) -> Result<Room, Error> {
    table::get(db, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("room '{id}' does not exist")))
}

pub async fn list(db: &DatabaseConnection, caller: &Caller) -> Result<Vec<Room>, Error> {
    caller.require_identity()?;
    Ok(table::list(db).await?)
}

/// A room as the API asks for it.
#[derive(Debug, Default)]
pub struct NewRoom {
    /// Made from `name` when absent.
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Creates a room, owned by its signed-in creator; 409 if its id is taken.
pub async fn create(db: &DatabaseConnection, caller: &Caller, new: NewRoom) -> Result<Room, Error> {
    let owner = caller.require_identity()?.map(|user| user.user_id.clone());
    let name = new.name.as_deref().map(str::trim).unwrap_or_default();
    let id = match new.id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ if !name.is_empty() => name.to_lowercase().replace(char::is_whitespace, "-"),
        _ => return Err(Error::bad_request("id or name is required")),
    };
    let id = RoomName::parse_new(&id)?;
    let name = if name.is_empty() { id.as_str() } else { name };
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "name must be at most 100 characters, no control characters",
        ));
    }
    let description = new.description.map(|d| d.trim().to_string());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1000)
    {
        return Err(Error::bad_request(
            "description is longer than 1000 characters",
        ));
    }
    let conflict = || Error::Conflict(format!("room '{}' already exists", id.as_str()));
    if table::get(db, id.as_str()).await?.is_some() {
        return Err(conflict());
    }
    let row = Room {
        id: id.as_str().to_string(),
        name: name.to_string(),
        description: description.filter(|d| !d.is_empty()),
        created_at: now_utc(),
        owner_id: owner,
    };
    if let Err(err) = table::insert(db, &row).await {
        // Two creations at once: the loser's insert fails on the key.
        return Err(match table::get(db, id.as_str()).await? {
            Some(_) => conflict(),
            None => err.into(),
        });
    }
    Ok(row)
}

/// Deletes the room and its messages (its owner's or an admin's call); returns the room
/// and how many messages went.
pub async fn delete(
    db: &DatabaseConnection,
    caller: &Caller,
    id: &str,
) -> Result<(Room, u64), Error> {
    caller.require_identity()?;
    let room = existing(db, id).await?;
    caller.require_one_of(
        "delete a room",
        "its owner or an admin",
        &[room.owner_id.as_deref()],
    )?;
    let deleted = table::delete_with_messages(db, &room.id).await?;
    Ok((room, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::memory;

    fn new_room(name: &str) -> NewRoom {
        NewRoom {
            name: Some(name.into()),
            ..NewRoom::default()
        }
    }

    #[tokio::test]
    async fn rooms_are_created_once_with_ids_made_from_names() {
        let db = memory().await;
        let before = list(&db, &Caller::default()).await.unwrap().len(); // the default rooms
        let room = create(&db, &Caller::default(), new_room("Dev Ops"))
            .await
            .unwrap();
        assert_eq!(
            (room.id.as_str(), room.name.as_str()),
            ("dev-ops", "Dev Ops")
        );
        let again = create(&db, &Caller::default(), new_room("dev ops"))
            .await
            .unwrap_err();
        assert_eq!(again.status_code(), 409, "{again}");
        for bad in [
            NewRoom::default(),
            new_room("rooms"),
            new_room("a/b"),
            NewRoom {
                id: Some("x".into()),
                description: Some("d".repeat(1001)),
                ..NewRoom::default()
            },
        ] {
            assert_eq!(
                create(&db, &Caller::default(), bad)
                    .await
                    .unwrap_err()
                    .status_code(),
                400
            );
        }
        assert_eq!(
            list(&db, &Caller::default()).await.unwrap().len(),
            before + 1
        );
        assert_eq!(existing(&db, "nope").await.unwrap_err().status_code(), 404);
    }

    #[tokio::test]
    async fn a_legacy_room_comes_into_being_once_and_goes_with_its_messages() {
        let db = memory().await;
        let rooms = Rooms::default();
        let lobby = RoomName::parse("lobby").unwrap();
        assert!(table::get(&db, "lobby").await.unwrap().is_none());
        rooms.ensure(&db, &lobby).await.unwrap();
        rooms.ensure(&db, &lobby).await.unwrap();
        // Known now: a row deleted behind its back is not looked for again at once...
        table::delete_with_messages(&db, "lobby").await.unwrap();
        rooms.ensure(&db, &lobby).await.unwrap();
        assert!(table::get(&db, "lobby").await.unwrap().is_none());
        // ...until it is forgotten.
        rooms.forget("lobby");
        rooms.ensure(&db, &lobby).await.unwrap();
        assert!(table::get(&db, "lobby").await.unwrap().is_some());
        let anyone = Caller::default();
        assert_eq!(
            delete(&db, &anyone, "lobby")
                .await
                .unwrap_err()
                .status_code(),
            403
        );
        let admin = Caller {
            admin: true,
            ..Caller::default()
        };
        let (room, deleted) = delete(&db, &admin, "lobby").await.unwrap();
        assert_eq!((room.id.as_str(), deleted), ("lobby", 0));
        assert_eq!(
            delete(&db, &admin, "lobby")
                .await
                .unwrap_err()
                .status_code(),
            404
        );
    }
}

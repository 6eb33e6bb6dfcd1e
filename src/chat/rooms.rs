//! Rooms: a legacy room comes into being with its first message; the room API creates
//! them with a name and description, lists and deletes them.

use crate::access::RoomAccess;
use crate::db::error::{cause, Cause};
use crate::db::rooms::{self as table, Member, Room};
use crate::domain::names;
use crate::domain::sync::lock;
use crate::domain::{now_utc, Caller, Error, RoomName, Visibility};
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
        table::ensure_public(db, room.as_str(), now_utc()).await?;
        self.remember(room);
        Ok(())
    }

    /// Whether the room has its row, without making one (a bot's or a hook's post).
    pub async fn exists(&self, db: &DatabaseConnection, room: &RoomName) -> Result<bool, Error> {
        let fresh = lock(&self.known)
            .get(room.as_str())
            .is_some_and(|since| since.elapsed() < KNOWN_ROOM_TTL);
        if fresh {
            return Ok(true);
        }
        if table::get(db, room.as_str()).await?.is_none() {
            return Ok(false);
        }
        self.remember(room);
        Ok(true)
    }

    fn remember(&self, room: &RoomName) {
        let mut known = lock(&self.known);
        if known.len() >= MAX_KNOWN_ROOMS {
            known.clear();
        }
        known.insert(room.as_str().to_string(), Instant::now());
    }

    /// After a room is deleted here: its next post checks the table again.
    pub fn forget(&self, room: &str) {
        lock(&self.known).remove(room);
    }
}

/// Members a private room may have at most.
pub const MAX_MEMBERS: u64 = 1_000;

/// The room as a caller asks for it, or 404 (also for a private room they are not in).
pub async fn get(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    id: &str,
) -> Result<Room, Error> {
    access.may_read(caller, id).await?;
    existing(db, id).await
}

/// The room, or 404.
pub async fn existing(db: &DatabaseConnection, id: &str) -> Result<Room, Error> {
    table::get(db, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("room '{id}' does not exist")))
}

/// The rooms the caller may see: the public ones and their own private and direct ones
/// (an admin: all).
pub async fn list(db: &DatabaseConnection, caller: &Caller) -> Result<Vec<Room>, Error> {
    let user = caller.require_identity()?.map(|u| u.user_id.as_str());
    let mut rooms = table::list_visible(db, user, caller.admin).await?;
    caller.keep_own_rooms(&mut rooms, |r| Some(r.id.as_str()));
    Ok(rooms)
}

/// A room as the API asks for it.
#[derive(Debug, Default)]
pub struct NewRoom {
    /// Made from `name` when absent.
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Only its owner, its members and admins see it.
    pub private: bool,
}

/// Creates a room, owned by its signed-in creator; 409 if its id is taken. A private
/// room needs a signed-in creator (or an admin): nobody else could ever be its member.
pub async fn create(db: &DatabaseConnection, caller: &Caller, new: NewRoom) -> Result<Room, Error> {
    let owner = caller.require_identity()?.map(|user| user.user_id.clone());
    caller.not_a_bot("create rooms")?;
    if new.private && owner.is_none() && !caller.admin {
        return Err(Error::Unauthorized(
            "sign in to create a private room: its members are signed-in users".into(),
        ));
    }
    let visibility = if new.private {
        Visibility::Private
    } else {
        Visibility::Public
    };
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
        visibility,
    };
    match table::insert(db, &row).await {
        // Two creations at once: the loser's insert fails on the key.
        Err(err) if cause(&err) == Cause::Duplicate => return Err(conflict()),
        Err(err) => return Err(err.into()),
        Ok(_) => {}
    }
    Ok(row)
}

/// Checks a deletion of the room: its owner's or an admin's call (404 to whoever may not
/// see it). Returns the room, for the writer to delete with its messages and files' rows.
pub async fn check_delete(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    id: &str,
) -> Result<Room, Error> {
    let room = get(db, access, caller, id).await?;
    caller.require_one_of(
        "delete a room",
        "its owner or an admin",
        &[room.owner_id.as_deref()],
    )?;
    Ok(room)
}

/// The members of a room the caller may see, in the order they were added (none for a
/// public room).
pub async fn members(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    id: &str,
) -> Result<Vec<Member>, Error> {
    let room = get(db, access, caller, id).await?;
    Ok(table::members(db, &room.id, MAX_MEMBERS).await?)
}

/// A room whose members change: private (a direct room's two are fixed, a public room has
/// none), and the caller its owner or an admin.
async fn shared_room(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    id: &str,
    action: &str,
    also: Option<&str>,
) -> Result<Room, Error> {
    let room = get(db, access, caller, id).await?;
    match room.visibility {
        Visibility::Private => {}
        Visibility::Public => {
            return Err(Error::bad_request(format!(
                "room '{}' is public: only a private room has members",
                room.id
            )))
        }
        Visibility::Direct => {
            return Err(Error::bad_request(format!(
                "room '{}' is a direct conversation: its two members are fixed",
                room.id
            )))
        }
    }
    caller.require_one_of(
        action,
        "the room's owner or an admin",
        &[room.owner_id.as_deref(), also],
    )?;
    Ok(room)
}

/// Adds a member to a private room (its owner's or an admin's call); adding one who is a
/// member already changes nothing. Returns the member and whether they are new.
pub async fn add_member(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    id: &str,
    user_id: &str,
) -> Result<(Member, bool), Error> {
    let user_id = names::user_id(user_id)?;
    let room = shared_room(db, access, caller, id, "add members", None).await?;
    if table::is_member(db, &room.id, &user_id).await? {
        let existing = table::members(db, &room.id, MAX_MEMBERS)
            .await?
            .into_iter()
            .find(|m| m.user_id == user_id);
        if let Some(member) = existing {
            return Ok((member, false));
        }
    }
    if table::count_members(db, &room.id).await? >= MAX_MEMBERS {
        return Err(Error::Conflict(format!(
            "room '{}' has {MAX_MEMBERS} members, the most it may",
            room.id
        )));
    }
    let member = Member {
        room_id: room.id,
        user_id,
        added_at: now_utc(),
    };
    match table::add_member(db, &member).await {
        Ok(()) => Ok((member, true)),
        // Added twice at once: the second insert fails on the key, and they are a member.
        Err(err) if cause(&err) == Cause::Duplicate => Ok((member, false)),
        Err(err) => Err(err.into()),
    }
}

/// Removes a member from a private room: the owner's or an admin's call, or the member's
/// own (leaving). 404 if they are not a member.
pub async fn remove_member(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    id: &str,
    user_id: &str,
) -> Result<Room, Error> {
    let user_id = names::user_id(user_id)?;
    let room = shared_room(db, access, caller, id, "remove members", Some(&user_id)).await?;
    if !table::remove_member(db, &room.id, &user_id).await? {
        return Err(Error::not_found(format!(
            "{user_id} is not a member of room '{}'",
            room.id
        )));
    }
    Ok(room)
}

/// The id of the direct room of two users: the same whoever asks, and no other pair's.
pub fn direct_room_id(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    // Ids hold no NUL, so the pair is read back one way only.
    let pair = format!("{first}\0{second}");
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, pair.as_bytes());
    format!("{}{}", names::DIRECT_ROOM_PREFIX, id.simple())
}

/// The direct room of the signed-in caller and `other`, created on first asking; the
/// room, and whether it is new.
pub async fn direct(
    db: &DatabaseConnection,
    caller: &Caller,
    other: &str,
) -> Result<(Room, bool), Error> {
    let other = names::user_id(other)?;
    caller.not_a_bot("start a direct conversation")?;
    let me = match caller.require_identity()? {
        Some(user) => user.user_id.clone(),
        None => {
            return Err(Error::Unauthorized(
                "sign in first: a direct conversation is between signed-in users".into(),
            ))
        }
    };
    if me == other {
        return Err(Error::bad_request(
            "a direct conversation needs someone else: that is your own id",
        ));
    }
    let id = direct_room_id(&me, &other);
    if let Some(room) = table::get(db, &id).await? {
        return direct_only(room).map(|room| (room, false));
    }
    // Named by the two people's names, in the order of their ids, so each side can tell
    // the other's: an account's name, else (another application's user) the id.
    let my_name = caller.user.as_ref().map(|u| u.username.clone());
    let other_name = crate::db::accounts::get(db, &other)
        .await?
        .map(|a| a.username);
    let mine = my_name.unwrap_or_else(|| me.clone());
    let theirs = other_name.unwrap_or_else(|| other.clone());
    let (first, second) = if me <= other {
        (&mine, &theirs)
    } else {
        (&theirs, &mine)
    };
    let row = Room {
        id: id.clone(),
        name: format!("{first}, {second}"),
        description: None,
        created_at: now_utc(),
        owner_id: None,
        visibility: Visibility::Direct,
    };
    match table::insert_with_members(db, &row, &[me.clone(), other.clone()]).await {
        Ok(()) => Ok((row, true)),
        // Both asked at once: the other's insert made it.
        Err(err) => match table::get(db, &id).await? {
            Some(room) => direct_only(room).map(|room| (room, false)),
            None => Err(err.into()),
        },
    }
}

/// The room under a pair's id, if it is their direct room. Any other room there (made
/// before such ids were reserved) is someone's who could read the pair: never handed out.
fn direct_only(room: Room) -> Result<Room, Error> {
    if room.visibility == Visibility::Direct {
        Ok(room)
    } else {
        Err(Error::Conflict(format!(
            "room '{}' is not a direct conversation: an admin must delete it first",
            room.id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check, then the room gone with what is in it: what the pipeline's writer does.
    async fn delete(
        db: &DatabaseConnection,
        access: &RoomAccess,
        caller: &Caller,
        id: &str,
    ) -> Result<(Room, table::Deleted), Error> {
        let room = check_delete(db, access, caller, id).await?;
        let deleted = table::delete_with_messages(db, &room.id).await?;
        Ok((room, deleted))
    }
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
        let access = RoomAccess::new(db.clone());
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
            delete(&db, &access, &anyone, "lobby")
                .await
                .unwrap_err()
                .status_code(),
            403
        );
        let admin = Caller {
            admin: true,
            ..Caller::default()
        };
        let (room, deleted) = delete(&db, &access, &admin, "lobby").await.unwrap();
        assert_eq!((room.id.as_str(), deleted.messages), ("lobby", 0));
        assert_eq!(
            delete(&db, &access, &admin, "lobby")
                .await
                .unwrap_err()
                .status_code(),
            404
        );
    }

    fn user(id: &str) -> Caller {
        Caller {
            mode: crate::domain::AuthMode::Required,
            user: Some(crate::domain::Peer {
                user_id: id.into(),
                username: id.into(),
            }),
            ..Caller::default()
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> u16 {
        r.map(|_| 200).unwrap_or_else(|e| e.status_code())
    }

    #[tokio::test]
    async fn a_private_room_is_shared_by_its_owner_only() {
        let db = memory().await;
        let access = RoomAccess::new(db.clone());
        let (olga, bob, mia) = (user("olga"), user("bob"), user("mia"));
        let new = NewRoom {
            name: Some("Club".into()),
            private: true,
            ..NewRoom::default()
        };
        let room = create(&db, &olga, new).await.unwrap();
        assert_eq!(
            (room.visibility.as_str(), room.owner_id.as_deref()),
            ("private", Some("olga"))
        );
        let listed = |c: Caller| {
            let db = db.clone();
            async move {
                list(&db, &c)
                    .await
                    .unwrap()
                    .into_iter()
                    .any(|r| r.id == "club")
            }
        };
        assert!(listed(olga.clone()).await);
        assert!(!listed(bob.clone()).await);
        // Anonymous in open mode cannot make one: nobody could ever be its member.
        let anonymous = NewRoom {
            name: Some("x".into()),
            private: true,
            ..NewRoom::default()
        };
        assert_eq!(code(create(&db, &Caller::default(), anonymous).await), 401);
        // A non-member does not see it to add anyone; the owner does.
        assert_eq!(
            code(add_member(&db, &access, &bob, "club", "bob").await),
            404
        );
        let (_, new) = add_member(&db, &access, &olga, "club", "bob")
            .await
            .unwrap();
        assert!(new);
        let (_, again) = add_member(&db, &access, &olga, "club", "bob")
            .await
            .unwrap();
        assert!(!again, "adding twice changes nothing");
        access.forget("club");
        assert!(listed(bob.clone()).await);
        assert_eq!(code(get(&db, &access, &bob, "club").await), 200);
        // A member is not the owner: they may not add others, nor delete the room.
        assert_eq!(
            code(add_member(&db, &access, &bob, "club", "mia").await),
            403
        );
        assert_eq!(code(delete(&db, &access, &bob, "club").await), 403);
        assert_eq!(code(get(&db, &access, &mia, "club").await), 404);
        assert_eq!(
            members(&db, &access, &olga, "club")
                .await
                .unwrap()
                .iter()
                .map(|m| m.user_id.as_str())
                .collect::<Vec<_>>(),
            ["bob"]
        );
        // A member may leave; then they see nothing.
        remove_member(&db, &access, &bob, "club", "bob")
            .await
            .unwrap();
        access.forget("club");
        assert_eq!(code(get(&db, &access, &bob, "club").await), 404);
        assert_eq!(
            code(remove_member(&db, &access, &olga, "club", "bob").await),
            404
        );
        // A public room has no members to add.
        create(&db, &olga, new_room("open")).await.unwrap();
        assert_eq!(
            code(add_member(&db, &access, &olga, "open", "bob").await),
            400
        );
    }

    #[tokio::test]
    async fn a_direct_room_is_the_same_whoever_asks_and_no_one_elses() {
        let db = memory().await;
        let access = RoomAccess::new(db.clone());
        let (ann, bob, eve) = (user("ann"), user("bob"), user("eve"));
        let (room, new) = direct(&db, &ann, "bob").await.unwrap();
        assert!(new);
        let (same, new) = direct(&db, &bob, "ann").await.unwrap();
        assert!(!new);
        assert_eq!(room.id, same.id);
        assert_eq!(room.visibility, Visibility::Direct);
        assert_ne!(direct(&db, &ann, "eve").await.unwrap().0.id, room.id);
        assert_eq!(code(get(&db, &access, &bob, &room.id).await), 200);
        assert_eq!(code(get(&db, &access, &eve, &room.id).await), 404);
        assert_eq!(
            code(add_member(&db, &access, &ann, &room.id, "eve").await),
            400
        );
        assert_eq!(code(direct(&db, &ann, "ann").await), 400);
        assert_eq!(code(direct(&db, &Caller::default(), "ann").await), 401);
    }
}

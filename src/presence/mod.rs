//! Presence: who is online and who is typing, as ChatFlow's presence service keeps it. A user is online for 30 s after a heartbeat, and for as long as one of their
//! WebSockets is open on any replica (several tabs are one user; the last one closed makes
//! them offline). Typing lasts 5 s unless renewed. Every user id seen is also remembered
//! in the database under its latest name, which is how `@name` mentions find their user.

mod store;

pub use store::{MemoryStore, PresenceStore, RedisStore};

use crate::access::RoomAccess;
use crate::db::users;
use crate::domain::names::{self, RoomName};
use crate::domain::sync::{lock, random_u64};
use crate::domain::{Caller, Error, Limits, Peer, Result};
use crate::realtime::{Event, Hub};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ONLINE_TTL: Duration = Duration::from_secs(30);
pub const TYPING_TTL: Duration = Duration::from_secs(5);
/// How often a replica renews the presence of the users whose sockets it holds.
const SOCKET_REFRESH: Duration = Duration::from_secs(10);
/// A user's row in `chat_user` is rewritten at most this often by one replica.
const REMEMBER_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Presence(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn PresenceStore>,
    db: DatabaseConnection,
    limits: Limits,
    hub: Arc<dyn Hub>,
    access: Arc<RoomAccess>,
    replica: String,
    /// Open sockets on this replica: user id → (count, name).
    sockets: Mutex<HashMap<String, (usize, String)>>,
    /// When each user was last written to `chat_user`, and under which name.
    remembered: Mutex<HashMap<String, (String, Instant)>>,
}

impl Deref for Presence {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Presence {
    pub fn new(
        redis: Option<crate::realtime::RedisSource>,
        db: DatabaseConnection,
        hub: Arc<dyn Hub>,
        access: Arc<RoomAccess>,
        limits: Limits,
    ) -> Result<Self, redis::RedisError> {
        let store: Arc<dyn PresenceStore> = match redis {
            Some(source) => Arc::new(RedisStore::new(source)),
            None => Arc::new(MemoryStore::default()),
        };
        let presence = Presence(Arc::new(Inner {
            store,
            db,
            limits,
            hub,
            access,
            replica: format!("{:x}-{:x}", std::process::id(), random_u64()),
            sockets: Mutex::default(),
            remembered: Mutex::default(),
        }));
        let weak = Arc::downgrade(&presence.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SOCKET_REFRESH);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Presence(inner).refresh_sockets().await;
            }
        });
        Ok(presence)
    }

    /// Online for [`ONLINE_TTL`] from now, under `username` (the user id when none; the
    /// caller's own name when signed in).
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        user_id: &str,
        username: Option<&str>,
    ) -> Result<Peer> {
        let peer = self.peer_of(caller, user_id, username).await?;
        self.mark_online(&peer.user_id, &peer.username).await?;
        Ok(peer)
    }

    async fn mark_online(&self, user_id: &str, username: &str) -> Result<()> {
        self.store.set_online(user_id, username, ONLINE_TTL).await?;
        self.remember(user_id, username).await;
        Ok(())
    }

    /// A user id and name as a client sends them, checked; no name means the user id. A
    /// signed-in caller is themselves: the id must be theirs, the name is theirs.
    async fn peer_of(
        &self,
        caller: &Caller,
        user_id: &str,
        username: Option<&str>,
    ) -> Result<Peer> {
        let user_id = names::user_id(user_id)?;
        self.access.may_act_as(caller, &user_id).await?;
        if let Some(user) = caller.require_identity()? {
            if user.user_id == user_id {
                return Ok(user.clone());
            }
        }
        let username = names::username(Some(username.unwrap_or(&user_id)), &self.limits)?;
        Ok(Peer { user_id, username })
    }

    /// Everyone online now, by name: (user id, name).
    pub async fn online(&self, caller: &Caller) -> Result<Vec<(String, String)>> {
        caller.require_identity()?;
        let mut users = self.store.online().await?;
        users.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        Ok(users)
    }

    /// Whether the user is online, under which name, and when they were last seen if not.
    pub async fn user(&self, caller: &Caller, user_id: &str) -> Result<UserPresence> {
        caller.require_identity()?;
        let user_id = names::user_id(user_id)?;
        if let Some(username) = self.store.user(&user_id).await? {
            return Ok(UserPresence {
                user_id,
                username,
                online: true,
                last_seen: Some(chrono::Utc::now()),
            });
        }
        let seen = users::get(&self.db, &user_id).await?;
        Ok(UserPresence {
            username: seen
                .as_ref()
                .map_or_else(|| user_id.clone(), |u| u.username.clone()),
            user_id,
            online: false,
            last_seen: seen.map(|u| u.last_seen.and_utc()),
        })
    }

    pub async fn offline(&self, caller: &Caller, user_id: &str) -> Result<String> {
        let user_id = names::user_id(user_id)?;
        self.access.may_act_as(caller, &user_id).await?;
        self.store.set_offline(&user_id).await?;
        Ok(user_id)
    }

    /// Typing from the REST route: the name is the one given, else the one the user is
    /// online under, else the user id.
    pub async fn typing_from_api(
        &self,
        caller: &Caller,
        user_id: &str,
        username: Option<&str>,
        room: Option<&str>,
        active: bool,
    ) -> Result<()> {
        let user_id = names::user_id(user_id)?;
        self.access.may_act_as(caller, &user_id).await?;
        let known = match username {
            Some(_) => None,
            None => self.store.user(&user_id).await.ok().flatten(),
        };
        let peer = self
            .peer_of(caller, &user_id, username.or(known.as_deref()))
            .await?;
        let room = RoomName::parse(room.ok_or_else(|| Error::bad_request("room_id is required"))?)?;
        self.access.may_read(caller, room.as_str()).await?;
        self.typing(room.as_str(), Arc::new(peer), active).await
    }

    /// Who is typing in the room, by name: (user id, name).
    pub async fn typing_in(
        &self,
        caller: &Caller,
        room: &RoomName,
    ) -> Result<Vec<(String, String)>> {
        self.access.may_read(caller, room.as_str()).await?;
        let mut typing = self.store.typing(room.as_str()).await?;
        typing.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(typing)
    }

    /// A WebSocket opened: its user is online until their last socket closes. A presence
    /// store that is away costs the socket nothing: chatting goes on.
    pub async fn socket_opened(&self, peer: &Peer) {
        let count = {
            let mut sockets = lock(&self.sockets);
            let entry = sockets
                .entry(peer.user_id.clone())
                .or_insert((0, peer.username.clone()));
            entry.0 += 1;
            entry.1 = peer.username.clone();
            entry.0
        };
        let result = async {
            self.store
                .set_sockets(&peer.user_id, &self.replica, count)
                .await?;
            self.mark_online(&peer.user_id, &peer.username).await
        }
        .await;
        if let Err(err) = result {
            tracing::debug!(error = %err, "presence not recorded for a new socket");
        }
    }

    pub async fn socket_closed(&self, peer: &Peer, room: &str) {
        let count = {
            let mut sockets = lock(&self.sockets);
            let count = match sockets.get_mut(&peer.user_id) {
                Some(entry) => {
                    entry.0 = entry.0.saturating_sub(1);
                    entry.0
                }
                None => 0,
            };
            if count == 0 {
                sockets.remove(&peer.user_id);
            }
            count
        };
        let result = async {
            self.store.stop_typing(room, &peer.user_id).await?;
            let everywhere = self
                .store
                .set_sockets(&peer.user_id, &self.replica, count)
                .await?;
            if everywhere == 0 {
                self.store.set_offline(&peer.user_id).await?;
            }
            if count == 0 {
                // Last seen: now.
                lock(&self.remembered).remove(&peer.user_id);
                self.remember(&peer.user_id, &peer.username).await;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(err) = result {
            tracing::debug!(error = %err, "presence not updated for a closed socket");
        }
    }

    /// Typing from a socket frame or the REST route: kept for `GET .../typing` and told
    /// to the room's sockets.
    pub async fn typing(&self, room: &str, peer: Arc<Peer>, active: bool) -> Result<()> {
        let stored = if active {
            self.store
                .set_typing(room, &peer.user_id, &peer.username, TYPING_TTL)
                .await
        } else {
            self.store.stop_typing(room, &peer.user_id).await
        };
        self.hub.publish(room, Event::Typing { user: peer, active });
        stored
    }

    /// Keeps the users of this replica's sockets online. Their `chat_user` row is written
    /// when a socket opens and when the last one closes, not on every renewal.
    async fn refresh_sockets(&self) {
        let users: Vec<(String, String, usize)> = lock(&self.sockets)
            .iter()
            .map(|(id, (count, name))| (id.clone(), name.clone(), *count))
            .collect();
        if let Err(err) = self.store.renew(&users, &self.replica, ONLINE_TTL).await {
            tracing::debug!(error = %err, "presence not renewed; the next tick tries again");
        }
    }

    /// Writes the user's id and name to `chat_user`, at most once a minute per user.
    async fn remember(&self, user_id: &str, username: &str) {
        {
            let remembered = lock(&self.remembered);
            if let Some((name, at)) = remembered.get(user_id) {
                if name == username && at.elapsed() < REMEMBER_EVERY {
                    return;
                }
            }
        }
        match users::upsert(&self.db, user_id, username).await {
            Ok(_) => {
                let mut remembered = lock(&self.remembered);
                if remembered.len() > 100_000 {
                    remembered.clear();
                }
                remembered.insert(user_id.into(), (username.into(), Instant::now()));
            }
            Err(err) => tracing::debug!(error = %err, "user not remembered"),
        }
    }
}

/// One user's presence.
pub struct UserPresence {
    pub user_id: String,
    pub username: String,
    pub online: bool,
    /// Now for an online user; otherwise their last heartbeat or socket, if ever seen.
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
}

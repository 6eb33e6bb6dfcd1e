//! `/api/presence`: who is online and who is typing, as ChatFlow's presence service
//! answers. A user is online for 30 s after a heartbeat, and for as long as one of their
//! WebSockets is open on any replica (several tabs are one user; the last one closed makes
//! them offline). Typing lasts 5 s unless renewed. Every user id seen is also remembered
//! in the database under its latest name, which is how `@name` mentions find their user.

mod store;

pub use store::{MemoryStore, PresenceStore, RedisStore};

use crate::chat::validate::{self, RoomName};
use crate::db::entities::chat_user;
use crate::http::{Error, Result};
use crate::realtime::{Event, Hub, Peer};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, get, post, routes, Route, State};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

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
    hub: Arc<dyn Hub>,
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
        redis_url: Option<&str>,
        db: DatabaseConnection,
        hub: Arc<dyn Hub>,
    ) -> Result<Self, redis::RedisError> {
        let store: Arc<dyn PresenceStore> = match redis_url {
            Some(url) => Arc::new(RedisStore::new(url)?),
            None => Arc::new(MemoryStore::default()),
        };
        let presence = Presence(Arc::new(Inner {
            store,
            db,
            hub,
            replica: format!("{:x}-{:x}", std::process::id(), rand_u64()),
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

    pub async fn heartbeat(&self, user_id: &str, username: &str) -> Result<()> {
        self.store.set_online(user_id, username, ONLINE_TTL).await?;
        self.remember(user_id, username).await;
        Ok(())
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
            self.heartbeat(&peer.user_id, &peer.username).await
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
        let row = chat_user::ActiveModel {
            user_id: Set(user_id.to_string()),
            username: Set(username.to_string()),
            name_key: Set(username.to_lowercase()),
            last_seen: Set(validate::now_utc()),
        };
        let upsert = chat_user::Entity::insert(row).on_conflict(
            OnConflict::column(chat_user::Column::UserId)
                .update_columns([
                    chat_user::Column::Username,
                    chat_user::Column::NameKey,
                    chat_user::Column::LastSeen,
                ])
                .to_owned(),
        );
        match upsert.exec(&self.db).await {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

pub fn routes() -> Vec<Route> {
    routes![
        heartbeat,
        online,
        user,
        offline,
        start_typing,
        stop_typing,
        typing_in_room,
        presence_health,
    ]
}

#[derive(Serialize, ToSchema)]
pub struct UserPresence {
    user_id: String,
    username: String,
    online: bool,
    /// Now for an online user; otherwise their last heartbeat or socket, if ever seen.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_seen: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct TypingUser {
    user_id: String,
    username: String,
    room_id: String,
}

/// Online for 30 s from now; send one every 15 s to stay online.
#[utoipa::path(tag = "presence", params(("username" = Option<String>, Query)),
    responses((status = 200), (status = 400), (status = 503)))]
#[post("/<user_id>/heartbeat?<username>")]
async fn heartbeat(
    user_id: &str,
    username: Option<&str>,
    presence: &State<Presence>,
    chat: &State<crate::chat::Chat>,
) -> Result<Json<Value>> {
    let user_id = validate::user_id(user_id)?;
    let username = validate::username(Some(username.unwrap_or(&user_id)), &chat.limits)?;
    presence.heartbeat(&user_id, &username).await?;
    Ok(Json(json!({
        "status": "ok",
        "user_id": user_id,
        "online_ttl_seconds": ONLINE_TTL.as_secs(),
    })))
}

/// Everyone online now.
#[utoipa::path(tag = "presence", responses((status = 200, body = Vec<UserPresence>), (status = 503)))]
#[get("/")]
async fn online(presence: &State<Presence>) -> Result<Json<Vec<UserPresence>>> {
    let now = chrono::Utc::now();
    let mut users: Vec<UserPresence> = presence
        .store
        .online()
        .await?
        .into_iter()
        .map(|(user_id, username)| UserPresence {
            user_id,
            username,
            online: true,
            last_seen: Some(now),
        })
        .collect();
    users.sort_by(|a, b| a.username.cmp(&b.username).then(a.user_id.cmp(&b.user_id)));
    Ok(Json(users))
}

#[utoipa::path(tag = "presence", responses((status = 200, body = UserPresence), (status = 503)))]
#[get("/<user_id>")]
async fn user(user_id: &str, presence: &State<Presence>) -> Result<Json<UserPresence>> {
    let user_id = validate::user_id(user_id)?;
    if let Some(username) = presence.store.user(&user_id).await? {
        return Ok(Json(UserPresence {
            user_id,
            username,
            online: true,
            last_seen: Some(chrono::Utc::now()),
        }));
    }
    let seen = chat_user::Entity::find_by_id(user_id.clone())
        .one(&presence.db)
        .await?;
    Ok(Json(UserPresence {
        username: seen
            .as_ref()
            .map_or_else(|| user_id.clone(), |u| u.username.clone()),
        user_id,
        online: false,
        last_seen: seen.map(|u| u.last_seen.and_utc()),
    }))
}

/// Offline now (the page calls this when it closes).
#[utoipa::path(tag = "presence", responses((status = 200), (status = 503)))]
#[delete("/<user_id>")]
async fn offline(user_id: &str, presence: &State<Presence>) -> Result<Json<Value>> {
    let user_id = validate::user_id(user_id)?;
    presence.store.set_offline(&user_id).await?;
    Ok(Json(json!({ "status": "offline", "user_id": user_id })))
}

#[utoipa::path(tag = "presence",
    params(("room_id" = String, Query), ("username" = Option<String>, Query)),
    responses((status = 200), (status = 400), (status = 503)))]
#[post("/<user_id>/typing?<room_id>&<username>")]
async fn start_typing(
    user_id: &str,
    room_id: Option<&str>,
    username: Option<&str>,
    presence: &State<Presence>,
    chat: &State<crate::chat::Chat>,
) -> Result<Json<Value>> {
    let peer = typing_peer(user_id, username, presence, &chat.limits).await?;
    let room = typing_room(room_id)?;
    presence.typing(room.as_str(), peer, true).await?;
    Ok(Json(json!({ "status": "ok" })))
}

#[utoipa::path(tag = "presence", params(("room_id" = String, Query)),
    responses((status = 200), (status = 400), (status = 503)))]
#[delete("/<user_id>/typing?<room_id>")]
async fn stop_typing(
    user_id: &str,
    room_id: Option<&str>,
    presence: &State<Presence>,
    chat: &State<crate::chat::Chat>,
) -> Result<Json<Value>> {
    let peer = typing_peer(user_id, None, presence, &chat.limits).await?;
    let room = typing_room(room_id)?;
    presence.typing(room.as_str(), peer, false).await?;
    Ok(Json(json!({ "status": "ok" })))
}

#[utoipa::path(tag = "presence", responses((status = 200, body = Vec<TypingUser>), (status = 503)))]
#[get("/rooms/<room_id>/typing")]
async fn typing_in_room(
    room_id: Result<RoomName>,
    presence: &State<Presence>,
) -> Result<Json<Vec<TypingUser>>> {
    let room = room_id?;
    let mut typing: Vec<TypingUser> = presence
        .store
        .typing(room.as_str())
        .await?
        .into_iter()
        .map(|(user_id, username)| TypingUser {
            user_id,
            username,
            room_id: room.as_str().to_string(),
        })
        .collect();
    typing.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(Json(typing))
}

/// 503 while the presence store (Redis) does not answer.
#[utoipa::path(tag = "presence", responses((status = 200), (status = 503)))]
#[get("/health")]
async fn presence_health(presence: &State<Presence>) -> (Status, Json<Value>) {
    let up = presence.store.up().await;
    let body = json!({
        "status": if up { "healthy" } else { "unavailable" },
        "service": "presence",
        "store": { "kind": presence.store.kind(), "state": if up { "up" } else { "down" } },
    });
    let status = if up {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    (status, Json(body))
}

async fn typing_peer(
    user_id: &str,
    username: Option<&str>,
    presence: &Presence,
    limits: &validate::Limits,
) -> Result<Arc<Peer>> {
    let user_id = validate::user_id(user_id)?;
    let username = match username {
        Some(name) => Some(name.to_string()),
        None => presence.store.user(&user_id).await.ok().flatten(),
    };
    let username = validate::username(Some(username.as_deref().unwrap_or(&user_id)), limits)?;
    Ok(Arc::new(Peer { user_id, username }))
}

fn typing_room(room_id: Option<&str>) -> Result<RoomName> {
    RoomName::parse(room_id.ok_or_else(|| Error::bad_request("room_id is required"))?)
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    heartbeat,
    online,
    user,
    offline,
    start_typing,
    stop_typing,
    typing_in_room,
    presence_health
))]
pub struct ApiDoc;

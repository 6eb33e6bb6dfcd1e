//! `/api/presence`: who is online and who is typing, as ChatFlow's presence service
//! answers.

use super::limits::Heartbeating;
use super::App;
use crate::domain::{Caller, Result, RoomName};
use crate::presence::{self, ONLINE_TTL};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, get, post, State};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

super::mount![
    heartbeat,
    online,
    user,
    offline,
    start_typing,
    stop_typing,
    typing_in_room,
    presence_health,
];

/// One user's presence, as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct UserPresence {
    user_id: String,
    username: String,
    online: bool,
    /// Now for an online user; otherwise their last heartbeat or socket, if ever seen.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_seen: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<presence::UserPresence> for UserPresence {
    fn from(p: presence::UserPresence) -> Self {
        UserPresence {
            user_id: p.user_id,
            username: p.username,
            online: p.online,
            last_seen: p.last_seen,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TypingUser {
    user_id: String,
    username: String,
    room_id: String,
}

/// Online for 30 s from now; send one every 15 s to stay online.
#[utoipa::path(tag = "presence", params(("username" = Option<String>, Query)),
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 429), (status = 503)))]
#[post("/<user_id>/heartbeat?<username>")]
async fn heartbeat(
    user_id: &str,
    username: Option<&str>,
    flood: Result<Heartbeating>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Value>> {
    flood?;
    let peer = app.presence.heartbeat(&caller, user_id, username).await?;
    Ok(Json(json!({
        "status": "ok",
        "user_id": peer.user_id,
        "online_ttl_seconds": ONLINE_TTL.as_secs(),
    })))
}

/// Everyone online now.
#[utoipa::path(tag = "presence", responses((status = 200, body = Vec<UserPresence>), (status = 401), (status = 503)))]
#[get("/")]
async fn online(caller: Caller, app: &State<App>) -> Result<Json<Vec<UserPresence>>> {
    let now = chrono::Utc::now();
    let users = app.presence.online(&caller).await?;
    Ok(Json(
        users
            .into_iter()
            .map(|(user_id, username)| UserPresence {
                user_id,
                username,
                online: true,
                last_seen: Some(now),
            })
            .collect(),
    ))
}

#[utoipa::path(tag = "presence",
    responses((status = 200, body = UserPresence), (status = 400), (status = 401), (status = 503)))]
#[get("/<user_id>")]
async fn user(user_id: &str, caller: Caller, app: &State<App>) -> Result<Json<UserPresence>> {
    Ok(Json(app.presence.user(&caller, user_id).await?.into()))
}

/// Offline now (the page calls this when it closes).
#[utoipa::path(tag = "presence",
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 503)))]
#[delete("/<user_id>")]
async fn offline(user_id: &str, caller: Caller, app: &State<App>) -> Result<Json<Value>> {
    let user_id = app.presence.offline(&caller, user_id).await?;
    Ok(Json(json!({ "status": "offline", "user_id": user_id })))
}

#[utoipa::path(tag = "presence",
    params(("room_id" = String, Query), ("username" = Option<String>, Query)),
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404), (status = 429),
        (status = 503)))]
#[post("/<user_id>/typing?<room_id>&<username>")]
async fn start_typing(
    user_id: &str,
    room_id: Option<&str>,
    username: Option<&str>,
    flood: Result<Heartbeating>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Value>> {
    flood?;
    app.presence
        .typing_from_api(&caller, user_id, username, room_id, true)
        .await?;
    Ok(Json(json!({ "status": "ok" })))
}

#[utoipa::path(tag = "presence", params(("room_id" = String, Query)),
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404), (status = 429),
        (status = 503)))]
#[delete("/<user_id>/typing?<room_id>")]
async fn stop_typing(
    user_id: &str,
    room_id: Option<&str>,
    flood: Result<Heartbeating>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Value>> {
    flood?;
    app.presence
        .typing_from_api(&caller, user_id, None, room_id, false)
        .await?;
    Ok(Json(json!({ "status": "ok" })))
}

#[utoipa::path(tag = "presence", params(("room_id" = String, Path)),
    responses((status = 200, body = Vec<TypingUser>), (status = 400), (status = 401),
        (status = 404, description = "a private room the caller is not in"), (status = 503)))]
#[get("/rooms/<room_id>/typing")]
async fn typing_in_room(
    room_id: Result<RoomName>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<TypingUser>>> {
    let room = room_id?;
    let typing = app.presence.typing_in(&caller, &room).await?;
    Ok(Json(
        typing
            .into_iter()
            .map(|(user_id, username)| TypingUser {
                user_id,
                username,
                room_id: room.as_str().to_string(),
            })
            .collect(),
    ))
}

/// 503 while the presence store (Redis) does not answer.
#[utoipa::path(tag = "presence", responses((status = 200), (status = 503)))]
#[get("/health")]
async fn presence_health(app: &State<App>) -> (Status, Json<Value>) {
    let up = app.presence.store.up().await;
    let body = json!({
        "status": if up { "healthy" } else { "unavailable" },
        "service": "app.presence",
        "store": { "kind": app.presence.store.kind(), "state": if up { "up" } else { "down" } },
    });
    let status = if up {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    (status, Json(body))
}

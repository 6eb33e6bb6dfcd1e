//! `/api/hooks`: making, listing and deleting incoming webhooks. A room's owner (signed
//! in) or an admin manages its hooks; making one draws on the room-creation bucket.

use super::limits::RoomCreation;
use super::App;
use super::JsonBody;
use crate::chat::hooks::{self as hook};
use crate::db::hooks::Hook;
use crate::domain::{Caller, Result};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, get, post, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

super::mount![create_hook, list_hooks, delete_hook];

#[derive(Deserialize, ToSchema)]
pub struct HookIn {
    /// The room it posts into.
    room_id: String,
    /// The name its posts go under (a payload's `username` may say another).
    name: String,
}

/// A hook; `url` (holding its secret) only in the answer that made it.
#[derive(Serialize, ToSchema)]
pub struct HookOut {
    id: String,
    room_id: String,
    name: String,
    /// Who made it: a user's id, or null for the admin token.
    created_by: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    /// `/hooks/<id>/<secret>`: post Slack's `{"text"}` to it. Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

impl HookOut {
    fn of(hook: Hook, url: Option<String>) -> Self {
        HookOut {
            id: hook.id,
            room_id: hook.room_id,
            name: hook.name,
            created_by: hook.created_by,
            created_at: hook.created_at.and_utc(),
            url,
        }
    }
}

/// Makes an incoming webhook for a room: its owner's or an admin's call.
#[utoipa::path(tag = "hooks", request_body = HookIn,
    responses((status = 201, body = HookOut), (status = 400), (status = 401), (status = 403),
        (status = 404, description = "no such room, or one the caller may not see"), (status = 415),
        (status = 429)))]
#[post("/", data = "<body>")]
async fn create_hook(
    body: Result<JsonBody<HookIn>>,
    flood: Result<RoomCreation>,
    caller: Caller,
    app: &State<App>,
) -> Result<(Status, Json<HookOut>)> {
    flood?;
    let JsonBody(body) = body?;
    let made = app
        .hooks
        .create(&app.access, &caller, &body.room_id, &body.name, &app.limits)
        .await?;
    let url = hook::url(&made.hook.id, &made.secret);
    Ok((Status::Created, Json(HookOut::of(made.hook, Some(url)))))
}

/// The hooks the caller manages (an admin: all; else those of its own rooms), oldest
/// first; `room_id` keeps one room's. Their secrets are not shown again.
#[utoipa::path(tag = "hooks",
    params(("room_id" = Option<String>, Query)),
    responses((status = 200, body = Vec<HookOut>), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[get("/?<room_id>")]
async fn list_hooks(
    room_id: Option<&str>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<HookOut>>> {
    let found = app.hooks.list(&app.access, &caller, room_id).await?;
    Ok(Json(
        found.into_iter().map(|h| HookOut::of(h, None)).collect(),
    ))
}

/// Deletes a hook: its URL answers 404 from now on.
#[utoipa::path(tag = "hooks",
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[delete("/<id>")]
async fn delete_hook(id: &str, caller: Caller, app: &State<App>) -> Result<Status> {
    app.hooks.delete(&app.access, &caller, id).await?;
    Ok(Status::NoContent)
}

//! `/api/bots`: an admin makes a bot for some rooms and gets its token, lists the bots,
//! and deletes one (its token stops working at once, its sockets close). Making one draws
//! on the room-creation bucket.

use super::limits::RoomCreation;
use super::App;
use super::JsonBody;
use crate::accounts::MadeBot;
use crate::domain::{Caller, Result};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, get, post, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

super::mount![create_bot, list_bots, delete_bot];

#[derive(Deserialize, ToSchema)]
pub struct BotIn {
    /// Its name, taken as a person's would be (409 if it is).
    name: String,
    /// The ids of the rooms it may read and post in (1 to 100, each existing): 403 in any
    /// other. A private room's owner must still add it as a member.
    rooms: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BotOut {
    /// `bot:<uuid>`: its user id everywhere (messages, members, sockets).
    id: String,
    name: String,
    rooms: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    /// Its bearer token, for every door (`Authorization: Bearer`, a socket's `?token=`).
    /// Shown once; it lasts until the bot is deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<MadeBot> for BotOut {
    fn from(b: MadeBot) -> Self {
        BotOut {
            id: b.user_id,
            name: b.username,
            rooms: b.rooms,
            created_at: b.created_at.and_utc(),
            token: b.token,
        }
    }
}

/// Makes a bot: an admin's call.
#[utoipa::path(tag = "bots", security(("admin" = [])), request_body = BotIn,
    responses((status = 201, body = BotOut), (status = 400), (status = 401), (status = 403),
        (status = 404, description = "one of the rooms does not exist"), (status = 409), (status = 415), (status = 429)))]
#[post("/", data = "<body>")]
async fn create_bot(
    body: Result<JsonBody<BotIn>>,
    flood: Result<RoomCreation>,
    caller: Caller,
    app: &State<App>,
) -> Result<(Status, Json<BotOut>)> {
    flood?;
    caller.require_admin("make a bot")?;
    let JsonBody(body) = body?;
    let by = caller.user.as_ref().map(|u| u.user_id.as_str());
    let made = app.accounts.create_bot(&body.name, &body.rooms, by).await?;
    Ok((Status::Created, Json(made.into())))
}

/// Every bot (without its token): an admin's call.
#[utoipa::path(tag = "bots", security(("admin" = [])),
    responses((status = 200, body = Vec<BotOut>), (status = 401), (status = 403)))]
#[get("/")]
async fn list_bots(caller: Caller, app: &State<App>) -> Result<Json<Vec<BotOut>>> {
    caller.require_admin("list bots")?;
    let bots = app.accounts.bots().await?;
    Ok(Json(bots.into_iter().map(BotOut::from).collect()))
}

/// Deletes a bot: an admin's call. Its token is refused from now on (on other replicas
/// within 2 s), and its open sockets close with 4001.
#[utoipa::path(tag = "bots", security(("admin" = [])),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[delete("/<id>")]
async fn delete_bot(id: &str, caller: Caller, app: &State<App>) -> Result<Status> {
    caller.require_admin("delete a bot")?;
    app.accounts.delete_bot(id).await?;
    Ok(Status::NoContent)
}

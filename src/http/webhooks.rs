//! `/api/webhooks`: outgoing webhooks (see `delivery::webhooks`). A room's owner manages
//! those of its room, an admin those of every room; making one draws on the
//! room-creation bucket, and there are at most `MAX_PER_USER` per user (admins aside) and
//! `MAX_WEBHOOKS` in all.

use super::limits::RoomCreation;
use super::App;
use super::JsonBody;
use crate::db::webhooks::{self as table, DeliveryRow, Webhook};
use crate::delivery::webhooks::NewWebhook;
use crate::domain::{Caller, Result};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, get, post, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

super::mount![
    create_webhook,
    list_webhooks,
    delete_webhook,
    list_deliveries
];

#[derive(Deserialize, ToSchema)]
pub struct WebhookIn {
    /// Where events are `POST`ed: `http(s)://`, on a public address unless the server
    /// sets `webhook_allow_private`.
    url: String,
    /// Any of `message_created`, `mention`, `message_updated`, `message_deleted`.
    events: Vec<String>,
    /// The one room whose events it is sent (its owner's call); none: every room's (an
    /// admin's call).
    #[serde(default)]
    room_id: Option<String>,
    /// The name its answers are posted under; the URL's host when none.
    #[serde(default)]
    name: Option<String>,
}

/// A webhook; `secret` only in the answer that made it.
#[derive(Serialize, ToSchema)]
pub struct WebhookOut {
    id: String,
    url: String,
    events: Vec<String>,
    room_id: Option<String>,
    name: String,
    /// Who made it: a user's id, or null for the admin token.
    created_by: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    /// Keys `X-Ferrochat-Signature`: hex HMAC-SHA256 of `timestamp + "." + body` with
    /// this string as the key. Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookOut {
    fn of(webhook: Webhook, with_secret: bool) -> Self {
        WebhookOut {
            id: webhook.id,
            url: webhook.url,
            events: webhook.events.split(',').map(str::to_string).collect(),
            room_id: webhook.room_id,
            name: webhook.name,
            created_by: webhook.created_by,
            created_at: webhook.created_at.and_utc(),
            secret: with_secret.then_some(webhook.secret),
        }
    }
}

/// One event for a webhook and its last attempt.
#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    /// `X-Ferrochat-Delivery`: the same on every attempt.
    delivery_id: String,
    event: String,
    room_id: String,
    /// `pending` (waiting its turn or its next attempt), `delivered`, `failed` (every
    /// attempt failed) or `dropped` (too many waited).
    state: String,
    attempts: i32,
    /// The receiver's status at the last attempt, if it answered.
    status: Option<i32>,
    /// Why the last attempt failed.
    error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[schema(value_type = Option<String>, format = DateTime)]
    attempted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When a pending one is tried next.
    #[schema(value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<DeliveryRow> for DeliveryOut {
    fn from(row: DeliveryRow) -> Self {
        let pending = row.state == table::State::Pending.as_str();
        DeliveryOut {
            delivery_id: row.delivery_id,
            event: row.event,
            room_id: row.room_id,
            state: row.state,
            attempts: row.attempts,
            status: row.status,
            error: row.error,
            created_at: row.created_at.and_utc(),
            attempted_at: row.attempted_at.map(|t| t.and_utc()),
            next_attempt_at: pending.then(|| row.next_at.and_utc()),
        }
    }
}

/// Makes an outgoing webhook: for a room (its owner's or an admin's call) or for every
/// room (an admin's).
#[utoipa::path(tag = "webhooks", request_body = WebhookIn,
    responses((status = 201, body = WebhookOut),
        (status = 400, description = "a bad URL or event, or a receiver on a private network"),
        (status = 401), (status = 403),
        (status = 404, description = "no such room, or one the caller may not see"),
        (status = 409, description = "the most webhooks kept"), (status = 415), (status = 429)))]
#[post("/", data = "<body>")]
async fn create_webhook(
    body: Result<JsonBody<WebhookIn>>,
    flood: Result<RoomCreation>,
    caller: Caller,
    app: &State<App>,
) -> Result<(Status, Json<WebhookOut>)> {
    flood?;
    let JsonBody(body) = body?;
    let webhook = app
        .webhooks
        .create(
            &caller,
            NewWebhook {
                url: &body.url,
                events: &body.events,
                room_id: body.room_id.as_deref(),
                name: body.name.as_deref(),
            },
            &app.limits,
        )
        .await?;
    Ok((Status::Created, Json(WebhookOut::of(webhook, true))))
}

/// The webhooks the caller manages (an admin: all; else those of its own rooms), oldest
/// first, without their secrets.
#[utoipa::path(tag = "webhooks",
    responses((status = 200, body = Vec<WebhookOut>), (status = 401), (status = 403)))]
#[get("/")]
async fn list_webhooks(caller: Caller, app: &State<App>) -> Result<Json<Vec<WebhookOut>>> {
    let found = app.webhooks.list(&caller).await?;
    Ok(Json(
        found
            .into_iter()
            .map(|w| WebhookOut::of(w, false))
            .collect(),
    ))
}

/// Deletes a webhook and the events waiting for it.
#[utoipa::path(tag = "webhooks",
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[delete("/<id>")]
async fn delete_webhook(id: &str, caller: Caller, app: &State<App>) -> Result<Status> {
    app.webhooks.delete(&caller, id).await?;
    Ok(Status::NoContent)
}

/// The webhook's last 100 events, newest first, each with its last attempt.
#[utoipa::path(tag = "webhooks",
    responses((status = 200, body = Vec<DeliveryOut>), (status = 401), (status = 403), (status = 404)))]
#[get("/<id>/deliveries")]
async fn list_deliveries(
    id: &str,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<DeliveryOut>>> {
    let rows = app.webhooks.deliveries(&caller, id).await?;
    Ok(Json(rows.into_iter().map(DeliveryOut::from).collect()))
}

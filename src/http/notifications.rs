//! `/api/notifications`, as ChatFlow's notification service answers.

use super::params::{refused, Flag, PageLimit};
use super::App;
use super::JsonBody;
use crate::domain::{Caller, Notification, Result};
use crate::notifications::NewNotification;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, form, get, patch, post, FromForm, State};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

super::mount![
    create,
    list_notifications,
    unread_count,
    mark_read,
    read_all,
    remove_notification,
    notifications_health,
];

/// A notification as the API lists it and a socket's `notification` frame carries it
/// (`domain::Notification` writes it; the in-process schema test holds the two together).
#[derive(ToSchema)]
#[allow(dead_code)] // a description for the document
pub struct NotificationOut {
    id: String,
    user_id: String,
    title: String,
    body: String,
    /// `message`, `mention` or `system`.
    notif_type: String,
    room_id: Option<String>,
    from_user: Option<String>,
    read: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    /// The message a mention is about (the server's own mentions only).
    message_id: Option<i64>,
}

/// A notification to send: to whom, and what it says.
#[derive(Deserialize, ToSchema)]
pub struct NotificationIn {
    user_id: String,
    /// 1 to 200 characters.
    title: String,
    /// 4096 characters at most.
    body: String,
    /// `message` (when absent), `mention` or `system`.
    notif_type: Option<String>,
    room_id: Option<String>,
    from_user: Option<String>,
}

/// Creates a notification and pushes it to the user's open sockets.
#[utoipa::path(tag = "notifications", request_body = NotificationIn,
    responses((status = 201, body = NotificationOut), (status = 400), (status = 401), (status = 403), (status = 415)))]
#[post("/", data = "<body>")]
async fn create(
    body: Result<JsonBody<NotificationIn>>,
    caller: Caller,
    app: &State<App>,
) -> Result<(Status, Json<Notification>)> {
    let JsonBody(body) = body?;
    let new = NewNotification {
        user_id: body.user_id,
        title: body.title,
        body: body.body,
        notif_type: body.notif_type,
        room_id: body.room_id,
        from_user: body.from_user,
    };
    Ok((
        Status::Created,
        Json(app.notifier.create(&caller, new).await?),
    ))
}

/// What a user's notifications are asked for with.
#[derive(FromForm, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only the ones not read yet.
    #[param(inline, required = false)]
    unread_only: Flag,
    /// How many, the newest first.
    #[param(inline, required = false)]
    limit: PageLimit,
}

/// The user's notifications, newest first.
#[utoipa::path(tag = "notifications", params(ListParams),
    responses((status = 200, body = Vec<NotificationOut>), (status = 400), (status = 401), (status = 403)))]
#[get("/<user_id>?<query..>")]
async fn list_notifications(
    user_id: &str,
    query: form::Result<'_, ListParams>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<Notification>>> {
    let ListParams { unread_only, limit } = query.map_err(refused)?;
    Ok(Json(
        app.notifier
            .list(&caller, user_id, unread_only.0, limit.0)
            .await?,
    ))
}

#[utoipa::path(tag = "notifications", responses((status = 200), (status = 400), (status = 401), (status = 403)))]
#[get("/<user_id>/unread-count")]
async fn unread_count(user_id: &str, caller: Caller, app: &State<App>) -> Result<Json<Value>> {
    let count = app.notifier.unread_count(&caller, user_id).await?;
    Ok(Json(json!({ "user_id": user_id, "unread_count": count })))
}

#[utoipa::path(tag = "notifications",
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[patch("/<id>/read")]
async fn mark_read(id: &str, caller: Caller, app: &State<App>) -> Result<Json<Value>> {
    app.notifier.mark_read(&caller, id).await?;
    Ok(Json(json!({ "status": "ok", "id": id })))
}

#[utoipa::path(tag = "notifications", responses((status = 200), (status = 400), (status = 401), (status = 403)))]
#[patch("/<user_id>/read-all")]
async fn read_all(user_id: &str, caller: Caller, app: &State<App>) -> Result<Json<Value>> {
    let updated = app.notifier.read_all(&caller, user_id).await?;
    Ok(Json(
        json!({ "status": "ok", "user_id": user_id, "updated": updated }),
    ))
}

#[utoipa::path(tag = "notifications",
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[delete("/<id>")]
async fn remove_notification(id: &str, caller: Caller, app: &State<App>) -> Result<Json<Value>> {
    app.notifier.delete(&caller, id).await?;
    Ok(Json(json!({ "status": "deleted", "id": id })))
}

#[utoipa::path(tag = "notifications", responses((status = 200), (status = 503), (status = 401), (status = 403)))]
#[get("/health")]
async fn notifications_health(app: &State<App>) -> (Status, Json<Value>) {
    if app.notifier.up().await {
        (
            Status::Ok,
            Json(json!({ "status": "healthy", "service": "notifications", "database": "up" })),
        )
    } else {
        (
            Status::ServiceUnavailable,
            Json(
                json!({ "status": "unavailable", "service": "notifications", "database": "down" }),
            ),
        )
    }
}

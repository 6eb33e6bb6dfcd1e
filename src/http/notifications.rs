//! `/api/notifications`, as ChatFlow's notification service answers.

use super::params::{refused, Flag, PageLimit};
use super::JsonBody;
use crate::domain::{Caller, Result};
use crate::notifications::{NewNotification, NotificationOut, Notifier};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, form, get, patch, post, FromForm, State};
use serde_json::{json, Value};

super::mount![
    create,
    list_notifications,
    unread_count,
    mark_read,
    read_all,
    remove_notification,
    notifications_health,
];

/// Creates a notification and pushes it to the user's open sockets.
#[utoipa::path(tag = "notifications", request_body = NewNotification,
    responses((status = 201, body = NotificationOut), (status = 400), (status = 401), (status = 403), (status = 415)))]
#[post("/", data = "<body>")]
async fn create(
    body: Result<JsonBody<NewNotification>>,
    caller: Caller,
    notifier: &State<Notifier>,
) -> Result<(Status, Json<NotificationOut>)> {
    let JsonBody(body) = body?;
    Ok((Status::Created, Json(notifier.create(&caller, body).await?)))
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
    notifier: &State<Notifier>,
) -> Result<Json<Vec<NotificationOut>>> {
    let ListParams { unread_only, limit } = query.map_err(refused)?;
    Ok(Json(
        notifier
            .list(&caller, user_id, unread_only.0, limit.0)
            .await?,
    ))
}

#[utoipa::path(tag = "notifications", responses((status = 200), (status = 400), (status = 401), (status = 403)))]
#[get("/<user_id>/unread-count")]
async fn unread_count(
    user_id: &str,
    caller: Caller,
    notifier: &State<Notifier>,
) -> Result<Json<Value>> {
    let count = notifier.unread_count(&caller, user_id).await?;
    Ok(Json(json!({ "user_id": user_id, "unread_count": count })))
}

#[utoipa::path(tag = "notifications",
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[patch("/<id>/read")]
async fn mark_read(id: &str, caller: Caller, notifier: &State<Notifier>) -> Result<Json<Value>> {
    notifier.mark_read(&caller, id).await?;
    Ok(Json(json!({ "status": "ok", "id": id })))
}

#[utoipa::path(tag = "notifications", responses((status = 200), (status = 400), (status = 401), (status = 403)))]
#[patch("/<user_id>/read-all")]
async fn read_all(
    user_id: &str,
    caller: Caller,
    notifier: &State<Notifier>,
) -> Result<Json<Value>> {
    let updated = notifier.read_all(&caller, user_id).await?;
    Ok(Json(
        json!({ "status": "ok", "user_id": user_id, "updated": updated }),
    ))
}

#[utoipa::path(tag = "notifications",
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[delete("/<id>")]
async fn remove_notification(
    id: &str,
    caller: Caller,
    notifier: &State<Notifier>,
) -> Result<Json<Value>> {
    notifier.delete(&caller, id).await?;
    Ok(Json(json!({ "status": "deleted", "id": id })))
}

#[utoipa::path(tag = "notifications", responses((status = 200), (status = 503), (status = 401), (status = 403)))]
#[get("/health")]
async fn notifications_health(notifier: &State<Notifier>) -> (Status, Json<Value>) {
    if notifier.up().await {
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

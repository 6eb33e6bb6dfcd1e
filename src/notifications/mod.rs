//! `/api/notifications`, as ChatFlow's notification service answers, in the `notification`
//! table. The server makes `mention` notifications itself: a message that names
//! `@someone` notifies every user id known under that name (see [`crate::presence`]), and
//! every new notification is pushed live to its user's open WebSockets.

use crate::chat::validate;
use crate::db::entities::{chat_user, message, notification};
use crate::http::{Error, Result};
use crate::realtime::{user_channel, Event, Hub};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, routes, Route, State};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use utoipa::ToSchema;

const NOTIF_TYPES: [&str; 3] = ["message", "mention", "system"];
/// Names looked up per message at most: a message listing a thousand `@`s notifies the
/// first few only.
const MAX_MENTIONS: usize = 20;

/// What creates notifications: the API and the mention scanner share it.
#[derive(Clone)]
pub struct Notifier {
    db: DatabaseConnection,
    hub: Arc<dyn Hub>,
}

#[derive(Serialize, Clone, ToSchema)]
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
}

impl From<notification::Model> for NotificationOut {
    fn from(n: notification::Model) -> Self {
        NotificationOut {
            id: n.id,
            user_id: n.user_id,
            title: n.title,
            body: n.body,
            notif_type: n.notif_type,
            room_id: n.room_id,
            from_user: n.from_user,
            read: n.is_read,
            created_at: n.created_at.and_utc(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewNotification {
    user_id: String,
    title: String,
    body: String,
    notif_type: Option<String>,
    room_id: Option<String>,
    from_user: Option<String>,
}

impl Notifier {
    pub fn new(db: DatabaseConnection, hub: Arc<dyn Hub>) -> Self {
        Notifier { db, hub }
    }

    /// Stores the notification, then pushes it to the user's sockets.
    async fn create(&self, row: notification::Model) -> Result<NotificationOut> {
        let active = notification::ActiveModel {
            id: Set(row.id.clone()),
            user_id: Set(row.user_id.clone()),
            title: Set(row.title.clone()),
            body: Set(row.body.clone()),
            notif_type: Set(row.notif_type.clone()),
            room_id: Set(row.room_id.clone()),
            from_user: Set(row.from_user.clone()),
            is_read: Set(row.is_read),
            created_at: Set(row.created_at),
        };
        notification::Entity::insert(active).exec(&self.db).await?;
        let out = NotificationOut::from(row);
        if let Ok(value) = serde_json::to_value(&out) {
            self.hub.publish(
                &user_channel(&out.user_id),
                Event::Notification(Arc::new(value)),
            );
        }
        Ok(out)
    }

    /// Called with every committed message (see `chat::Chat::new`); returns at once.
    pub fn on_message(&self, row: &message::Model) {
        let names = mentioned_names(&row.text);
        if names.is_empty() {
            return;
        }
        let (notifier, row) = (self.clone(), row.clone());
        tokio::spawn(async move {
            if let Err(err) = notifier.notify_mentions(&row, names).await {
                tracing::warn!(error = %err, message = row.id, "mentions not notified");
            }
        });
    }

    async fn notify_mentions(&self, row: &message::Model, names: BTreeSet<String>) -> Result<()> {
        let users = chat_user::Entity::find()
            .filter(chat_user::Column::NameKey.is_in(names))
            .all(&self.db)
            .await?;
        let sender = row.username.to_lowercase();
        for user in users {
            let own = row.user_id.as_deref() == Some(user.user_id.as_str())
                || (row.user_id.is_none() && user.name_key == sender);
            if own {
                continue; // naming oneself is not a mention
            }
            let body: String = row.text.chars().take(500).collect();
            self.create(notification::Model {
                id: uuid::Uuid::new_v4().to_string(),
                user_id: user.user_id,
                title: format!("{} mentioned you in #{}", row.username, row.room),
                body,
                notif_type: "mention".into(),
                room_id: Some(row.room.clone()),
                from_user: Some(row.username.clone()),
                is_read: false,
                created_at: validate::now_utc(),
            })
            .await?;
        }
        Ok(())
    }
}

/// The names after `@` in a message, lower-cased: letters, digits, `_`, `-` and `.`
/// (not ending in `.`); an `@` inside a word (an e-mail address) is not a mention.
pub fn mentioned_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut previous: Option<char> = None;
    for (i, c) in text.char_indices() {
        let starts_word = previous.is_none_or(|p| !p.is_alphanumeric() && p != '_');
        previous = Some(c);
        if c != '@' || !starts_word {
            continue;
        }
        let rest = &text[i + 1..];
        let end = rest
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(rest.len(), |(j, _)| j);
        let name = rest[..end].trim_end_matches('.');
        if !name.is_empty() && name.chars().count() <= 64 {
            names.insert(name.to_lowercase());
            if names.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    names
}

pub fn routes() -> Vec<Route> {
    routes![
        create,
        list,
        unread_count,
        mark_read,
        read_all,
        remove,
        notifications_health,
    ]
}

/// Creates a notification and pushes it to the user's open sockets.
#[utoipa::path(tag = "notifications", request_body = NewNotification,
    responses((status = 201, body = NotificationOut), (status = 400)))]
#[post("/", data = "<body>")]
async fn create(
    body: Result<Json<NewNotification>, rocket::serde::json::Error<'_>>,
    notifier: &State<Notifier>,
) -> Result<(Status, Json<NotificationOut>)> {
    let body = crate::http::json_body(body)?;
    let user_id = validate::user_id(&body.user_id)?;
    let notif_type = body.notif_type.unwrap_or_else(|| "message".into());
    if !NOTIF_TYPES.contains(&notif_type.as_str()) {
        return Err(Error::bad_request(
            "notif_type must be message, mention or system",
        ));
    }
    let title = body.title.trim().to_string();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(Error::bad_request("title must be 1 to 200 characters"));
    }
    if body.body.chars().count() > 4096 {
        return Err(Error::bad_request("body is longer than 4096 characters"));
    }
    let room_id = body
        .room_id
        .map(|r| validate::RoomName::parse(&r).map(|r| r.as_str().to_string()))
        .transpose()?;
    let from_user = body.from_user.map(|u| validate::user_id(&u)).transpose()?;
    let out = notifier
        .create(notification::Model {
            id: uuid::Uuid::new_v4().to_string(),
            user_id,
            title,
            body: body.body,
            notif_type,
            room_id,
            from_user,
            is_read: false,
            created_at: validate::now_utc(),
        })
        .await?;
    Ok((Status::Created, Json(out)))
}

/// The user's notifications, newest first.
#[utoipa::path(tag = "notifications",
    params(("unread_only" = Option<bool>, Query), ("limit" = Option<u64>, Query, description = "1 to 200, default 50")),
    responses((status = 200, body = Vec<NotificationOut>), (status = 400)))]
#[get("/<user_id>?<unread_only>&<limit>")]
async fn list(
    user_id: &str,
    unread_only: Option<&str>,
    limit: Option<&str>,
    notifier: &State<Notifier>,
) -> Result<Json<Vec<NotificationOut>>> {
    let user_id = validate::user_id(user_id)?;
    let unread_only = match unread_only {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => return Err(Error::bad_request("unread_only must be true or false")),
    };
    let limit = validate::limit(limit)?;
    let mut query = notification::Entity::find().filter(notification::Column::UserId.eq(user_id));
    if unread_only {
        query = query.filter(notification::Column::IsRead.eq(false));
    }
    let rows = query
        .order_by_desc(notification::Column::CreatedAt)
        .order_by_desc(notification::Column::Id)
        .limit(limit)
        .all(&notifier.db)
        .await?;
    Ok(Json(rows.into_iter().map(NotificationOut::from).collect()))
}

#[utoipa::path(tag = "notifications", responses((status = 200)))]
#[get("/<user_id>/unread-count")]
async fn unread_count(user_id: &str, notifier: &State<Notifier>) -> Result<Json<Value>> {
    let user_id = validate::user_id(user_id)?;
    let count = notification::Entity::find()
        .filter(notification::Column::UserId.eq(&user_id))
        .filter(notification::Column::IsRead.eq(false))
        .count(&notifier.db)
        .await?;
    Ok(Json(json!({ "user_id": user_id, "unread_count": count })))
}

#[utoipa::path(tag = "notifications", responses((status = 200), (status = 404)))]
#[patch("/<id>/read")]
async fn mark_read(id: &str, notifier: &State<Notifier>) -> Result<Json<Value>> {
    let updated = notification::Entity::update_many()
        .col_expr(notification::Column::IsRead, Expr::value(true))
        .filter(notification::Column::Id.eq(id))
        .exec(&notifier.db)
        .await?;
    // MySQL counts changed rows only: a second "read" of one notification changes none.
    if updated.rows_affected == 0
        && notification::Entity::find_by_id(id.to_string())
            .one(&notifier.db)
            .await?
            .is_none()
    {
        return Err(Error::not_found("notification not found"));
    }
    Ok(Json(json!({ "status": "ok", "id": id })))
}

#[utoipa::path(tag = "notifications", responses((status = 200)))]
#[patch("/<user_id>/read-all")]
async fn read_all(user_id: &str, notifier: &State<Notifier>) -> Result<Json<Value>> {
    let user_id = validate::user_id(user_id)?;
    let updated = notification::Entity::update_many()
        .col_expr(notification::Column::IsRead, Expr::value(true))
        .filter(notification::Column::UserId.eq(&user_id))
        .filter(notification::Column::IsRead.eq(false))
        .exec(&notifier.db)
        .await?;
    Ok(Json(
        json!({ "status": "ok", "user_id": user_id, "updated": updated.rows_affected }),
    ))
}

#[utoipa::path(tag = "notifications", responses((status = 200), (status = 404)))]
#[delete("/<id>")]
async fn remove(id: &str, notifier: &State<Notifier>) -> Result<Json<Value>> {
    let deleted = notification::Entity::delete_by_id(id.to_string())
        .exec(&notifier.db)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(Error::not_found("notification not found"));
    }
    Ok(Json(json!({ "status": "deleted", "id": id })))
}

#[utoipa::path(tag = "notifications", responses((status = 200), (status = 503)))]
#[get("/health")]
async fn notifications_health(notifier: &State<Notifier>) -> (Status, Json<Value>) {
    match notifier.db.ping().await {
        Ok(()) => (
            Status::Ok,
            Json(json!({ "status": "healthy", "service": "notifications", "database": "up" })),
        ),
        Err(_) => (
            Status::ServiceUnavailable,
            Json(
                json!({ "status": "unavailable", "service": "notifications", "database": "down" }),
            ),
        ),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create,
    list,
    unread_count,
    mark_read,
    read_all,
    remove,
    notifications_health
))]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::mentioned_names;

    #[test]
    fn mentions_are_words_after_an_at() {
        let names: Vec<_> = mentioned_names("hi @Alice, @bob. mail x@y.z @@ @carol_2-x!")
            .into_iter()
            .collect();
        assert_eq!(names, ["alice", "bob", "carol_2-x"]);
        assert!(mentioned_names("no mentions here").is_empty());
        assert!(mentioned_names("trailing @").is_empty());
    }
}

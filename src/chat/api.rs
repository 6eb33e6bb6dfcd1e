//! The ChatFlow chat REST surface under `/api/chat`: rooms, message history and search,
//! one message, and posting JSON. A message posted here takes the one message path (the
//! store), so WebSocket and polling readers get it like any other.

use super::validate::{self, RoomName, RESERVED_ROOMS};
use super::Chat;
use crate::db::entities::{message, room};
use crate::http::{Error, Result};
use crate::realtime::Event;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, get, post, routes, Route, State};
use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, ExprTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

pub fn routes() -> Vec<Route> {
    routes![
        list_rooms,
        create_room,
        get_room,
        delete_room,
        room_messages,
        post_room_message,
        get_message,
        delete_message,
        chat_health,
    ]
}

#[derive(Serialize, ToSchema)]
pub struct RoomOut {
    id: String,
    name: String,
    description: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<room::Model> for RoomOut {
    fn from(r: room::Model) -> Self {
        RoomOut {
            id: r.id,
            name: r.name,
            description: r.description,
            created_at: r.created_at.and_utc(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MessageOut {
    id: i64,
    room_id: String,
    user_id: Option<String>,
    username: String,
    content: String,
    /// `text`, `file` or `system`.
    message_type: String,
    file_url: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
}

impl From<message::Model> for MessageOut {
    fn from(m: message::Model) -> Self {
        MessageOut {
            id: m.id,
            room_id: m.room,
            user_id: m.user_id,
            username: m.username,
            content: m.text,
            message_type: m.message_type,
            file_url: m.file_url,
            created_at: m.timestamp.and_utc(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct NewRoom {
    /// The room's id, as in `/ws/<id>/...` and `/<id>`; made from `name` when absent.
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct NewMessageIn {
    content: Option<String>,
    username: Option<String>,
    user_id: Option<String>,
    /// `text` (default) or `file`, which needs `file_url`.
    message_type: Option<String>,
    file_url: Option<String>,
}

/// Rooms, oldest first.
#[utoipa::path(tag = "chat", responses((status = 200, body = Vec<RoomOut>)))]
#[get("/rooms")]
async fn list_rooms(chat: &State<Chat>) -> Result<Json<Vec<RoomOut>>> {
    let rooms = room::Entity::find()
        .order_by_asc(room::Column::CreatedAt)
        .order_by_asc(room::Column::Id)
        .all(chat.store.db())
        .await?;
    Ok(Json(rooms.into_iter().map(RoomOut::from).collect()))
}

/// Creates a room; 409 if its id is taken.
#[utoipa::path(tag = "chat", request_body = NewRoom,
    responses((status = 201, body = RoomOut), (status = 400), (status = 409)))]
#[post("/rooms", data = "<body>")]
async fn create_room(
    body: Result<Json<NewRoom>, rocket::serde::json::Error<'_>>,
    chat: &State<Chat>,
) -> Result<(Status, Json<RoomOut>)> {
    let body = crate::http::json_body(body)?;
    let name = body.name.as_deref().map(str::trim).unwrap_or_default();
    let id = match body.id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ if !name.is_empty() => name.to_lowercase().replace(char::is_whitespace, "-"),
        _ => return Err(Error::bad_request("id or name is required")),
    };
    let id = room_id(&id)?;
    let name = if name.is_empty() { id.as_str() } else { name };
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "name must be at most 100 characters, no control characters",
        ));
    }
    let description = body.description.map(|d| d.trim().to_string());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1000)
    {
        return Err(Error::bad_request(
            "description is longer than 1000 characters",
        ));
    }
    let db = chat.store.db();
    if chat.store.room(id.as_str()).await?.is_some() {
        return Err(conflict(&id));
    }
    let row = room::Model {
        id: id.as_str().to_string(),
        name: name.to_string(),
        description: description.filter(|d| !d.is_empty()),
        created_at: validate::now_utc(),
    };
    let active = room::ActiveModel {
        id: Set(row.id.clone()),
        name: Set(row.name.clone()),
        description: Set(row.description.clone()),
        created_at: Set(row.created_at),
    };
    if let Err(err) = room::Entity::insert(active).exec(db).await {
        // Two creations at once: the loser's insert fails on the key.
        return Err(match chat.store.room(id.as_str()).await? {
            Some(_) => conflict(&id),
            None => err.into(),
        });
    }
    Ok((Status::Created, Json(row.into())))
}

#[utoipa::path(tag = "chat", responses((status = 200, body = RoomOut), (status = 404)))]
#[get("/rooms/<id>")]
async fn get_room(id: &str, chat: &State<Chat>) -> Result<Json<RoomOut>> {
    Ok(Json(existing_room(chat, id).await?.into()))
}

/// Deletes a room and every message in it.
#[utoipa::path(tag = "chat", responses((status = 200), (status = 404)))]
#[delete("/rooms/<id>")]
async fn delete_room(id: &str, chat: &State<Chat>) -> Result<Json<Value>> {
    let room = existing_room(chat, id).await?;
    let txn = chat.store.db().begin().await?;
    let deleted = message::Entity::delete_many()
        .filter(message::Column::Room.eq(&room.id))
        .exec(&txn)
        .await?
        .rows_affected;
    room::Entity::delete_by_id(room.id.clone())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    chat.store.forget_room(&room.id);
    chat.transcripts.forget(&room.id);
    chat.hub.publish(&room.id, Event::RoomDeleted);
    Ok(Json(
        json!({ "status": "deleted", "id": room.id, "messages_deleted": deleted }),
    ))
}

/// The room's newest `limit` messages (default 50, at most 200), oldest first. `before`
/// pages back from a message id, `after` forward from one (the oldest after it first);
/// `q` keeps messages whose text holds it, ignoring case.
#[utoipa::path(tag = "chat", params(
        ("limit" = Option<u64>, Query, description = "1 to 200, default 50"),
        ("before" = Option<i64>, Query, description = "only messages with a smaller id"),
        ("after" = Option<i64>, Query, description = "only messages with a larger id"),
        ("q" = Option<String>, Query, description = "text to search for")),
    responses((status = 200, body = Vec<MessageOut>), (status = 400), (status = 404)))]
#[get("/rooms/<id>/messages?<limit>&<before>&<after>&<q>")]
async fn room_messages(
    id: &str,
    limit: Option<&str>,
    before: Option<&str>,
    after: Option<&str>,
    q: Option<&str>,
    chat: &State<Chat>,
) -> Result<Json<Vec<MessageOut>>> {
    let limit = validate::limit(limit)?;
    let before = cursor("before", before)?;
    let after = cursor("after", after)?;
    let room = existing_room(chat, id).await?;
    let mut query = message::Entity::find().filter(message::Column::Room.eq(&room.id));
    if let Some(before) = before {
        query = query.filter(message::Column::Id.lt(before));
    }
    if let Some(after) = after {
        query = query.filter(message::Column::Id.gt(after));
    }
    if let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) {
        if q.chars().count() > 200 {
            return Err(Error::bad_request("q is longer than 200 characters"));
        }
        let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
        query = query.filter(
            Expr::expr(Func::lower(Expr::col(message::Column::Text)))
                .like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    // Forward from `after`, the oldest come first; otherwise the newest, turned around.
    let forward = after.is_some() && before.is_none();
    let order = if forward {
        sea_orm::Order::Asc
    } else {
        sea_orm::Order::Desc
    };
    let mut rows = query
        .order_by(message::Column::Id, order)
        .limit(limit)
        .all(chat.store.db())
        .await?;
    if !forward {
        rows.reverse();
    }
    Ok(Json(rows.into_iter().map(MessageOut::from).collect()))
}

/// Posts a message; 201 once it is committed, with its id.
#[utoipa::path(tag = "chat", request_body = NewMessageIn,
    responses((status = 201, body = MessageOut), (status = 400), (status = 404)))]
#[post("/rooms/<id>/messages", data = "<body>")]
async fn post_room_message(
    id: &str,
    body: Result<Json<NewMessageIn>, rocket::serde::json::Error<'_>>,
    chat: &State<Chat>,
) -> Result<(Status, Json<MessageOut>)> {
    let body = crate::http::json_body(body)?;
    let room = RoomName::parse(&existing_room(chat, id).await?.id)?;
    let user_id = body.user_id.as_deref().map(validate::user_id).transpose()?;
    let username = validate::username(
        body.username.as_deref().or(user_id.as_deref()),
        &chat.limits,
    )?;
    let message = validate::chatflow_message(
        &username,
        user_id,
        body.content.as_deref(),
        body.message_type.as_deref(),
        body.file_url,
        &chat.limits,
    )?;
    let row = chat.store.insert(&room, message).await?;
    Ok((Status::Created, Json(row.into())))
}

#[utoipa::path(tag = "chat", responses((status = 200, body = MessageOut), (status = 404)))]
#[get("/messages/<id>")]
async fn get_message(id: &str, chat: &State<Chat>) -> Result<Json<MessageOut>> {
    Ok(Json(existing_message(chat, id).await?.into()))
}

#[utoipa::path(tag = "chat", responses((status = 200), (status = 404)))]
#[delete("/messages/<id>")]
async fn delete_message(id: &str, chat: &State<Chat>) -> Result<Json<Value>> {
    let row = existing_message(chat, id).await?;
    message::Entity::delete_by_id(row.id)
        .exec(chat.store.db())
        .await?;
    chat.transcripts.forget(&row.room);
    chat.hub
        .publish(&row.room, Event::MessageDeleted { id: row.id });
    Ok(Json(json!({ "status": "deleted", "id": row.id })))
}

/// The chat service's health, as ChatFlow's gateway checks it: 503 while the database is
/// away.
#[utoipa::path(tag = "chat", responses((status = 200), (status = 503)))]
#[get("/health")]
async fn chat_health(chat: &State<Chat>) -> (Status, Json<Value>) {
    let (status, Json(mut body)) = crate::health::check(chat).await;
    body["service"] = json!("chat");
    if status == Status::Ok {
        body["status"] = json!("healthy");
    }
    let messages = message::Entity::find().count(chat.store.db()).await.ok();
    body["messages"] = json!(messages);
    (status, Json(body))
}

fn room_id(id: &str) -> Result<RoomName> {
    let room = RoomName::parse(id)?;
    if RESERVED_ROOMS.contains(&room.as_str()) {
        return Err(Error::bad_request(format!(
            "'{}' is reserved for the API",
            room.as_str()
        )));
    }
    Ok(room)
}

fn conflict(id: &RoomName) -> Error {
    Error::Conflict(format!("room '{}' already exists", id.as_str()))
}

async fn existing_room(chat: &Chat, id: &str) -> Result<room::Model> {
    chat.store
        .room(id)
        .await?
        .ok_or_else(|| Error::not_found(format!("room '{id}' does not exist")))
}

async fn existing_message(chat: &Chat, id: &str) -> Result<message::Model> {
    let id = id
        .parse::<i64>()
        .map_err(|_| Error::bad_request("a message id is a number"))?;
    message::Entity::find_by_id(id)
        .one(chat.store.db())
        .await?
        .ok_or_else(|| Error::not_found(format!("message {id} does not exist")))
}

fn cursor(name: &str, raw: Option<&str>) -> Result<Option<i64>> {
    raw.map(|raw| {
        raw.parse::<i64>()
            .map_err(|_| Error::bad_request(format!("{name} must be a message id")))
    })
    .transpose()
}

/// `%`, `_` and the escape character itself match only themselves.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The ChatFlow chat routes, for `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_rooms,
    create_room,
    get_room,
    delete_room,
    room_messages,
    post_room_message,
    get_message,
    delete_message,
    chat_health
))]
pub struct ApiDoc;

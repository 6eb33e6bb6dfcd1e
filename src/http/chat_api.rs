//! The room API under `/api/chat`: rooms, message history and search,
//! one message, and posting JSON. A message posted here takes the one delivery pipeline,
//! so WebSocket and polling readers get it like any other.

use super::limits::{MarkingRead, Posting, RoomCreation};
use super::ops::check;
use super::params::{refused, ChangesLimit, Cursor, HistoryText, PageLimit};
use super::App;
use super::JsonBody;
use crate::chat::{messages::HistoryQuery, rooms::NewRoom};
use crate::domain::message::room_message;
use crate::domain::names::{self, RoomName};
use crate::domain::{AuthMode, Caller, Member, Message, MessageJson, Result, Room, Shape};
use crate::realtime::ServerFrame;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, form, get, patch, post, put, FromForm, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

super::mount![
    list_rooms,
    create_room,
    get_room,
    delete_room,
    room_messages,
    post_room_message,
    get_message,
    edit_message,
    delete_message,
    add_reaction,
    remove_reaction,
    mark_room_read,
    unread,
    room_changes,
    list_members,
    add_member,
    remove_member,
    direct_room,
    chat_health,
];

#[derive(Serialize, ToSchema)]
pub struct RoomOut {
    id: String,
    name: String,
    description: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    /// `public`, `private` (its owner, members and admins only) or `direct`.
    visibility: String,
    /// Who created it, when a signed-in user did.
    owner_id: Option<String>,
}

impl From<Room> for RoomOut {
    fn from(r: Room) -> Self {
        RoomOut {
            id: r.id,
            name: r.name,
            description: r.description,
            created_at: r.created_at.and_utc(),
            visibility: r.visibility.as_str().into(),
            owner_id: r.owner_id,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MemberOut {
    room_id: String,
    user_id: String,
    #[schema(value_type = String, format = DateTime)]
    added_at: chrono::DateTime<chrono::Utc>,
}

impl From<Member> for MemberOut {
    fn from(m: Member) -> Self {
        MemberOut {
            room_id: m.room_id,
            user_id: m.user_id,
            added_at: m.added_at.and_utc(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct MemberIn {
    user_id: String,
}

/// A message as the API shows it, for the OpenAPI document; written by
/// `domain::MessageJson` in the `Api` shape.
#[derive(ToSchema)]
#[allow(dead_code)]
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
    /// When its author last edited it; null until then.
    #[schema(value_type = Option<String>, format = DateTime)]
    edited_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Each emoji reacted with, in the order they first came: how many, and whether the
    /// reader did.
    reactions: Vec<ReactionCountOut>,
    /// The id of the message of the room it answers, if it is a reply.
    reply_to: Option<i64>,
    /// What it shows of that message (its first 140 characters); null when it answers
    /// none, or that message is deleted.
    reply_preview: Option<ReplyPreviewOut>,
    /// Posted by an integration (an incoming webhook), not a person.
    bot: bool,
}

/// What a reply shows of the message it answers (`domain::ReplyPreview`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReplyPreviewOut {
    id: i64,
    username: String,
    content: String,
}

/// One emoji on a message, as a reader sees it (`domain::ReactionCount`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReactionCountOut {
    emoji: String,
    count: u64,
    me: bool,
}

/// A message in the API's JSON.
pub struct ApiMessage(Message);

/// An edit: the message's new text.
#[derive(Deserialize, ToSchema)]
pub struct EditIn {
    content: Option<String>,
}

impl Serialize for ApiMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MessageJson(&self.0, Shape::Api).serialize(s)
    }
}

#[derive(Deserialize, ToSchema)]
pub struct RoomIn {
    /// The room's id, as in `/ws/<id>/...` and `/<id>`; made from `name` when absent.
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    /// Only its owner (the signed-in creator), its members and admins see it.
    #[serde(default)]
    private: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct NewMessageIn {
    content: Option<String>,
    username: Option<String>,
    user_id: Option<String>,
    /// `text` (default) or `file`, which needs `file_url`.
    message_type: Option<String>,
    file_url: Option<String>,
    /// The id of the message of this room it answers.
    reply_to: Option<i64>,
}

/// The rooms the caller may see, oldest first: the public ones and their own private
/// and direct ones.
#[utoipa::path(tag = "chat", responses((status = 200, body = Vec<RoomOut>), (status = 401)))]
#[get("/rooms")]
async fn list_rooms(caller: Caller, app: &State<App>) -> Result<Json<Vec<RoomOut>>> {
    let rooms = app.chat.rooms(&caller).await?;
    Ok(Json(rooms.into_iter().map(RoomOut::from).collect()))
}

/// Creates a room; 409 if its id is taken.
#[utoipa::path(tag = "chat", request_body = RoomIn,
    responses((status = 201, body = RoomOut), (status = 400), (status = 401), (status = 409), (status = 415),
        (status = 429)))]
#[post("/rooms", data = "<body>")]
async fn create_room(
    body: Result<JsonBody<RoomIn>>,
    flood: Result<RoomCreation>,
    caller: Caller,
    app: &State<App>,
) -> Result<(Status, Json<RoomOut>)> {
    flood?;
    let JsonBody(body) = body?;
    let new = NewRoom {
        id: body.id,
        name: body.name,
        description: body.description,
        private: body.private,
    };
    let room = app.delivery.create_room(&caller, new).await?;
    Ok((Status::Created, Json(room.into())))
}

#[utoipa::path(tag = "chat", responses((status = 200, body = RoomOut), (status = 400), (status = 401), (status = 404)))]
#[get("/rooms/<id>")]
async fn get_room(id: &str, caller: Caller, app: &State<App>) -> Result<Json<RoomOut>> {
    Ok(Json(app.chat.room(&caller, id).await?.into()))
}

/// Deletes a room and every message in it: its owner's or an admin's call.
#[utoipa::path(tag = "chat", security(("admin" = [])),
    responses((status = 200), (status = 401), (status = 403), (status = 404)))]
#[delete("/rooms/<id>")]
async fn delete_room(id: &str, caller: Caller, app: &State<App>) -> Result<Json<Value>> {
    let (id, deleted) = app.delivery.delete_room(&caller, id).await?;
    app.files.delete_objects(&deleted.file_keys).await;
    Ok(Json(json!({
        "status": "deleted",
        "id": id,
        "messages_deleted": deleted.messages,
        "files_deleted": deleted.files,
    })))
}

/// What a room's history is asked for with.
#[derive(FromForm, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams<'r> {
    /// How many, the newest first chosen.
    #[param(inline, required = false)]
    limit: PageLimit,
    /// Only messages with a smaller id.
    #[param(inline, required = false)]
    before: Cursor,
    /// Only messages with a larger id (the oldest of them chosen first).
    #[param(inline, required = false)]
    after: Cursor,
    /// Text to search for, ignoring case.
    #[param(inline, required = false)]
    q: HistoryText<'r>,
    /// Who reads, for each reaction's `me`, when not signed in.
    user_id: Option<&'r str>,
}

/// The room's newest `limit` messages (default 50, at most 200), oldest first. `before`
/// pages back from a message id, `after` forward from one (the oldest after it first);
/// `q` keeps messages whose text holds it, ignoring case.
#[utoipa::path(tag = "chat", params(HistoryParams),
    responses((status = 200, body = Vec<MessageOut>), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[get("/rooms/<id>/messages?<query..>")]
async fn room_messages(
    id: &str,
    query: form::Result<'_, HistoryParams<'_>>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<ApiMessage>>> {
    // Whether the caller may read the room comes first: a stranger to a private room hears
    // of no room, whatever its query.
    app.chat.may_read(&caller, id).await?;
    let query = query.map_err(refused)?;
    let query = HistoryQuery {
        limit: query.limit.0,
        before: query.before.0,
        after: query.after.0,
        q: query.q.0,
        user_id: query.user_id,
    };
    let rows = app.chat.history(&caller, id, query).await?;
    Ok(Json(rows.into_iter().map(ApiMessage).collect()))
}

/// Posts a message; 201 once it is committed, with its id.
#[utoipa::path(tag = "chat", request_body = NewMessageIn,
    responses((status = 201, body = MessageOut), (status = 400), (status = 401), (status = 404), (status = 415),
        (status = 429)))]
#[post("/rooms/<id>/messages", data = "<body>")]
#[allow(clippy::too_many_arguments)] // each is a part of the request Rocket hands in
async fn post_room_message(
    id: &str,
    body: Result<JsonBody<NewMessageIn>>,
    flood: Result<Posting>,
    caller: Caller,
    app: &State<App>,
) -> Result<(Status, Json<ApiMessage>)> {
    flood?;
    // The room before the body: a caller who may not see it hears of a room that does not
    // exist, whatever they sent, never a 400 that tells it is there.
    let room = RoomName::parse(&app.chat.room(&caller, id).await?.id)?;
    let JsonBody(body) = body?;
    let user_id = body.user_id.as_deref().map(names::user_id).transpose()?;
    let username = names::username(body.username.as_deref().or(user_id.as_deref()), &app.limits)?;
    let mut message = room_message(
        &username,
        user_id,
        body.content.as_deref(),
        body.message_type.as_deref(),
        body.file_url,
        &app.limits,
    )?;
    message.reply_to = body.reply_to;
    let row = app.delivery.post(&caller, &room, message).await?;
    Ok((Status::Created, Json(ApiMessage(row))))
}

#[utoipa::path(tag = "chat", params(
        ("user_id" = Option<String>, Query, description = "who reads, for each reaction's `me`, when not signed in")),
    responses((status = 200, body = MessageOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[get("/messages/<id>?<user_id>")]
async fn get_message(
    id: &str,
    user_id: Option<&str>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<ApiMessage>> {
    Ok(Json(ApiMessage(
        app.chat.message(&caller, id, user_id).await?,
    )))
}

/// A reaction as it now stands on the message.
#[derive(Serialize, ToSchema)]
pub struct ReactionOut {
    message_id: i64,
    emoji: String,
    /// How many reacted with it.
    count: u64,
    /// Whether the caller did.
    me: bool,
}

/// Reacts to a message with one emoji or a `:short_name:` (idempotent: a second time
/// changes nothing and tells nobody). A signed-in caller reacts as themselves; in open
/// mode an anonymous caller names itself with `?user_id=`. At most 20
/// different reactions a message.
#[utoipa::path(tag = "chat", params(
        ("emoji" = String, Path, description = "one emoji (at most 32 bytes) or :short_name:"),
        ("user_id" = Option<String>, Query, description = "who reacts, when not signed in")),
    responses((status = 200, body = ReactionOut), (status = 400), (status = 401), (status = 403),
        (status = 404), (status = 429)))]
#[put("/messages/<id>/reactions/<emoji>?<user_id>")]
async fn add_reaction(
    id: &str,
    emoji: &str,
    user_id: Option<&str>,
    flood: Result<Posting>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<ReactionOut>> {
    flood?;
    let reacted = app
        .delivery
        .react(&caller, id, emoji, user_id, true)
        .await?;
    Ok(Json(ReactionOut {
        message_id: reacted.message_id,
        emoji: reacted.emoji,
        count: reacted.count,
        me: true,
    }))
}

/// Takes the caller's reaction off a message (idempotent): 204.
#[utoipa::path(tag = "chat", params(
        ("emoji" = String, Path, description = "one emoji (at most 32 bytes) or :short_name:"),
        ("user_id" = Option<String>, Query, description = "who reacted, when not signed in")),
    responses((status = 204), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 429)))]
#[delete("/messages/<id>/reactions/<emoji>?<user_id>")]
async fn remove_reaction(
    id: &str,
    emoji: &str,
    user_id: Option<&str>,
    flood: Result<Posting>,
    caller: Caller,
    app: &State<App>,
) -> Result<Status> {
    flood?;
    app.delivery
        .react(&caller, id, emoji, user_id, false)
        .await?;
    Ok(Status::NoContent)
}

/// What a room's changes are asked for with.
#[derive(FromForm, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The last seq the client has; 0 when absent.
    #[param(inline, required = false)]
    after: Cursor,
    /// How many changes at most.
    #[param(inline, required = false)]
    limit: ChangesLimit,
}

/// The room's changes after `after` (a `seq`): exactly the frames its sockets were sent
/// (`message`, `message_updated`, `reaction_added`, `reaction_removed`, `message_deleted`,
/// `room_deleted`), oldest first, each with its `seq`; page on with the last `seq` given.
/// Changes older than `change_log_days` are not kept: asked from before them, the answer
/// is `[{"type":"resync","room_id"}]`, and the client reloads the history.
#[utoipa::path(tag = "chat", params(ChangesParams),
    responses((status = 200, body = Vec<Object>), (status = 400), (status = 401), (status = 404)))]
#[get("/rooms/<id>/changes?<query..>")]
async fn room_changes(
    id: &str,
    query: form::Result<'_, ChangesParams>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<Value>>> {
    app.chat.may_read(&caller, id).await?;
    let ChangesParams { after, limit } = query.map_err(refused)?;
    let after = after.0.unwrap_or(0);
    let (events, resync) = app.chat.changes(&caller, id, after, limit.0).await?;
    if resync {
        return Ok(Json(vec![json!({"type": "resync", "room_id": id})]));
    }
    Ok(Json(
        events
            .iter()
            .filter_map(|event| ServerFrame::of_change(event, id))
            .filter_map(|frame| serde_json::to_value(&frame).ok())
            .collect(),
    ))
}

/// A read mark: the last message of the room the user has read.
#[derive(Deserialize, ToSchema)]
pub struct ReadIn {
    last_read_id: Option<i64>,
    /// Who read, when not signed in (open mode); also taken as `?user_id=`.
    user_id: Option<String>,
}

/// Marks the room read up to `last_read_id` (a mark never moves back; one past the room's
/// newest message counts as that one). The user's sockets, on every device, are told
/// (`{"type":"read","room_id","last_read_id"}`) when the mark moved.
#[utoipa::path(tag = "chat", request_body = ReadIn, params(
        ("user_id" = Option<String>, Query, description = "who read, when not signed in")),
    responses((status = 204), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 415), (status = 429)))]
#[post("/rooms/<id>/read?<user_id>", data = "<body>")]
async fn mark_room_read(
    id: &str,
    user_id: Option<&str>,
    body: Result<JsonBody<ReadIn>>,
    flood: Result<MarkingRead>,
    caller: Caller,
    app: &State<App>,
) -> Result<Status> {
    flood?;
    let JsonBody(body) = body?;
    let user_id = user_id.or(body.user_id.as_deref());
    app.delivery
        .mark_read(&caller, id, body.last_read_id, user_id)
        .await?;
    Ok(Status::NoContent)
}

/// One room's unread count for the user.
#[derive(Serialize, ToSchema)]
pub struct UnreadOut {
    room_id: String,
    /// The last message the user marked read; 0 if they never marked the room.
    last_read_id: i64,
    /// Messages after it that are not the user's own (1000 at most: see `capped`).
    unread: u64,
    /// Of those, the ones that mention the user.
    mentions: u64,
    /// More than 1000 messages came after the mark: `unread` is a floor.
    capped: bool,
}

/// The user's unread counts: every room they have marked read (public rooms from their
/// first mark on) and may still read, and every private and direct room they belong to.
#[utoipa::path(tag = "chat", params(
        ("user_id" = Option<String>, Query, description = "whose counts, when not signed in")),
    responses((status = 200, body = Vec<UnreadOut>), (status = 400), (status = 401), (status = 403),
        (status = 429)))]
#[get("/unread?<user_id>")]
async fn unread(
    user_id: Option<&str>,
    flood: Result<MarkingRead>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<UnreadOut>>> {
    // Each call reads every listed room's window: counted with the read marks.
    flood?;
    let rooms = app.chat.unread(&caller, user_id).await?;
    Ok(Json(
        rooms
            .into_iter()
            .map(|room| UnreadOut {
                room_id: room.room_id,
                last_read_id: room.last_read_id,
                unread: room.counts.unread,
                mentions: room.counts.mentions,
                capped: room.counts.capped,
            })
            .collect(),
    ))
}

/// Edits a message's text: its author's call (signed in) or an admin's. Every reader of
/// its room is told (`message_updated` on the sockets), and every history shows the new
/// text.
#[utoipa::path(tag = "chat", request_body = EditIn, security(("admin" = [])),
    responses((status = 200, body = MessageOut), (status = 400), (status = 401), (status = 403),
        (status = 404), (status = 415), (status = 429)))]
#[patch("/messages/<id>", data = "<body>")]
async fn edit_message(
    id: &str,
    body: Result<JsonBody<EditIn>>,
    flood: Result<Posting>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<ApiMessage>> {
    // An edit is a post as far as floods go: the same bucket.
    flood?;
    let JsonBody(body) = body?;
    let row = app
        .delivery
        .edit_message(&caller, id, body.content.as_deref(), &app.limits)
        .await?;
    Ok(Json(ApiMessage(row)))
}

/// Deletes a message: its author's, its room owner's or an admin's call.
#[utoipa::path(tag = "chat", security(("admin" = [])),
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[delete("/messages/<id>")]
async fn delete_message(id: &str, caller: Caller, app: &State<App>) -> Result<Json<Value>> {
    let message = app.delivery.delete_message(&caller, id).await?;
    Ok(Json(json!({ "status": "deleted", "id": message.id })))
}

/// A room's members (none for a public room), in the order they were added.
#[utoipa::path(tag = "chat",
    responses((status = 200, body = Vec<MemberOut>), (status = 400), (status = 401), (status = 404)))]
#[get("/rooms/<id>/members")]
async fn list_members(id: &str, caller: Caller, app: &State<App>) -> Result<Json<Vec<MemberOut>>> {
    let members = app.chat.members(&caller, id).await?;
    Ok(Json(members.into_iter().map(MemberOut::from).collect()))
}

/// Adds a member to a private room: its owner's or an admin's call. 201 when they are
/// new, 200 when they were a member already.
#[utoipa::path(tag = "chat", request_body = MemberIn,
    responses((status = 201, body = MemberOut), (status = 200, body = MemberOut), (status = 400),
        (status = 401), (status = 403), (status = 404), (status = 409), (status = 415), (status = 429)))]
#[post("/rooms/<id>/members", data = "<body>")]
async fn add_member(
    id: &str,
    body: Result<JsonBody<MemberIn>>,
    flood: Result<RoomCreation>,
    caller: Caller,
    app: &State<App>,
) -> Result<(Status, Json<MemberOut>)> {
    flood?;
    let JsonBody(body) = body?;
    let (member, new) = app.delivery.add_member(&caller, id, &body.user_id).await?;
    let status = if new { Status::Created } else { Status::Ok };
    Ok((status, Json(member.into())))
}

/// Removes a member from a private room: the owner's or an admin's call, or the member's
/// own (leaving). Their sockets in the room are closed with 4003.
#[utoipa::path(tag = "chat",
    responses((status = 204), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[delete("/rooms/<id>/members/<user_id>")]
async fn remove_member(
    id: &str,
    user_id: &str,
    caller: Caller,
    app: &State<App>,
) -> Result<Status> {
    app.delivery.remove_member(&caller, id, user_id).await?;
    Ok(Status::NoContent)
}

/// The direct conversation of the signed-in caller and `user_id`: the same room whoever
/// asks first, seen by those two (and admins) only. 201 when it is new, else 200.
#[utoipa::path(tag = "chat",
    responses((status = 201, body = RoomOut), (status = 200, body = RoomOut), (status = 400),
        (status = 401), (status = 409, description = "the pair's id holds a room that is not their direct conversation"), (status = 429)))]
#[post("/direct/<user_id>")]
async fn direct_room(
    user_id: &str,
    flood: Result<RoomCreation>,
    caller: Caller,
    app: &State<App>,
) -> Result<(Status, Json<RoomOut>)> {
    flood?;
    let (room, new) = app.delivery.direct_room(&caller, user_id).await?;
    let status = if new { Status::Created } else { Status::Ok };
    Ok((status, Json(room.into())))
}

/// The chat service's health, as ChatFlow's gateway checks it: 503 while the database is
/// away. How many messages there are is for callers who may read them: anyone in open
/// mode, the signed in in required mode.
#[utoipa::path(tag = "chat", responses((status = 200), (status = 503)))]
#[get("/health")]
async fn chat_health(caller: Result<Caller>, app: &State<App>) -> (Status, Json<Value>) {
    let (status, Json(mut body)) = check(&app.db, &*app.hub, &app.events).await;
    body["service"] = json!("chat");
    if status == Status::Ok {
        body["status"] = json!("healthy");
    }
    // A token that is not valid is no identity, here as on the page.
    let signed_in = caller.is_ok_and(|c| c.user.is_some() || c.admin);
    if app.auth_mode == AuthMode::Open || signed_in {
        body["messages"] = json!(crate::db::messages::count(&app.db).await.ok());
    }
    (status, Json(body))
}

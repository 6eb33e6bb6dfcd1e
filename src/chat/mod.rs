//! The chat of the Flask original: `GET` and `POST /api/chat/<room>`.

pub mod api;
mod body;
mod poll;
mod store;
mod transcript;
pub mod validate;

pub use store::{OnCommit, Store};
pub use transcript::{Transcript, Transcripts};

use crate::config::Settings;
use crate::events::Events;
use crate::http::{Error, Result};
use crate::notifications::Notifier;
use crate::realtime::{Hub, InProcessHub, RedisHub};
use body::PostBody;
use poll::{PollAnswer, PollHeaders, PollQuery};
use rocket::http::Status;
use rocket::{get, post, routes, Route, State};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use validate::{Limits, RoomName};

/// Everything the chat routes share. Cheap to clone: a socket's task outlives the request
/// that opened it and keeps its own handle.
#[derive(Clone)]
pub struct Chat(Arc<Inner>);

impl Deref for Chat {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub struct Inner {
    pub store: Store,
    pub transcripts: Arc<Transcripts>,
    pub hub: Arc<dyn Hub>,
    /// Mentions in committed messages become notifications.
    pub notifier: Notifier,
    /// Stored messages and joins, for RabbitMQ.
    pub events: Events,
    pub limits: Limits,
    /// How often WebSocket peers are pinged.
    pub ws_ping_secs: u64,
    /// Above this many readers in a room here, joins and leaves are not announced.
    pub ws_announce_limit: usize,
}

impl Chat {
    /// The one message path: whatever door a message comes in by, the store commits it,
    /// then it is added to its room's transcript and published to the hub, in id order.
    pub async fn new(
        db: sea_orm::DatabaseConnection,
        settings: &Settings,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let transcripts = Arc::new(Transcripts::new(
            Duration::from_millis(settings.transcript_refresh_ms),
            settings.transcript_cache_rooms,
        ));
        let redis_url = crate::config::redis_url(settings);
        let hub: Arc<dyn Hub> = match &redis_url {
            Some(url) => {
                tracing::info!(redis = %crate::db::redact(url), "hub: Redis");
                RedisHub::start(url, transcripts.clone(), db.clone(), settings.ws_backlog)?
            }
            None => Arc::new(InProcessHub::new(settings.ws_backlog)),
        };
        let notifier = Notifier::new(db.clone(), hub.clone());
        let events = match crate::config::amqp_url(settings) {
            Some(url) => {
                tracing::info!(amqp = %crate::db::redact(&url), "events: RabbitMQ");
                Events::start(url)
            }
            None => Events::off(),
        };
        let on_commit: OnCommit = {
            let (transcripts, hub, notifier, events) = (
                transcripts.clone(),
                hub.clone(),
                notifier.clone(),
                events.clone(),
            );
            Box::new(move |row, prev| {
                events.message_created(row);
                crate::metrics::METRICS.messages_stored.inc();
                transcripts.record(row);
                hub.publish_message(Arc::new(row.clone()), prev);
                notifier.on_message(row);
            })
        };
        // With Redis, other replicas may write the same rooms.
        let replicas = redis_url.is_some().then(|| hub.clone());
        let store = Store::new(db, settings.db_insert_returning, replicas, on_commit).await?;
        Ok(Chat(Arc::new(Inner {
            store,
            transcripts,
            hub,
            notifier,
            events,
            limits: Limits {
                max_username_chars: settings.max_username_chars,
                max_message_chars: settings.max_message_chars,
            },
            ws_ping_secs: settings.ws_ping_secs,
            ws_announce_limit: settings.ws_announce_limit,
        })))
    }
}

/// The legacy routes and the ChatFlow ones: `rooms`, `messages` and `health` are the
/// API's, any other name a legacy room.
pub fn routes() -> Vec<Route> {
    let mut routes = routes![get_transcript, post_message];
    routes.extend(api::routes());
    routes
}

/// The legacy POST's fields, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LegacyPost {
    /// `Anonymous` when absent.
    username: Option<String>,
    msg: String,
}

/// The legacy routes, for `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_transcript, post_message))]
pub struct ApiDoc;

pub fn is_reserved(name: &str) -> bool {
    validate::RESERVED_ROOMS.contains(&name)
}

/// One line per message, oldest first; 200 with an empty body for a room with none, since
/// the original page stops polling for good after one failed request. See [`poll`] for
/// what a poll may add (ETag, `after`, `wait`, JSON).
#[utoipa::path(tag = "legacy",
    params(("room" = String, Path, description = "any name but rooms, messages and health"),
        ("after" = Option<i64>, Query, description = "only the lines after this message id"),
        ("wait" = Option<u64>, Query, description = "hold the answer up to this many seconds (at most 30) until a message comes"),
        ("format" = Option<String>, Query, description = "json: the same lines as JSON")),
    responses((status = 200, description = "one line per message, oldest first", content_type = "text/plain"),
        (status = 304, description = "If-None-Match holds the current ETag")))]
#[get("/<room>?<after>&<wait>&<format>")]
async fn get_transcript(
    room: Result<RoomName>,
    after: Option<&str>,
    wait: Option<&str>,
    format: Option<&str>,
    headers: PollHeaders,
    chat: &State<Chat>,
) -> Result<PollAnswer> {
    let room = room?;
    let query = PollQuery::parse(after, wait, format, &headers)?;
    // Listening starts before the room is read, so a message committed in between wakes us.
    let mut events = query
        .wait
        .map(|_| chat.hub.subscribe(room.as_str()).messages);
    let mut view = chat
        .transcripts
        .view(&chat.store, &room, query.after, query.json)
        .await?;
    if let (Some(wait), Some(events)) = (query.wait, events.as_mut()) {
        if query.nothing_new(&view, &headers) {
            // A message, or a lag (messages were missed), means: read again.
            let _ = tokio::time::timeout(wait, events.recv()).await;
            view = chat
                .transcripts
                .view(&chat.store, &room, query.after, query.json)
                .await?;
        }
    }
    Ok(if headers.holds(&view.etag) {
        PollAnswer::NotModified(view)
    } else if query.json {
        PollAnswer::Json {
            room: room.as_str().to_string(),
            view,
        }
    } else {
        PollAnswer::Text(view)
    })
}

/// 204 once the message is committed; nothing is stored on any 4xx.
#[utoipa::path(tag = "legacy",
    params(("room" = String, Path)),
    request_body(content = LegacyPost, content_type = "application/x-www-form-urlencoded",
        description = "also multipart/form-data or JSON with the same fields"),
    responses((status = 204, description = "stored"), (status = 400), (status = 413)))]
#[post("/<room>", data = "<body>")]
async fn post_message(
    room: Result<RoomName>,
    body: Result<PostBody, Error>,
    chat: &State<Chat>,
) -> Result<Status> {
    let room = room?;
    let body = body?;
    let message =
        validate::new_message(body.username.as_deref(), body.msg.as_deref(), &chat.limits)?;
    chat.store.insert(&room, message).await?;
    Ok(Status::NoContent)
}

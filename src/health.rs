//! `/health` and `/healthz`: 200 while the database answers, 503 while it does not.

use crate::chat::Chat;
use rocket::http::Status;
use rocket::serde::json::{json, Json, Value};
use rocket::{get, routes, Route, State};

pub fn routes() -> Vec<Route> {
    routes![health, healthz]
}

/// 200 while the database answers, 503 while it does not; the hub's state is shown.
#[utoipa::path(tag = "operations", responses((status = 200), (status = 503)))]
#[get("/health")]
async fn health(chat: &State<Chat>) -> (Status, Json<Value>) {
    check(chat).await
}

#[utoipa::path(tag = "operations", responses((status = 200), (status = 503)))]
#[get("/healthz")]
async fn healthz(chat: &State<Chat>) -> (Status, Json<Value>) {
    check(chat).await
}

pub async fn check(chat: &Chat) -> (Status, Json<Value>) {
    let db = chat.store.db();
    let backend = format!("{:?}", db.get_database_backend()).to_lowercase();
    // The hub's state is reported, but chatting goes on without Redis: not a 503.
    let hub = chat.hub.state();
    match db.ping().await {
        Ok(()) => (
            Status::Ok,
            Json(json!({
                "status": "ok",
                "database": { "backend": backend, "state": "up" },
                "hub": hub,
                "events": chat.events.state(),
            })),
        ),
        Err(err) => (
            Status::ServiceUnavailable,
            Json(json!({
                "status": "unavailable",
                "database": { "backend": backend, "state": "down", "error": err.to_string() },
                "hub": hub,
                "events": chat.events.state(),
            })),
        ),
    }
}

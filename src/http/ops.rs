//! Operations: `/health` and `/healthz` (200 while the database answers, 503 while it does
//! not), the probes of an orchestrator (`/health/live`: the process answers;
//! `/health/ready`: it should be sent traffic) and `/metrics` in the Prometheus text
//! format, over the leaf registry `metrics`.

use super::App;
use crate::events::Events;
use crate::metrics::METRICS;
use crate::realtime::Hub;
use rocket::http::{ContentType, Status};
use rocket::serde::json::{json, Json, Value};
use rocket::{get, State};
use sea_orm::DatabaseConnection;

super::mount![health, healthz, live, ready, metrics];

/// 200 while the database answers, 503 while it does not; the hub's state is shown.
#[utoipa::path(tag = "operations", responses((status = 200), (status = 503)))]
#[get("/health")]
async fn health(app: &State<App>) -> (Status, Json<Value>) {
    check(&app.db, &*app.hub, &app.events).await
}

#[utoipa::path(tag = "operations", responses((status = 200), (status = 503)))]
#[get("/healthz")]
async fn healthz(app: &State<App>) -> (Status, Json<Value>) {
    check(&app.db, &*app.hub, &app.events).await
}

/// Liveness: the process answers. It touches no dependency, so a database that is away
/// makes the server unready, never restarted for it.
#[utoipa::path(tag = "operations", responses((status = 200)))]
#[get("/health/live")]
fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 while the database, Redis (when replicas share it) and the file store
/// answer and the server is not stopping; 503 with the reason otherwise, so a balancer
/// sends requests elsewhere.
///
/// Open to anyone, as the probes and `/health` are (a kubelet carries no token); a flood
/// of it costs a pooled `SELECT 1` and a file store check per call, bounded by the pool
/// and the database timeout, and holds nothing after it.
#[utoipa::path(tag = "operations", responses((status = 200), (status = 503)))]
#[get("/health/ready")]
async fn ready(app: &State<App>) -> (Status, Json<Value>) {
    if app.lifecycle.stopping() {
        return (
            Status::ServiceUnavailable,
            Json(json!({ "status": "draining", "reason": "the server is stopping" })),
        );
    }
    let (database, store) = tokio::join!(app.db.ping(), app.files.store.check());
    let replicated = app.hub.replicated();
    let hub = app.hub.state();
    let mut down = Vec::new();
    if database.is_err() {
        down.push("database");
    }
    if replicated && hub.state != "up" {
        down.push("redis");
    }
    if store.is_err() {
        down.push("file store");
    }
    let checks = json!({
        "database": if database.is_ok() { "up" } else { "down" },
        "hub": hub,
        "file_store": if store.is_ok() { "up" } else { "down" },
    });
    if down.is_empty() {
        (
            Status::Ok,
            Json(json!({ "status": "ok", "checks": checks })),
        )
    } else {
        (
            Status::ServiceUnavailable,
            Json(json!({
                "status": "unavailable",
                "reason": format!("unreachable: {}", down.join(", ")),
                "checks": checks,
            })),
        )
    }
}

fn backend(db: &DatabaseConnection) -> String {
    format!("{:?}", db.get_database_backend()).to_lowercase()
}

/// The database's state decides; the hub's and RabbitMQ's are reported, but chatting goes
/// on without them: not a 503.
pub async fn check(
    db: &DatabaseConnection,
    hub: &dyn Hub,
    events: &Events,
) -> (Status, Json<Value>) {
    let backend = backend(db);
    let hub = hub.state();
    match db.ping().await {
        Ok(()) => (
            Status::Ok,
            Json(json!({
                "status": "ok",
                "database": { "backend": backend, "state": "up" },
                "hub": hub,
                "events": events.state(),
            })),
        ),
        Err(err) => (
            Status::ServiceUnavailable,
            Json(json!({
                "status": "unavailable",
                "database": { "backend": backend, "state": "down", "error": err.to_string() },
                "hub": hub,
                "events": events.state(),
            })),
        ),
    }
}

/// Prometheus text format; the parts' states are read at each scrape.
#[utoipa::path(tag = "operations", responses((status = 200, content_type = "text/plain")))]
#[get("/metrics")]
async fn metrics(app: &State<App>) -> (ContentType, String) {
    METRICS.set_up("database", &backend(&app.db), app.db.ping().await.is_ok());
    let hub = app.hub.state();
    METRICS.set_up("hub", hub.kind, hub.state == "up");
    let store_up = app.files.store.check().await.is_ok();
    METRICS.set_up("file_store", app.files.store.kind, store_up);
    let content_type =
        ContentType::new("text", "plain").with_params([("version", "0.0.4"), ("charset", "utf-8")]);
    (content_type, METRICS.render())
}

//! ferrochat: the Flask + MySQL polling chat, on Rocket and SeaORM.
//!
//! This file is the table of contents: settings, state, fairings, and one mount per
//! capability.

pub mod bench;
pub mod chat;
pub mod config;
pub mod db;
pub mod events;
pub mod files;
pub mod health;
pub mod http;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod page;
pub mod presence;
pub mod realtime;

use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};
use rocket_dyn_templates::Template;

/// Builds the server: reads settings, connects to (and migrates) the database.
pub async fn build() -> Result<Rocket<Build>, Box<dyn std::error::Error>> {
    // Two TLS back ends are linked (sqlx's and the S3 client's); rustls wants one chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let figment = config::figment();
    let settings: config::Settings = figment.extract()?;
    // Multipart bodies are read by Rocket's form parser under Rocket's own limits.
    let figment = figment
        .merge(("limits.data-form", settings.max_body_bytes))
        .merge(("limits.form", settings.max_body_bytes))
        .merge(("limits.string", settings.max_body_bytes));

    let url = config::database_url(&settings);
    tracing::info!(database = %db::redact(&url), "connecting to the database");
    let db = db::connect(&url, &settings).await?;
    let chat = chat::Chat::new(db.clone(), &settings).await?;
    let presence = presence::Presence::new(
        config::redis_url(&settings).as_deref(),
        db.clone(),
        chat.hub.clone(),
    )?;
    let notifier = chat.notifier.clone();
    let store = files::FileStore::from_env(&settings.files_dir)?;
    tracing::info!(kind = store.kind, location = %store.location, "file store");
    let files = files::Files::new(
        store,
        db.clone(),
        settings.max_upload_bytes,
        settings.allowed_file_types.clone(),
    );

    let mut rocket = rocket::custom(figment)
        .attach(Template::fairing())
        .attach(http::RequestLog)
        .attach(AdHoc::on_liftoff("listening", |rocket| {
            Box::pin(async move {
                let config = rocket.config();
                tracing::info!(
                    "ferrochat listening on http://{}:{}",
                    config.address,
                    config.port
                );
            })
        }))
        .register("/", http::catchers())
        .mount("/", page::routes())
        .mount("/static", page::assets(&settings))
        .mount("/api/chat", chat::routes())
        .mount("/", realtime::ws::routes())
        .mount("/api/presence", presence::routes())
        .mount("/api/notifications", notifications::routes())
        .mount("/api/files", files::routes())
        .mount("/", health::routes())
        .mount("/", metrics::routes())
        .mount("/", openapi::routes());
    if settings.bench_routes {
        rocket = rocket
            .manage(bench::Fixed::default())
            .mount("/bench", bench::routes());
    }
    Ok(rocket
        .manage(chat)
        .manage(presence)
        .manage(notifier)
        .manage(files)
        .manage(settings))
}

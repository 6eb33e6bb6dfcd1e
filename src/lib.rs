//! ferrochat: one chat server for the clients of the Flask polling chat, ChatFlow and the
//! WebSocket webchats, on Rocket and SeaORM.
//!
//! Layers, each a folder, each importing only from those below it (`scripts/layers`
//! checks): `domain` <- `config`, `metrics`, `lifecycle` <- `db` <- `realtime`, `events` (transports),
//! `access` (who may read a room) <- `accounts`, `chat`, `presence`, `notifications`,
//! `files` (services) <- `delivery` (the one message pipeline) <- `sockets` (live readers of a
//! room) <- `http` (mounts) <- this file, which wires them: settings, transports,
//! services, then the mounts.
//! `docs/ARCHITECTURE.md` draws it.

pub mod access;
pub mod accounts;
pub mod chat;
pub mod config;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod events;
pub mod files;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod notifications;
pub mod presence;
pub mod realtime;
pub mod sockets;

use realtime::{Hub, InProcessHub, RedisHub};
use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};
use rocket_dyn_templates::Template;
use sockets::Sockets;
use std::sync::Arc;
use std::time::Duration;

/// After the server stopped: sends on what the hub and RabbitMQ still hold, and lets the
/// webhooks' leases go (both bounded).
pub async fn finish(rocket: &Rocket<rocket::Ignite>) {
    let flushed = async {
        if let Some(app) = rocket.state::<http::App>() {
            http::shutdown::flush(&*app.hub, &app.events, http::shutdown::FLUSH_WITHIN).await;
        }
    };
    let released = async {
        if let Some(app) = rocket.state::<http::App>() {
            app.sender.stopped(http::shutdown::FLUSH_WITHIN).await;
        }
    };
    tokio::join!(flushed, released);
}

/// Builds the server from `Rocket.toml` and the environment.
pub async fn build() -> Result<Rocket<Build>, Box<dyn std::error::Error>> {
    build_from(config::figment()).await
}

/// Builds the server from these settings, in four steps: Rocket's own settings, the
/// transports (database, hub, events), the services and the pipeline over them, and the
/// mounts with the state each handler takes.
pub async fn build_from(
    figment: rocket::figment::Figment,
) -> Result<Rocket<Build>, Box<dyn std::error::Error>> {
    // Two TLS back ends are linked (sqlx's and the S3 client's); rustls wants one chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = config::Settings::from_figment(&figment)?;
    settings.check()?;
    let (figment, front_door) = rocket_settings(figment, &settings)?;
    let transports = Transports::start(&settings).await?;
    let guards = Guards::new(&settings)?;
    let app = services(settings, transports).await?;
    Ok(mount(figment, front_door, guards, app))
}

/// Where the front door listens, and the limits it holds connections to.
type FrontDoor = Option<(std::net::SocketAddr, http::front_door::Limits)>;

/// Rocket's own settings, from ours: body limits, no signal handling of its own (ours
/// drains first, `http::shutdown`, then tells Rocket to stop), and with the front door on,
/// Rocket on loopback behind it.
fn rocket_settings(
    figment: rocket::figment::Figment,
    settings: &config::Settings,
) -> Result<(rocket::figment::Figment, FrontDoor), Box<dyn std::error::Error>> {
    // Multipart bodies are read by Rocket's form parser under Rocket's own limits.
    let body = settings.chat.max_body_bytes;
    let drain = Duration::from_secs(settings.shutdown.drain_secs);
    let grace = Duration::from_secs(settings.shutdown.grace_secs);
    let figment = figment
        .merge(("limits.data-form", body))
        .merge(("limits.form", body))
        .merge(("limits.string", body))
        .merge(("shutdown.ctrlc", false))
        .merge(("shutdown.signals", Vec::<String>::new()))
        .merge((
            "shutdown.grace",
            http::shutdown::request_grace(drain, grace),
        ))
        .merge(("shutdown.mercy", 1));
    if !settings.network.front_door {
        return Ok((figment, None));
    }
    let public = std::net::SocketAddr::new(
        figment.extract_inner("address")?,
        figment.extract_inner("port")?,
    );
    let proxies = http::guards::TrustedProxies::parse(&settings.network.trusted_proxies)?.0;
    let limits = http::front_door::Limits::new(settings, proxies);
    let figment = figment.merge(("address", "127.0.0.1")).merge(("port", 0));
    Ok((figment, Some((public, limits))))
}

/// What replicas share: the database, the hub (in-process, or Redis with what other
/// replicas send) and the events to RabbitMQ.
struct Transports {
    db: sea_orm::DatabaseConnection,
    redis: Option<realtime::RedisSource>,
    hub: Arc<dyn Hub>,
    /// What other replicas sent, for the pipeline (taken when it starts).
    arrivals: Option<tokio::sync::mpsc::Receiver<realtime::Arrival>>,
    events: events::Events,
}

/// The authority `redis_ca_file` names, read once: a PEM file with a certificate in it
/// (anything else would leave every TLS connection to Redis failing later, with less said).
fn redis_ca(settings: &config::Settings) -> Result<Option<Vec<u8>>, String> {
    let Some(path) = &settings.transports.redis_ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| format!("redis_ca_file {path}: {e}"))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("redis_ca_file {path} holds no PEM certificate"));
    }
    Ok(Some(pem))
}

impl Transports {
    async fn start(settings: &config::Settings) -> Result<Transports, Box<dyn std::error::Error>> {
        let url = config::database_url(settings);
        tracing::info!(database = %db::redact(&url), "connecting to the database");
        let db = db::connect(&url, settings).await?;
        let ca = redis_ca(settings)?;
        let redis = match config::redis_at(settings)? {
            Some(config::RedisAt::Sentinel(_)) | None if ca.is_some() => {
                return Err("redis_ca_file is for a rediss:// redis_url (through Sentinel, the master is reached without TLS)".into());
            }
            Some(config::RedisAt::Server(url))
                if ca.is_some() && !url.to_ascii_lowercase().starts_with("rediss://") =>
            {
                return Err(
                    "redis_ca_file is for a rediss:// redis_url, and this one is not".into(),
                );
            }
            Some(config::RedisAt::Sentinel(target)) => {
                let shown: Vec<String> = target.sentinels.iter().map(|s| db::redact(s)).collect();
                tracing::info!(sentinels = %shown.join(","), master = %target.master, db = target.db,
                    "hub: Redis through Sentinel");
                Some(realtime::RedisSource::sentinel(&target)?)
            }
            Some(config::RedisAt::Server(url)) => {
                tracing::info!(redis = %db::redact(&url), "hub: Redis");
                Some(realtime::RedisSource::direct(&url, ca)?)
            }
            None => None,
        };
        let backlog = settings.sockets.backlog;
        let (hub, arrivals): (Arc<dyn Hub>, _) = match &redis {
            Some(source) => {
                let (hub, arrivals) = RedisHub::start(source.clone(), backlog)?;
                (hub, Some(arrivals))
            }
            None => (Arc::new(InProcessHub::new(backlog)), None),
        };
        let events = match config::amqp_url(settings) {
            Some(url) => {
                tracing::info!(amqp = %db::redact(&url), "events: RabbitMQ");
                events::Events::start(url)
            }
            None => events::Events::off(),
        };
        Ok(Transports {
            db,
            redis,
            hub,
            arrivals,
            events,
        })
    }
}

/// What the request guards check each request with, beside `App` (`http::App` says why):
/// where the client is, and which sites may open sockets. The limiter is `App`'s.
struct Guards {
    trusted_proxies: http::guards::TrustedProxies,
    origins: http::origin::Origins,
    /// The connections the front door holds, by client address.
    peers: Arc<http::front_door::Peers>,
}

impl Guards {
    fn new(settings: &config::Settings) -> Result<Guards, Box<dyn std::error::Error>> {
        let network = &settings.network;
        Ok(Guards {
            trusted_proxies: http::guards::TrustedProxies::parse(&network.trusted_proxies)?,
            origins: http::origin::Origins::parse(
                network.public_origin.as_deref(),
                &network.allowed_origins,
            )?,
            peers: Arc::new(http::front_door::Peers::default()),
        })
    }
}

/// The services over the transports, the pipeline over them, and what the HTTP layer
/// checks requests with: the one `App` every handler takes.
async fn services(
    settings: config::Settings,
    transports: Transports,
) -> Result<http::App, Box<dyn std::error::Error>> {
    let limits = settings.limits();
    let lifecycle = lifecycle::Lifecycle::default();
    let Transports {
        db,
        redis,
        hub,
        mut arrivals,
        events,
    } = transports;
    let access = Arc::new(access::RoomAccess::new(db.clone()));
    let transcripts = Arc::new(chat::Transcripts::new(
        Duration::from_millis(settings.transcripts.refresh_ms),
        settings.transcripts.cache_rooms,
        settings.transcripts.max_messages,
        settings.transcripts.cache_bytes,
    ));
    let notifier = notifications::Notifier::new(db.clone(), hub.clone(), access.clone());
    let presence = presence::Presence::new(
        redis.clone(),
        db.clone(),
        hub.clone(),
        access.clone(),
        limits,
    )?;
    let store = files::FileStore::new(&settings.files)?;
    tracing::info!(kind = store.kind, location = %store.location, "file store");
    let files = files::Files::new(
        store,
        db.clone(),
        access.clone(),
        settings.files.max_upload_bytes,
        settings.files.allowed_file_types.clone(),
    );
    let webhooks = delivery::webhooks::Webhooks::start(
        db.clone(),
        access.clone(),
        hub.clone(),
        settings.webhooks.webhook_allow_private,
    )
    .await?;
    let hooks = chat::hooks::Hooks::start(db.clone(), hub.clone());
    let delivery = delivery::Delivery::start(
        db.clone(),
        settings.database.insert_returning,
        access.clone(),
        transcripts.clone(),
        hub.clone(),
        arrivals.take(),
        events.clone(),
        notifier.clone(),
        webhooks.clone(),
        hooks.clone(),
        settings.chat.change_log_days,
    )
    .await?;
    let sender = delivery::webhooks::sender::Sender::start(
        db.clone(),
        webhooks.clone(),
        delivery.clone(),
        limits,
        settings.auth.mode,
        Duration::from_secs(settings.webhooks.webhook_lease_secs),
        lifecycle.clone(),
    )?;
    let accounts = Arc::new(accounts::Accounts::new(
        db.clone(),
        tokens(&settings, redis.is_some())?,
        &settings.auth.admins,
        limits,
        hub.clone(),
    ));
    tracing::info!(auth = ?settings.auth.mode, rate_limits = settings.rate_limits_on(), "access");
    let webchat_room = domain::RoomName::parse(&settings.chat.webchat_room)
        .map_err(|e| format!("webchat_room: {e}"))?;
    let sockets = Arc::new(Sockets {
        db: db.clone(),
        accounts: accounts.clone(),
        access: access.clone(),
        delivery: delivery.clone(),
        hub: hub.clone(),
        events: events.clone(),
        presence: presence.clone(),
        limits,
        settings: settings.sockets,
        lifecycle: lifecycle.clone(),
        relay_room: webchat_room.clone(),
    });
    Ok(http::App {
        limiter: http::limits::Limiter::new(&settings),
        limits,
        auth_mode: settings.auth.mode,
        admin_token: settings.admin_token(),
        lifecycle,
        chat: chat::Chat::new(db.clone(), access.clone()),
        access,
        transcripts,
        notifier,
        presence,
        files,
        webhooks,
        hooks,
        delivery,
        sender,
        accounts,
        sockets,
        webchat_room,
        db,
        hub,
        events,
        settings,
    })
}

/// The signer and checker of tokens: ours, and another application's JWTs.
fn tokens(
    settings: &config::Settings,
    replicas: bool,
) -> Result<accounts::Tokens, Box<dyn std::error::Error>> {
    let [secret, jwt_secret, jwt_public_key] = settings.token_secrets();
    if secret.is_none() && replicas {
        tracing::warn!(
            "no token_secret: each replica signs its own tokens, and the others refuse them"
        );
    }
    for admin in &settings.auth.admins {
        // `admins` named users by name until they could be squatted: say so to whoever
        // upgrades with a name still there, rather than leave them wondering.
        if uuid::Uuid::parse_str(admin.trim()).is_err()
            && !domain::names::is_external_id(admin.trim())
        {
            tracing::warn!(
                admin = %admin,
                "admins lists user ids (see GET /api/auth/me), and this is not one: it makes nobody an admin"
            );
        }
    }
    let auth = &settings.auth;
    Ok(accounts::Tokens::new(&accounts::TokenConfig {
        secret,
        ttl: Some(Duration::from_secs(auth.token_ttl_secs.max(1))),
        jwt_secret,
        jwt_public_key,
        jwt_issuer: auth.jwt_issuer.clone(),
        jwt_audience: auth.jwt_audience.clone(),
        jwt_max_ttl: Some(Duration::from_secs(auth.jwt_max_ttl_secs)),
    })?)
}

/// The server: fairings, one line per mount, the `App` every handler takes and what the
/// guards check with.
fn mount(
    figment: rocket::figment::Figment,
    front_door: FrontDoor,
    guards: Guards,
    app: http::App,
) -> Rocket<Build> {
    let settings = &app.settings;
    let drain = Duration::from_secs(settings.shutdown.drain_secs);
    let peers = guards.peers.clone();
    let mut rocket = rocket::custom(figment)
        .attach(Template::fairing())
        .attach(http::RequestLog)
        .attach(http::shutdown::CloseWhileStopping)
        .attach(AdHoc::on_liftoff("listening", {
            let peers = peers.clone();
            move |rocket| {
                Box::pin(async move {
                    let config = rocket.config();
                    let mut listening = std::net::SocketAddr::new(config.address, config.port);
                    // Port 0 is a local client's (tests in process): nothing listens.
                    if let Some((public, limits)) = front_door.filter(|_| config.port != 0) {
                        match tokio::net::TcpListener::bind(public).await {
                            Ok(listener) => {
                                let rocket_at = listening;
                                listening = listener.local_addr().unwrap_or(public);
                                let door = http::front_door::serve(
                                    listener,
                                    rocket_at,
                                    limits,
                                    peers,
                                    rocket.shutdown(),
                                );
                                tokio::spawn(door);
                            }
                            Err(err) => {
                                // Nothing has been accepted yet: stopping here loses nothing.
                                tracing::error!(address = %public, error = %err, "cannot listen");
                                std::process::exit(1);
                            }
                        }
                    }
                    tracing::info!("ferrochat listening on http://{listening}");
                    if let Some(app) = rocket.state::<http::App>() {
                        let stop = http::shutdown::on_signal(
                            rocket.shutdown(),
                            app.lifecycle.clone(),
                            drain,
                        );
                        tokio::spawn(stop);
                    }
                })
            }
        }))
        .register("/", http::plain_catchers())
        .register("/api", http::json_catchers())
        .register("/ws", http::json_catchers())
        .mount("/", http::page::routes())
        .mount("/static", http::page::assets(settings))
        .mount("/api/auth", http::auth::routes())
        .mount("/api/chat", http::legacy::routes())
        .mount("/api/chat", http::chat_api::routes())
        .mount("/api/chat", http::sse::routes())
        .mount("/", http::ws::routes())
        .mount("/api/presence", http::presence::routes())
        .mount("/api/notifications", http::notifications::routes())
        .mount("/api/files", http::files::routes())
        .mount("/api", http::search::routes())
        .mount("/api/hooks", http::hooks::routes())
        .mount("/api/webhooks", http::webhooks::routes())
        .mount("/api/bots", http::bots::routes())
        .mount("/hooks", http::hook_posts::routes())
        .mount("/", http::ops::routes())
        .mount("/", http::webchat::routes())
        .mount("/", http::openapi::routes());
    if let Some((page, files)) = http::webchat::page(settings) {
        tracing::info!(dir = ?settings.chat.webchat_page_dir, "the relay's page at /webchat");
        rocket = rocket.mount("/", page).mount("/static", files);
    }
    if settings.page.bench_routes {
        rocket = rocket
            .manage(http::bench::Fixed::default())
            .mount("/bench", http::bench::routes());
    }
    rocket
        .manage(guards.trusted_proxies)
        .manage(guards.origins)
        .manage(guards.peers)
        .manage(app.limiter.clone())
        .manage(app)
}

//! Settings. Rocket's own keys and ours live side by side: defaults here, then
//! `Rocket.toml`, then `ROCKET_<KEY>` environment variables, then the names users of the
//! Flask original already set (`DATABASE_URL`, `MYSQL_URI`, `PORT`).

use rocket::figment::providers::{Env, Format, Serialized, Toml};
use rocket::figment::value::magic::RelativePathBuf;
use rocket::figment::{Figment, Profile};
use serde::{Deserialize, Serialize};

/// The database used when nothing is configured: a SQLite file in the working folder.
pub const EMBEDDED_DATABASE_URL: &str = "sqlite://ferrochat.db?mode=rwc";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    /// `mysql://`, `postgres://` or `sqlite://` URL. See [`database_url`].
    pub database_url: Option<String>,
    /// `redis://` URL of the hub shared by replicas (also `REDIS_URL`); none: in-process.
    /// `redis+sentinel://[[user]:password@]host1:26379,host2:26379/master[/db]` names
    /// Sentinels instead (see [`redis_at`]).
    pub redis_url: Option<String>,
    /// Redis Sentinels, `host:port` separated by commas (also `REDIS_SENTINELS`): the hub
    /// and presence use the master they name, found again after a failover. Wins over
    /// `redis_url`.
    pub redis_sentinels: Option<String>,
    /// The name the Sentinels monitor the master under (also `REDIS_SENTINEL_MASTER`).
    pub redis_sentinel_master: String,
    /// Longest message accepted, in characters.
    pub max_message_chars: usize,
    /// Longest user name accepted, in characters.
    pub max_username_chars: usize,
    /// Largest POST body read, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How often a cached room transcript is checked against the database for messages
    /// written by other processes, in milliseconds.
    pub transcript_refresh_ms: u64,
    /// How many room transcripts are held in memory at most.
    pub transcript_cache_rooms: usize,
    /// Messages a room's transcript (the legacy GET) holds and answers at most: the newest.
    pub transcript_max_messages: usize,
    /// Bytes the held transcripts may take together; past it the least recently read
    /// rooms go (and are read from the database again when next polled).
    pub transcript_cache_bytes: usize,
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before it gets 503, in seconds.
    pub db_timeout_secs: u64,
    /// How long start-up waits for the database to come up, in seconds.
    pub db_startup_wait_secs: u64,
    /// Insert a batch of posts with one `INSERT ... RETURNING` where the database has it
    /// (PostgreSQL, SQLite, MariaDB 10.5+). Off: one INSERT per row, as on MySQL, for
    /// proxies in front of MariaDB that do not understand `RETURNING`.
    pub db_insert_returning: bool,
    /// Folder of the page's own assets (CSS, JS). Like `template_dir`, a relative path in
    /// `Rocket.toml` is relative to that file.
    pub static_dir: RelativePathBuf,
    /// jQuery as installed by `npm ci`; the page falls back to a CDN when it is absent.
    pub jquery_path: RelativePathBuf,
    /// How often WebSocket peers are pinged, in seconds; one silent for two pings and 5 s
    /// more is dropped.
    pub ws_ping_secs: u64,
    /// Messages a room's channel holds for its slowest socket; one that falls further
    /// behind reads them back from the database, and after 3 such falls in 30 s it is
    /// closed with code 4000 (reconnect with `since`).
    pub ws_backlog: usize,
    /// In a room with more sockets than this on one replica, joins and leaves are not
    /// announced (10,000 people joining would be 50 million frames); presence still
    /// lists everyone.
    pub ws_announce_limit: usize,
    /// Folder of uploaded files when no S3 store is configured (see `files::FileStore`).
    pub files_dir: String,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Types an upload may have; anything else gets 415.
    pub allowed_file_types: Vec<String>,
    /// `amqp://` URL of RabbitMQ (also `AMQP_URL`): every stored message and every join
    /// is published there as an event. None: no events.
    pub amqp_url: Option<String>,
    /// Mount `/bench/*`, the fixed-answer routes the benchmark measures ceilings with.
    pub bench_routes: bool,
    /// `open` (names and ids as clients claim them) or `required` (every call signed in;
    /// the identity wins). See README "Security".
    pub auth: crate::domain::AuthMode,
    /// Users (by id, as `/api/auth/me` shows it; `ext:<sub>` for another application's)
    /// who are admins once signed in.
    pub admins: Vec<String>,
    /// The token that makes a request an admin's (`Authorization: Bearer <token>`); also
    /// `ADMIN_TOKEN`. In open mode, deleting rooms, messages and files needs it.
    pub admin_token: Option<String>,
    /// Signs the tokens this server hands out (also `TOKEN_SECRET`); replicas must share
    /// it. None: a random secret per process (tokens end with it).
    pub token_secret: Option<String>,
    /// How long a token lasts, in seconds.
    pub token_ttl_secs: u64,
    /// Another application's HS256 secret (also `JWT_SECRET`) or RS256/ES256 public key in
    /// PEM (also `JWT_PUBLIC_KEY`): its JWTs (`sub`, `name`, `exp`) are identities here.
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<String>,
    /// The `iss` and `aud` another application's JWTs must carry, each when set.
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// The longest another application's JWT may live (its `exp` from its `iat`, or from
    /// now), in seconds; longer ones are refused.
    pub jwt_max_ttl_secs: u64,
    /// Web sites whose pages may open sockets here and send changes signed in by the
    /// session cookie (`https://chat.example.com`, or `*`), besides this server's own pages
    /// and clients that send no `Origin`.
    pub allowed_origins: Vec<String>,
    /// This server's origin as browsers see it (`https://chat.example.com`), for a proxy in
    /// front that changes the `Host` or the scheme. None: the `Host` of each request and
    /// the scheme it came by (`X-Forwarded-Proto` from `trusted_proxies` only).
    pub public_origin: Option<String>,
    /// Addresses (or CIDR blocks) of proxies whose `X-Forwarded-For` / `X-Real-IP` name the
    /// client; from anyone else those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// Token buckets per client address on posts, socket frames, room creation, uploads,
    /// heartbeats, sign-ins, read marks and searches (429 with `Retry-After` past them),
    /// and a cap on sockets per address. Unset: on with `auth = "required"`, off in open mode.
    pub rate_limits: Option<bool>,
    /// Registrations and sign-ins a client address may try per hour (wrong passwords per
    /// account name and address are counted apart: `http::limits::FAILURES_ALLOWED`).
    pub sign_ins_per_hour: u32,
    /// Messages a client may post per minute, at every door, and in one burst.
    pub posts_per_minute: u32,
    pub posts_burst: u32,
    /// Frames (messages and typing) one socket may send per minute, and in one burst.
    pub frames_per_minute: u32,
    pub frames_burst: u32,
    /// Rooms a client may create per hour.
    pub rooms_per_hour: u32,
    /// Uploads a client may make per day, and bytes (in MiB) per day.
    pub uploads_per_day: u32,
    pub upload_mib_per_day: u32,
    /// Presence heartbeats and typing calls a client may make per minute.
    pub heartbeats_per_minute: u32,
    /// Rooms a client may mark read per minute (each is a write).
    pub read_marks_per_minute: u32,
    /// Searches across rooms a client may make per minute (each reads a full-text index).
    pub searches_per_minute: u32,
    /// Posts one incoming webhook may make per minute (all its callers together).
    pub hook_posts_per_minute: u32,
    /// Hooks one client address may have read from the database per minute: URLs whose
    /// hook this replica has not held (made-up ones, or a real one's first post here).
    pub hook_lookups_per_minute: u32,
    /// Sockets one client address may hold open at once.
    pub sockets_per_client: usize,
    /// Outgoing webhooks may send to receivers on loopback, private, link-local and
    /// unique-local addresses (a private network, tests). Off: such a URL is refused when
    /// the webhook is made and at every delivery.
    pub webhook_allow_private: bool,
    /// How long a replica holds a webhook it sends to without renewing its lease, in
    /// seconds: when it dies, another replica carries on after at most this long.
    pub webhook_lease_secs: u64,
    /// Answer through ferrochat's own listener (`http::front_door`), which gives each
    /// request header `header_timeout_secs` to arrive whole and caps connections in all
    /// and per address, before Rocket sees the bytes. Off only behind a proxy that does
    /// the same (the shipped nginx): it saves a hop and two file descriptors a connection.
    pub front_door: bool,
    /// How long a request header may take to arrive whole, in seconds (from its first
    /// byte; a new connection's clock starts when it is accepted).
    pub header_timeout_secs: u64,
    /// How long a connection may sit with no bytes either way between requests, in seconds.
    pub idle_timeout_secs: u64,
    /// Connections held open at once; past it new ones get 503. 0: as many as the open-file
    /// limit allows (each takes three descriptors: the client's and both ends of the hop).
    pub max_connections: usize,
    /// Connections one client address may hold open at once; past it, 429.
    pub connections_per_address: usize,
    /// On SIGTERM or SIGINT: how long readiness says 503 while everything is still served
    /// (so a balancer stops routing here), before sockets are closed with 1012.
    pub shutdown_drain_secs: u64,
    /// How many days a room's changes other than messages (edits, reactions, deletions)
    /// are kept for readers that come back with an older `seq`; past them, such a reader
    /// is told to reload (`resync`). Messages themselves are kept.
    pub change_log_days: u32,
    /// The whole stop, drain included, is over within this many seconds (Kubernetes kills
    /// a pod 30 s after it asked it to stop, `preStop` included).
    pub shutdown_grace_secs: u64,
    /// The room of the relay's one-room client (`WS /ws`, `GET /messages`).
    pub webchat_room: String,
    /// Folder holding the relay's page (its `frontend/static`: `index.html`, `app.js`,
    /// `style.css`), served at `/webchat` with its files under `/static`. None: not served.
    pub webchat_page_dir: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: None,
            redis_url: None,
            redis_sentinels: None,
            redis_sentinel_master: "mymaster".into(),
            max_message_chars: 4096,
            max_username_chars: 64,
            max_body_bytes: 64 * 1024,
            transcript_refresh_ms: 1000,
            transcript_cache_rooms: 10_000,
            transcript_max_messages: 5_000,
            transcript_cache_bytes: 64 * 1024 * 1024,
            db_max_connections: 16,
            db_timeout_secs: 3,
            db_startup_wait_secs: 30,
            db_insert_returning: true,
            static_dir: RelativePathBuf::from("static"),
            jquery_path: RelativePathBuf::from("node_modules/jquery/dist/jquery.min.js"),
            ws_ping_secs: 25,
            ws_backlog: crate::domain::limits::MESSAGE_CAPACITY,
            ws_announce_limit: 500,
            bench_routes: false,
            files_dir: "uploads".into(),
            max_upload_bytes: 10 * 1024 * 1024,
            allowed_file_types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "application/pdf",
                "text/plain",
                "text/markdown",
                "text/csv",
                "application/json",
                "application/zip",
                "application/gzip",
                "audio/mpeg",
                "audio/ogg",
                "video/mp4",
                "video/webm",
            ]
            .map(String::from)
            .to_vec(),
            amqp_url: None,
            auth: crate::domain::AuthMode::Open,
            admins: Vec::new(),
            admin_token: None,
            token_secret: None,
            token_ttl_secs: 24 * 3600,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_max_ttl_secs: 24 * 3600,
            allowed_origins: Vec::new(),
            public_origin: None,
            trusted_proxies: Vec::new(),
            rate_limits: None,
            sign_ins_per_hour: 30,
            posts_per_minute: 60,
            posts_burst: 20,
            frames_per_minute: 240,
            frames_burst: 60,
            rooms_per_hour: 30,
            uploads_per_day: 500,
            upload_mib_per_day: 1024,
            heartbeats_per_minute: 30,
            read_marks_per_minute: 120,
            searches_per_minute: 30,
            hook_posts_per_minute: 60,
            hook_lookups_per_minute: 120,
            webhook_allow_private: false,
            webhook_lease_secs: 30,
            sockets_per_client: 50,
            front_door: true,
            header_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_connections: 0,
            connections_per_address: 256,
            shutdown_drain_secs: 5,
            change_log_days: 30,
            shutdown_grace_secs: 20,
            webchat_room: "general".into(),
            webchat_page_dir: None,
        }
    }
}

impl Settings {
    /// The `admin_token` setting (`ADMIN_TOKEN`); blank means none.
    pub fn admin_token(&self) -> Option<String> {
        non_blank(&self.admin_token)
    }

    /// Whether the abuse limits are on: as set, else with `auth = "required"`.
    pub fn rate_limits_on(&self) -> bool {
        self.rate_limits
            .unwrap_or(self.auth == crate::domain::AuthMode::Required)
    }

    /// The `token_secret`, `jwt_secret` and `jwt_public_key` settings (`TOKEN_SECRET`,
    /// `JWT_SECRET`, `JWT_PUBLIC_KEY`).
    pub fn token_secrets(&self) -> [Option<String>; 3] {
        [
            non_blank(&self.token_secret),
            non_blank(&self.jwt_secret),
            non_blank(&self.jwt_public_key),
        ]
    }

    /// The chat's own limits on names and messages.
    pub fn limits(&self) -> crate::domain::Limits {
        crate::domain::Limits {
            max_username_chars: self.max_username_chars,
            max_message_chars: self.max_message_chars,
        }
    }
}

/// Rocket's defaults changed to the Flask original's: port 5000 on every interface, so a
/// browser, a container's port mapping and a Codespace's forwarding all reach it.
#[derive(Serialize)]
struct ServerDefaults {
    port: u16,
    address: &'static str,
    log_level: &'static str,
    /// Rocket trusts `X-Real-IP` from anyone by default; the client address is read by
    /// `http::limits` instead, from trusted proxies only.
    ip_header: bool,
}

pub fn figment() -> Figment {
    let mut figment = Figment::from(rocket::Config::default())
        .merge(Serialized::defaults(ServerDefaults {
            port: 5000,
            address: "0.0.0.0",
            // Requests are logged by our own fairing through `tracing`.
            log_level: "critical",
            ip_header: false,
        }))
        .merge(Serialized::defaults(Settings::default()))
        .merge(Toml::file(Env::var_or("ROCKET_CONFIG", "Rocket.toml")).nested())
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
        .select(Profile::from_env_or(
            "ROCKET_PROFILE",
            rocket::Config::DEFAULT_PROFILE,
        ));
    // The names other deployments give these settings (the seeds' compose files, Heroku's
    // `PORT`), read once here; over every file and `ROCKET_` variable, under what a caller
    // merges after (a test's own settings win). Blank is unset. `MYSQL_URI` first, so that
    // `DATABASE_URL` wins over it.
    for (name, key) in LEGACY_NAMES {
        if let Some(value) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
            figment = match key {
                "port" => match value.trim().parse::<u16>() {
                    Ok(port) => figment.merge((key, port)),
                    Err(_) => figment,
                },
                _ => figment.merge((key, value)),
            };
        }
    }
    figment
}

/// Environment variables other deployments use, and the setting each one is.
const LEGACY_NAMES: [(&str, &str); 11] = [
    ("PORT", "port"),
    ("MYSQL_URI", "database_url"),
    ("DATABASE_URL", "database_url"),
    ("REDIS_URL", "redis_url"),
    ("REDIS_SENTINELS", "redis_sentinels"),
    ("REDIS_SENTINEL_MASTER", "redis_sentinel_master"),
    ("AMQP_URL", "amqp_url"),
    ("ADMIN_TOKEN", "admin_token"),
    ("TOKEN_SECRET", "token_secret"),
    ("JWT_SECRET", "jwt_secret"),
    ("JWT_PUBLIC_KEY", "jwt_public_key"),
];

/// The database to use: the `database_url` setting (`DATABASE_URL` or `MYSQL_URI` among
/// its sources, see [`figment`]), else the embedded SQLite file.
pub fn database_url(settings: &Settings) -> String {
    let raw =
        non_blank(&settings.database_url).unwrap_or_else(|| EMBEDDED_DATABASE_URL.to_string());
    normalize_database_url(&raw)
}

/// The `amqp_url` setting (`AMQP_URL`).
pub fn amqp_url(settings: &Settings) -> Option<String> {
    non_blank(&settings.amqp_url)
}

/// Where the Redis the replicas share is.
#[derive(Debug, PartialEq, Eq)]
pub enum RedisAt {
    /// One server: a `redis://` URL.
    Server(String),
    /// Whichever server the Sentinels name master now.
    Sentinel(SentinelTarget),
}

/// Sentinels, the name they monitor the master under, and how to sign in to the master.
#[derive(Debug, PartialEq, Eq)]
pub struct SentinelTarget {
    /// Each `host:port` (or `redis://...` URL) of a Sentinel.
    pub sentinels: Vec<String>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

/// The scheme of a `redis_url` that names Sentinels rather than a server.
const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// The shared Redis, if any: `redis_sentinels` (`REDIS_SENTINELS`) with
/// `redis_sentinel_master`, else `redis_url` (`REDIS_URL`), which may name Sentinels too:
/// `redis+sentinel://[[user]:password@]host1:26379,host2:26379/master[/db]` (the password
/// and database are the master's).
pub fn redis_at(settings: &Settings) -> Result<Option<RedisAt>, String> {
    if let Some(raw) = non_blank(&settings.redis_sentinels) {
        let sentinels = host_list(&raw);
        if sentinels.is_empty() {
            return Err("redis_sentinels names no Sentinel".into());
        }
        return Ok(Some(RedisAt::Sentinel(SentinelTarget {
            sentinels,
            master: settings.redis_sentinel_master.clone(),
            username: None,
            password: None,
            db: 0,
        })));
    }
    let Some(url) = non_blank(&settings.redis_url) else {
        return Ok(None);
    };
    let url = url.trim();
    let is_sentinel = url
        .get(..SENTINEL_SCHEME.len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(SENTINEL_SCHEME));
    if !is_sentinel {
        return Ok(Some(RedisAt::Server(url.to_string())));
    }
    sentinel_url(&url[SENTINEL_SCHEME.len()..]).map(|target| Some(RedisAt::Sentinel(target)))
}

fn host_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What follows `redis+sentinel://`. The error never holds the password.
fn sentinel_url(rest: &str) -> Result<SentinelTarget, String> {
    let bad = |why: &str| {
        format!("redis_url: {why} (redis+sentinel://[[user]:password@]host:26379,.../master[/db])")
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let decode = |s: &str| -> Result<Option<String>, String> {
        let decoded = rocket::http::RawStr::new(s)
            .url_decode()
            .map_err(|_| bad("a user name or password is not valid UTF-8 once decoded"))?;
        Ok((!decoded.is_empty()).then(|| decoded.into_owned()))
    };
    let (username, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((user, password)) => (decode(user)?, decode(password)?),
        None => (None, None),
    };
    let sentinels = host_list(hosts);
    if sentinels.is_empty() {
        return Err(bad("no Sentinel is named"));
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let master = segments
        .next()
        .ok_or_else(|| bad("the master's name is missing"))?
        .to_string();
    let db = match segments.next() {
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| bad("the database is not a number"))?,
        None => 0,
    };
    if segments.next().is_some() {
        return Err(bad("the path has more than the master and the database"));
    }
    Ok(SentinelTarget {
        sentinels,
        master,
        username,
        password,
        db,
    })
}

fn non_blank(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.trim().is_empty())
}

/// SQLAlchemy URLs name a driver after the dialect (`mysql+pymysql://`,
/// `postgresql+psycopg2://`); the dialect alone is what we need. A SQLite file is created
/// when missing, as SQLAlchemy does.
pub fn normalize_database_url(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let dialect = scheme
        .split('+')
        .next()
        .unwrap_or(scheme)
        .to_ascii_lowercase();
    let dialect = match dialect.as_str() {
        "mariadb" => "mysql",
        "postgresql" => "postgres",
        other => other,
    };
    let mut out = format!("{dialect}://{rest}");
    if dialect == "sqlite" && !rest.contains("mode=") && !rest.contains(":memory:") {
        out.push(if rest.contains('?') { '&' } else { '?' });
        out.push_str("mode=rwc");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn redis_urls_name_a_server_or_sentinels() {
        use super::{redis_at, RedisAt, SentinelTarget, Settings};
        let at = |url: &str| {
            let settings = Settings {
                redis_url: Some(url.into()),
                ..Settings::default()
            };
            redis_at(&settings)
        };
        assert_eq!(
            at("redis://:pw@redis:6379/0"),
            Ok(Some(RedisAt::Server("redis://:pw@redis:6379/0".into())))
        );
        assert_eq!(
            at("redis+sentinel://:p%40ss@s1:26379, s2:26379,s3:26379/mymaster/2"),
            Ok(Some(RedisAt::Sentinel(SentinelTarget {
                sentinels: vec!["s1:26379".into(), "s2:26379".into(), "s3:26379".into()],
                master: "mymaster".into(),
                username: None,
                password: Some("p@ss".into()),
                db: 2,
            })))
        );
        assert_eq!(
            at("REDIS+SENTINEL://app:pw@s1:26379/main"),
            Ok(Some(RedisAt::Sentinel(SentinelTarget {
                sentinels: vec!["s1:26379".into()],
                master: "main".into(),
                username: Some("app".into()),
                password: Some("pw".into()),
                db: 0,
            })))
        );
        for bad in [
            "redis+sentinel://:secret@s1:26379",
            "redis+sentinel://:secret@/mymaster",
            "redis+sentinel://:secret@s1:26379/mymaster/x",
            "redis+sentinel://:secret@s1:26379/mymaster/1/2",
        ] {
            let err = at(bad).expect_err(bad);
            assert!(!err.contains("secret"), "{err}");
        }
        assert_eq!(at("  "), Ok(None));
        // REDIS_SENTINELS wins, with REDIS_SENTINEL_MASTER.
        let settings = Settings {
            redis_url: Some("redis://ignored:6379".into()),
            redis_sentinels: Some("a:26379,b:26379".into()),
            ..Settings::default()
        };
        assert!(matches!(
            redis_at(&settings),
            Ok(Some(RedisAt::Sentinel(SentinelTarget { ref master, .. }))) if master == "mymaster"
        ));
    }

    use super::normalize_database_url as n;

    #[test]
    fn sqlalchemy_urls_become_sqlx_urls() {
        assert_eq!(
            n("mysql+pymysql://chatuser:chatpass@mysql:3306/chat"),
            "mysql://chatuser:chatpass@mysql:3306/chat"
        );
        assert_eq!(n("postgresql+psycopg2://u@h/db"), "postgres://u@h/db");
        assert_eq!(n("mariadb://u@h/db"), "mysql://u@h/db");
        assert_eq!(n("sqlite://chat.db"), "sqlite://chat.db?mode=rwc");
        assert_eq!(n("sqlite://chat.db?mode=ro"), "sqlite://chat.db?mode=ro");
        assert_eq!(n("sqlite::memory:"), "sqlite::memory:");
    }
}

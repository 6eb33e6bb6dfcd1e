//! Settings. Rocket's own keys and ours live side by side: defaults here, then
//! `Rocket.toml`, then `ROCKET_<KEY>` environment variables, then the names users of the
//! Flask original already set (`DATABASE_URL`, `MYSQL_URI`, `PORT`).

use rocket::figment::providers::{Env, Format, Serialized, Toml};
use rocket::figment::value::magic::RelativePathBuf;
use rocket::figment::{Figment, Profile};
use serde::{Deserialize, Serialize};

/// The database used when nothing is configured: a SQLite file in the working folder.
pub const EMBEDDED_DATABASE_URL: &str = "sqlite://ferrochat.db?mode=rwc";

/// Every setting of the server, in sections. Each is a key of `Rocket.toml` (sections are
/// for the code's sake: the keys stay flat, `ws_ping_secs = 30`), an environment variable
/// `ROCKET_<KEY>`, or one of the names other deployments give it ([`LEGACY_NAMES`]). Each
/// has one default, here; `docs/SETTINGS.md` lists them all, and a test holds that list to
/// this one. Read with [`Settings::from_figment`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    #[serde(flatten)]
    pub database: DatabaseSettings,
    #[serde(flatten)]
    pub transports: TransportSettings,
    #[serde(flatten)]
    pub chat: ChatSettings,
    #[serde(flatten)]
    pub transcripts: TranscriptSettings,
    #[serde(flatten)]
    pub sockets: SocketSettings,
    #[serde(flatten)]
    pub files: FileSettings,
    #[serde(flatten)]
    pub auth: AuthSettings,
    #[serde(flatten)]
    pub network: NetworkSettings,
    #[serde(flatten)]
    pub limits: LimitSettings,
    #[serde(flatten)]
    pub webhooks: WebhookSettings,
    #[serde(flatten)]
    pub shutdown: ShutdownSettings,
    #[serde(flatten)]
    pub page: PageSettings,
}

/// The database and its pool.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `mysql://`, `postgres://` or `sqlite://` URL (also `DATABASE_URL`, `MYSQL_URI`);
    /// none: the embedded SQLite file. See [`database_url`].
    pub database_url: Option<String>,
    #[serde(rename = "db_max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a database connection before it gets 503, in seconds.
    #[serde(rename = "db_timeout_secs")]
    pub timeout_secs: u64,
    /// How long start-up waits for the database to come up, in seconds.
    #[serde(rename = "db_startup_wait_secs")]
    pub startup_wait_secs: u64,
    /// Insert a batch of posts with one `INSERT ... RETURNING` where the database has it
    /// (PostgreSQL, SQLite, MariaDB 10.5+). Off: one INSERT per row, as on MySQL, for
    /// proxies in front of MariaDB that do not understand `RETURNING`.
    #[serde(rename = "db_insert_returning")]
    pub insert_returning: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            database_url: None,
            max_connections: 16,
            timeout_secs: 3,
            startup_wait_secs: 30,
            insert_returning: true,
        }
    }
}

/// What replicas share besides the database: Redis (the hub, presence) and RabbitMQ.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TransportSettings {
    /// `redis://` URL of the hub shared by replicas (also `REDIS_URL`); none: in-process.
    /// `rediss://` speaks TLS to it (managed Redis: ElastiCache, Azure, Upstash), checking
    /// its certificate against the public authorities, or `redis_ca_file`'s.
    /// `redis+sentinel://[[user]:password@]host1:26379,host2:26379/master[/db]` names
    /// Sentinels instead (see [`redis_at`]).
    pub redis_url: Option<String>,
    /// A PEM file of the authority that signed the `rediss://` server's certificate, when
    /// no public one did (a cluster's own CA); none: the public authorities.
    pub redis_ca_file: Option<String>,
    /// Redis Sentinels, `host:port` separated by commas (also `REDIS_SENTINELS`): the hub
    /// and presence use the master they name, found again after a failover. Wins over
    /// `redis_url`.
    pub redis_sentinels: Option<String>,
    /// The name the Sentinels monitor the master under (also `REDIS_SENTINEL_MASTER`).
    pub redis_sentinel_master: String,
    /// `amqp://` URL of RabbitMQ (also `AMQP_URL`): every stored message and every join
    /// is published there as an event. None: no events.
    pub amqp_url: Option<String>,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            redis_url: None,
            redis_ca_file: None,
            redis_sentinels: None,
            redis_sentinel_master: "mymaster".into(),
            amqp_url: None,
        }
    }
}

/// Messages and rooms.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ChatSettings {
    /// Longest message accepted, in characters.
    pub max_message_chars: usize,
    /// Longest user name accepted, in characters.
    pub max_username_chars: usize,
    /// Largest POST body read, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// How many days a room's changes other than messages (edits, reactions, deletions)
    /// are kept for readers that come back with an older `seq`; past them, such a reader
    /// is told to reload (`resync`). Messages themselves are kept.
    pub change_log_days: u32,
    /// The room of the single-room relay (`WS /ws`, `GET /messages`).
    pub webchat_room: String,
    /// Folder holding multiuser-webchat's page (its `frontend/static`: `index.html`,
    /// `app.js`, `style.css`), served at `/webchat` with its files under `/static`. None:
    /// not served.
    pub webchat_page_dir: Option<String>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            max_message_chars: 4096,
            max_username_chars: 64,
            max_body_bytes: 64 * 1024,
            change_log_days: 30,
            webchat_room: "general".into(),
            webchat_page_dir: None,
        }
    }
}

/// The rooms' transcripts held in memory for the polling GET.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TranscriptSettings {
    /// How often a held transcript is checked against the database for messages written
    /// by other processes, in milliseconds.
    #[serde(rename = "transcript_refresh_ms")]
    pub refresh_ms: u64,
    /// How many rooms' transcripts are held at most.
    #[serde(rename = "transcript_cache_rooms")]
    pub cache_rooms: usize,
    /// Messages a room's transcript (the legacy GET) holds and answers at most: the newest.
    #[serde(rename = "transcript_max_messages")]
    pub max_messages: usize,
    /// Bytes the held transcripts may take together; past it the least recently read
    /// rooms go (and are read from the database again when next polled).
    #[serde(rename = "transcript_cache_bytes")]
    pub cache_bytes: usize,
}

impl Default for TranscriptSettings {
    fn default() -> Self {
        TranscriptSettings {
            refresh_ms: 1000,
            cache_rooms: 10_000,
            max_messages: 5_000,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// WebSockets and event streams.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default)]
pub struct SocketSettings {
    /// How often peers are pinged (and event streams sent a `:` line), in seconds; a peer
    /// silent for two pings and 5 s more is dropped.
    #[serde(rename = "ws_ping_secs")]
    pub ping_secs: u64,
    /// Messages a room's channel holds for its slowest socket; one that falls further
    /// behind reads them back from the database, and after 3 such falls in 30 s it is
    /// closed with code 4000 (reconnect with `since`).
    #[serde(rename = "ws_backlog")]
    pub backlog: usize,
    /// In a room with more sockets than this on one replica, joins and leaves are not
    /// announced (10,000 people joining would be 50 million frames); presence still
    /// lists everyone.
    #[serde(rename = "ws_announce_limit")]
    pub announce_limit: usize,
}

impl Default for SocketSettings {
    fn default() -> Self {
        SocketSettings {
            ping_secs: 25,
            backlog: crate::domain::limits::MESSAGE_CAPACITY,
            announce_limit: 500,
        }
    }
}

impl SocketSettings {
    pub fn ping_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ping_secs.max(1))
    }
}

/// Uploads and where they are kept: a local folder, or an S3 or MinIO bucket.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FileSettings {
    /// Folder of uploaded files when no S3 store is configured.
    pub files_dir: String,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Types an upload may have; anything else gets 415.
    pub allowed_file_types: Vec<String>,
    /// A MinIO (or any S3-compatible) server, `host:port` or a URL (also
    /// `MINIO_ENDPOINT`, as ChatFlow's file service reads it): uploads go to its bucket.
    pub minio_endpoint: Option<String>,
    /// Its keys (also `MINIO_ACCESS_KEY`, `MINIO_SECRET_KEY`).
    #[serde(deserialize_with = "secret")]
    pub minio_access_key: String,
    #[serde(deserialize_with = "secret")]
    pub minio_secret_key: String,
    /// Its bucket (also `MINIO_BUCKET`).
    pub minio_bucket: String,
    /// `host:port` is reached by https (also `MINIO_SECURE`: `true` or `1`).
    pub minio_secure: bool,
    /// The region its requests are signed for (also `MINIO_REGION`).
    pub minio_region: String,
    /// An S3 bucket (also `S3_BUCKET`), used when no `minio_endpoint` is set. Credentials
    /// and region come from the AWS SDK's own sources (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, a web identity token), read by `object_store`.
    pub s3_bucket: Option<String>,
    /// Another S3-compatible server for `s3_bucket` (also `AWS_ENDPOINT_URL`).
    pub s3_endpoint: Option<String>,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
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
            minio_endpoint: None,
            minio_access_key: "minioadmin".into(),
            minio_secret_key: "minioadmin".into(),
            minio_bucket: "chatfiles".into(),
            minio_secure: false,
            minio_region: "us-east-1".into(),
            s3_bucket: None,
            s3_endpoint: None,
        }
    }
}

/// Who callers are: the mode, admins, tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthSettings {
    /// `open` (names and ids as clients claim them) or `required` (every call signed in;
    /// the identity wins). See README "Security".
    #[serde(rename = "auth")]
    pub mode: crate::domain::AuthMode,
    /// Users (by id, as `/api/auth/me` shows it; `ext:<sub>` for another application's)
    /// who are admins once signed in.
    pub admins: Vec<String>,
    /// The token that makes a request an admin's (`Authorization: Bearer <token>`); also
    /// `ADMIN_TOKEN`. In open mode, deleting rooms, messages and files needs it.
    #[serde(deserialize_with = "optional_secret")]
    pub admin_token: Option<String>,
    /// Signs the tokens this server hands out (also `TOKEN_SECRET`); replicas must share
    /// it. None: a random secret per process (tokens end with it).
    #[serde(deserialize_with = "optional_secret")]
    pub token_secret: Option<String>,
    /// How long a token lasts, in seconds.
    pub token_ttl_secs: u64,
    /// Another application's HS256 secret (also `JWT_SECRET`) or RS256/ES256 public key in
    /// PEM (also `JWT_PUBLIC_KEY`): its JWTs (`sub`, `name`, `exp`) are identities here.
    #[serde(deserialize_with = "optional_secret")]
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<String>,
    /// The `iss` and `aud` another application's JWTs must carry, each when set.
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// The longest another application's JWT may live (its `exp` from its `iat`, or from
    /// now), in seconds; longer ones are refused.
    pub jwt_max_ttl_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: crate::domain::AuthMode::Open,
            admins: Vec::new(),
            admin_token: None,
            token_secret: None,
            token_ttl_secs: 24 * 3600,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_max_ttl_secs: 24 * 3600,
        }
    }
}

/// Who may connect, from where, and how connections are held.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct NetworkSettings {
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
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            allowed_origins: Vec::new(),
            public_origin: None,
            trusted_proxies: Vec::new(),
            front_door: true,
            header_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_connections: 0,
            connections_per_address: 256,
        }
    }
}

/// The abuse limits: token buckets per signed-in user, else per client address.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LimitSettings {
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
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
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
            sockets_per_client: 50,
        }
    }
}

/// Outgoing webhooks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Outgoing webhooks may send to receivers on loopback, private, link-local and
    /// unique-local addresses (a private network, tests). Off: such a URL is refused when
    /// the webhook is made and at every delivery.
    pub webhook_allow_private: bool,
    /// How long a replica holds a webhook it sends to without renewing its lease, in
    /// seconds: when it dies, another replica carries on after at most this long.
    pub webhook_lease_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            webhook_allow_private: false,
            webhook_lease_secs: 30,
        }
    }
}

/// A graceful stop (SIGTERM, SIGINT).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ShutdownSettings {
    /// How long readiness says 503 while everything is still served (so a balancer stops
    /// routing here), before sockets are closed with 1012, in seconds.
    #[serde(rename = "shutdown_drain_secs")]
    pub drain_secs: u64,
    /// The whole stop, drain included, is over within this many seconds (Kubernetes kills
    /// a pod 30 s after it asked it to stop, `preStop` included).
    #[serde(rename = "shutdown_grace_secs")]
    pub grace_secs: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings {
            drain_secs: 5,
            grace_secs: 20,
        }
    }
}

/// The page's own files, and the benchmark's fixed routes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PageSettings {
    /// Folder of the page's own assets (CSS, JS). Like `template_dir`, a relative path in
    /// `Rocket.toml` is relative to that file.
    pub static_dir: RelativePathBuf,
    /// jQuery as installed by `npm ci`; the page falls back to a CDN when it is absent.
    pub jquery_path: RelativePathBuf,
    /// Mount `/bench/*`, the fixed-answer routes the benchmark measures ceilings with.
    pub bench_routes: bool,
}

impl Default for PageSettings {
    fn default() -> Self {
        PageSettings {
            static_dir: RelativePathBuf::from("static"),
            jquery_path: RelativePathBuf::from("node_modules/jquery/dist/jquery.min.js"),
            bench_routes: false,
        }
    }
}

impl Settings {
    /// Reads every section from the figment. Each section takes its own keys from the
    /// whole (they are flat), so a bad value is reported with its key and where it came
    /// from (`ws_ping_secs` in `ROCKET_WS_PING_SECS`, say), and Rocket's relative paths
    /// keep the file they were read from.
    pub fn from_figment(figment: &Figment) -> Result<Settings, Box<rocket::figment::Error>> {
        Ok(Settings {
            database: figment.extract()?,
            transports: figment.extract()?,
            chat: figment.extract()?,
            transcripts: figment.extract()?,
            sockets: figment.extract()?,
            files: figment.extract()?,
            auth: figment.extract()?,
            network: figment.extract()?,
            limits: figment.extract()?,
            webhooks: figment.extract()?,
            shutdown: figment.extract()?,
            page: figment.extract()?,
        })
    }

    /// The `admin_token` setting (`ADMIN_TOKEN`); blank means none.
    pub fn admin_token(&self) -> Option<String> {
        non_blank(&self.auth.admin_token)
    }

    /// Whether the abuse limits are on: as set, else with `auth = "required"`.
    pub fn rate_limits_on(&self) -> bool {
        self.limits
            .rate_limits
            .unwrap_or(self.auth.mode == crate::domain::AuthMode::Required)
    }

    /// The `token_secret`, `jwt_secret` and `jwt_public_key` settings (`TOKEN_SECRET`,
    /// `JWT_SECRET`, `JWT_PUBLIC_KEY`).
    pub fn token_secrets(&self) -> [Option<String>; 3] {
        [
            non_blank(&self.auth.token_secret),
            non_blank(&self.auth.jwt_secret),
            non_blank(&self.auth.jwt_public_key),
        ]
    }

    /// The chat's own limits on names and messages.
    pub fn limits(&self) -> crate::domain::Limits {
        crate::domain::Limits {
            max_username_chars: self.chat.max_username_chars,
            max_message_chars: self.chat.max_message_chars,
        }
    }

    /// Settings no server can run with, each with its reason, one per line.
    pub fn check(&self) -> Result<(), String> {
        let at_least_one = [
            ("max_message_chars", self.chat.max_message_chars as u64),
            ("max_username_chars", self.chat.max_username_chars as u64),
            ("max_body_bytes", self.chat.max_body_bytes as u64),
            ("db_max_connections", self.database.max_connections as u64),
            ("db_timeout_secs", self.database.timeout_secs),
            ("transcript_refresh_ms", self.transcripts.refresh_ms),
            (
                "transcript_max_messages",
                self.transcripts.max_messages as u64,
            ),
            ("ws_ping_secs", self.sockets.ping_secs),
            ("ws_backlog", self.sockets.backlog as u64),
            ("max_upload_bytes", self.files.max_upload_bytes),
            ("token_ttl_secs", self.auth.token_ttl_secs),
            ("header_timeout_secs", self.network.header_timeout_secs),
            ("idle_timeout_secs", self.network.idle_timeout_secs),
            (
                "connections_per_address",
                self.network.connections_per_address as u64,
            ),
            ("sockets_per_client", self.limits.sockets_per_client as u64),
            ("webhook_lease_secs", self.webhooks.webhook_lease_secs),
            ("shutdown_grace_secs", self.shutdown.grace_secs),
        ];
        let mut problems: Vec<String> = at_least_one
            .iter()
            .filter(|(_, value)| *value == 0)
            .map(|(key, _)| format!("{key} must be 1 or more"))
            .collect();
        if self.shutdown.drain_secs >= self.shutdown.grace_secs {
            problems.push(format!(
                "shutdown_drain_secs ({}) must be less than shutdown_grace_secs ({})",
                self.shutdown.drain_secs, self.shutdown.grace_secs
            ));
        }
        if self.chat.webchat_room.trim().is_empty() {
            problems.push("webchat_room must name a room".into());
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(problems.join("\n")),
        }
    }
}

/// A secret as written. Figment reads an environment value of digits
/// (`ROCKET_TOKEN_SECRET=12345678`) as a number; refused as one, its error would print the
/// secret to the log. Taken as the text it was, and a refusal names no value.
fn secret<'de, D: serde::Deserializer<'de>>(value: D) -> Result<String, D::Error> {
    optional_secret(value)?.ok_or_else(|| serde::de::Error::custom("a secret must be text"))
}

fn optional_secret<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Whole(u64),
        Signed(i64),
        Real(f64),
    }
    Ok(match Option::<Written>::deserialize(value) {
        Ok(None) => None,
        Ok(Some(Written::Text(text))) => Some(text),
        Ok(Some(Written::Whole(n))) => Some(n.to_string()),
        Ok(Some(Written::Signed(n))) => Some(n.to_string()),
        Ok(Some(Written::Real(n))) => Some(n.to_string()),
        Err(_) => return Err(serde::de::Error::custom("a secret must be text")),
    })
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
    // `PORT`, MinIO's and S3's), read once here; over every file and `ROCKET_` variable, under what a caller
    // merges after (a test's own settings win). Blank is unset. `MYSQL_URI` first, so that
    // `DATABASE_URL` wins over it.
    for (name, key) in LEGACY_NAMES {
        if let Some(value) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
            figment = match key {
                "port" => match value.trim().parse::<u16>() {
                    Ok(port) => figment.merge((key, port)),
                    Err(_) => figment,
                },
                // As ChatFlow's file service reads it: `true` or `1` is https.
                "minio_secure" => figment.merge((key, value == "true" || value == "1")),
                _ => figment.merge((key, value)),
            };
        }
    }
    figment
}

/// Environment variables other deployments use, and the setting each one is. Read once,
/// by [`figment`]; `MYSQL_URI` before `DATABASE_URL`, so that the latter wins.
pub const LEGACY_NAMES: [(&str, &str); 19] = [
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
    ("MINIO_ENDPOINT", "minio_endpoint"),
    ("MINIO_ACCESS_KEY", "minio_access_key"),
    ("MINIO_SECRET_KEY", "minio_secret_key"),
    ("MINIO_BUCKET", "minio_bucket"),
    ("MINIO_SECURE", "minio_secure"),
    ("MINIO_REGION", "minio_region"),
    ("S3_BUCKET", "s3_bucket"),
    ("AWS_ENDPOINT_URL", "s3_endpoint"),
];

/// The database to use: the `database_url` setting (`DATABASE_URL` or `MYSQL_URI` among
/// its sources, see [`figment`]), else the embedded SQLite file.
pub fn database_url(settings: &Settings) -> String {
    let raw = non_blank(&settings.database.database_url)
        .unwrap_or_else(|| EMBEDDED_DATABASE_URL.to_string());
    normalize_database_url(&raw)
}

/// The `amqp_url` setting (`AMQP_URL`).
pub fn amqp_url(settings: &Settings) -> Option<String> {
    non_blank(&settings.transports.amqp_url)
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
    let settings = &settings.transports;
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
            let mut settings = Settings::default();
            settings.transports.redis_url = Some(url.into());
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
        let mut settings = Settings::default();
        settings.transports.redis_url = Some("redis://ignored:6379".into());
        settings.transports.redis_sentinels = Some("a:26379,b:26379".into());
        assert!(matches!(
            redis_at(&settings),
            Ok(Some(RedisAt::Sentinel(SentinelTarget { ref master, .. }))) if master == "mymaster"
        ));
    }

    /// `docs/SETTINGS.md` is the one list of settings a user reads: every key of
    /// `Settings` is in its table, every key in its table is a setting (or Rocket's own),
    /// each default written there is the code's, and each name other deployments use is
    /// named.
    #[test]
    fn the_settings_page_lists_every_setting_with_its_default() {
        use super::{Settings, LEGACY_NAMES};
        let page =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SETTINGS.md"))
                .expect("docs/SETTINGS.md");
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        let defaults = defaults.as_object().unwrap();
        let rocket_own = ["address", "port", "template_dir"];
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let mut listed = Vec::new();
        for row in page.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let keys = ticked(cells[0]);
            let written = ticked(cells[1]);
            for (i, key) in keys.iter().enumerate() {
                listed.push(key.clone());
                if rocket_own.contains(&key.as_str()) {
                    continue;
                }
                let default = defaults.get(key).unwrap_or_else(|| {
                    panic!("docs/SETTINGS.md lists `{key}`, which is no setting")
                });
                let expected = match default {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(text) => Some(text.clone()),
                    serde_json::Value::Array(items) if items.is_empty() => Some("[]".into()),
                    // A list (the file types) is said in words.
                    serde_json::Value::Array(_) => continue,
                    other => Some(other.to_string()),
                };
                // Rocket keeps a relative path with where it was read from; the default is
                // its path.
                let expected = match default.get("___figment_relative_path") {
                    Some(path) => path.as_str().map(str::to_string),
                    None => expected,
                };
                match (expected, written.get(i)) {
                    (None, None) => {}
                    (None, Some(said)) if key == "max_connections" && said == "0" => {}
                    (Some(code), Some(said)) => {
                        assert_eq!(said, &code, "the default of `{key}` in docs/SETTINGS.md")
                    }
                    (code, said) => {
                        // A default said in words: none, or the limits' "on in required".
                        assert!(
                            code.is_none() || key == "max_connections" || key == "rate_limits",
                            "`{key}`: docs/SETTINGS.md says {said:?}, the code {code:?}"
                        )
                    }
                }
            }
        }
        for key in defaults.keys() {
            assert!(
                listed.contains(key),
                "`{key}` is missing from docs/SETTINGS.md"
            );
        }
        for (name, key) in LEGACY_NAMES {
            assert!(
                page.contains(&format!("`{name}`")),
                "{name} ({key}) is not named"
            );
        }
    }

    use super::normalize_database_url as n;

    #[test]
    fn a_secret_of_digits_is_taken_as_text_and_never_shown() {
        let figment = super::figment()
            .merge(("token_secret", 12345678))
            .merge(("minio_secret_key", 87654321));
        let settings = super::Settings::from_figment(&figment).unwrap();
        assert_eq!(settings.auth.token_secret.as_deref(), Some("12345678"));
        assert_eq!(settings.files.minio_secret_key, "87654321");
        let figment = super::figment().merge(("admin_token", vec!["s3cr3t-list"]));
        let err = super::Settings::from_figment(&figment).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(err.to_string().contains("admin_token"), "{err}");
        // Unset stays unset.
        let settings = super::Settings::from_figment(&super::figment()).unwrap();
        assert_eq!(settings.auth.token_secret, None);
    }

    #[test]
    fn a_bad_value_is_reported_with_its_key() {
        let figment = super::figment().merge(("ws_ping_secs", "often"));
        let err = super::Settings::from_figment(&figment).unwrap_err();
        assert!(err.to_string().contains("ws_ping_secs"), "{err}");
        let mut settings = super::Settings::default();
        settings.sockets.ping_secs = 0;
        settings.shutdown.drain_secs = 30;
        let err = settings.check().unwrap_err();
        assert!(err.contains("ws_ping_secs must be 1 or more"), "{err}");
        assert!(
            err.contains("shutdown_drain_secs (30) must be less"),
            "{err}"
        );
    }

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

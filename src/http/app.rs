//! `App`: the state every handler takes. `lib.rs` builds it once at start; a handler takes
//! `app: &State<App>` and reaches the service it calls (`app.chat`, `app.delivery`), and
//! the `Caller` guard reads the accounts and the admin token from it.
//!
//! Beside it Rocket manages only what the guards below the handlers check each request
//! with, each read by its own file: where the client is (`client::TrustedProxies`,
//! `front_door::Peers`), which sites may open sockets (`origin::Origins`) and the abuse
//! limits (`limits::Limiter`, shared with `App`). They stay apart so that no file of
//! `http` and `App` import each other (`scripts/layers`).

use super::limits::Limiter;
use crate::access::RoomAccess;
use crate::accounts::Accounts;
use crate::chat::hooks::Hooks;
use crate::chat::{Chat, Transcripts};
use crate::config::Settings;
use crate::delivery::webhooks::{sender::Sender, Webhooks};
use crate::delivery::Delivery;
use crate::domain::limits::Limits;
use crate::domain::{AuthMode, RoomName};
use crate::events::Events;
use crate::files::Files;
use crate::lifecycle::Lifecycle;
use crate::notifications::Notifier;
use crate::presence::Presence;
use crate::realtime::Hub;
use crate::sockets::Sockets;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// Everything the handlers share, each part built once. Services that other services also
/// hold are `Arc`s (the one copy is shared); the rest are cheap handles of their own.
pub struct App {
    /// The settings the server started with (every section; `docs/SETTINGS.md`).
    pub settings: Settings,
    /// The message limits (`settings.limits()`, worked out once).
    pub limits: Limits,
    /// Whether a caller needs an identity (`settings.auth.mode`).
    pub auth_mode: AuthMode,
    /// The admin's bearer token, when one is set.
    pub admin_token: Option<String>,

    // Transports: what replicas share.
    pub db: DatabaseConnection,
    pub hub: Arc<dyn Hub>,
    pub events: Events,

    // Services.
    pub lifecycle: Lifecycle,
    pub access: Arc<RoomAccess>,
    /// What a reader asks of the chat: rooms, history, changes, unread, search.
    pub chat: Chat,
    /// The Flask original's transcripts, cached per room version.
    pub transcripts: Arc<Transcripts>,
    /// Every write to a room: posts, edits, reactions, members, deletes.
    pub delivery: Delivery,
    pub notifier: Notifier,
    pub presence: Presence,
    pub files: Files,
    pub webhooks: Arc<Webhooks>,
    /// The webhooks' sender, drained at the stop (`crate::finish`).
    pub sender: Arc<Sender>,
    /// Incoming hooks (`/hooks/<token>`).
    pub hooks: Arc<Hooks>,
    pub accounts: Arc<Accounts>,
    /// The live readers of rooms: sockets and event streams.
    pub sockets: Arc<Sockets>,
    /// The relay's one room (`webchat_room`).
    pub webchat_room: RoomName,

    /// The abuse limits, for handlers that count more than a request (sockets, upload
    /// bytes); the limit guards read the same one from its own state.
    pub limiter: Arc<Limiter>,
}

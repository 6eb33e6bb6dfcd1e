//! The HTTP layer: each mount's routes, thin (parse, call a service or the delivery
//! pipeline, answer), the responders of the one error type, and the request log. Nothing
//! below this layer knows of Rocket's requests. Every handler takes the one `App` state
//! (`app.rs`): the services it calls.
//!
//! Mounts: `page` (the chat page), `legacy` (the Flask original's `/api/chat/<room>`),
//! `chat_api` (the room API: rooms, history, edits, reactions), `ws` (the room socket), `sse` (a room's
//! changes as server-sent events), `presence`,
//! `notifications`, `files`, `search` (across rooms), `ops` (health and metrics), `webchat` (the relay's history and
//! page), `openapi`, `bench`.

mod app;
pub mod auth;
pub mod bench;
pub mod bots;
pub mod chat_api;
pub mod client;
mod error;
pub mod files;
pub mod front_door;
pub mod guards;
pub mod hook_posts;
pub mod hooks;
pub mod legacy;
mod legacy_body;
pub mod limits;
mod log;
pub mod notifications;
pub mod openapi;
pub mod ops;
pub mod origin;
pub mod page;
pub mod params;
pub mod presence;
pub mod search;
pub mod shutdown;
pub mod sse;
pub mod webchat;
pub mod webhooks;
pub mod ws;

pub use app::App;
pub use error::{json_catchers, plain_catchers, Plain};
pub use guards::{ClientAddr, JsonBody};
pub use log::RequestLog;

use crate::domain::{Error, Result, RoomName};
use rocket::request::FromParam;

/// One list per mount makes both its Rocket routes and its part of the OpenAPI document,
/// so neither can forget a route the other has.
macro_rules! mount {
    ($($route:ident),* $(,)?) => {
        pub fn routes() -> Vec<rocket::Route> {
            rocket::routes![$($route),*]
        }

        /// This mount's routes, for `/openapi.json`.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($route),*))]
        pub struct ApiDoc;
    };
}
pub(crate) use mount;

/// A room name in a path, checked as the domain says.
impl<'a> FromParam<'a> for RoomName {
    type Error = Error;

    fn from_param(param: &'a str) -> Result<Self, Self::Error> {
        RoomName::parse(param)
    }
}

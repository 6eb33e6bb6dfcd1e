//! The chat page (`/` and `/<room>`) and its assets. With `auth = "required"`, a visitor
//! who is not signed in gets the sign-in page instead (and comes back to the room once
//! signed in); a signed-in one chats under their own name.

use super::App;
use super::Plain;
use crate::config::Settings;
use crate::domain::{AuthMode, Caller, Error, RoomName};
use rocket::fs::{FileServer, NamedFile, Options};
use rocket::{get, routes, Route, State};
use rocket_dyn_templates::{context, Template};

pub const DEFAULT_ROOM: &str = "general";

pub fn routes() -> Vec<Route> {
    routes![index, room, jquery, favicon]
}

/// The page's own files under `/static`; a missing folder only means 404s.
pub fn assets(settings: &Settings) -> FileServer {
    FileServer::new(settings.page.static_dir.relative(), Options::Missing)
}

/// What the page may load and connect to: this origin only (its socket included), images
/// also as `blob:`/`data:` (a pasted file's preview), nothing inline, no frames. A message
/// that smuggled markup past the page's text-only rendering would still run nothing.
const PAGE_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page, with the headers that keep it to its own origin.
#[derive(rocket::Responder)]
pub struct Page {
    template: Template,
    policy: rocket::http::Header<'static>,
    referrer: rocket::http::Header<'static>,
}

impl From<Template> for Page {
    fn from(template: Template) -> Self {
        Page {
            template,
            policy: rocket::http::Header::new("Content-Security-Policy", PAGE_POLICY),
            referrer: rocket::http::Header::new("Referrer-Policy", "same-origin"),
        }
    }
}

fn page(room: &str, caller: Result<Caller, Error>) -> Page {
    // A session cookie that is no longer valid is the same as none: sign in again.
    let caller = caller.unwrap_or_default();
    let template = match (&caller.user, caller.mode) {
        (None, AuthMode::Required) => Template::render("signin", context! { room }),
        (user, _) => Template::render(
            "index",
            context! {
                room,
                auth: caller.mode,
                user_id: user.as_ref().map(|u| u.user_id.as_str()),
                username: user.as_ref().map(|u| u.username.as_str()),
            },
        ),
    };
    template.into()
}

#[get("/")]
fn index(caller: Result<Caller, Error>) -> Page {
    page(DEFAULT_ROOM, caller)
}

#[get("/<room>", rank = 20)]
fn room(room: Result<RoomName, Error>, caller: Result<Caller, Error>) -> Result<Page, Plain> {
    Ok(page(room?.as_str(), caller))
}

/// jQuery from the npm package (`npm ci`), never a copy in the repository, nor a CDN: the
/// page loads nothing from another origin.
#[get("/static/vendor/jquery.min.js")]
async fn jquery(app: &State<App>) -> Option<NamedFile> {
    NamedFile::open(app.settings.page.jquery_path.relative())
        .await
        .ok()
}

/// Browsers ask for it on every page; without this route it would open a room of that name.
#[get("/favicon.ico")]
fn favicon() -> rocket::http::Status {
    rocket::http::Status::NoContent
}

//! The chat page (`/` and `/<room>`) and its assets. With `auth = "required"`, a visitor
//! who is not signed in gets the sign-in page instead (and comes back to the room once
//! signed in); a signed-in one chats under their own name.

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
    FileServer::new(settings.static_dir.relative(), Options::Missing)
}

fn page(room: &str, caller: Result<Caller, Error>) -> Template {
    // A session cookie that is no longer valid is the same as none: sign in again.
    let caller = caller.unwrap_or_default();
    match (&caller.user, caller.mode) {
        (None, AuthMode::Required) => Template::render("signin", context! { room }),
        (user, _) => Template::render(
            "index",
            context! {
                room,
                user_id: user.as_ref().map(|u| u.user_id.as_str()),
                username: user.as_ref().map(|u| u.username.as_str()),
            },
        ),
    }
}

#[get("/")]
fn index(caller: Result<Caller, Error>) -> Template {
    page(DEFAULT_ROOM, caller)
}

#[get("/<room>", rank = 20)]
fn room(room: Result<RoomName, Error>, caller: Result<Caller, Error>) -> Result<Template, Plain> {
    Ok(page(room?.as_str(), caller))
}

/// jQuery from the npm package (`npm ci`), never a copy in the repository. When it is
/// not installed this is a 404 and the page loads it from a CDN instead.
#[get("/static/vendor/jquery.min.js")]
async fn jquery(settings: &State<Settings>) -> Option<NamedFile> {
    NamedFile::open(settings.jquery_path.relative()).await.ok()
}

/// Browsers ask for it on every page; without this route it would open a room of that name.
#[get("/favicon.ico")]
fn favicon() -> rocket::http::Status {
    rocket::http::Status::NoContent
}

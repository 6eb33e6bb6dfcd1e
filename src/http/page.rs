//! The chat page (`/` and `/<room>`) and its assets.

use super::Plain;
use crate::config::Settings;
use crate::domain::{Error, RoomName};
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

fn page(room: &str) -> Template {
    Template::render("index", context! { room })
}

#[get("/")]
fn index() -> Template {
    page(DEFAULT_ROOM)
}

#[get("/<room>", rank = 20)]
fn room(room: Result<RoomName, Error>) -> Result<Template, Plain> {
    Ok(page(room?.as_str()))
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

//! What every mount shares: the error type, catchers that keep error bodies to one line,
//! and the request log.

mod error;

pub use error::{Error, PlainLine, Result};

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Status;
use rocket::{catch, catchers, Catcher, Data, Request, Response};
use std::time::Instant;

/// Rocket's own failures (no route, a guard that gave up, a panic caught by Rocket) answer
/// with the same one-line text as our `Error`, instead of Rocket's HTML pages.
#[catch(default)]
fn default_catcher(status: Status, _req: &Request<'_>) -> PlainLine {
    let reason = match status.code {
        404 => "not found",
        413 => "request body too large",
        500 => "internal error",
        _ => status.reason_lossy(),
    };
    PlainLine(status, reason.to_string())
}

pub fn catchers() -> Vec<Catcher> {
    catchers![default_catcher]
}

/// One `info` line per request: method, path, status and time taken.
pub struct RequestLog;

#[rocket::async_trait]
impl Fairing for RequestLog {
    fn info(&self) -> Info {
        Info {
            name: "request log",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(Instant::now);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let started = req.local_cache(Instant::now);
        tracing::info!(
            method = %req.method(),
            path = %req.uri(),
            status = res.status().code,
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
}

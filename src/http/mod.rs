//! What every mount shares: the error type, catchers that keep error bodies to one line,
//! and the request log.

mod error;

pub use error::{speaks_json, Detail, Error, PlainLine, Result};

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Status;
use rocket::{catch, catchers, Catcher, Data, Request, Response};
use std::time::Instant;

/// Rocket's own failures (no route, a guard that gave up, a panic caught by Rocket) answer
/// with the same one-line text as our `Error`, instead of Rocket's HTML pages.
#[catch(default)]
fn default_catcher(status: Status, _req: &Request<'_>) -> Caught {
    let reason = match status.code {
        404 => "not found",
        413 => "request body too large",
        422 => "the body is not what this route takes",
        500 => "internal error",
        _ => status.reason_lossy(),
    };
    Caught(status, reason.to_string())
}

struct Caught(Status, String);

impl<'r> rocket::response::Responder<'r, 'static> for Caught {
    fn respond_to(self, req: &'r Request<'_>) -> rocket::response::Result<'static> {
        error::reason(req, self.0, self.1)
    }
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
        // The route's template, not the path: one series per route, however many rooms.
        let route = req.route().map_or("unmatched", |r| r.uri.path());
        let metrics = &crate::metrics::METRICS;
        metrics
            .requests
            .with_label_values(&[
                route,
                req.method().as_str(),
                res.status().code.to_string().as_str(),
            ])
            .inc();
        metrics
            .request_seconds
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            method = %req.method(),
            path = %req.uri(),
            status = res.status().code,
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
}

/// A JSON body, or a 400 that says what is wrong with it (instead of Rocket's bare 422).
pub fn json_body<T>(
    body: Result<rocket::serde::json::Json<T>, rocket::serde::json::Error<'_>>,
) -> Result<T> {
    match body {
        Ok(rocket::serde::json::Json(body)) => Ok(body),
        Err(rocket::serde::json::Error::Io(err)) => Err(Error::bad_request(format!(
            "could not read the body: {err}"
        ))),
        Err(rocket::serde::json::Error::Parse(_, err)) => {
            Err(Error::bad_request(format!("invalid JSON: {err}")))
        }
    }
}

//! How the one error type leaves: a status and a one-line reason. `{"detail": "<reason>"}`
//! by default, as FastAPI answers and the ChatFlow app reads; plain text where the route
//! says so with [`Plain`] (the Flask original's routes: `curl` users and the jQuery page
//! read the body as it is). Our own faults are logged with their details and answered
//! "internal error".

use super::client::GuardFailure;
use crate::domain::Error;
use rocket::http::{ContentType, Header, Status};
use rocket::response::{self, Responder, Response};
use rocket::{catch, catchers, Catcher, Request};
use std::io::Cursor;

fn status(err: &Error) -> Status {
    if let Error::Internal(detail) = err {
        tracing::error!(error = %detail, "internal error");
    }
    Status::from_code(err.status_code()).unwrap_or(Status::InternalServerError)
}

fn one_line(reason: &str) -> String {
    reason.replace(['\r', '\n'], " ")
}

fn json(status: Status, reason: &str) -> response::Result<'static> {
    let body = serde_json::json!({ "detail": one_line(reason) }).to_string();
    Response::build()
        .status(status)
        .header(ContentType::JSON)
        .sized_body(body.len(), Cursor::new(body))
        .ok()
}

fn plain(status: Status, reason: &str) -> response::Result<'static> {
    let mut body = one_line(reason);
    body.push('\n');
    Response::build()
        .status(status)
        .header(ContentType::new("text", "plain").with_params(("charset", "utf-8")))
        .sized_body(body.len(), Cursor::new(body))
        .ok()
}

/// The headers an error brings: when to come back after a 429, how to sign in after a
/// 401.
fn with_headers(err: &Error, response: response::Result<'static>) -> response::Result<'static> {
    let mut response = response?;
    match err {
        Error::TooManyRequests {
            retry_after_secs, ..
        } => {
            response.set_header(Header::new("Retry-After", retry_after_secs.to_string()));
        }
        Error::Unauthorized(_) => {
            response.set_header(Header::new("WWW-Authenticate", "Bearer"));
        }
        _ => {}
    }
    Ok(response)
}

impl<'r> Responder<'r, 'static> for Error {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        with_headers(&self, json(status(&self), &self.reason()))
    }
}

/// The same error, answered as one line of plain text.
#[derive(Debug)]
pub struct Plain(pub Error);

impl From<Error> for Plain {
    fn from(err: Error) -> Self {
        Plain(err)
    }
}

impl<'r> Responder<'r, 'static> for Plain {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        with_headers(&self.0, plain(status(&self.0), &self.0.reason()))
    }
}

/// Rocket's own failures (no route, a guard that gave up, a panic caught by Rocket), in
/// the words of our errors instead of Rocket's HTML pages.
fn caught_reason(status: Status) -> &'static str {
    match status.code {
        404 => "not found",
        413 => "request body too large",
        422 => "the body is not what this route takes",
        500 => "internal error",
        _ => status.reason_lossy(),
    }
}

/// What a catcher answers: the status Rocket gave, in JSON or plain text.
struct StatusOnly(Status, bool);

impl<'r> Responder<'r, 'static> for StatusOnly {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let StatusOnly(status, as_json) = self;
        if as_json {
            json(status, caught_reason(status))
        } else {
            plain(status, caught_reason(status))
        }
    }
}

#[catch(default)]
fn json_catcher(status: Status, req: &Request<'_>) -> Result<Error, StatusOnly> {
    // A guard that failed left its reason.
    GuardFailure::take(req).ok_or(StatusOnly(status, true))
}

#[catch(default)]
fn plain_catcher(status: Status, req: &Request<'_>) -> Result<Plain, StatusOnly> {
    GuardFailure::take(req)
        .map(Plain)
        .ok_or(StatusOnly(status, false))
}

/// For the JSON mounts (`/api`, `/ws`).
pub fn json_catchers() -> Vec<Catcher> {
    catchers![json_catcher]
}

/// For the page and the legacy routes.
pub fn plain_catchers() -> Vec<Catcher> {
    catchers![plain_catcher]
}

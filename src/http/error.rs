//! The one error type of the server. Every handler returns `Result<_, Error>`, and every
//! error leaves as a status with a one-line reason, so nothing ever turns into a panic or
//! a 500: plain text on the legacy routes (`curl` users and the jQuery page read it as it
//! is), `{"detail": "<reason>"}` on the ChatFlow ones, whose app reads `detail`.

use rocket::http::{ContentType, Status};
use rocket::response::{self, Responder, Response};
use rocket::Request;
use std::io::Cursor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or fails validation; nothing was stored.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotFound(String),
    /// Something with that id exists already.
    #[error("{0}")]
    Conflict(String),
    /// The database (or another backing service) cannot be reached right now.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Error::BadRequest(reason.into())
    }

    pub fn not_found(reason: impl Into<String>) -> Self {
        Error::NotFound(reason.into())
    }

    pub fn status(&self) -> Status {
        match self {
            Error::BadRequest(_) => Status::BadRequest,
            Error::PayloadTooLarge(_) => Status::PayloadTooLarge,
            Error::UnsupportedMediaType(_) => Status::UnsupportedMediaType,
            Error::NotFound(_) => Status::NotFound,
            Error::Conflict(_) => Status::Conflict,
            Error::Unavailable(_) => Status::ServiceUnavailable,
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        // Every database failure a request can meet at run time is the database being
        // away or overloaded (schema problems stop the server at start-up instead), so
        // the caller is told to retry rather than handed a 500.
        tracing::warn!(error = %err, "database error");
        Error::Unavailable("database unavailable, try again".into())
    }
}

/// A status with a one-line plain-text body: the reason, then a newline for terminals.
pub struct PlainLine(pub Status, pub String);

impl<'r> Responder<'r, 'static> for PlainLine {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut body = self.1.replace(['\r', '\n'], " ");
        body.push('\n');
        Response::build()
            .status(self.0)
            .header(ContentType::new("text", "plain").with_params(("charset", "utf-8")))
            .sized_body(body.len(), Cursor::new(body))
            .ok()
    }
}

/// A status with `{"detail": "<reason>"}`, as FastAPI answers, for the ChatFlow routes.
pub struct Detail(pub Status, pub String);

impl<'r> Responder<'r, 'static> for Detail {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = serde_json::json!({ "detail": self.1.replace(['\r', '\n'], " ") }).to_string();
        Response::build()
            .status(self.0)
            .header(ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body))
            .ok()
    }
}

/// A reason, in the form the route's clients read: see the module comment.
pub fn reason(req: &Request<'_>, status: Status, reason: String) -> response::Result<'static> {
    if speaks_json(req.uri().path().as_str()) {
        Detail(status, reason).respond_to(req)
    } else {
        PlainLine(status, reason).respond_to(req)
    }
}

/// The legacy surface is the page (`/`, `/<room>`, `/static/...`) and
/// `/api/chat/<room>`; everything else under `/api`, and the sockets, is ChatFlow's.
pub fn speaks_json(path: &str) -> bool {
    let mut segments = path.trim_start_matches('/').split('/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("api"), Some("chat"), Some(room), None) => crate::chat::is_reserved(room),
        (Some("api" | "ws" | "metrics" | "openapi.json"), ..) => true,
        _ => false,
    }
}

impl<'r> Responder<'r, 'static> for Error {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        reason(req, self.status(), self.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

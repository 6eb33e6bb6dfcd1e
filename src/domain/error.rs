//! The one error type of the server. Every layer returns it; `http` turns it into a status
//! with a one-line reason (plain text on the legacy routes, `{"detail"}` on the others).
//! Each variant says whose move it is: the client's (fix the request), nobody's right now
//! (`Unavailable`: try again), or ours (`Internal`: a bug, logged, answered 500).

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed, fails validation, or holds a value the database refuses;
    /// nothing was stored. Sending it again cannot succeed.
    #[error("{0}")]
    BadRequest(String),
    /// No identity, or one that is not valid: sign in.
    #[error("{0}")]
    Unauthorized(String),
    /// An identity that may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotFound(String),
    /// Something with that id exists already.
    #[error("{0}")]
    Conflict(String),
    /// Over a rate limit: the same request may succeed after `retry_after_secs`.
    #[error("{reason}")]
    TooManyRequests {
        reason: String,
        retry_after_secs: u64,
    },
    /// The database (or another backing service) cannot be reached or is busy right now:
    /// the same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// Our own fault (a query the database calls wrong, a row we cannot read back): the
    /// caller is told little, the log tells everything.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Error::BadRequest(reason.into())
    }

    pub fn not_found(reason: impl Into<String>) -> Self {
        Error::NotFound(reason.into())
    }

    /// The HTTP status this error is answered with.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::PayloadTooLarge(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::TooManyRequests { .. } => 429,
            Error::Internal(_) => 500,
            Error::Unavailable(_) => 503,
        }
    }

    /// What the client is told: the reason, except for our own faults, whose details are
    /// for the log only.
    pub fn reason(&self) -> String {
        match self {
            Error::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

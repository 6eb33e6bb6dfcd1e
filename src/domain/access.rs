//! Who is calling, as far as the rules care, and the rules that depend on it. In open mode
//! names and user ids are whatever a client writes, so they prove nothing: only the admin
//! token does, and everything destructive needs it.

use crate::domain::Error;

/// The caller of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The request carried the admin token.
    pub admin: bool,
    /// The request carried a bearer token (the admin's or not).
    pub presented_token: bool,
    /// The server has an admin token at all.
    pub admin_configured: bool,
}

impl Caller {
    /// Only an admin may `action` (said as "delete a room"): 403 with the reason when no
    /// admin token is configured or the one sent is not it, 401 when none was sent.
    pub fn require_admin(&self, action: &str) -> Result<(), Error> {
        match self {
            Caller { admin: true, .. } => Ok(()),
            Caller {
                admin_configured: false,
                ..
            } => Err(Error::Forbidden(format!(
                "only an admin may {action}, and this server has no admin token (set ADMIN_TOKEN)"
            ))),
            Caller {
                presented_token: false,
                ..
            } => Err(Error::Unauthorized(format!(
                "only an admin may {action}: send the admin token as Authorization: Bearer"
            ))),
            _ => Err(Error::Forbidden(format!(
                "only an admin may {action}, and that token is not the admin token"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_admin_token_may_destroy() {
        let admin = Caller {
            admin: true,
            presented_token: true,
            admin_configured: true,
        };
        assert!(admin.require_admin("delete a room").is_ok());
        let nobody_can = Caller::default();
        let err = nobody_can.require_admin("delete a room").unwrap_err();
        assert_eq!(err.status_code(), 403);
        assert!(err.to_string().contains("ADMIN_TOKEN"), "{err}");
        let anonymous = Caller {
            admin_configured: true,
            ..Caller::default()
        };
        assert_eq!(anonymous.require_admin("x").unwrap_err().status_code(), 401);
        let wrong = Caller {
            presented_token: true,
            admin_configured: true,
            admin: false,
        };
        assert_eq!(wrong.require_admin("x").unwrap_err().status_code(), 403);
    }
}

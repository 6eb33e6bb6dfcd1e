//! Who is calling, and the rules that depend on it: one place, so every door obeys the
//! same ones.
//!
//! Two modes (`auth`). In `open` mode (the seeds' way) names and user ids are whatever a
//! client writes; they prove nothing, so only the admin token (or a signed-in admin) may
//! destroy. In `required` mode every call carries an identity (a token or a session),
//! which wins over any name or id the client writes, and a call without one is 401.
//! In both modes a signed-in user is who their token says.

use crate::domain::{Error, Peer};
use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Open,
    Required,
}

/// Who may read a room: anyone the mode lets in, or only its owner and members (a private
/// room), or only its two people (a direct room). Stored as its word (the `room` table's
/// `visibility` column: the derive maps it, and nothing else of the database is here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, EnumIter, DeriveActiveEnum)]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Visibility {
    #[sea_orm(string_value = "public")]
    Public,
    #[sea_orm(string_value = "private")]
    Private,
    #[sea_orm(string_value = "direct")]
    Direct,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Direct => "direct",
        }
    }
}

/// The caller of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub mode: AuthMode,
    /// Who the caller proved to be (a valid token or session), if anyone.
    pub user: Option<Peer>,
    /// The admin token, or a signed-in user named in `admins`.
    pub admin: bool,
    /// The request carried a bearer token (the admin's or not).
    pub presented_token: bool,
    /// The server has an admin token at all.
    pub admin_configured: bool,
    /// When the identity's token expires (Unix seconds); a socket closes then.
    pub expires_at: Option<u64>,
    /// The generation of the identity's token, when it is one of ours: an open socket
    /// asks at each ping whether the account has revoked it since.
    pub token_generation: Option<u64>,
    /// A bot's rooms: the only ones it may read and post in (None: anyone else, who is
    /// held to the rooms' own rules only).
    pub rooms: Option<std::sync::Arc<[String]>>,
}

impl Caller {
    /// A bot may use its own rooms only: any other is 403, whether it exists or not.
    pub fn may_use_room(&self, room: &str) -> Result<(), Error> {
        match &self.rooms {
            Some(rooms) if !rooms.iter().any(|r| r == room) => Err(Error::Forbidden(format!(
                "this bot may use its own rooms only, not {room}"
            ))),
            _ => Ok(()),
        }
    }

    /// What a bot may not do at all (make rooms, direct conversations, hooks): 403.
    pub fn not_a_bot(&self, action: &str) -> Result<(), Error> {
        match self.rooms {
            Some(_) => Err(Error::Forbidden(format!("a bot may not {action}"))),
            None => Ok(()),
        }
    }

    /// Keeps what a bot may see of a list, by each item's room.
    pub fn keep_own_rooms<T>(&self, items: &mut Vec<T>, room: impl Fn(&T) -> Option<&str>) {
        if let Some(rooms) = &self.rooms {
            items.retain(|item| room(item).is_some_and(|r| rooms.iter().any(|own| own == r)));
        }
    }

    /// In `required` mode, a caller with no identity is turned away (401); in `open` mode
    /// anyone may read and write.
    pub fn require_identity(&self) -> Result<Option<&Peer>, Error> {
        match (&self.user, self.mode) {
            (Some(user), _) => Ok(Some(user)),
            (None, AuthMode::Open) => Ok(None),
            (None, AuthMode::Required) if self.admin => Ok(None),
            (None, AuthMode::Required) => Err(Error::Unauthorized(
                "sign in first: send a token as Authorization: Bearer, or log in".into(),
            )),
        }
    }

    /// The name and user id a message is posted under: the caller's own when signed in
    /// (whatever the client wrote), else what the client claims (open mode only).
    pub fn speaker(
        &self,
        claimed_name: Option<String>,
        claimed_id: Option<String>,
    ) -> Result<(Option<String>, Option<String>), Error> {
        match self.require_identity()? {
            Some(user) => Ok((Some(user.username.clone()), Some(user.user_id.clone()))),
            None => Ok((claimed_name, claimed_id)),
        }
    }

    /// Acting as `user_id` (a socket's path, one's notifications, presence, an upload's
    /// `uploaded_by`): with an identity it must be one's own (403); in open mode without
    /// one, any id is taken as claimed.
    pub fn acts_as(&self, user_id: &str) -> Result<(), Error> {
        match self.require_identity()? {
            Some(user) if user.user_id == user_id => Ok(()),
            Some(_) if self.admin => Ok(()),
            Some(_) => Err(Error::Forbidden(format!(
                "you are signed in as {}, not {user_id}",
                self.user.as_ref().map_or("", |u| u.user_id.as_str())
            ))),
            None => Ok(()),
        }
    }

    /// Only an admin may `action` (said as "delete a room"): 403 with the reason when no
    /// admin token is configured or the one sent is not it, 401 when none was sent.
    pub fn require_admin(&self, action: &str) -> Result<(), Error> {
        self.require_one_of(action, "an admin", &[])
    }

    /// Only `who` (said as "its author or an admin"), that is the signed-in users among
    /// `owners` or an admin, may `action`.
    pub fn require_one_of(
        &self,
        action: &str,
        who: &str,
        owners: &[Option<&str>],
    ) -> Result<(), Error> {
        if self.admin {
            return Ok(());
        }
        if let Some(user) = &self.user {
            if owners.iter().flatten().any(|owner| *owner == user.user_id) {
                return Ok(());
            }
            return Err(Error::Forbidden(format!("only {who} may {action}")));
        }
        if self.mode == AuthMode::Required {
            self.require_identity()?;
        }
        if !self.admin_configured && owners.iter().flatten().next().is_none() {
            return Err(Error::Forbidden(format!(
                "only {who} may {action}, and this server has no admin token (set ADMIN_TOKEN)"
            )));
        }
        if !self.presented_token {
            return Err(Error::Unauthorized(format!(
                "only {who} may {action}: sign in, or send the admin token as Authorization: Bearer"
            )));
        }
        Err(Error::Forbidden(format!(
            "only {who} may {action}, and that token is not the admin token"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Option<Peer> {
        Some(Peer {
            user_id: id.into(),
            username: id.to_uppercase(),
        })
    }

    #[test]
    fn only_the_admin_token_may_destroy_in_open_mode() {
        let admin = Caller {
            admin: true,
            presented_token: true,
            admin_configured: true,
            ..Caller::default()
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
            ..Caller::default()
        };
        assert_eq!(wrong.require_admin("x").unwrap_err().status_code(), 403);
    }

    /// Who may delete a message by `ann` in a room owned by `olga`: a table of callers.
    #[test]
    fn authors_owners_and_admins() {
        let owners = [Some("ann"), Some("olga")];
        let rule = |caller: &Caller| {
            caller
                .require_one_of(
                    "delete a message",
                    "its author, the room's owner or an admin",
                    &owners,
                )
                .map_err(|e| e.status_code())
        };
        for mode in [AuthMode::Open, AuthMode::Required] {
            let as_user = |id| Caller {
                mode,
                user: user(id),
                admin_configured: true,
                ..Caller::default()
            };
            assert_eq!(rule(&as_user("ann")), Ok(()), "{mode:?}: the author");
            assert_eq!(rule(&as_user("olga")), Ok(()), "{mode:?}: the owner");
            assert_eq!(rule(&as_user("bob")), Err(403), "{mode:?}: another user");
            let anonymous = Caller {
                mode,
                admin_configured: true,
                ..Caller::default()
            };
            assert_eq!(rule(&anonymous), Err(401), "{mode:?}: anonymous");
            let admin = Caller {
                mode,
                admin: true,
                ..Caller::default()
            };
            assert_eq!(rule(&admin), Ok(()), "{mode:?}: an admin");
        }
    }

    #[test]
    fn the_identity_wins_over_what_a_client_writes() {
        let required = Caller {
            mode: AuthMode::Required,
            ..Caller::default()
        };
        assert_eq!(required.speaker(None, None).unwrap_err().status_code(), 401);
        assert_eq!(required.acts_as("x").unwrap_err().status_code(), 401);
        let ann = Caller {
            mode: AuthMode::Required,
            user: user("ann"),
            ..Caller::default()
        };
        assert_eq!(
            ann.speaker(Some("mallory".into()), Some("bob".into()))
                .unwrap(),
            (Some("ANN".into()), Some("ann".into()))
        );
        assert!(ann.acts_as("ann").is_ok());
        assert_eq!(ann.acts_as("bob").unwrap_err().status_code(), 403);
        let open = Caller::default();
        assert_eq!(
            open.speaker(Some("zoe".into()), None).unwrap(),
            (Some("zoe".into()), None),
            "open mode takes claims"
        );
        assert!(open.acts_as("anyone").is_ok());
    }
}

//! Who may read and write a room, at every door (the legacy poll and post, the JSON API,
//! sockets): the one place these rules live.

use crate::domain::{Caller, Error, NewMessage, RoomName};

/// Reading a room's messages (a poll, a long-poll, history, search, a socket).
pub fn may_read(caller: &Caller, _room: &RoomName) -> Result<(), Error> {
    caller.require_identity().map(|_| ())
}

/// Posting to a room. A signed-in caller posts as themselves, whatever name and id the
/// message claims.
pub fn may_post(caller: &Caller, room: &RoomName, message: &mut NewMessage) -> Result<(), Error> {
    may_read(caller, room)?;
    if let Some(user) = caller.require_identity()? {
        message.username = user.username.clone();
        message.user_id = Some(user.user_id.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::new_message;
    use crate::domain::{AuthMode, Limits, Peer};

    #[test]
    fn the_identity_wins_at_the_door() {
        let room = RoomName::parse("r").unwrap();
        let mut claimed = new_message(Some("mallory"), Some("hi"), &Limits::default()).unwrap();
        let required = Caller {
            mode: AuthMode::Required,
            ..Caller::default()
        };
        assert_eq!(
            may_post(&required, &room, &mut claimed)
                .unwrap_err()
                .status_code(),
            401
        );
        assert_eq!(may_read(&required, &room).unwrap_err().status_code(), 401);
        let ann = Caller {
            mode: AuthMode::Required,
            user: Some(Peer {
                user_id: "id-ann".into(),
                username: "Ann".into(),
            }),
            ..Caller::default()
        };
        may_post(&ann, &room, &mut claimed).unwrap();
        assert_eq!(
            (claimed.username.as_str(), claimed.user_id.as_deref()),
            ("Ann", Some("id-ann"))
        );
        let mut open = new_message(Some("zoe"), Some("hi"), &Limits::default()).unwrap();
        may_post(&Caller::default(), &room, &mut open).unwrap();
        assert_eq!(open.username, "zoe", "open mode takes the claim");
    }
}

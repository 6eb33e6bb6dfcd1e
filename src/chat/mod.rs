//! The chat's rules, callable without HTTP: rooms (which exist, creating, sharing and
//! deleting them), the history of a room, and the transcripts the legacy poll reads from
//! memory. Who may read a room is `access`'s; writing a message is `delivery`'s: it goes
//! through the one pipeline.

pub mod changes;
pub mod hooks;
pub mod messages;
pub mod reactions;
pub mod read_state;
pub mod rooms;
pub mod search;
pub mod transcript;

pub use rooms::Rooms;
pub use transcript::{Encoding, Form, Transcript, Transcripts, View};

use crate::access::RoomAccess;
use crate::domain::{names, Caller, Error};

/// Who acts (reacts, marks a room read, reads their unread counts): a signed-in caller is
/// themselves (a `user_id` naming anyone else is 403);
/// in open mode an anonymous caller names itself with `user_id`, an account's only with
/// its token (401), as at every door that takes a user id.
pub async fn acting_user(
    access: &RoomAccess,
    caller: &Caller,
    claimed: Option<&str>,
) -> Result<String, Error> {
    match (caller.require_identity()?, claimed) {
        (Some(user), None) => Ok(user.user_id.clone()),
        (Some(user), Some(claimed)) if claimed == user.user_id => Ok(user.user_id.clone()),
        (Some(user), Some(claimed)) => Err(Error::Forbidden(format!(
            "you are signed in as {}, not {claimed}",
            user.user_id
        ))),
        (None, Some(claimed)) => {
            let user_id = names::user_id(claimed)?;
            access.may_act_as(caller, &user_id).await?;
            Ok(user_id)
        }
        (None, None) => Err(Error::bad_request(
            "say who you are: sign in, or name yourself with user_id",
        )),
    }
}

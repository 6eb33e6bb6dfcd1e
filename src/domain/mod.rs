//! The ground every other layer stands on: what a name, a message and a limit are, the one
//! error type, time as stored, and three small mechanisms (lock recovery, random ids,
//! back-off). Pure: no I/O, no framework, nothing from a layer above.

pub mod access;
pub mod error;
pub mod file;
pub mod limits;
pub mod message;
pub mod names;
pub mod notification;
pub mod room;
pub mod seq;
pub mod sync;
pub mod time;

pub use access::{AuthMode, Caller, Visibility};
pub use error::{Error, Result};
pub use file::File;
pub use limits::Limits;
pub use message::{
    Message, MessageJson, MessageType, NewMessage, Peer, ReactionCount, ReplyPreview, Shape,
};
pub use names::RoomName;
pub use notification::{NotifType, Notification};
pub use room::{Member, Room};
pub use time::now_utc;

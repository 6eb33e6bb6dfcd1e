//! The chat's rules, callable without HTTP: rooms (which exist, creating, sharing and
//! deleting them), the history of a room, and the transcripts the legacy poll reads from
//! memory. Who may read a room is `access`'s; writing a message is `delivery`'s: it goes
//! through the one pipeline.

pub mod messages;
pub mod reactions;
pub mod rooms;
pub mod transcript;

pub use rooms::Rooms;
pub use transcript::{Transcript, Transcripts, View};

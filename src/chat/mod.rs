//! The chat's rules, callable without HTTP: who may read and write a room (`access`),
//! rooms (which exist, creating and deleting them), the history of a room, and the
//! transcripts the legacy poll reads from memory.
//! Writing a message is `delivery`'s: it goes through the one pipeline.

pub mod access;
pub mod messages;
pub mod rooms;
pub mod transcript;

pub use rooms::Rooms;
pub use transcript::{Transcript, Transcripts, View};

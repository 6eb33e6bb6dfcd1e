//! Real-time delivery: the hub every committed message is published to, and what listens
//! to it (long-polls today).

mod hub;

pub use hub::{Event, Hub, InProcessHub};

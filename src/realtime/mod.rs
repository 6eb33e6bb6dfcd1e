//! Real-time delivery: the hub every committed message is published to, and what listens
//! to it: long-polls of the legacy API and WebSockets.

mod hub;
mod order;
mod redis_hub;
pub mod ws;

pub use hub::{
    user_channel, Event, Hub, HubState, InProcessHub, Peer, Subscription, MESSAGE_CAPACITY,
};
pub use redis_hub::RedisHub;

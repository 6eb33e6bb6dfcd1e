//! The hub: a pure transport of events to readers. In one process it is a pair of
//! broadcast channels per room; with Redis, every event also goes to the other replicas
//! and theirs come in. It knows nothing of the database, transcripts or order: what it
//! brings in from elsewhere it hands to whoever started it (`delivery`), which decides
//! what readers get.

mod hub;
mod redis_hub;

pub use hub::{user_channel, Event, Hub, HubState, InProcessHub, LocalFanout, Subscription};
pub use redis_hub::{Arrival, RedisHub};

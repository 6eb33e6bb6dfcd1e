//! The hub: a pure transport of events to readers. In one process it is a pair of
//! broadcast channels per room; with Redis, every event also goes to the other replicas
//! and theirs come in. It knows nothing of the database, transcripts or order: what it
//! brings in from elsewhere it hands to whoever started it (`delivery`), which decides
//! what readers get. `frames` is the sockets' wire protocol, as types.

pub mod frames;
mod hub;
mod redis_hub;
mod redis_source;

pub use frames::{ClientFrame, RelayFrame, ServerFrame};
pub use hub::{user_channel, Event, Hub, HubState, InProcessHub, LocalFanout, Subscription};
pub use redis_hub::{Arrival, RedisHub};
pub use redis_source::RedisSource;

//! The one path of a message, from whatever door it came in by to every reader on every
//! replica: `pipeline.rs`, top to bottom; `webhooks/` carries it on to receivers elsewhere. `order.rs` is the record that keeps each room in
//! id order when several replicas write.

mod order;
mod pipeline;
pub mod webhooks;

pub use pipeline::Delivery;

//! The one path of a message, from whatever door it came in by to every reader on every
//! replica: `pipeline.rs`, top to bottom. `order.rs` is the record that keeps each room in
//! id order when several replicas write.

mod order;
mod pipeline;

pub use pipeline::Delivery;

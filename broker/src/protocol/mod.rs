//! The Kafka wire protocol: framing, the listener, request dispatch and API
//! version negotiation. Message types come from the `kafka-protocol` crate;
//! record batches pass through as bytes.

pub mod codec;
pub mod dispatch;
pub mod outgoing;
pub mod server;
pub mod versions;

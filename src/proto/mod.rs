//! The sans-IO core. Everything here takes bytes, messages and `now`, and
//! returns responses, packets and deadlines. Nothing here imports tokio.

pub mod rtsp;

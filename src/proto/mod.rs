//! The sans-IO core. Everything here takes bytes, messages and `now`, and
//! returns responses, packets and deadlines. Nothing here imports tokio.

pub mod auth;
pub mod clock;
pub mod depacketize;
pub mod error;
pub mod limit;
pub mod live;
pub mod measure;
pub mod pacer;
pub mod packetize;
pub mod redirect;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod sender;
pub mod session;
pub mod setup;
pub mod stats;
pub mod target;
pub mod track_map;
pub mod tunnel;
pub mod upstream;

//! Media files: demuxers that turn clips into what the packetizers cut, and
//! the catalog that maps request paths onto files under the media root.
//! The demuxers build [`Clip`]s' tracks; the catalog picks the demuxer.

pub mod adts;
pub mod annexb;
pub mod catalog;
pub mod clip;
pub(crate) mod frames;
pub mod mp3;
pub mod mp4;
pub mod wav;

pub use catalog::Catalog;
pub use clip::{Clip, ClipOptions};

/// Why a clip cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no such clip")]
    NotFound,
    #[error("unsupported media: {0}")]
    Unsupported(String),
    #[error("clip too large: {0} bytes of samples (limit {1})")]
    TooLarge(u64, u64),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<MediaError> for crate::proto::error::Error {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::NotFound => Self::NotFound,
            MediaError::Unsupported(s) => Self::UnsupportedMedia(s),
            MediaError::TooLarge(..) => Self::UnsupportedMedia(e.to_string()),
            MediaError::Io(_) => Self::NotFound,
        }
    }
}

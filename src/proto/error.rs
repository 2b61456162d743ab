//! Errors of the control plane, each mapped to its RTSP status code
//! (RFC 2326 §7.1.1, §11). The layer that knows the peer and session adds
//! them when it logs.

use super::limit::Limit;
use super::rtsp::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("not found")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("unsupported media: {0}")]
    UnsupportedMedia(String),
    /// An SDP none of whose tracks a relay channel forwards (415 with a
    /// reason phrase naming what it does).
    #[error("unsupported media: {0}")]
    NoSupportedTrack(String),
    #[error("request URI too long")]
    UriTooLong,
    #[error("session not found")]
    SessionNotFound,
    #[error("method not valid in state {0}")]
    InvalidState(&'static str),
    #[error("invalid range: {0}")]
    InvalidRange(String),
    #[error("only aggregate operation allowed")]
    OnlyAggregate,
    #[error("unsupported transport: {0}")]
    UnsupportedTransport(String),
    #[error("method not implemented")]
    NotImplemented,
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// A pulled channel's upstream is down (an outage): 503 until it is
    /// back.
    #[error("upstream down")]
    UpstreamDown,
    /// A pulled channel's upstream gave no SDP within `start_timeout`
    /// (504).
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("option not supported: {0}")]
    OptionNotSupported(String),
    #[error("parameter not understood")]
    ParameterNotUnderstood,
    #[error("internal error: {0}")]
    Internal(String),
    /// A SETUP names client ports another session of the same client
    /// already receives on: two streams would share one socket (two
    /// listeners behind one NAT address, or a neighbour taking a stream).
    #[error("client ports already in use by another session")]
    PortsInUse,
    /// A UDP transport asked for on an RTSPS connection: media would go in
    /// clear after a TLS-protected control session (461).
    #[error("plaintext RTP must not follow a TLS control session")]
    PlaintextAfterTls,
    /// Refused at one of the server's limits (503 with `Retry-After`).
    #[error("limit {} reached", .0.name())]
    LimitReached(Limit),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::UnsupportedMedia(_) | Self::NoSupportedTrack(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::UriTooLong => StatusCode::REQUEST_URI_TOO_LARGE,
            Self::SessionNotFound => StatusCode::SESSION_NOT_FOUND,
            Self::InvalidState(_) => StatusCode::METHOD_NOT_VALID_IN_THIS_STATE,
            Self::InvalidRange(_) => StatusCode::INVALID_RANGE,
            Self::OnlyAggregate => StatusCode::ONLY_AGGREGATE_OPERATION_ALLOWED,
            Self::UnsupportedTransport(_) => StatusCode::UNSUPPORTED_TRANSPORT,
            Self::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::OptionNotSupported(_) => StatusCode::OPTION_NOT_SUPPORTED,
            Self::ParameterNotUnderstood => StatusCode::PARAMETER_NOT_UNDERSTOOD,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::PortsInUse => StatusCode::BAD_REQUEST,
            Self::PlaintextAfterTls => StatusCode::UNSUPPORTED_TRANSPORT,
            Self::LimitReached(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The reason phrase to answer with, where the standard one would not
    /// tell the client what went wrong.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::PortsInUse => Some("Client Ports Already In Use"),
            Self::UpstreamDown => Some("Upstream Down, Retrying"),
            Self::UpstreamTimeout => Some("Upstream Did Not Answer In Time"),
            Self::NoSupportedTrack(_) => Some(super::relay::offer::NO_SUPPORTED_TRACK_REASON),
            Self::PlaintextAfterTls => {
                Some("Plaintext RTP Must Not Follow A TLS Control Session; Use Interleaved")
            }
            _ => None,
        }
    }
}

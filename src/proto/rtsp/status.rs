//! RTSP status codes (RFC 2326 §7.1.1, §11) and their reason phrases.

use std::fmt;

/// A three-digit RTSP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode(pub u16);

impl StatusCode {
    pub const OK: Self = Self(200);
    pub const MOVED_TEMPORARILY: Self = Self(302);
    pub const BAD_REQUEST: Self = Self(400);
    pub const UNAUTHORIZED: Self = Self(401);
    pub const FORBIDDEN: Self = Self(403);
    pub const NOT_FOUND: Self = Self(404);
    pub const METHOD_NOT_ALLOWED: Self = Self(405);
    pub const REQUEST_TIMEOUT: Self = Self(408);
    pub const REQUEST_ENTITY_TOO_LARGE: Self = Self(413);
    pub const REQUEST_URI_TOO_LARGE: Self = Self(414);
    pub const UNSUPPORTED_MEDIA_TYPE: Self = Self(415);
    pub const PARAMETER_NOT_UNDERSTOOD: Self = Self(451);
    pub const NOT_ENOUGH_BANDWIDTH: Self = Self(453);
    pub const SESSION_NOT_FOUND: Self = Self(454);
    pub const METHOD_NOT_VALID_IN_THIS_STATE: Self = Self(455);
    pub const HEADER_FIELD_NOT_VALID: Self = Self(456);
    pub const INVALID_RANGE: Self = Self(457);
    pub const AGGREGATE_OPERATION_NOT_ALLOWED: Self = Self(459);
    pub const ONLY_AGGREGATE_OPERATION_ALLOWED: Self = Self(460);
    pub const UNSUPPORTED_TRANSPORT: Self = Self(461);
    pub const DESTINATION_UNREACHABLE: Self = Self(462);
    pub const INTERNAL_SERVER_ERROR: Self = Self(500);
    pub const NOT_IMPLEMENTED: Self = Self(501);
    pub const SERVICE_UNAVAILABLE: Self = Self(503);
    pub const GATEWAY_TIMEOUT: Self = Self(504);
    pub const VERSION_NOT_SUPPORTED: Self = Self(505);
    pub const OPTION_NOT_SUPPORTED: Self = Self(551);

    /// The reason phrase of RFC 2326 §7.1.1.
    pub fn reason(self) -> &'static str {
        match self.0 {
            200 => "OK",
            302 => "Moved Temporarily",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Large",
            415 => "Unsupported Media Type",
            451 => "Parameter Not Understood",
            453 => "Not Enough Bandwidth",
            454 => "Session Not Found",
            455 => "Method Not Valid in This State",
            456 => "Header Field Not Valid for Resource",
            457 => "Invalid Range",
            459 => "Aggregate Operation Not Allowed",
            460 => "Only Aggregate Operation Allowed",
            461 => "Unsupported Transport",
            462 => "Destination Unreachable",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            504 => "Gateway Time-out",
            505 => "RTSP Version Not Supported",
            551 => "Option not supported",
            _ => "Unknown",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

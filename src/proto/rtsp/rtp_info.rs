//! The RTP-Info header (RFC 2326 §12.33). PLACEHOLDER.

//! The Session header (RFC 2326 §12.37). PLACEHOLDER.

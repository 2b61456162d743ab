//! The Transport header (RFC 2326 §12.39). PLACEHOLDER.

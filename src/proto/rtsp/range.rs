//! The Range header, npt form (RFC 2326 §3.6, §12.29). PLACEHOLDER.

//! The RTSP request parser and the typed headers a request reaches, on
//! arbitrary bytes: a status or a request, never a panic. A parser kept
//! across reads (as a connection keeps one) answers what a fresh one does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtspd::proto::rtsp::parse::{parse, Limits, Parsed, RequestParser};
use rtspd::proto::rtsp::range::NptRange;
use rtspd::proto::rtsp::transport::parse_transports;
use rtspd::proto::target::parse_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut rest = data;
    // Pipelined requests, as a connection reads them.
    while let Ok(parsed) = parse(rest, &limits) {
        let consumed = match parsed {
            Parsed::Incomplete => break,
            Parsed::Interleaved { consumed, .. } => consumed,
            Parsed::Request { request, consumed } => {
                let _ = parse_target(&request.uri, limits.max_uri);
                if let Some(t) = request.headers.get("Transport") {
                    let _ = parse_transports(t);
                }
                if let Some(r) = request.headers.get("Range") {
                    let _ = r.parse::<NptRange>();
                }
                let _ = request.cseq();
                consumed
            }
        };
        assert!(consumed > 0 && consumed <= rest.len());
        rest = &rest[consumed..];
    }
    kept_matches_fresh(data, &limits);
});

/// Reads `data` in pieces of 1 to 5 bytes (sizes taken from the data) into
/// one kept parser, comparing each answer with a fresh parser's.
fn kept_matches_fresh(data: &[u8], limits: &Limits) {
    let mut kept = RequestParser::new(*limits);
    let mut rest = data;
    let mut n = 0;
    loop {
        let step = 1 + usize::from(rest.get(n).copied().unwrap_or(0) % 5);
        n = (n + step).min(rest.len());
        let fresh = parse(&rest[..n], limits);
        assert_eq!(kept.parse(&rest[..n]), fresh);
        match fresh {
            Ok(Parsed::Incomplete) if n == rest.len() => return,
            Ok(Parsed::Incomplete) => {}
            Ok(Parsed::Request { consumed, .. } | Parsed::Interleaved { consumed, .. }) => {
                rest = &rest[consumed..];
                n = 0;
            }
            Err(_) => return,
        }
    }
}

//! The RTSP request parser and the typed headers a request reaches, on
//! arbitrary bytes: a status or a request, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtspd::proto::rtsp::parse::{parse, Limits, Parsed};
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
});

//! The RTCP compound parser (RFC 3550 A.2 checks) on arbitrary datagrams.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rtspd::proto::rtcp::parse_compound(data);
});

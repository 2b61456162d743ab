//! What a publisher controls: the ANNOUNCE body, then RTP packets. The
//! input is split at the first NUL: SDP before it, RTP datagrams after it
//! (each prefixed by a length byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtspd::proto::depacketize::{Depacketizer, StreamFormat};
use rtspd::proto::sdp::parse_offer;

fuzz_target!(|data: &[u8]| {
    let (sdp, mut rtp) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(tracks) = parse_offer(sdp) else { return };
    let Some(format) = tracks.iter().find_map(|t| StreamFormat::from_offer(t).ok()) else {
        return;
    };
    let mut d = Depacketizer::new(format);
    let mut out = Vec::new();
    while let Some((&n, rest)) = rtp.split_first() {
        let n = usize::from(n).min(rest.len());
        let _ = d.push(&rest[..n], &mut out);
        // The decoded audio of one push is bounded (losses fill at most 1 s).
        assert!(out.len() <= 2 * 192_000 * 8 * 2);
        out.clear();
        rtp = &rest[n..];
    }
});

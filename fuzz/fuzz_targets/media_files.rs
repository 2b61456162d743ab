//! Every file demuxer on arbitrary files, and every packet of whatever
//! loads cut as a session would: an error or packets within the MTU.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rtspd::media::{adts, annexb, mp3, mp4, ClipOptions};
use rtspd::proto::packetize::Track;

fn cut(tracks: &[Track], opts: &ClipOptions) {
    for t in tracks {
        let p = &t.packetizer;
        let mut c = p.seek(0);
        let mut n = 0u32;
        while let Some(ch) = p.chunk(c, u64::MAX) {
            assert!(ch.payload.len() <= opts.max_payload);
            c = ch.next;
            n += 1;
            assert!(n < 10_000_000, "a cursor that never ends");
        }
        let _ = p.seek(p.duration_ticks() / 2);
    }
}

fuzz_target!(|data: &[u8]| {
    let opts = ClipOptions {
        max_payload: 200,
        ..ClipOptions::default()
    };
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(c) = mp4::load(bytes.clone(), &opts) {
        cut(&c.tracks, &opts);
    }
    if let Ok(t) = adts::load(bytes.clone(), &opts) {
        cut(&[t], &opts);
    }
    if let Ok(t) = mp3::load(bytes, &opts) {
        cut(&[t], &opts);
    }
    if let Ok(t) = annexb::load(data, &opts) {
        cut(&[t], &opts);
    }
});

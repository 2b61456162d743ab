//! RTSP over HTTP on arbitrary bytes: `proto::tunnel::sniff` on a head
//! must say incomplete, other, a tunnel half or an error with a status,
//! never panic; and the streaming `Base64Decoder` must give the same bytes
//! (or the same error) however the input is split, since a POST body
//! arrives in pieces cut anywhere.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtspd::proto::tunnel::{sniff, starts_http, Base64Decoder, Sniffed};

fuzz_target!(|data: &[u8]| {
    let _ = starts_http(data);
    match sniff(data, 16) {
        Ok(Sniffed::Tunnel { head, len }) => {
            assert!(len <= data.len());
            assert!(!head.cookie.is_empty());
        }
        Ok(_) => {}
        Err(e) => {
            assert!(matches!(e.status(), 400 | 405 | 431));
        }
    }
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let whole = {
        let mut d = Base64Decoder::default();
        let mut out = Vec::new();
        d.push(body, &mut out).map(|()| out)
    };
    let split = {
        let at = usize::from(cut).min(body.len());
        let mut d = Base64Decoder::default();
        let mut out = Vec::new();
        d.push(&body[..at], &mut out)
            .and_then(|()| d.push(&body[at..], &mut out))
            .map(|()| out)
    };
    assert_eq!(whole, split);
    if let Ok(out) = &whole {
        assert!(out.len() <= body.len() / 4 * 3 + 3);
    }
});

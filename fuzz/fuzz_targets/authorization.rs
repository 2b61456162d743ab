//! The `Authorization` header (Digest and Basic) on arbitrary text, as a
//! client sends it: `proto::auth::header::parse_authorization` must
//! answer with credentials or an error, never panic; then the whole check
//! (`Authenticator::authenticate`: realm, uri, nonce MAC and age, the
//! constant-time response comparison, nonce counts) runs on what parsed.
#![no_main]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtspd::proto::auth::header::parse_authorization;
use rtspd::proto::auth::{AuthRequest, Authenticator, Policy, User};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_authorization(text);
    if let Err(e) = &parsed {
        let _ = e.to_string();
    }
    let t0 = Instant::now();
    let mut a = Authenticator::new([9; 32], t0, Duration::from_secs(60));
    let mut users = HashMap::new();
    users.insert(
        "alice".to_owned(),
        User {
            name: "alice".into(),
            ha1_md5: Some("4810f2ccb0902ce17b7daca2a401bd0c".into()),
            ha1_sha256: None,
        },
    );
    let policy = Policy {
        users,
        allow_basic_without_tls: true,
        ..Policy::default()
    };
    let req = AuthRequest {
        method: "DESCRIBE",
        uri: "rtsp://127.0.0.1/clip.wav",
        authorization: Some(text),
        ip: IpAddr::from([127, 0, 0, 1]),
        is_tls: false,
        now: t0 + Duration::from_secs(1),
    };
    let result = a.authenticate(&policy, &req);
    // Whatever did not parse is refused as malformed, never accepted.
    if parsed.is_err() {
        assert!(result.is_err());
    }
});

//! The config file parser (`rtspd --config`, and every SIGHUP reload) on
//! arbitrary text: it must answer with settings or an error naming a key
//! and a line, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = rtspd::config::file::parse(text) {
        // Every error renders (it is what the operator reads).
        let _ = e.to_string();
    }
});

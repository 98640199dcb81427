//! The json-gzip pong parser on arbitrary text and binary messages.
#![no_main]

use heartwire::heartbeat::{Heartbeat, JsonGzip};
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::Message;

fuzz_target!(|data: &[u8]| {
    let strategy = JsonGzip;
    let _ = strategy.inspect(&Message::binary(data.to_vec()));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = strategy.inspect(&Message::text(text));
    }
});

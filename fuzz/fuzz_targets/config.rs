//! The config loader on arbitrary TOML text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let _ = heartwire::config::from_toml(data, Path::new("fuzz.toml"));
});

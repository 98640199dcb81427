//! Origin patterns and matching on arbitrary input: pattern, origin and host split on NUL.
#![no_main]

use heartwire::config::origin::{OriginPattern, Origins};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let mut parts = data.splitn(3, '\0');
    let (pattern, origin, host) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    if let Ok(p) = OriginPattern::parse(pattern) {
        let _ = Origins::List(vec![p]).allows(origin, host);
    }
    let _ = Origins::SameOrigin.allows(origin, host);
});

//! `[log] level`: level names as people type them, normalised to what tracing reads.
//!
//! tracing's filter takes any bare word as a module name, so `"warning"` (journalctl's
//! spelling), `"inf"` or `""` would pass and silence every line. Here a bare word must be
//! a level; anything else must be written as a `target=level` directive.

/// The levels a bare word may name, with the spellings accepted for each.
const LEVELS: &[(&str, &[&str])] = &[
    ("off", &["off"]),
    ("error", &["error", "err"]),
    ("warn", &["warn", "warning"]),
    ("info", &["info"]),
    ("debug", &["debug"]),
    ("trace", &["trace"]),
];

/// What the error lists.
const ACCEPTED: &str = "off, error (or err), warn (or warning), info, debug, trace";

/// The level `word` names, case-insensitively.
fn level(word: &str) -> Option<&'static str> {
    let word = word.trim().to_ascii_lowercase();
    LEVELS
        .iter()
        .find(|(_, spellings)| spellings.contains(&word.as_str()))
        .map(|(level, _)| *level)
}

/// `filter` with every level spelled as tracing reads it, or why it is not a filter.
pub fn normalise(filter: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.rsplit_once('=') {
            // `target=level`, `target[span{field=value}]=level`.
            Some((target, word)) if !word.contains([']', '}']) => {
                let Some(level) = level(word) else {
                    return Err(format!(
                        "`{directive}`: `{word}` is not a level; use one of {ACCEPTED}"
                    ));
                };
                out.push(format!("{}={level}", target.trim()));
            }
            _ => match level(directive) {
                Some(level) => out.push(level.to_owned()),
                None => {
                    return Err(format!(
                        "`{directive}` is not a level: use one of {ACCEPTED}, or a TARGET=LEVEL directive such as heartwire=debug (a comma separates several)"
                    ));
                }
            },
        }
    }
    if out.is_empty() {
        return Err(format!("is empty: use one of {ACCEPTED}"));
    }
    let normal = out.join(",");
    // Anything else tracing refuses (a malformed span filter, say).
    tracing_subscriber::EnvFilter::try_new(&normal)
        .map_err(|err| format!("`{filter}` is not a log filter ({err}); use one of {ACCEPTED}"))?;
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_as_people_type_them() {
        for (written, normal) in [
            ("info", "info"),
            ("warning", "warn"),
            ("WARNING", "warn"),
            ("Warn", "warn"),
            ("err", "error"),
            ("ERROR", "error"),
            (" debug ", "debug"),
            ("off", "off"),
            ("heartwire=debug,warn", "heartwire=debug,warn"),
            ("heartwire=warning, hyper=ERR", "heartwire=warn,hyper=error"),
            ("heartwire::conn=trace,info,", "heartwire::conn=trace,info"),
            (
                "heartwire[conn{route=/a}]=debug",
                "heartwire[conn{route=/a}]=debug",
            ),
        ] {
            assert_eq!(normalise(written).as_deref(), Ok(normal), "{written}");
        }
    }

    #[test]
    fn a_bare_word_that_is_no_level_is_refused() {
        for (written, want) in [
            (
                "inf",
                "`inf` is not a level: use one of off, error (or err), warn",
            ),
            ("verbose", "`verbose` is not a level"),
            (
                "heartwire",
                "or a TARGET=LEVEL directive such as heartwire=debug",
            ),
            ("", "is empty: use one of off, error"),
            (" , ", "is empty"),
            ("heartwire=loud", "`heartwire=loud`: `loud` is not a level"),
            ("loud==", "`` is not a level"),
            ("info,notice", "`notice` is not a level"),
        ] {
            let err = normalise(written).unwrap_err();
            assert!(err.contains(want), "{written}: {err}");
        }
    }
}

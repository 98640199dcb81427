//! Reading the file and the `HEARTWIRE_*` environment into a [`RawConfig`], and
//! figment's errors into lines that name the file (or variable) and the key.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::raw::RawConfig;
use super::types::*;
use super::validate::read_bounded;

/// Reads `path`, then `HEARTWIRE_SECTION__KEY` environment overrides, and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::from_raw(raw(path)?, path)
}

/// The effective config (file plus environment) as TOML, with the publish token redacted.
pub fn effective_toml(path: &Path) -> Result<String, ConfigError> {
    let mut raw = raw(path)?;
    if raw.publish.token.is_some() {
        raw.publish.token = Some("<redacted>".into());
    }
    toml::to_string_pretty(&raw)
        .map_err(|e| ConfigError::Parse(vec![format!("{}: {e}", path.display())]))
}

/// The file plus the environment, parsed but not yet validated.
fn raw(path: &Path) -> Result<RawConfig, ConfigError> {
    // The message names the file.
    let text = read_bounded(path, MAX_CONFIG_FILE).map_err(|e| ConfigError::Parse(vec![e]))?;
    Figment::new()
        .merge(Toml::string(&text))
        // Only SECTION__KEY names: HEARTWIRE_CONFIG and friends are not config keys.
        .merge(
            Env::prefixed("HEARTWIRE_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        )
        .extract()
        .map_err(|e| parse_error(path, e))
}

/// Parses a config from TOML text (tests and `check`), without the environment.
pub fn from_toml(text: &str, source: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = Figment::new()
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| parse_error(source, e))?;
    Config::from_raw(raw, source)
}

/// Turns figment's errors into one line each: `file: key: what`.
fn parse_error(path: &Path, err: figment::Error) -> ConfigError {
    let lines: Vec<String> = err
        .into_iter()
        .map(|e| {
            // The text was read from `path`; anything else came from the environment.
            let origin = match e.metadata.as_ref() {
                Some(m) if m.name.contains("environment") => format!("environment ({})", m.name),
                _ => path.display().to_string(),
            };
            if e.path.is_empty() {
                format!("{origin}: {}", e.kind)
            } else {
                format!("{origin}: `{}`: {}", dotted(&e.path), e.kind)
            }
        })
        .collect();
    ConfigError::Parse(lines)
}

/// `["route", "0", "path"]` -> `route[0].path`, the spelling validation errors use too.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::config::origin::{OriginPattern, Origins};
    use crate::heartbeat::Policy;
    use proptest::prelude::*;

    const FILE: &str = "prop.toml";

    /// What the file says, re-rendered as TOML and read again, is the same config.
    fn round_trip(text: &str) -> Config {
        let config = from_toml(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let raw: RawConfig = Figment::new().merge(Toml::string(text)).extract().unwrap();
        let rendered = toml::to_string(&raw).unwrap();
        let again =
            from_toml(&rendered, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
        assert_eq!(config, again, "{rendered}");
        config
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = from_toml(&text, Path::new(FILE));
        }

        #[test]
        fn arbitrary_values_for_real_keys_never_panic(
            key in prop::sample::select(vec![
                "server]\nlisten", "server]\nmax_connections", "server]\nshutdown_grace",
                "server]\nmax_frame_size", "server]\noutbound_queue", "server]\noutbound_queue_bytes",
                "server]\nmax_http_connections", "server]\nhandshake_timeout",
                "publish]\npath", "publish]\ntoken", "publish]\nmax_body_size", "log]\nlevel",
                "heartbeat.x]\nping_timeout",
                "heartbeat.x]\nstrategy", "heartbeat.x]\nping_interval", "heartbeat.x]\nmax_missed",
            ]),
            value in prop::sample::select(vec![
                "0", "-1", "18446744073709551616", "\"\"", "\"0s\"", "\"1ns\"", "\"999999999999h\"",
                "\"json-gzip\"", "\"none\"", "[]", "[\"a\"]", "{}", "1.5", "true", "\"/x\"", "\"*\"",
            ]),
        ) {
            let _ = from_toml(&format!("[{key} = {value}\n"), Path::new(FILE));
        }

        #[test]
        fn written_values_read_back(
            interval_ms in 1u64..1_000_000,
            timeout_ms in 1u64..1_000_000,
            missed in 1u32..1000,
            max in 1usize..10_000_000,
            path in "/[a-z0-9_-]{0,12}",
            channel in "[A-Za-z0-9/_.:-]{1,40}",
            origin in "https://(\\*\\.)?[a-z]{1,10}\\.[a-z]{2,4}(:[1-9][0-9]{0,3})?",
            welcome in "[^\"\\\\\\p{Cc}]{0,40}",
        ) {
            let text = format!(
                "[server]\nmax_connections = {max}\n\
                 [heartbeat.p]\nstrategy = \"protocol\"\nping_interval = \"{interval_ms}ms\"\nping_timeout = \"{timeout_ms}ms\"\n\
                 [heartbeat.j]\nstrategy = \"json-gzip\"\nping_interval = \"{interval_ms}ms\"\nmax_missed = {missed}\n\
                 [[route]]\npath = \"{path}\"\nchannel = \"{channel}\"\norigins = [\"{origin}\"]\nwelcome = \"{welcome}\"\nheartbeat = \"j\"\n"
            );
            prop_assume!(path != DEFAULT_PUBLISH_PATH);
            let c = round_trip(&text);
            prop_assert_eq!(c.server.max_connections, max);
            let interval = Duration::from_millis(interval_ms);
            prop_assert_eq!(c.heartbeats["p"], Some(Policy::Protocol { interval, timeout: Duration::from_millis(timeout_ms) }));
            prop_assert_eq!(c.heartbeats["j"], Some(Policy::JsonGzip { interval, max_missed: NonZeroU32::new(missed).unwrap() }));
            let route = c.route(&path).unwrap();
            prop_assert_eq!(&route.channel, &channel);
            prop_assert_eq!(route.welcome.as_deref(), Some(welcome.as_str()));
            prop_assert_eq!(&route.origins, &Origins::List(vec![OriginPattern::parse(&origin).unwrap()]));
        }
    }

    #[test]
    fn the_shipped_configs_round_trip() {
        for file in ["config/heartwire.toml", "config/tornado-demo.toml"] {
            let text =
                std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
            round_trip(&text);
        }
    }
}

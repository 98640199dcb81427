//! Reading the file and the `HEARTWIRE_*` environment into a [`RawConfig`], and
//! figment's errors into lines that name the file (or variable) and the key.

use std::path::Path;

use figment::error::Kind;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::bounded::read_bounded_text;
use super::raw::RawConfig;
use super::types::*;

/// Reads `path`, then `HEARTWIRE_SECTION__KEY` environment overrides, and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::from_raw(raw(path)?, path)
}

/// The file plus the environment, parsed but not yet validated.
pub(super) fn raw(path: &Path) -> Result<RawConfig, ConfigError> {
    // The message names the file.
    let text = read_bounded_text(path, MAX_CONFIG_FILE).map_err(|e| ConfigError::Parse(vec![e]))?;
    let (vars, mut lines) = environment();
    let mut figment = Figment::new().merge(Toml::string(&text));
    for var in vars {
        figment = figment.merge(var);
    }
    match figment.extract() {
        Ok(raw) if lines.is_empty() => Ok(raw),
        Ok(_) => Err(ConfigError::Parse(lines)),
        Err(err) => {
            lines.extend(parse_lines(path, err));
            Err(ConfigError::Parse(lines))
        }
    }
}

/// Where `key` of the config at `path` got its value, for a message about the value
/// `value`: `admin.listen in FILE`, `admin.listen from HEARTWIRE_ADMIN__LISTEN`, or
/// `admin.listen (default VALUE, not set in FILE)`. Reads the file and the environment
/// again: it is meant for the error path.
pub fn provenance(path: &Path, key: &str, value: &str) -> String {
    let file = path.display();
    let Ok(text) = read_bounded_text(path, MAX_CONFIG_FILE) else {
        return format!("{key} in {file}");
    };
    let mut figment = Figment::new().merge(Toml::string(&text));
    for var in environment().0 {
        figment = figment.merge(var);
    }
    match figment.find_metadata(key) {
        None => format!("{key} (default {value}, not set in {file})"),
        Some(Metadata {
            source: Some(Source::Custom(name)),
            ..
        }) => format!("{key} from {name}"),
        Some(_) => format!("{key} in {file}"),
    }
}

/// Parses a config from TOML text (tests and `check`), without the environment.
pub fn from_toml(text: &str, source: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = Figment::new()
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| ConfigError::Parse(parse_lines(source, e)))?;
    Config::from_raw(raw, source)
}

/// Variables named `HEARTWIRE_*` that are not config keys: the binary reads them itself.
pub const NON_KEY_VARIABLES: &[&str] = &["HEARTWIRE_CONFIG"];

const PREFIX: &str = "HEARTWIRE_";

/// The sections an environment variable may name (`[[route]]` and `[[static]]` are lists).
const SECTIONS: &[&str] = &[
    "server",
    "log",
    "publish",
    "admin",
    "auth",
    "client",
    "history",
    "heartbeat",
];

/// One `HEARTWIRE_SECTION__KEY` variable: a provider of its own, so that an error about
/// its value names it.
struct EnvVar {
    name: String,
    key: String,
    value: Value,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::from(
            format!("environment variable {}", self.name),
            Source::Custom(self.name.clone()),
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::default(&self.key, &self.value).data()
    }
}

/// The `HEARTWIRE_*` variables that name keys, and a line for each one that names none
/// (a single underscore is a typo, not a variable for someone else).
fn environment() -> (Vec<EnvVar>, Vec<String>) {
    let mut vars = Vec::new();
    let mut lines = Vec::new();
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if !name.to_ascii_uppercase().starts_with(PREFIX)
            || NON_KEY_VARIABLES.contains(&name.as_str())
        {
            continue;
        }
        // The prefix is ASCII, so slicing after it stays on a character boundary.
        let rest = name[PREFIX.len()..].to_ascii_lowercase();
        let segments: Vec<&str> = rest.split("__").collect();
        if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
            lines.push(format!(
                "environment variable {name}: names no config key{}: overrides are HEARTWIRE_SECTION__KEY, two underscores between section and key ({} the only other HEARTWIRE_ variable)",
                env_suggestion(&rest),
                match NON_KEY_VARIABLES {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ));
            continue;
        }
        let Some(value) = value.to_str() else {
            lines.push(format!(
                "environment variable {name}: the value is not UTF-8"
            ));
            continue;
        };
        let value = match value.parse::<Value>() {
            Ok(v) => v,
            Err(never) => match never {},
        };
        vars.push(EnvVar {
            name,
            key: segments.join("."),
            value,
        });
    }
    // Stable messages whatever order the environment is in.
    lines.sort();
    (vars, lines)
}

/// `, e.g. HEARTWIRE_SERVER__LISTEN` for `server_listen`.
fn env_suggestion(rest: &str) -> String {
    let fixed = SECTIONS.iter().find_map(|section| {
        let key = rest.strip_prefix(section)?.strip_prefix('_')?;
        (*section != "heartbeat" && !key.is_empty() && !key.contains("__"))
            .then(|| format!("{PREFIX}{}__{}", section, key).to_ascii_uppercase())
    });
    match fixed {
        Some(name) => format!(" (did you mean {name}?)"),
        None => {
            " (e.g. HEARTWIRE_SERVER__LISTEN or HEARTWIRE_HEARTBEAT__APP__PING_INTERVAL)".into()
        }
    }
}

/// Turns figment's errors into one line each: `file: key: what`, or
/// `environment variable NAME: key: what`.
fn parse_lines(path: &Path, err: figment::Error) -> Vec<String> {
    err.into_iter()
        .map(|e| {
            let var = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(Source::Custom(name)) => Some(name.clone()),
                _ => None,
            };
            let origin = match &var {
                Some(name) => format!("environment variable {name}"),
                None => path.display().to_string(),
            };
            let what = describe(&e.kind, &e.path, var.is_some());
            if e.path.is_empty() {
                format!("{origin}: {what}")
            } else {
                format!("{origin}: `{}`: {what}", dotted(&e.path))
            }
        })
        .collect()
}

/// figment's message, reworded where it says less than it could.
fn describe(kind: &Kind, path: &[String], from_env: bool) -> String {
    match kind {
        Kind::UnknownField(found, expected) => {
            let parent = &path[..path.len().saturating_sub(1)];
            let place = if parent.is_empty() {
                "the top level".to_owned()
            } else {
                format!("[{}]", dotted(parent))
            };
            let hint = match closest(found, expected) {
                Some(near) if from_env => {
                    let mut name = PREFIX.to_owned();
                    for part in parent.iter().map(String::as_str).chain([near]) {
                        if name.len() > PREFIX.len() {
                            name.push_str("__");
                        }
                        name.push_str(&part.to_ascii_uppercase());
                    }
                    format!(" (did you mean {name}?)")
                }
                Some(near) => format!(" (did you mean `{near}`?)"),
                None => String::new(),
            };
            format!("unknown key{hint}; {place} has: {}", expected.join(", "))
        }
        Kind::UnknownVariant(found, expected) => {
            let quoted: Vec<String> = expected.iter().map(|v| format!("\"{v}\"")).collect();
            let choices = match quoted.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => "(none)".into(),
            };
            format!("`{found}` is not a valid value: use {choices}")
        }
        other => other.to_string(),
    }
}

/// The expected name nearest `found`, when it is near enough to be a typo.
fn closest<'a>(found: &str, expected: &[&'a str]) -> Option<&'a str> {
    let found = found.to_ascii_lowercase();
    expected
        .iter()
        .map(|e| (edit_distance(&found, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4))
        .min()
        .map(|(_, e)| e)
}

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
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
            prop_assert_eq!(route.channels[0].to_string(), channel);
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

    #[test]
    fn broker_settings_are_checked_naming_the_key() {
        let err = |text: &str| from_toml(text, Path::new(FILE)).unwrap_err().to_string();
        for (text, key, says) in [
            ("[broker]\nkind = \"nats\"", "broker.kind", "use \"memory\""),
            (
                "[broker]\nkind = \"redis\"",
                "broker.url",
                "needs the server's address",
            ),
            (
                "[broker]\nurl = \"redis://h:1\"",
                "broker.url",
                "applies only with kind",
            ),
            (
                "[broker]\nkind = \"redis\"\nurl = \"http://h\"",
                "broker.url",
                "not a Redis URL",
            ),
            (
                "[broker]\nkind = \"redis\"\nurl = \"redis://:secret@h:1\"",
                "broker.url",
                "password_file",
            ),
            (
                "[broker]\nprefix = \"a{b}\"",
                "broker.prefix",
                "not a key prefix",
            ),
            (
                "[broker]\ntimeout = \"2m\"",
                "broker.timeout",
                "limit of 60s",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(key) && e.contains(says), "{text}: {e}");
            assert!(!e.contains("secret"), "the password is never shown: {e}");
        }
        let ok = round_trip(
            "[broker]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\ntimeout = \"250ms\"",
        );
        let BrokerConfig::Redis(redis) = ok.broker else {
            panic!("redis: {:?}", ok.broker);
        };
        assert_eq!(redis.timeout, Duration::from_millis(250));
        assert_eq!(round_trip("").broker, BrokerConfig::Memory);
    }
}

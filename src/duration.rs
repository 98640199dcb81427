//! A duration as a config writes it: `"250ms"`, `"5s"`, `"2m"`. It keeps the text, so a
//! message about the value quotes what the operator wrote (`"25h"`, not `1day 1h`).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// How to write a duration, for error messages.
pub const SYNTAX: &str = "a number and a unit in quotes, e.g. \"5s\", \"250ms\" or \"2m\"";

/// A duration and the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDuration {
    value: Duration,
    text: String,
}

impl HumanDuration {
    /// The value.
    pub fn get(&self) -> Duration {
        self.value
    }

    /// The text as written (for a default: the value formatted, e.g. `10s`).
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl From<Duration> for HumanDuration {
    fn from(value: Duration) -> Self {
        Self {
            value,
            text: humantime::format_duration(value).to_string(),
        }
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HumanVisitor)
    }
}

struct HumanVisitor;

impl Visitor<'_> for HumanVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a duration: {SYNTAX}")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        match humantime::parse_duration(text) {
            Ok(value) => Ok(HumanDuration {
                value,
                text: text.to_owned(),
            }),
            Err(err) => {
                let why = match err {
                    humantime::DurationError::UnknownUnit { unit, value, .. }
                        if unit.is_empty() =>
                    {
                        format!("no unit: \"{value}s\" is {value} seconds")
                    }
                    humantime::DurationError::UnknownUnit { unit, .. } => {
                        format!("unknown unit `{unit}`")
                    }
                    humantime::DurationError::NumberOverflow => "too large or too precise".into(),
                    humantime::DurationError::Empty => "empty".into(),
                    other => other.to_string(),
                };
                Err(E::custom(format!(
                    "`{text}` is not a duration ({why}): write {SYNTAX}"
                )))
            }
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        if n < 0 {
            return Err(E::custom(format!(
                "{n} is not a duration: durations are not negative; write {SYNTAX}"
            )));
        }
        Err(E::custom(format!(
            "{n} has no unit: write it as a string, \"{n}s\" for {n} seconds ({SYNTAX})"
        )))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "{n} has no unit: write it as a string, \"{n}s\" for {n} seconds ({SYNTAX})"
        )))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
        if x.is_finite() && x > 0.0 && x < 86_400.0 {
            let ms = (x * 1000.0).round();
            return Err(E::custom(format!(
                "{x} has no unit: write it as a string, \"{ms}ms\" for {x} seconds ({SYNTAX})"
            )));
        }
        Err(E::custom(format!("{x} is not a duration: write {SYNTAX}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct T {
        d: HumanDuration,
    }

    fn parse(value: &str) -> Result<HumanDuration, String> {
        toml::from_str::<T>(&format!("d = {value}"))
            .map(|t| t.d)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn keeps_the_text_and_reads_the_value() {
        let d = parse("\"25h\"").unwrap();
        assert_eq!(d.get(), Duration::from_secs(25 * 3600));
        assert_eq!(d.text(), "25h");
        assert_eq!(
            toml::to_string(&T { d }).unwrap().trim(),
            "d = \"25h\"",
            "written back as written"
        );
        assert_eq!(
            HumanDuration::from(Duration::from_millis(250)).text(),
            "250ms"
        );
    }

    #[test]
    fn errors_show_the_syntax_and_the_string_form() {
        for (value, want) in [
            (
                "5",
                "5 has no unit: write it as a string, \"5s\" for 5 seconds",
            ),
            ("1.5", "\"1500ms\" for 1.5 seconds"),
            ("-5", "durations are not negative"),
            (
                "\"5 parsecs\"",
                "`5 parsecs` is not a duration (unknown unit `parsecs`)",
            ),
            (
                "\"5\"",
                "`5` is not a duration (no unit: \"5s\" is 5 seconds)",
            ),
            ("\"\"", "`` is not a duration (empty)"),
            ("true", "a duration: a number and a unit"),
        ] {
            let err = parse(value).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
            assert!(err.contains("\"250ms\""), "{value}: {err}");
        }
    }
}

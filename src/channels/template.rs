//! Channel templates: `news`, `user.{sub}`, `room.{id}`, `{query.topic}`. A connection's
//! channels are its route's templates filled in from the request (path segments, query
//! parameters) and from its verified token's claims.

use std::fmt;

use super::name::{allowed, check_channel};

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `{name}`: the route path's `{name}` segment.
    Path(String),
    /// `{query.name}`: the handshake's query parameter `name`.
    Query(String),
    /// `{sub}` or `{claim.name}`: a string claim of the verified token.
    Claim(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(n) => write!(f, "path segment `{{{n}}}`"),
            Self::Query(n) => write!(f, "query parameter `{n}`"),
            Self::Claim(n) => write!(f, "token claim `{n}`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(Source),
}

/// A channel template as written in `channels = [...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    written: String,
    parts: Vec<Part>,
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl Template {
    /// Parses a template: channel-name characters and `{placeholder}`s, where a
    /// placeholder is `{name}` (path segment), `{query.name}`, `{sub}` or `{claim.name}`.
    /// Two placeholders must be separated by literal text, so that a name splits one way.
    pub fn parse(written: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = written;
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('{') {
                let end = inner
                    .find('}')
                    .ok_or_else(|| format!("`{written}`: `{{` without a closing `}}`"))?;
                let source = source(&inner[..end]).map_err(|why| format!("`{written}`: {why}"))?;
                if matches!(parts.last(), Some(Part::Placeholder(_))) {
                    return Err(format!(
                        "`{written}`: put text between two placeholders, e.g. \"{{a}}.{{b}}\""
                    ));
                }
                parts.push(Part::Placeholder(source));
                rest = &inner[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let literal = &rest[..end];
                if let Some(bad) = literal.bytes().find(|b| !allowed(*b)) {
                    return Err(format!(
                        "`{written}`: `{}` may not appear in a channel name (use A-Z a-z 0-9 / _ . : - @ and {{placeholders}})",
                        char::from(bad)
                    ));
                }
                parts.push(Part::Literal(literal.to_owned()));
                rest = &rest[end..];
            }
        }
        if parts.is_empty() {
            return Err("a channel template may not be empty".into());
        }
        if let [Part::Literal(name)] = parts.as_slice() {
            check_channel(name)?;
        }
        Ok(Self {
            written: written.to_owned(),
            parts,
        })
    }

    /// The sources its placeholders need.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(s) => Some(s),
            Part::Literal(_) => None,
        })
    }

    /// The channel name, each placeholder filled by `value`; refused when a value is
    /// missing or the result is not a channel name.
    pub fn render<'a>(&self, value: impl Fn(&Source) -> Option<&'a str>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Placeholder(source) => match value(source) {
                    Some(v) if !v.is_empty() => out.push_str(v),
                    _ => {
                        return Err(format!(
                            "channel `{}` needs the {source}, which this request does not have",
                            self.written
                        ));
                    }
                },
            }
            if out.len() > super::name::MAX_CHANNEL_LEN {
                break;
            }
        }
        check_channel(&out).map_err(|why| format!("channel `{}`: {why}", self.written))?;
        Ok(out)
    }

    /// Whether some request could make `name` from this template: literals in place,
    /// every placeholder at least one character.
    pub fn could_produce(&self, name: &str) -> bool {
        check_channel(name).is_ok() && produces(&self.parts, name)
    }
}

/// Whether `parts` can spell `name`: the set of positions reachable after each part, so
/// the work is bounded by parts x length whatever the name (a publisher chooses it).
fn produces(parts: &[Part], name: &str) -> bool {
    let mut at = vec![false; name.len() + 1];
    at[0] = true;
    for part in parts {
        let mut next = vec![false; name.len() + 1];
        match part {
            Part::Literal(l) => {
                for (p, _) in at.iter().enumerate().filter(|(_, r)| **r) {
                    if name[p..].starts_with(l.as_str()) {
                        next[p + l.len()] = true;
                    }
                }
            }
            Part::Placeholder(_) => {
                if let Some(first) = at.iter().position(|r| *r) {
                    for (q, slot) in next.iter_mut().enumerate().skip(first + 1) {
                        *slot = name.is_char_boundary(q);
                    }
                }
            }
        }
        at = next;
    }
    at[name.len()]
}

fn source(inner: &str) -> Result<Source, String> {
    let ident = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let (kind, name) = match inner.split_once('.') {
        Some((kind, name)) => (Some(kind), name),
        None => (None, inner),
    };
    if !ident(name) {
        return Err(format!(
            "`{{{inner}}}` is not a placeholder: use {{name}} (a path segment), {{query.name}}, {{sub}} or {{claim.name}}"
        ));
    }
    match kind {
        None if name == "sub" => Ok(Source::Claim("sub".into())),
        None => Ok(Source::Path(name.into())),
        Some("query") => Ok(Source::Query(name.into())),
        Some("claim") => Ok(Source::Claim(name.into())),
        Some(other) => Err(format!(
            "`{{{inner}}}`: `{other}.` is not a source: use {{name}} (a path segment), {{query.name}}, {{sub}} or {{claim.name}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(s: &Source) -> Option<&'static str> {
        match s {
            Source::Claim(n) if n == "sub" => Some("42"),
            Source::Claim(n) if n == "org" => Some("acme"),
            Source::Path(n) if n == "id" => Some("7"),
            Source::Query(n) if n == "topic" => Some("prices"),
            Source::Query(n) if n == "bad" => Some("a b"),
            _ => None,
        }
    }

    #[test]
    fn renders() {
        for (t, want) in [
            ("news", "news"),
            ("user.{sub}", "user.42"),
            ("{claim.org}.room.{id}", "acme.room.7"),
            ("{query.topic}", "prices"),
            ("/user/{id}", "/user/7"),
        ] {
            let t = Template::parse(t).unwrap();
            assert_eq!(t.render(values).as_deref(), Ok(want), "{t}");
        }
        let missing = Template::parse("x.{query.nope}").unwrap().render(values);
        assert_eq!(
            missing.unwrap_err(),
            "channel `x.{query.nope}` needs the query parameter `nope`, which this request does not have"
        );
        let bad = Template::parse("x.{query.bad}").unwrap().render(values);
        assert!(bad.unwrap_err().contains("is not a channel name"));
    }

    #[test]
    fn parse_refusals() {
        for bad in [
            "",
            "a b",
            "{sub",
            "{}",
            "{x.y}",
            "{a}{b}",
            "{query.}",
            "user.*",
            &"x".repeat(200),
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let t = Template::parse("{a}.{query.b}.{claim.c}.{sub}").unwrap();
        let sources: Vec<_> = t.sources().cloned().collect();
        assert_eq!(
            sources,
            vec![
                Source::Path("a".into()),
                Source::Query("b".into()),
                Source::Claim("c".into()),
                Source::Claim("sub".into()),
            ]
        );
    }

    #[test]
    fn could_produce() {
        let t = Template::parse("user.{sub}").unwrap();
        assert!(t.could_produce("user.42"));
        assert!(t.could_produce("user.a.b"));
        assert!(!t.could_produce("user."));
        assert!(!t.could_produce("users.42"));
        let t = Template::parse("{a}.x.{b}").unwrap();
        assert!(t.could_produce("1.x.2") && t.could_produce("1.x.x.x.2"));
        assert!(!t.could_produce(".x.2") && !t.could_produce("1.x."));
        assert!(Template::parse("news").unwrap().could_produce("news"));
        assert!(!Template::parse("news").unwrap().could_produce("news2"));
        assert!(!Template::parse("{sub}").unwrap().could_produce("a b"));
    }
}

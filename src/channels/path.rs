//! Route paths with named segments: `/user/{id}` is served for `/user/42`, and `{id}` is
//! then a source for the route's channel templates.

/// Path segments captured by a [`PathPattern`], in order: `(name, value)`.
pub type Params = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A route path as written: literal segments and `{name}` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

/// Longest value a `{name}` segment captures, in bytes.
const MAX_SEGMENT: usize = 128;

impl PathPattern {
    /// Parses a path that has already passed the URL-path check. A segment is either
    /// literal or a whole `{name}` (letters, digits, `_`); names are unique.
    pub fn parse(path: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        for seg in path.split('/').skip(1) {
            let param = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            match param {
                Some(name) => {
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(format!(
                            "`{{{name}}}` in `{path}`: a path parameter is `{{name}}`, the name of letters, digits and `_`"
                        ));
                    }
                    if segments.contains(&Segment::Param(name.to_owned())) {
                        return Err(format!("`{{{name}}}` appears twice in `{path}`"));
                    }
                    segments.push(Segment::Param(name.to_owned()));
                }
                None if seg.contains(['{', '}']) => {
                    return Err(format!(
                        "`{seg}` in `{path}`: `{{name}}` must be a whole segment, e.g. \"/user/{{id}}\""
                    ));
                }
                None => segments.push(Segment::Literal(seg.to_owned())),
            }
        }
        Ok(Self { segments })
    }

    /// Whether it has no `{name}` segment (then it matches only itself).
    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether `{name}` is one of its segments.
    pub fn has_param(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Param(p) if p == name))
    }

    /// The parameters when `path` matches: same number of segments, literals equal, and
    /// each parameter a non-empty segment of at most 128 bytes.
    pub fn matches(&self, path: &str) -> Option<Params> {
        let mut params = Params::new();
        let mut given = path.split('/').skip(1);
        for seg in &self.segments {
            let value = given.next()?;
            match seg {
                Segment::Literal(l) if l == value => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    if value.is_empty() || value.len() > MAX_SEGMENT {
                        return None;
                    }
                    params.push((name.clone(), value.to_owned()));
                }
            }
        }
        given.next().is_none().then_some(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let p = PathPattern::parse("/user/{id}/feed").unwrap();
        assert!(!p.is_literal() && p.has_param("id") && !p.has_param("x"));
        assert_eq!(
            p.matches("/user/42/feed"),
            Some(vec![("id".into(), "42".into())])
        );
        for miss in [
            "/user/42",
            "/user//feed",
            "/user/42/feed/x",
            "/users/42/feed",
            "",
        ] {
            assert_eq!(p.matches(miss), None, "{miss}");
        }
        assert_eq!(p.matches(&format!("/user/{}/feed", "9".repeat(129))), None);
        let lit = PathPattern::parse("/ws").unwrap();
        assert!(lit.is_literal());
        assert_eq!(lit.matches("/ws"), Some(vec![]));
        assert_eq!(lit.matches("/ws/"), None);
        let two = PathPattern::parse("/{a}/{b}").unwrap();
        assert_eq!(
            two.matches("/x/y"),
            Some(vec![("a".into(), "x".into()), ("b".into(), "y".into())])
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "/user/{}",
            "/user/{a-b}",
            "/user/x{id}",
            "/{a}/{a}",
            "/user/{id",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Small HTTP response builders shared by the publish, static and upgrade handlers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

/// Every response body heartwire sends is small and in memory.
pub type Body = Full<Bytes>;

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = value.to_string();
    body.push('\n');
    let mut res = Response::new(Body::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// A refusal: `{"error": "<one line saying what is wrong and how to fix it>"}`.
pub fn error(status: StatusCode, reason: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({ "error": reason.into() }))
}

/// A response with this body and content type.
pub fn text(status: StatusCode, body: Bytes, content_type: &str) -> Response<Body> {
    let mut res = Response::new(Body::new(body));
    *res.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        res.headers_mut().insert(CONTENT_TYPE, v);
    }
    res
}

/// A refused request: status, one-line reason, and at most one extra header.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    reason: String,
    // Boxed: rare, and it keeps every `Result<_, Refusal>` small.
    header: Option<Box<(HeaderName, HeaderValue)>>,
    field: Option<(&'static str, &'static str)>,
}

impl Refusal {
    /// Refuses with `status` and `reason`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            header: None,
            field: None,
        }
    }

    /// Adds a machine-readable field beside `error` in the body (`"auth": "expired"`).
    pub fn with_field(mut self, key: &'static str, value: &'static str) -> Self {
        self.field = Some((key, value));
        self
    }

    /// Adds a header to the response (`Allow`, `WWW-Authenticate`, `Retry-After`, ...).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.header = Some(Box::new((name, value)));
        self
    }

    /// The response.
    pub fn into_response(self) -> Response<Body> {
        let mut body = serde_json::json!({ "error": self.reason });
        if let Some((key, value)) = self.field {
            body[key] = value.into();
        }
        let mut res = json(self.status, &body);
        if let Some((name, value)) = self.header.map(|h| *h) {
            res.headers_mut().insert(name, value);
        }
        res
    }
}

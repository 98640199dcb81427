//! Small HTTP response builders shared by the publish, static and upgrade handlers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
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

//! The browser client (`/heartwire.js`) and its demo page (`/demo`): embedded in the
//! binary, served when `[client]` enables them, with an ETag so a revalidation costs a 304.

use bytes::Bytes;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Response, StatusCode};

use crate::config::{CLIENT_DEMO_PATH, CLIENT_SCRIPT_PATH, ClientConfig};
use crate::http::{self, Body};

/// One embedded file and how it is cached.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    cache_control: &'static str,
    /// Whether pages of other origins may load it (`Access-Control-Allow-Origin: *`).
    cross_origin: bool,
    /// Quoted hex of a hash of `body`, computed at compile time.
    etag: u64,
}

/// The module: cached for a day (its path is fixed, so a new release shows within a day).
/// A module script is fetched in CORS mode: without the header a page on another origin
/// (the app, with heartwire on its own host) could not `import` it. It is public and sent
/// without credentials, so `*` is right.
const SCRIPT: Asset = asset(
    include_str!("../../clients/js/heartwire.js"),
    "text/javascript; charset=utf-8",
    "public, max-age=86400",
    true,
);

/// The demo: revalidated on every load.
const DEMO: Asset = asset(
    include_str!("../../clients/js/demo.html"),
    "text/html; charset=utf-8",
    "no-cache",
    false,
);

const fn asset(
    body: &'static str,
    content_type: &'static str,
    cache: &'static str,
    cross_origin: bool,
) -> Asset {
    Asset {
        body,
        content_type,
        cache_control: cache,
        cross_origin,
        etag: fnv1a(body.as_bytes()),
    }
}

/// FNV-1a, 64 bits: enough to tell two builds' files apart, and computable in a `const`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The answer for `path` when `[client]` serves it; `None` otherwise.
pub(super) fn serve(
    client: &ClientConfig,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    let asset = match path {
        CLIENT_SCRIPT_PATH if client.enabled => &SCRIPT,
        CLIENT_DEMO_PATH if client.enabled && client.demo => &DEMO,
        _ => return None,
    };
    if method != Method::GET && method != Method::HEAD {
        return Some(http::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} answers GET only"),
        ));
    }
    let etag = format!("\"{:016x}\"", asset.etag);
    let fresh = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .any(|v| matches(v, &etag));
    let mut res = if fresh {
        let mut res = Response::new(Body::default());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res
    } else {
        http::text(
            StatusCode::OK,
            Bytes::from_static(asset.body.as_bytes()),
            asset.content_type,
        )
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static(asset.cache_control));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.cross_origin {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    Some(res)
}

/// Whether an `If-None-Match` value names `etag`: a list of (possibly weak) tags, or `*`.
fn matches(header: &HeaderValue, etag: &str) -> bool {
    let Ok(list) = header.to_str() else {
        return false;
    };
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let etag = "\"00000000000000ab\"";
        for (header, want) in [
            ("\"00000000000000ab\"", true),
            ("W/\"00000000000000ab\"", true),
            ("\"x\", \"00000000000000ab\"", true),
            ("*", true),
            ("\"00000000000000ac\"", false),
            ("00000000000000ab", false),
            ("", false),
        ] {
            assert_eq!(
                matches(&HeaderValue::from_static(header), etag),
                want,
                "{header}"
            );
        }
    }

    #[test]
    fn etags_differ_between_the_files_and_follow_the_content() {
        assert_ne!(SCRIPT.etag, DEMO.etag);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

//! The embedded browser client and demo page: served only when enabled, with cache
//! headers and an ETag that turns a revalidation into a 304.

mod common;

use common::*;

const ON: &str = r#"
[client]
enabled = true
demo = true
[[route]]
path = "/app"
"#;

const SCRIPT: &str = include_str!("../clients/js/heartwire.js");

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[tokio::test]
async fn the_module_is_served_with_cache_headers_and_revalidates_to_304() {
    let s = Server::start(ON).await;
    let (status, head, body) = http_with_head(s.addr, "GET", "/heartwire.js", &[], b"").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, SCRIPT);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        header(&head, "cache-control"),
        Some("public, max-age=86400")
    );
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    // A page on another origin imports it: module scripts are fetched in CORS mode.
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    let etag = header(&head, "etag").expect("an ETag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() == 18,
        "{etag}"
    );

    for sent in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".into(),
    ] {
        let (status, head, body) = http_with_head(
            s.addr,
            "GET",
            "/heartwire.js",
            &[("If-None-Match", &sent)],
            b"",
        )
        .await;
        assert_eq!(status, 304, "If-None-Match: {sent}\n{head}");
        assert_eq!(body, "");
        assert_eq!(header(&head, "etag"), Some(etag.as_str()));
        assert_eq!(
            header(&head, "cache-control"),
            Some("public, max-age=86400")
        );
    }
    let (status, _, body) = http_with_head(
        s.addr,
        "GET",
        "/heartwire.js",
        &[("If-None-Match", "\"stale\"")],
        b"",
    )
    .await;
    assert_eq!((status, body.len()), (200, SCRIPT.len()));
    let (status, _, _) = http_with_head(s.addr, "POST", "/heartwire.js", &[], b"x").await;
    assert_eq!(status, 405);
    s.stop().await;
}

#[tokio::test]
async fn the_demo_page_imports_the_module_and_is_revalidated_each_time() {
    let s = Server::start(ON).await;
    let (status, head, body) = http_with_head(s.addr, "GET", "/demo", &[], b"").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    assert_eq!(header(&head, "access-control-allow-origin"), None);
    assert!(body.contains("from '/heartwire.js'"), "{body}");
    let etag = header(&head, "etag").expect("an ETag");
    let (_, script_head, _) = http_with_head(s.addr, "GET", "/heartwire.js", &[], b"").await;
    assert_ne!(Some(etag), header(&script_head, "etag"));
    let (status, _, _) =
        http_with_head(s.addr, "GET", "/demo", &[("If-None-Match", etag)], b"").await;
    assert_eq!(status, 304);
    s.stop().await;
}

#[tokio::test]
async fn nothing_is_served_unless_enabled() {
    for (toml, script, demo) in [
        ("[[route]]\npath = \"/app\"\n", 404, 404),
        ("[client]\nenabled = true\n", 200, 404),
    ] {
        let s = Server::start(toml).await;
        assert_eq!(
            s.http("GET", "/heartwire.js", &[], b"").await.0,
            script,
            "{toml}"
        );
        assert_eq!(s.http("GET", "/demo", &[], b"").await.0, demo, "{toml}");
        s.stop().await;
    }
}

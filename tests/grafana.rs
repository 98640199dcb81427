//! contrib/grafana/heartwire.json queries only metrics a running daemon exports.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// A route with a heartbeat policy, so the per-route and per-policy series exist at 0.
const CONFIG: &str = r#"
[heartbeat.app]
strategy = "json-gzip"
ping_interval = "10s"

[[route]]
path = "/ws"
heartbeat = "app"
"#;

/// Series names in a PromQL expression: ours are `heartwire_*`, the process's `process_*`.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| is_name(c)) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        let word = &tail[..end];
        // Whole words only: a label value such as "x_heartwire_y" is not a series.
        if word.starts_with("heartwire_") || word.starts_with("process_") {
            into.insert(word.to_owned());
        }
        rest = &tail[end..];
    }
}

/// Every PromQL string in the dashboard: panel targets and template variable queries.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
        _ => {}
    }
}

/// Names of the samples in a Prometheus/OpenMetrics exposition (comments skipped).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn dashboard_queries_only_exported_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/grafana/heartwire.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    let mut used = BTreeSet::new();
    for e in &exprs {
        metric_names(e, &mut used);
    }
    // What the dashboard is for: if one of these is gone, a panel lost its subject.
    for name in [
        "heartwire_connections_open",
        "heartwire_connections_rejected_total",
        "heartwire_messages_sent_total",
        "heartwire_slow_consumers_total",
        "heartwire_heartbeat_rtt_seconds_bucket",
        "heartwire_heartbeat_timeouts_total",
        "heartwire_config_reloads_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(used.contains(name), "the dashboard does not chart {name}");
    }

    let s = Server::start(CONFIG).await;
    let (status, text) = http(s.admin, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200, "{text}");
    let have = exported(&text);
    let missing: Vec<_> = used.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries series /metrics does not export: {missing:?}\nexported: {have:?}"
    );
    s.stop().await;
}

#[test]
fn metric_names_finds_series_not_functions_or_labels() {
    let mut names = BTreeSet::new();
    metric_names(
        r#"histogram_quantile(0.9, sum by (policy, le) (rate(heartwire_heartbeat_rtt_seconds_bucket{instance=~"$instance"}[$__rate_interval]))) / process_max_fds"#,
        &mut names,
    );
    let want: BTreeSet<String> = ["heartwire_heartbeat_rtt_seconds_bucket", "process_max_fds"]
        .map(String::from)
        .into();
    assert_eq!(names, want);
}

//! The process's own figures as the operating system reports them: the standard
//! Prometheus `process_*` metrics, and the open-file limit. Read through
//! `metrics-process`, a port of the Go client's process collector, so the names and
//! meanings are the ones dashboards and alerts already use.

use std::fmt;

use metrics_process::collector::{self, Metrics as Reading};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Renders `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
/// `process_open_fds`, `process_max_fds`, `process_cpu_seconds_total`,
/// `process_start_time_seconds` and `process_threads`, read afresh at each scrape. A figure
/// the system cannot give is left out rather than shown as 0.
///
/// Counting open descriptors lists `/proc/self/fd`: one entry per connection, as the Go
/// client does; a scrape every few seconds is nothing next to serving those connections.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let m = collector::collect();
        let e = &mut encoder;
        gauge(
            e,
            "process_resident_memory",
            "Resident memory size in bytes.",
            Some(&Unit::Bytes),
            m.resident_memory_bytes,
        )?;
        gauge(
            e,
            "process_virtual_memory",
            "Virtual memory size in bytes.",
            Some(&Unit::Bytes),
            m.virtual_memory_bytes,
        )?;
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            None,
            m.open_fds,
        )?;
        gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors (the soft RLIMIT_NOFILE).",
            None,
            max_fds(&m),
        )?;
        gauge(
            e,
            "process_start_time",
            "Start time of the process since the Unix epoch in seconds.",
            Some(&Unit::Seconds),
            m.start_time_seconds,
        )?;
        gauge(
            e,
            "process_threads",
            "Number of OS threads in the process.",
            None,
            m.threads,
        )?;
        if let Some(cpu) = m.cpu_seconds_total {
            let metric = e.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(metric)?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: Option<u64>,
) -> fmt::Result {
    let Some(value) = value else {
        return Ok(());
    };
    let metric = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// The limit, or `None` when unlimited (reported as 0) or unreadable.
fn max_fds(m: &Reading) -> Option<u64> {
    m.max_fds.filter(|&n| n > 0)
}

/// How many files (sockets included) this process may have open: the soft
/// `RLIMIT_NOFILE` (`ulimit -n`, systemd's `LimitNOFILE=`). `None` when unlimited or
/// unreadable.
pub fn open_file_limit() -> Option<u64> {
    max_fds(&collector::collect())
}

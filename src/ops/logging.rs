//! Logging: human text or JSON lines to stderr (the journal under systemd), plus
//! optional rolling files through tracing-appender's non-blocking writer.

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation as Roll};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{LogConfig, LogFormat, Rotation};

/// Keeps the file writer flushing and lets a reload change the level.
/// Hold it in `main` for the life of the process.
pub struct Logging {
    _file: Option<WorkerGuard>,
    filter: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it keeps overriding `[log] level` across reloads.
    rust_log: bool,
}

impl Logging {
    /// Applies a new `[log] level` (format and dir need a restart), unless `RUST_LOG`
    /// overrides it.
    pub fn set_level(&self, level: &str) -> anyhow::Result<()> {
        if self.rust_log {
            return Ok(());
        }
        let filter = EnvFilter::try_new(level).with_context(|| format!("log.level `{level}`"))?;
        self.filter
            .reload(filter)
            .context("cannot change the log level")
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `[log] level`.
pub fn init(config: &LogConfig) -> anyhow::Result<Logging> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let level = rust_log.clone().unwrap_or_else(|| config.level.clone());
    let from = if rust_log.is_some() {
        "RUST_LOG"
    } else {
        "log.level"
    };
    let filter = EnvFilter::try_new(&level).with_context(|| format!("{from} `{level}`"))?;
    let (filter, handle) = reload::Layer::new(filter);

    let mut layers: Vec<Box<dyn Layer<_> + Send + Sync>> =
        vec![fmt_layer(config.format, std::io::stderr)];
    let mut guard = None;
    if let Some(dir) = &config.dir {
        let roll = match config.rotation {
            Rotation::Hourly => Roll::HOURLY,
            Rotation::Daily => Roll::DAILY,
            Rotation::Never => Roll::NEVER,
        };
        let appender = RollingFileAppender::builder()
            .rotation(roll)
            .filename_prefix("heartwire")
            .filename_suffix("log")
            .build(dir)
            .with_context(|| {
                format!("log.dir `{}`: cannot write log files there", dir.display())
            })?;
        let (writer, g) = tracing_appender::non_blocking(appender);
        guard = Some(g);
        let file = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer);
        layers.push(match config.format {
            LogFormat::Text => file.boxed(),
            LogFormat::Json => file.json().boxed(),
        });
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init()
        .context("a logger is already installed")?;
    Ok(Logging {
        _file: guard,
        filter: handle,
        rust_log: rust_log.is_some(),
    })
}

fn fmt_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // Colour only on a terminal: the journal and log shippers want plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter a reload leaves in place, with or without `RUST_LOG` at start.
    fn after_reload(rust_log: bool) -> String {
        let (layer, filter) = reload::Layer::new(EnvFilter::new("debug"));
        // Not installed: the handle only needs its layer alive.
        let _subscriber = tracing_subscriber::registry().with(layer);
        let logging = Logging {
            _file: None,
            filter,
            rust_log,
        };
        logging.set_level("warn").unwrap();
        logging.filter.with_current(|f| f.to_string()).unwrap()
    }

    #[test]
    fn rust_log_outlasts_a_reload() {
        assert_eq!(after_reload(false), "warn");
        assert_eq!(after_reload(true), "debug");
    }
}

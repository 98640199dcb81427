//! The `heartwire` binary: CLI, logging, signals, bind, then [`heartwire::run`].

mod cli;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use heartwire::config::BrokerConfig;
use heartwire::config::{self, Config, Listeners, Served};
use heartwire::fanout::redis::RedisBroker;
use heartwire::fanout::{Broker, MemoryBroker};
use heartwire::ops::activation::Inherited;
use heartwire::ops::{Ops, allocator, logging, signals};

use cli::{Cli, Command};

/// Where the config is read from when `--config` is not given and this exists.
const SYSTEM_CONFIG: &str = "/etc/heartwire/heartwire.toml";
/// The shipped default, used from a source checkout.
const LOCAL_CONFIG: &str = "config/heartwire.toml";

/// Under this many days to expiry, `check` says to renew the certificate.
const RENEW_WITHIN_DAYS: i64 = 14;

/// `heartwire --version`: the crate version and the git revision it was built from,
/// `0.1.0 (git 1a2b3c4)`, or `(git unknown)` outside a git checkout (build.rs).
const VERSION: &str = env!("BUILD_VERSION");

fn main() -> ExitCode {
    let matches = Cli::command().version(VERSION).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let path = cli.config.unwrap_or_else(|| {
        if Path::new(SYSTEM_CONFIG).exists() {
            SYSTEM_CONFIG.into()
        } else {
            LOCAL_CONFIG.into()
        }
    });
    let config = match config::load(&path) {
        Ok(c) => c,
        Err(err) => {
            // One line per problem, each naming the file (or variable), the key and the fix.
            for line in err.lines() {
                eprintln!("{line}");
            }
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Check { print }) = cli.command {
        if print {
            match config::effective_toml(&path) {
                Ok(text) => print!("{text}"),
                Err(err) => {
                    eprintln!("heartwire: {err}");
                    return ExitCode::from(2);
                }
            }
        }
        eprintln!("heartwire: {} is valid", path.display());
        if let Some(tls) = &config.server.tls {
            let days = tls.days_left(std::time::SystemTime::now());
            let soon = if days < RENEW_WITHIN_DAYS {
                ": renew it soon"
            } else {
                ""
            };
            eprintln!(
                "heartwire: server.tls: the certificate in {} expires on {} (in {days} days){soon}",
                tls.cert_file.display(),
                tls.expires()
            );
        }
        return ExitCode::SUCCESS;
    }
    // Before any thread starts (the log writer's, the runtime's): it unsets LISTEN_FDS.
    let inherited = Inherited::from_env();
    let inherited = match inherited.into_listeners() {
        Ok(list) => list,
        Err(err) => {
            eprintln!("heartwire: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    // What is actually served decides the exposure rule: with socket activation that is
    // the inherited sockets, whatever server.listen says.
    let served = if inherited.is_empty() {
        Served {
            addrs: config.server.listen.clone(),
            from: Listeners::Configured,
        }
    } else {
        let addrs = inherited.iter().filter_map(|l| l.local_addr().ok());
        Served {
            addrs: addrs.collect(),
            from: Listeners::Inherited,
        }
    };
    if let Err(err) = config.check_exposure(&served) {
        eprintln!("heartwire: refusing to serve: {err}");
        return ExitCode::from(2);
    }
    let logging = match logging::init(&config.log) {
        Ok(l) => l,
        Err(err) => {
            eprintln!("heartwire: {err:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(allocator::on_park)
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("heartwire: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Held here, not in `serve`: the file writer must still run when the error below is
    // logged.
    let logging = Arc::new(logging);
    match runtime.block_on(serve(config, path, logging.clone(), inherited, served)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Once: stderr is one of the logger's outputs (the terminal, or the journal under
            // systemd), so printing it as well showed every fatal error twice. Printed only
            // when the configured level would hide it.
            if tracing::enabled!(tracing::Level::ERROR) {
                error!("{err:#}");
            } else {
                eprintln!("heartwire: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Config,
    path: PathBuf,
    logging: Arc<logging::Logging>,
    inherited: Vec<std::net::TcpListener>,
    served: Served,
) -> anyhow::Result<()> {
    let signals = signals::register().context("cannot install signal handlers")?;
    let handle = signals.handle();
    let mut listeners = Vec::with_capacity(config.server.listen.len());
    let bind = if inherited.is_empty() {
        config.server.listen.as_slice()
    } else {
        info!(
            sockets = inherited.len(),
            "socket activation: serving the inherited sockets; server.listen is not bound"
        );
        for (i, std) in inherited.into_iter().enumerate() {
            listeners
                .push(TcpListener::from_std(std).with_context(|| format!("inherited socket {i}"))?);
        }
        &[]
    };
    for addr in bind {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_error(&path, "server.listen", *addr, &e))?;
        listeners.push(listener);
    }
    let admin = match config.admin.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| bind_error(&path, "admin.listen", addr, &e))?,
        ),
        None => None,
    };
    let ops = Ops::from_env();
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let shutdown = CancellationToken::new();
    let on_reload = move |c: &Config| {
        if let Err(err) = logging.set_level(&c.log.level) {
            error!("{err:#}");
        }
    };
    let signal_task = tokio::spawn(signals::handle(
        signals,
        path,
        served,
        config_tx,
        shutdown.clone(),
        on_reload,
        ops.clone(),
    ));
    let broker: Arc<dyn Broker> = match &config_rx.borrow().broker {
        BrokerConfig::Memory => Arc::new(MemoryBroker::default()),
        BrokerConfig::Redis(redis) => Arc::new(RedisBroker::new(
            redis.clone(),
            config_rx.borrow().history.position_ttl,
            ops.metrics.broker().clone(),
        )),
    };
    let result =
        heartwire::run_with(listeners, admin, config_rx, shutdown.clone(), ops, broker).await;
    shutdown.cancel();
    handle.close();
    let _ = signal_task.await;
    result
}

/// Why `addr` (the value of `key` in the config at `path`) could not be bound, naming
/// where the value came from (the file, a variable, or a default the file does not set).
fn bind_error(path: &Path, key: &str, addr: SocketAddr, err: &std::io::Error) -> anyhow::Error {
    let from = config::provenance(path, key, &addr.to_string());
    let fix = match err.kind() {
        ErrorKind::AddrInUse => format!("another process holds it: stop it, or set {key} to a free address"),
        ErrorKind::PermissionDenied if addr.port() < 1024 => {
            "ports below 1024 need privilege: use socket activation (docs/operations.md) or a higher port".into()
        }
        ErrorKind::AddrNotAvailable => format!("no interface has that address: set {key} to one of this machine's"),
        _ => format!("set {key} to an address heartwire can listen on"),
    };
    let off = if key == "admin.listen" {
        ", or admin.enabled = false"
    } else {
        ""
    };
    anyhow::anyhow!("cannot listen on {addr} ({from}): {err}; {fix}{off}")
}

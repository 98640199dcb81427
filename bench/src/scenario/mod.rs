//! The load scenarios; each returns its one-line JSON summary.

pub mod echo;
pub mod fanout;
pub mod handshake;
pub mod heartbeat;
pub mod histmem;
pub mod idle;
pub mod personal;
pub mod storm;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{ConnReport, Dialer, Shared, Ws, drive};
use crate::jwt::{JwtArgs, Minter};
use crate::procstat::Proc;

/// Settings every scenario shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Server address for WebSocket routes and the publish endpoint (loopback only).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub server: SocketAddr,
    /// Server process id, for RSS and CPU readings from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Name copied into the summary (heartwire, tornado, floor).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Loopback source addresses to spread connections over (~28 000 ports each).
    #[arg(long, default_value_t = 4)]
    pub sources: u8,
    /// Connection attempts in flight at once (above ~128 the listen queues of all
    /// three servers overflow here and SYN retransmits add whole seconds).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Path of the publish endpoint.
    #[arg(long, default_value = "/publish")]
    pub publish_path: String,
    /// The server speaks TLS: wss:// and https:// (its certificate is not checked).
    #[arg(long)]
    pub tls: bool,
    /// Tokens for `{jwt}` in paths.
    #[command(flatten)]
    pub jwt: JwtArgs,
}

impl Common {
    /// Refuses anything but loopback: load goes to this machine only.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.server.ip().is_loopback(),
            "--server must be a loopback address (127.0.0.0/8 or ::1), got {}",
            self.server
        );
        Minter::from_args(&self.jwt)?;
        Ok(())
    }

    /// The watched server process.
    pub fn proc(&self) -> Proc {
        Proc(self.pid)
    }

    /// A dialer for the server.
    pub fn dialer(&self) -> Arc<Dialer> {
        let tls = self.tls.then(crate::tls::connector);
        let minter = Minter::from_args(&self.jwt).ok().flatten();
        Arc::new(Dialer::new(self.server, self.sources, tls).with_minter(minter))
    }
}

/// Splits a comma-separated path list.
pub fn paths(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// Drivers for a set of connections.
pub struct Driven {
    /// Cancelled to stop every driver.
    pub stop: CancellationToken,
    /// The drivers, each with its path index.
    pub tasks: Vec<(usize, JoinHandle<ConnReport>)>,
}

impl Driven {
    /// Starts one driver per connection and returns once each is reading (at most 30 s),
    /// so nothing measured after it waits for a driver's first turn.
    pub async fn start(conns: Vec<(usize, Ws)>, shared: &Arc<Shared>) -> Self {
        let stop = CancellationToken::new();
        let mut started = shared.started.subscribe();
        let want = *started.borrow() + conns.len();
        let tasks = conns
            .into_iter()
            .map(|(p, ws)| (p, tokio::spawn(drive(ws, shared.clone(), stop.clone()))))
            .collect();
        let all = started.wait_for(|n| *n >= want);
        if tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .is_err()
        {
            eprintln!("warning: not every driver started within 30 s");
        }
        Self { stop, tasks }
    }

    /// Stops the drivers and collects their reports.
    pub async fn finish(self) -> Vec<(usize, ConnReport)> {
        self.stop.cancel();
        let mut out = Vec::with_capacity(self.tasks.len());
        for (p, t) in self.tasks {
            if let Ok(r) = t.await {
                out.push((p, r));
            }
        }
        out
    }
}

//! `heartwire-bench`: load scenarios that print one JSON summary line each, and the
//! raw-socket floor server they are compared against. Loopback only.

#![forbid(unsafe_code)]

mod admin;
mod client;
mod floor;
mod jwt;
mod procstat;
mod publisher;
mod scenario;
mod stats;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use scenario::{Common, echo, fanout, handshake, heartbeat, histmem, idle, personal, storm};

/// Benchmarks for heartwire, the seed's Tornado demo and a raw-socket floor.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N connections held with heartbeats on: RSS, CPU, drops, then one big broadcast.
    Idle {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: idle::Args,
    },
    /// M publishes at rate R to N clients: latency, last-client time, loss, order.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: fanout::Args,
    },
    /// C clients x K round trips through an echo route.
    Echo {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: echo::Args,
    },
    /// Silent-peer detection per strategy and the CPU cost of heartbeats.
    Heartbeat {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: heartbeat::Args,
    },
    /// Fan-out while the server gets SIGHUPs (needs --pid): nothing dropped or lost.
    Reload {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: fanout::Args,
    },
    /// N connections each on its own channel, M publishes at rate R to random users.
    Personal {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: personal::Args,
    },
    /// N connections opened (TLS with --tls, a token with `{jwt}`) and closed, C in flight:
    /// handshakes/s, their latency, server CPU per handshake.
    Handshake {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: handshake::Args,
    },
    /// N clients on a route with history disconnect, miss M messages and reconnect at
    /// once with `recover=`: time until all are live, publish latency to others meanwhile.
    Storm {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: storm::Args,
    },
    /// M messages published into channel history: RSS and history bytes per message.
    Histmem {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: histmem::Args,
    },
    /// The raw-socket floor server.
    Floor {
        #[command(flatten)]
        args: floor::Args,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("heartwire-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heartwire-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let summary = match command {
        Command::Floor { args } => return floor::run(args).await,
        Command::Idle { common, args } => {
            common.check()?;
            idle::run(&common, &args).await?
        }
        Command::Fanout { common, args } => {
            common.check()?;
            fanout::run(&common, &args).await?
        }
        Command::Reload { common, mut args } => {
            common.check()?;
            anyhow::ensure!(common.pid.is_some(), "reload needs --pid to send SIGHUP to");
            args.hups = args.hups.max(1);
            fanout::run(&common, &args).await?
        }
        Command::Echo { common, args } => {
            common.check()?;
            echo::run(&common, &args).await?
        }
        Command::Personal { common, args } => {
            common.check()?;
            personal::run(&common, &args).await?
        }
        Command::Handshake { common, args } => {
            common.check()?;
            handshake::run(&common, &args).await?
        }
        Command::Storm { common, args } => {
            common.check()?;
            storm::run(&common, &args).await?
        }
        Command::Histmem { common, args } => {
            common.check()?;
            histmem::run(&common, &args).await?
        }
        Command::Heartbeat { common, args } => {
            common.check()?;
            heartbeat::run(&common, &args).await?
        }
    };
    println!("{summary}");
    Ok(())
}

//! The command line, in its own file so that `build.rs` can include it too and generate
//! the man page and shell completions from the same definition. It may use only `clap`
//! and `std`: the build script compiles it without the rest of the crate.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A WebSocket push daemon with pluggable heartbeats.
///
/// Exit codes: 0 clean exit; 1 runtime failure (e.g. cannot listen); 2 invalid config or usage.
#[derive(Parser)]
#[command(name = "heartwire", version, about)]
pub struct Cli {
    /// Config file [default: /etc/heartwire/heartwire.toml if it exists, else config/heartwire.toml]
    #[arg(long, short, global = true, env = "HEARTWIRE_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Validate the config (file plus HEARTWIRE_* environment) and exit 0, or 2 with the error.
    Check {
        /// Also print the effective config, secrets redacted.
        #[arg(long)]
        print: bool,
    },
}

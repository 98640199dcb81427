//! Build script: the git revision for `heartwire --version` and the `build_info` metric,
//! and the files the Debian package ships that are generated rather than written by hand:
//! the man pages (gzipped, as Debian installs them) and shell completions (from the clap
//! definition in src/cli.rs), and the systemd unit with the packaged binary path (from
//! systemd/heartwire.service).
//!
//! Why here and not in an xtask: `cargo deb` builds the crate and then packages, so with
//! the generation in the build there is no second command to forget, and the man page
//! and completions always come from the same src/cli.rs as the binary beside them.
//!
//! The generated files go to `dist/` beside the binaries (target/release/dist for a
//! release build), where `cargo deb` picks them up: cargo-deb rewrites asset paths under
//! `target/release/` to the real target directory, but nothing else (its own example
//! build script does the same). It resolves such assets after building, so they can be
//! generated; it does not compress them (only man pages it did not build), hence the
//! gzip here.

use std::env;
use std::error::Error;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use flate2::{Compression, GzBuilder};

#[allow(dead_code)] // main.rs uses the fields; here only the definition matters.
#[path = "src/cli.rs"]
mod cli;

/// Where the source unit runs the binary (a hand install), and where the package puts it.
const LOCAL_BINARY: &str = "/usr/local/bin/heartwire";
const PACKAGED_BINARY: &str = "/usr/bin/heartwire";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    for input in ["build.rs", "src/cli.rs", "systemd/heartwire.service"] {
        println!("cargo:rerun-if-changed={input}");
    }

    let revision = git_revision(&manifest_dir).unwrap_or_else(|| "unknown".into());
    let version = format!("{} (git {revision})", var("CARGO_PKG_VERSION")?);
    println!("cargo:rustc-env=BUILD_GIT_REVISION={revision}");
    println!("cargo:rustc-env=BUILD_VERSION={version}");

    // OUT_DIR is <target>/<profile>/build/heartwire-<hash>/out: three levels up is the
    // directory holding the binaries.
    let profile_dir = out_dir.ancestors().nth(3).ok_or_else(|| {
        format!(
            "OUT_DIR {} is not <target>/<profile>/build/<crate>/out",
            out_dir.display()
        )
    })?;
    let dist = profile_dir.join("dist");
    fs::create_dir_all(&dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;

    // clap takes a `&'static str` (without its `string` feature); this process ends soon.
    let mut cmd = cli::Cli::command().version(version.leak() as &str);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "heartwire", &dist).map_err(|e| {
            format!(
                "cannot write the {shell} completion to {}: {e}",
                dist.display()
            )
        })?;
    }
    // As clap_mangen::generate_to prepares the command: `help` is not a page of its own.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write_gz(&dist.join("heartwire.1.gz"), &main_page(&cmd)?)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone());
        let mut page = Vec::new();
        man.render(&mut page)?;
        write_gz(&dist.join(format!("{}.gz", man.get_filename())), &page)?;
    }

    let source = manifest_dir.join("systemd/heartwire.service");
    let unit = fs::read_to_string(&source)
        .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let unit = packaged_unit(&unit).ok_or_else(|| {
        format!(
            "{} no longer runs {LOCAL_BINARY}: update LOCAL_BINARY in build.rs",
            source.display()
        )
    })?;
    let target = dist.join("heartwire.service");
    fs::write(&target, unit).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(())
}

/// heartwire(1): what clap_mangen renders from the definition, with the FILES,
/// ENVIRONMENT and SEE ALSO sections a daemon's page needs before VERSION.
fn main_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let man = Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    page.extend_from_slice(MAN_SECTIONS.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// Writes `data` gzipped, reproducibly (no name, time 0 in the header).
fn write_gz(path: &Path, data: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let file = fs::File::create(path).map_err(fail)?;
    let mut gz = GzBuilder::new().mtime(0).write(file, Compression::best());
    gz.write_all(data).map_err(fail)?;
    gz.finish().map_err(fail)?;
    Ok(())
}

/// The sections of heartwire(1) that are not in the clap definition, in roff.
const MAN_SECTIONS: &str = r#".SH FILES
.TP
\fI/etc/heartwire/heartwire.toml\fR
The config, read when \fB\-\-config\fR is not given: every key, its default and its
meaning, in comments. After editing it, \fBsystemctl reload heartwire\fR checks it first;
a bad file changes nothing.
.TP
\fI/var/lib/heartwire\fR, \fI/var/log/heartwire\fR
The service's state and log directories (StateDirectory=, LogsDirectory=). Logs go to
the journal unless [log] dir is set: \fBjournalctl \-u heartwire\fR.
.TP
\fI/usr/share/doc/heartwire/\fR
README.md and docs/operations.md (install, reload, metrics, drain, exit codes);
examples/ holds the socket unit and a Grafana dashboard.
.SH ENVIRONMENT
.TP
\fBHEARTWIRE_\fISECTION\fB__\fIKEY\fR
Overrides one config key, e.g. HEARTWIRE_SERVER__MAX_CONNECTIONS=50000. An unknown
HEARTWIRE_ variable is an error.
.SH SEE ALSO
\fBheartwire\-check\fR(1), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;

/// An environment variable cargo sets for every build script.
fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|e| format!("{name}: {e} (build.rs runs under cargo, which sets it)"))
}

/// The service unit as packaged: the binary in /usr/bin, and a header saying so. `None`
/// when the source unit does not name the binary where this expects it.
fn packaged_unit(source: &str) -> Option<String> {
    source.contains(LOCAL_BINARY).then(|| {
        let header = "# Generated from systemd/heartwire.service for the Debian package, which puts the\n\
                      # binary in /usr/bin. Change settings with `systemctl edit heartwire`.\n";
        format!("{header}{}", source.replace(LOCAL_BINARY, PACKAGED_BINARY))
    })
}

/// `git rev-parse --short HEAD` of the checkout this crate is the top of, or `None` when
/// it is not one (a source tarball, or a crate unpacked inside someone else's repository)
/// or git is missing. Asks cargo to rerun when HEAD moves.
fn git_revision(manifest_dir: &Path) -> Option<String> {
    let toplevel = git(manifest_dir, &["rev-parse", "--show-toplevel"])?;
    if fs::canonicalize(toplevel).ok()? != fs::canonicalize(manifest_dir).ok()? {
        return None;
    }
    // HEAD changes when another branch is checked out. A commit changes only the branch's
    // ref, which may be a loose file or a line in packed-refs, and a commit that creates
    // the loose file leaves packed-refs as it was; HEAD's reflog (logs/HEAD, on by default)
    // grows on every commit, checkout, reset or pull, in this worktree only. Only paths
    // that exist: cargo reruns every build for one that does not.
    // --git-path resolves a linked worktree's HEAD and reflog and the shared refs alike.
    let mut watch = vec![
        "HEAD".to_owned(),
        "logs/HEAD".to_owned(),
        "packed-refs".to_owned(),
    ];
    if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in &watch {
        let path = git(
            manifest_dir,
            &["rev-parse", "--path-format=absolute", "--git-path", name],
        )?;
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    git(manifest_dir, &["rev-parse", "--short", "HEAD"])
}

/// One line of git's output, or `None` if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Process::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

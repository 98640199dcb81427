//! `heartwire --version` names the version and the git revision the binary was built from.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_heartwire");

/// `heartwire 0.1.0 (git 1a2b3c4)`, or `(git unknown)` outside a git checkout.
#[test]
fn version_names_the_git_revision() {
    for flag in ["--version", "-V"] {
        let out = Command::new(BIN).arg(flag).output().unwrap();
        assert!(out.status.success(), "{flag}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text.strip_suffix('\n').expect("one line");
        let prefix = format!("heartwire {} (git ", env!("CARGO_PKG_VERSION"));
        let revision = line
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{flag}: `{line}` is not `{prefix}REVISION)`"));
        let hex = revision.len() >= 7 && revision.bytes().all(|b| b.is_ascii_hexdigit());
        assert!(
            hex || revision == "unknown",
            "{flag}: revision `{revision}`"
        );
        // In a checkout the build script reruns when HEAD moves: the revision is HEAD's.
        if let Some(head) = git_head() {
            assert!(
                head.starts_with(revision),
                "{flag}: {revision} is not HEAD ({head})"
            );
        }
    }
}

/// HEAD of the checkout this crate is the top of, as build.rs reads it.
fn git_head() -> Option<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let toplevel = git(&["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(toplevel).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    git(&["rev-parse", "HEAD"])
}

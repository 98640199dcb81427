//! Where `publish.token_file` points: a path relative to the config file, an absolute
//! path, or `%credentials%/NAME`, a credential systemd hands the service
//! (`LoadCredential=NAME:/etc/heartwire/NAME`) in `$CREDENTIALS_DIRECTORY`.
//!
//! Credentials are what make a root-only secret readable by a `DynamicUser=` service: the
//! service manager reads the file and gives the service a private copy.

use std::path::{Path, PathBuf};

/// The prefix naming systemd's credentials directory.
pub const CREDENTIALS: &str = "%credentials%";

/// The environment variable systemd sets to that directory.
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// The credential `written` names, if it is a `%credentials%/NAME` path; an error when it
/// uses `%credentials%` any other way.
pub fn credential(written: &Path) -> Result<Option<&str>, String> {
    let Some(text) = written.to_str() else {
        return Ok(None);
    };
    if !text.contains(CREDENTIALS) {
        return Ok(None);
    }
    match text
        .strip_prefix(CREDENTIALS)
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(name) if !name.is_empty() && !name.contains('/') && name != "." && name != ".." => {
            Ok(Some(name))
        }
        _ => Err(format!(
            "`{text}`: {CREDENTIALS} must start the path and be followed by one credential name, e.g. \"{CREDENTIALS}/publish-token\""
        )),
    }
}

/// The file `written` (as in the config at `source`) names, with `credentials_dir` the
/// value of `$CREDENTIALS_DIRECTORY`.
pub fn resolve(
    written: &Path,
    source: &Path,
    credentials_dir: Option<&Path>,
) -> Result<PathBuf, String> {
    if let Some(name) = credential(written)? {
        return match credentials_dir {
            Some(dir) if !dir.as_os_str().is_empty() => Ok(dir.join(name)),
            _ => Err(format!(
                "uses {CREDENTIALS} but ${CREDENTIALS_DIRECTORY} is not set: run under systemd with LoadCredential={name}:/etc/heartwire/{name}, or give a path (for a check by hand: {CREDENTIALS_DIRECTORY}=/etc/heartwire heartwire check)"
            )),
        };
    }
    // A relative token_file is relative to the config file, like an include.
    Ok(match source.parent() {
        Some(dir) if written.is_relative() => dir.join(written),
        _ => written.to_owned(),
    })
}

/// [`resolve`] against this process's `$CREDENTIALS_DIRECTORY`.
pub fn resolve_here(written: &Path, source: &Path) -> Result<PathBuf, String> {
    let dir = std::env::var_os(CREDENTIALS_DIRECTORY).map(PathBuf::from);
    resolve(written, source, dir.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_credentials() {
        let source = Path::new("/etc/heartwire/heartwire.toml");
        let creds = Some(Path::new("/run/credentials/heartwire.service"));
        for (written, want) in [
            ("publish.token", "/etc/heartwire/publish.token"),
            ("/srv/token", "/srv/token"),
            (
                "%credentials%/publish-token",
                "/run/credentials/heartwire.service/publish-token",
            ),
        ] {
            assert_eq!(
                resolve(Path::new(written), source, creds),
                Ok(PathBuf::from(want)),
                "{written}"
            );
        }
        let err = resolve(Path::new("%credentials%/publish-token"), source, None).unwrap_err();
        assert!(
            err.starts_with(
                "uses %credentials% but $CREDENTIALS_DIRECTORY is not set: run under systemd with LoadCredential=publish-token:/etc/heartwire/publish-token, or give a path"
            ),
            "{err}"
        );
        for bad in [
            "%credentials%",
            "%credentials%/",
            "%credentials%/a/b",
            "/x/%credentials%/a",
            "%credentials%/..",
        ] {
            let err = resolve(Path::new(bad), source, creds).unwrap_err();
            assert!(err.contains("must start the path"), "{bad}: {err}");
        }
    }
}

//! A directory the daemon will write to later (`log.dir`, `history.dir`): whether it
//! will be able to, asked without writing anything.

use std::io::ErrorKind;
use std::path::Path;

use rustix::fs::Access;

/// Fine when heartwire can create files in `dir`: it is a directory this process may
/// write to, or it does not exist yet and its nearest existing parent is one (the log
/// writer creates the missing part). The kernel is asked (`access(2)`), not the mode
/// bits, so ownership, ACLs, read-only mounts and systemd's sandbox all count; nothing is
/// created.
/// `fix` says what to do instead.
pub fn check(dir: &Path, fix: &str) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        return Err(format!("is empty: name a directory; {fix}"));
    }
    let mut existing = dir;
    let meta = loop {
        match std::fs::metadata(existing) {
            Ok(meta) => break meta,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                existing = match existing.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent,
                    _ => Path::new("."),
                };
            }
            Err(e) => {
                return Err(format!(
                    "cannot look at `{}`: {e}; {fix}",
                    existing.display()
                ));
            }
        }
    };
    let missing = if existing == dir {
        String::new()
    } else {
        format!("`{}` does not exist, and ", dir.display())
    };
    if !meta.is_dir() {
        return Err(format!(
            "{missing}`{}` is not a directory; {fix}",
            existing.display()
        ));
    }
    rustix::fs::access(existing, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| {
        let e = std::io::Error::from(e);
        format!(
            "{missing}heartwire cannot create files in `{}` ({e}); {fix}",
            existing.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const FIX: &str = "under systemd use /var/log/heartwire";

    #[test]
    fn a_writable_directory_or_one_to_be_created_in_one() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(check(tmp.path(), FIX), Ok(()));
        assert_eq!(check(&tmp.path().join("new/deeper"), FIX), Ok(()));
        assert!(!tmp.path().join("new").exists(), "check created something");
    }

    #[test]
    fn not_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = check(&file, FIX).unwrap_err();
        assert!(
            err.contains("is not a directory; under systemd use /var/log/heartwire"),
            "{err}"
        );
        let err = check(&file.join("sub"), FIX).unwrap_err();
        assert!(err.contains("/file/sub` does not exist, and `"), "{err}");
        assert!(check(Path::new(""), FIX).unwrap_err().contains("is empty"));
    }

    #[test]
    fn read_only_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ro");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Whether this process can write there (root can): the check must agree.
        let writable = std::fs::write(dir.join("probe"), "").is_ok();
        match check(&dir, FIX) {
            Ok(()) => assert!(writable, "check passed a directory it cannot write to"),
            Err(err) => {
                assert!(!writable, "check refused a writable directory: {err}");
                assert!(err.contains("heartwire cannot create files in"), "{err}");
            }
        }
    }
}

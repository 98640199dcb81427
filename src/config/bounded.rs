//! Reading a file the daemon is pointed at (the config itself, `publish.token_file`, the
//! `[server.tls]` pair, the history file) only up to a limit: a config may name `/dev/zero`, which must not
//! fill memory. Errors name the file.

use std::io::Read;
use std::path::Path;

/// The bytes of `path`, or why not: it cannot be read, or it is larger than `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read `{}`: {e}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "`{}` is larger than {max} bytes: is it the right file?",
            path.display()
        ));
    }
    Ok(bytes)
}

/// [`read_bounded`] for a text file: also refused when it is not UTF-8.
pub(super) fn read_bounded_text(path: &Path, max: u64) -> Result<String, String> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|_| format!("cannot read `{}`: it is not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_too_large_missing_or_not_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_bounded(&file, 5).unwrap(), b"12345");
        assert_eq!(read_bounded_text(&file, 5).unwrap(), "12345");
        let err = read_bounded(&file, 4).unwrap_err();
        assert!(err.contains("is larger than 4 bytes"), "{err}");
        let err = read_bounded(&dir.path().join("missing"), 4).unwrap_err();
        assert!(err.starts_with("cannot read `"), "{err}");
        std::fs::write(&file, b"\xff\xfe").unwrap();
        let err = read_bounded_text(&file, 5).unwrap_err();
        assert!(err.contains("is not UTF-8 text"), "{err}");
    }
}

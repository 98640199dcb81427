//! What a channel name may be: one charset and one length limit, for names from the
//! config, from a handshake (rendered templates) and from a publish request.

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;

/// Whether `b` may appear in a channel name.
pub(super) fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/_.:-@".contains(&b)
}

/// Checks a channel name: 1 to [`MAX_CHANNEL_LEN`] bytes of `A-Z a-z 0-9 / _ . : - @`.
pub fn check_channel(name: &str) -> Result<(), String> {
    if !name.is_empty() && name.len() <= MAX_CHANNEL_LEN && name.bytes().all(allowed) {
        return Ok(());
    }
    let shown: String = name.chars().take(MAX_CHANNEL_LEN).collect();
    let more = if shown.len() < name.len() { "..." } else { "" };
    Err(format!(
        "`{shown}{more}` is not a channel name: use 1 to {MAX_CHANNEL_LEN} characters from A-Z a-z 0-9 / _ . : - @"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["news", "user.42", "/ws", "a:b-c_d/e", "mail@example.com"] {
            assert_eq!(check_channel(ok), Ok(()), "{ok}");
        }
        let long = "x".repeat(MAX_CHANNEL_LEN + 1);
        for bad in ["", "a b", "a*", "é", "a?b", "{sub}", long.as_str()] {
            let err = check_channel(bad).unwrap_err();
            assert!(err.contains("is not a channel name"), "{bad}: {err}");
            assert!(err.len() < 400, "bounded: {err}");
        }
    }
}

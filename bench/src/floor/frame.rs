//! RFC 6455 framing, the little the floor needs: encode an unmasked server frame once,
//! and parse (unmask) client frames.

use bytes::Bytes;

/// Text frame opcode.
pub const TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const BINARY: u8 = 0x2;
/// Close frame opcode.
pub const CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const PING: u8 = 0x9;
/// Pong frame opcode.
pub const PONG: u8 = 0xA;

/// One complete server frame (FIN set, unmasked), ready to write as is.
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// What the front of a client byte stream holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame: opcode, unmasked payload, bytes consumed.
    Frame(u8, Vec<u8>, usize),
    /// More bytes needed.
    Incomplete,
    /// Larger than allowed, or not a valid client frame: drop the connection.
    Invalid,
}

/// Parses one masked client frame from the front of `buf`.
pub fn parse_client(buf: &[u8], max_payload: usize) -> Parsed {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Parsed::Incomplete;
    };
    if b1 & 0x80 == 0 {
        return Parsed::Invalid; // clients must mask
    }
    let (len, at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Parsed::Incomplete,
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 10)
            }
            None => return Parsed::Incomplete,
        },
        n => (u64::from(n), 2),
    };
    let Ok(len) = usize::try_from(len) else {
        return Parsed::Invalid;
    };
    if len > max_payload {
        return Parsed::Invalid;
    }
    let Some(mask) = buf.get(at..at + 4) else {
        return Parsed::Incomplete;
    };
    let Some(data) = buf.get(at + 4..at + 4 + len) else {
        return Parsed::Incomplete;
    };
    let payload = data
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Parsed::Frame(b0 & 0x0f, payload, at + 4 + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn client_frames_unmask() {
        let f = masked(TEXT, b"hello");
        assert_eq!(
            parse_client(&f, 100),
            Parsed::Frame(TEXT, b"hello".to_vec(), f.len())
        );
        assert_eq!(parse_client(&f[..5], 100), Parsed::Incomplete);
        assert_eq!(parse_client(&f, 3), Parsed::Invalid);
        assert_eq!(parse_client(&encode(TEXT, b"x"), 100), Parsed::Invalid);
    }

    #[test]
    fn server_frame_lengths() {
        assert_eq!(&encode(PING, &[0; 13])[..2], &[0x89, 13]);
        assert_eq!(&encode(BINARY, &[0; 300])[..4], &[0x82, 126, 1, 44]);
        assert_eq!(encode(BINARY, &[0; 70_000])[1], 127);
    }
}

//! `application/x-www-form-urlencoded` (a query string or a form body), decoded strictly:
//! a value whose bytes are not UTF-8 once percent-decoded is an error, where
//! `form_urlencoded::parse` would hand out replacement characters in its place.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// The raw `(name, value)` pairs of `input`, in order. Names are decoded (`+` and `%XX`)
/// for comparison with a known name; values are left as written, for [`decode`].
pub(super) fn pairs(input: &[u8]) -> impl Iterator<Item = (Cow<'_, [u8]>, &[u8])> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (decode_bytes(name), value)
        })
}

/// A value from [`pairs`] as text: `+` is a space, `%XX` a byte, and the bytes must be UTF-8.
pub(super) fn decode(value: &[u8]) -> Result<String, std::str::Utf8Error> {
    match decode_bytes(value) {
        Cow::Borrowed(b) => std::str::from_utf8(b).map(str::to_owned),
        Cow::Owned(b) => String::from_utf8(b).map_err(|e| e.utf8_error()),
    }
}

fn decode_bytes(raw: &[u8]) -> Cow<'_, [u8]> {
    // `+` is a space in form encoding (an encoded `%2B` stays `+`): swap it before decoding.
    if raw.contains(&b'+') {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        Cow::Owned(percent_decode(&spaced).collect())
    } else {
        percent_decode(raw).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(input: &str, name: &str) -> Option<Result<String, std::str::Utf8Error>> {
        pairs(input.as_bytes())
            .find(|(k, _)| **k == *name.as_bytes())
            .map(|(_, v)| decode(v))
    }

    #[test]
    fn decodes_like_a_form() {
        let cases = [
            ("msg=one%20two", "msg", Some("one two")),
            ("msg=one+two", "msg", Some("one two")),
            ("msg=1%2B1", "msg", Some("1+1")),
            ("msg=caf%C3%A9", "msg", Some("café")),
            ("a=1&msg=&b=2", "msg", Some("")),
            ("msg", "msg", Some("")),
            ("&&msg=x&", "msg", Some("x")),
            ("m%73g=x", "msg", Some("x")),
            ("msg=a=b", "msg", Some("a=b")),
            ("msg=100%", "msg", Some("100%")),
            ("message=x", "msg", None),
            ("", "msg", None),
        ];
        for (input, name, want) in cases {
            let got = field(input, name).map(|r| r.unwrap());
            assert_eq!(got.as_deref(), want, "{input}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_error_not_replacement_characters() {
        for input in ["msg=%ff%fe", "msg=ok%C3", "msg=%C3%28+x"] {
            assert!(field(input, "msg").unwrap().is_err(), "{input}");
        }
        // A name that is not UTF-8 is simply not the one asked for.
        assert!(field("%ff=x&msg=y", "msg").unwrap().is_ok());
    }
}

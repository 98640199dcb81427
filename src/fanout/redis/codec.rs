//! What heartwire keeps in Redis and sends through it: key and pub/sub channel names, the
//! two Lua scripts, and the text of a bus message.
//!
//! Per channel `C` under prefix `P`: the hash `P:{C}:m` (`e`: epoch, `o`: last offset),
//! the stream `P:{C}:s` (entry id `OFFSET-0`, field `p`: the payload), and the pub/sub
//! channel `P:{C}`. The channel name is the hash tag, so one channel's keys share a Redis
//! Cluster slot (see README "Running several nodes"). `P:!all` carries publishes to every
//! connection, `P:!kick` kicks, `P:!probe:NODE` a node's probes; the string `P:!idem:KEY`
//! holds a publish's `Idempotency-Key` (empty while its publish is in flight, then the
//! answer). `!` is not in a channel name.
//!
//! A bus message is `EPOCH OFFSET MS KIND PAYLOAD` on a channel with history, `- 0 MS KIND
//! PAYLOAD` without (`MS`: when it was published, for the lag metric; `KIND`: `t` text, `j`
//! JSON, `b` binary, written with no space before the payload); on `P:!all` it is `PATH MS
//! KIND PAYLOAD`, `PATH` being `*` for every route; on `P:!kick` it is `u LEN USER REASON`
//! or `c LEN CHANNEL REASON` (`LEN`: the name's length in bytes, as a user may hold spaces).

use bytes::Bytes;
use redis::{Script, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::fanout::{Kick, MAX_KICK_USER};
use crate::wire::Payload;

/// Both scripts start here: the channel's epoch (KEYS[1] `e`), made from ARGV[1] with a
/// fresh history (KEYS[2] dropped) when Redis has none.
const EPOCH: &str = r"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e, 'o', 0)
  redis.call('DEL', KEYS[2])
end
";

/// Numbers, stores and publishes one message on a channel with history.
/// KEYS: meta, stream. ARGV: fresh epoch, history size, stream TTL (ms), meta TTL (ms),
/// kind+payload, pub/sub channel, publish time (ms). Returns {epoch, offset, receivers}.
const PUBLISH: &str = r"
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], o .. '-0', 'p', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local n = redis.call('PUBLISH', ARGV[6], e .. ' ' .. o .. ' ' .. ARGV[7] .. ' ' .. ARGV[5])
return {e, o, n}
";

/// Where a channel with history stands, and its messages after an offset.
/// KEYS: meta, stream. ARGV: fresh epoch, after (offset), most entries, meta TTL (ms).
/// Returns {epoch, last offset, entries}.
const SYNC: &str = r"
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local o = tonumber(redis.call('HGET', KEYS[1], 'o'))
local after = tonumber(ARGV[2])
local entries = {}
if after < o then
  entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', after + 1), '+', 'COUNT', ARGV[3])
end
return {e, o, entries}
";

/// The two scripts, hashed once.
pub(super) struct Scripts {
    pub publish: Script,
    pub sync: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            publish: Script::new(&format!("{EPOCH}{PUBLISH}")),
            sync: Script::new(&format!("{EPOCH}{SYNC}")),
        }
    }
}

/// Names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    /// `P:!all`
    pub all: String,
    /// `P:!kick`
    pub kick: String,
    /// `P:!probe:NODE`
    pub probe: String,
}

impl Keys {
    pub fn new(prefix: &str, node: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            all: format!("{prefix}:!all"),
            kick: format!("{prefix}:!kick"),
            probe: format!("{prefix}:!probe:{node}"),
        }
    }

    /// The string holding publish key `key` and its answer.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:!idem:{key}", self.prefix)
    }

    /// The pub/sub channel of `channel`.
    pub fn channel(&self, channel: &str) -> String {
        format!("{}:{{{channel}}}", self.prefix)
    }

    /// The hash holding `channel`'s epoch and last offset.
    pub fn meta(&self, channel: &str) -> String {
        format!("{}:{{{channel}}}:m", self.prefix)
    }

    /// The stream holding `channel`'s history.
    pub fn stream(&self, channel: &str) -> String {
        format!("{}:{{{channel}}}:s", self.prefix)
    }

    /// The heartwire channel a pub/sub channel carries, if it is one.
    pub fn channel_of<'a>(&self, pubsub: &'a str) -> Option<&'a str> {
        pubsub
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix('}')
    }
}

/// The kind byte and the payload, as stored and published.
pub(super) fn payload_bytes(payload: &Payload) -> Vec<u8> {
    let (kind, bytes): (u8, &[u8]) = match payload {
        Payload::Text(t) => (b't', t.as_bytes()),
        Payload::Json(t) => (b'j', t.as_bytes()),
        Payload::Binary(b) => (b'b', b),
    };
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(kind);
    out.extend_from_slice(bytes);
    out
}

/// A payload from its kind byte and bytes; `None` for anything heartwire did not write.
pub(super) fn payload(bytes: &[u8]) -> Option<Payload> {
    let (&kind, rest) = bytes.split_first()?;
    let text = || Utf8Bytes::try_from(Bytes::copy_from_slice(rest)).ok();
    match kind {
        b't' => text().map(Payload::Text),
        b'j' => text().map(Payload::Json),
        b'b' => Some(Payload::Binary(Bytes::copy_from_slice(rest))),
        _ => None,
    }
}

/// A bus message on a channel: its position (`None` without history), publish time (ms
/// since the Unix epoch) and payload.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Numbered<'a> {
    pub at: Option<(&'a str, u64)>,
    pub published_ms: u64,
    pub payload: Payload,
}

/// Splits `n` space-separated words off the front of `bytes`; the rest follows.
fn words<const N: usize>(bytes: &[u8]) -> Option<([&str; N], &[u8])> {
    let mut out = [""; N];
    let mut rest = bytes;
    for word in &mut out {
        let space = rest.iter().position(|&b| b == b' ')?;
        *word = std::str::from_utf8(&rest[..space]).ok()?;
        rest = &rest[space + 1..];
    }
    Some((out, rest))
}

/// A channel message as the scripts (or [`channel_message`]) wrote it.
pub(super) fn numbered(bytes: &[u8]) -> Option<Numbered<'_>> {
    let ([epoch, offset, ms], rest) = words::<3>(bytes)?;
    let offset: u64 = offset.parse().ok()?;
    let at = match epoch {
        "-" => None,
        e if crate::fanout::is_epoch(e) && offset > 0 => Some((e, offset)),
        _ => return None,
    };
    Some(Numbered {
        at,
        published_ms: ms.parse().ok()?,
        payload: payload(rest)?,
    })
}

/// A message for a channel without history.
pub(super) fn channel_message(payload: &Payload, now_ms: u64) -> Vec<u8> {
    let mut out = format!("- 0 {now_ms} ").into_bytes();
    out.extend_from_slice(&payload_bytes(payload));
    out
}

/// A message for every connection (`route`: `None`) or every connection of one route.
pub(super) fn broadcast(route: Option<&str>, payload: &Payload, now_ms: u64) -> Vec<u8> {
    let mut out = format!("{} {now_ms} ", route.unwrap_or("*")).into_bytes();
    out.extend_from_slice(&payload_bytes(payload));
    out
}

/// A broadcast as [`broadcast`] wrote it: (route, publish time, payload).
pub(super) fn broadcast_of(bytes: &[u8]) -> Option<(Option<&str>, u64, Payload)> {
    let ([route, ms], rest) = words::<2>(bytes)?;
    let route = (route != "*").then_some(route);
    Some((route, ms.parse().ok()?, payload(rest)?))
}

/// A kick for every node.
pub(super) fn kick(kick: &Kick, reason: &str) -> Vec<u8> {
    let (kind, name) = match kick {
        Kick::User(u) => ('u', u.as_str()),
        Kick::Channel(c) => ('c', c.as_str()),
    };
    format!("{kind} {} {name} {reason}", name.len()).into_bytes()
}

/// A kick as [`kick`] wrote it: whom, and the reason.
pub(super) fn kick_of(bytes: &[u8]) -> Option<(Kick, &str)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (kind, rest) = text.split_once(' ')?;
    let (len, rest) = rest.split_once(' ')?;
    let len: usize = len.parse().ok().filter(|&l| l <= MAX_KICK_USER)?;
    let name = rest.get(..len)?.to_owned();
    let reason = rest.get(len..)?.strip_prefix(' ')?;
    let kick = match kind {
        "u" => Kick::User(name),
        "c" => Kick::Channel(name),
        _ => return None,
    };
    Some((kick, reason))
}

/// What a script answered: a text or integer at `i`.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// The PUBLISH script's answer: (epoch, offset, receivers).
pub(super) fn published(v: &Value) -> Option<(String, u64, u64)> {
    let Value::Array(a) = v else { return None };
    match a.as_slice() {
        [e, o, n] => Some((text(e)?, number(o)?, number(n)?)),
        _ => None,
    }
}

/// A channel's messages as read from Redis: (offset, payload), oldest first.
pub(super) type Entries = Vec<(u64, Payload)>;

/// The SYNC script's answer: (epoch, last offset, entries oldest first).
pub(super) fn synced(v: &Value) -> Option<(String, u64, Entries)> {
    let Value::Array(a) = v else { return None };
    let [e, o, entries] = a.as_slice() else {
        return None;
    };
    let entries = match entries {
        Value::Array(list) => list.iter().map(entry).collect::<Option<Vec<_>>>()?,
        Value::Nil => Vec::new(),
        _ => return None,
    };
    Some((text(e)?, number(o)?, entries))
}

/// One XRANGE entry: `[ "OFFSET-0", ["p", PAYLOAD] ]`.
fn entry(v: &Value) -> Option<(u64, Payload)> {
    let Value::Array(pair) = v else { return None };
    let [id, Value::Array(fields)] = pair.as_slice() else {
        return None;
    };
    let offset = text(id)?
        .strip_suffix("-0")?
        .parse()
        .ok()
        .filter(|&o: &u64| o > 0)?;
    let [_, Value::BulkString(p)] = fields.as_slice() else {
        return None;
    };
    Some((offset, payload(p)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_channel_as_hash_tag_and_read_back() {
        let k = Keys::new("hw", "node1");
        assert_eq!(k.channel("user.42"), "hw:{user.42}");
        assert_eq!(k.meta("user.42"), "hw:{user.42}:m");
        assert_eq!(k.stream("user.42"), "hw:{user.42}:s");
        assert_eq!(k.channel_of("hw:{user.42}"), Some("user.42"));
        assert_eq!(k.channel_of("hw:!all"), None);
        assert_eq!(k.channel_of("other:{a}"), None);
        assert_eq!(k.probe, "hw:!probe:node1");
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let json = Payload::Json(Utf8Bytes::from_static(r#"{"a":1}"#));
        let mut m = b"abcd1234 7 1700 ".to_vec();
        m.extend(payload_bytes(&json));
        let n = numbered(&m).expect("decodes");
        assert_eq!(n.at, Some(("abcd1234", 7)));
        assert_eq!((n.published_ms, n.payload), (1700, json.clone()));
        let bin = Payload::Binary(Bytes::from_static(b"\x00 \xff"));
        let plain = channel_message(&bin, 5);
        let plain = numbered(&plain).expect("decodes");
        assert_eq!((plain.at, plain.payload), (None, bin.clone()));
        let b = broadcast(Some("/ws"), &json, 9);
        assert_eq!(broadcast_of(&b), Some((Some("/ws"), 9, json.clone())));
        assert_eq!(
            broadcast_of(&broadcast(None, &bin, 9)),
            Some((None, 9, bin))
        );
        for bad in [
            &b""[..],
            b"abcd1234 7",
            b"abcd1234 x 1 tx",
            b"ABCD1234 7 1 tx",
            b"abcd1234 0 1 tx",
            b"abcd1234 7 1 zx",
            b"abcd1234 7 1 t\xff",
        ] {
            assert_eq!(numbered(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kicks_round_trip_whatever_the_user_holds() {
        for k in [
            Kick::User("ann lee 42".into()),
            Kick::Channel("user.42".into()),
        ] {
            assert_eq!(kick_of(&kick(&k, "bye now")), Some((k.clone(), "bye now")));
        }
        for bad in [
            &b"u 9 ann bye"[..],
            b"x 1 a b",
            b"u 300 a b",
            b"u 1",
            b"u 1 ab",
        ] {
            assert_eq!(kick_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn script_answers_parse() {
        let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        let e = Value::Array(vec![s("5-0"), Value::Array(vec![s("p"), s("thello")])]);
        let v = Value::Array(vec![s("abcd1234"), Value::Int(5), Value::Array(vec![e])]);
        let (epoch, last, entries) = synced(&v).expect("parses");
        assert_eq!((epoch.as_str(), last), ("abcd1234", 5));
        assert_eq!(
            entries,
            vec![(5, Payload::Text(Utf8Bytes::from_static("hello")))]
        );
        let p = Value::Array(vec![s("abcd1234"), Value::Int(6), Value::Int(2)]);
        assert_eq!(published(&p), Some(("abcd1234".into(), 6, 2)));
        assert_eq!(published(&Value::Nil), None);
        assert_eq!(synced(&Value::Array(vec![s("x")])), None);
        let zero = Value::Array(vec![s("0-0"), Value::Array(vec![s("p"), s("tx")])]);
        let v = Value::Array(vec![s("abcd1234"), Value::Int(5), Value::Array(vec![zero])]);
        assert_eq!(synced(&v), None, "offsets start at 1");
    }
}

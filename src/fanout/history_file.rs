//! History on disk, so a single node restarts without its clients losing anything.
//!
//! Written once on shutdown, after the drain (no publish can arrive any more): to
//! `history.bin.tmp`, fsynced, renamed over `history.bin`, the directory fsynced. Read
//! once at start, then renamed away, so a later crash (which writes nothing) can never
//! replay this old file against offsets handed out since: the next start has no file and
//! begins with new epochs.
//!
//! Layout (integers little-endian): the magic `HWHIST1\n`, the body's length (u64), the
//! body, and a CRC-32 of the body (u32). The body is the streams one after the other:
//! name (u16 length + bytes), epoch (u8 length + bytes), last offset (u64), history size
//! (u32) and TTL (ms, u64), entry count (u32), then each entry: offset (u64), when stored
//! (ms since the Unix epoch, u64), frame (u32 length + the encoded envelope frame). Any
//! damage (a short file, a flipped bit, a value out of range) refuses the whole file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::history::{Entry, Saved, is_epoch};
use crate::channels::check_channel;
use crate::config::{HistoryPolicy, MAX_DURATION, MAX_HISTORY_SIZE, read_bounded};
use crate::wire::WireFrame;

/// The file's name in `history.dir`.
pub const FILE: &str = "history.bin";
const MAGIC: &[u8; 8] = b"HWHIST1\n";

/// Where the file for `dir` lives.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes `streams` to `dir` atomically; returns the file's size.
pub fn save(dir: &Path, streams: &[Saved], now: Instant) -> io::Result<u64> {
    let wall = SystemTime::now();
    let mut body = Vec::new();
    for s in streams {
        put_len(&mut body, s.name.len(), u16::MAX as usize)?;
        body.extend_from_slice(s.name.as_bytes());
        body.push(u8::try_from(s.epoch.len()).map_err(|_| invalid("epoch too long"))?);
        body.extend_from_slice(s.epoch.as_bytes());
        body.extend_from_slice(&s.last.to_le_bytes());
        put_len(&mut body, s.policy.size, u32::MAX as usize)?;
        body.extend_from_slice(&millis(s.policy.ttl).to_le_bytes());
        put_len(&mut body, s.entries.len(), u32::MAX as usize)?;
        for e in &s.entries {
            let age = now.saturating_duration_since(e.at);
            let stored = wall.checked_sub(age).unwrap_or(UNIX_EPOCH);
            let unix = millis(stored.duration_since(UNIX_EPOCH).unwrap_or_default());
            body.extend_from_slice(&e.offset.to_le_bytes());
            body.extend_from_slice(&unix.to_le_bytes());
            let frame = e.frame.encoded();
            put_len(&mut body, frame.len(), u32::MAX as usize)?;
            body.extend_from_slice(frame);
        }
    }
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(MAGIC)?;
    file.write_all(&(body.len() as u64).to_le_bytes())?;
    file.write_all(&body)?;
    file.write_all(&crc32fast::hash(&body).to_le_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path(dir))?;
    File::open(dir)?.sync_all()?;
    Ok((MAGIC.len() + 8 + body.len() + 4) as u64)
}

/// What [`take`] found.
#[derive(Debug)]
pub enum Loaded {
    /// No file: a first start, or the last stop did not save.
    Nothing,
    /// The streams saved, to restore.
    Streams(Vec<Saved>),
}

/// Reads `dir`'s file (at most `max_bytes` of history, so about that much file) and moves
/// it aside: to `history.bin.loaded` when read, `history.bin.corrupt` when refused (the
/// `Err` says why; start with empty history then).
pub fn take(dir: &Path, max_bytes: usize, now: Instant) -> Result<Loaded, String> {
    let file = path(dir);
    let bytes = match read(&file, max_bytes) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(Loaded::Nothing),
        Err(e) => return Err(set_aside(&file, "corrupt", e)),
    };
    match parse(&bytes, now) {
        Ok(streams) => match fs::rename(&file, file.with_extension("bin.loaded")) {
            Ok(()) => Ok(Loaded::Streams(streams)),
            // Kept, a crash would replay it against new offsets: better to lose it.
            Err(e) => Err(format!(
                "cannot move {} aside after reading it ({e}): history not restored",
                file.display()
            )),
        },
        Err(e) => Err(set_aside(&file, "corrupt", e)),
    }
}

fn set_aside(file: &Path, what: &str, why: String) -> String {
    let to = file.with_extension(format!("bin.{what}"));
    match fs::rename(file, &to) {
        Ok(()) => format!("{why} (moved to {})", to.display()),
        Err(e) => format!("{why} (and cannot move it aside: {e})"),
    }
}

fn read(file: &Path, max_bytes: usize) -> Result<Option<Vec<u8>>, String> {
    if let Ok(false) = file.try_exists() {
        return Ok(None);
    }
    // Frames and bookkeeping: generous, but bounded by the history it may restore.
    let cap = (max_bytes as u64).saturating_mul(2).saturating_add(1 << 20);
    read_bounded(file, cap).map(Some)
}

/// Parses a whole file; any damage refuses it.
pub fn parse(bytes: &[u8], now: Instant) -> Result<Vec<Saved>, String> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not a heartwire history file (wrong magic)".into());
    }
    let len = usize::try_from(r.u64()?).map_err(|_| "body length out of range")?;
    if r.0.len() != len.saturating_add(4) {
        return Err(format!(
            "truncated or padded: the body should be {len} bytes and a checksum, {} bytes follow",
            r.0.len()
        ));
    }
    let (body, sum) = r.0.split_at(len);
    if crc32fast::hash(body).to_le_bytes() != sum {
        return Err("checksum mismatch: the file is damaged".into());
    }
    let wall = SystemTime::now();
    let mut r = Reader(body);
    let mut streams = Vec::new();
    while !r.0.is_empty() {
        streams.push(stream(&mut r, wall, now)?);
    }
    Ok(streams)
}

fn stream(r: &mut Reader<'_>, wall: SystemTime, now: Instant) -> Result<Saved, String> {
    let name_len = usize::from(r.u16()?);
    let name = std::str::from_utf8(r.take(name_len)?).map_err(|_| "a channel name is not UTF-8")?;
    check_channel(name)?;
    let epoch_len = usize::from(r.take(1)?[0]);
    let epoch = std::str::from_utf8(r.take(epoch_len)?).unwrap_or_default();
    if !is_epoch(epoch) {
        return Err(format!("channel `{name}`: invalid epoch"));
    }
    let last = r.u64()?;
    let size = r.u32()? as usize;
    let ttl = Duration::from_millis(r.u64()?);
    if size == 0 || size > MAX_HISTORY_SIZE || ttl.is_zero() || ttl > MAX_DURATION {
        return Err(format!(
            "channel `{name}`: history size or TTL out of range"
        ));
    }
    let count = r.u32()? as usize;
    if count > size {
        return Err(format!(
            "channel `{name}`: {count} messages, more than its size {size}"
        ));
    }
    let mut entries = Vec::with_capacity(count);
    let mut previous = 0;
    for _ in 0..count {
        let offset = r.u64()?;
        let stored = UNIX_EPOCH + Duration::from_millis(r.u64()?);
        let len = r.u32()? as usize;
        let frame = WireFrame::decode_text(Bytes::copy_from_slice(r.take(len)?))
            .ok_or_else(|| format!("channel `{name}`: message {offset} is not a text frame"))?;
        if offset <= previous || offset > last {
            return Err(format!("channel `{name}`: offsets out of order"));
        }
        previous = offset;
        let age = wall.duration_since(stored).unwrap_or_default();
        entries.push(Entry {
            offset,
            at: now.checked_sub(age).unwrap_or(now),
            frame,
        });
    }
    Ok(Saved {
        name: Arc::from(name),
        epoch: Arc::from(epoch),
        last,
        policy: HistoryPolicy { size, ttl },
        entries,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated: a record runs past the end".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

fn put_len(out: &mut Vec<u8>, n: usize, max: usize) -> io::Result<()> {
    if n > max {
        return Err(invalid("a length does not fit its field"));
    }
    match max {
        m if m <= u16::MAX as usize => out.extend_from_slice(&(n as u16).to_le_bytes()),
        _ => out.extend_from_slice(&(n as u32).to_le_bytes()),
    }
    Ok(())
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{self, At};
    use crate::wire::Payload;

    fn saved(now: Instant) -> Vec<Saved> {
        let policy = HistoryPolicy {
            size: 10,
            ttl: Duration::from_secs(60),
        };
        let entries = (5..=7)
            .map(|offset| Entry {
                offset,
                at: now - Duration::from_secs(10 - offset),
                frame: envelope::message(
                    Some("news"),
                    Some(At {
                        epoch: "abcd1234",
                        offset,
                    }),
                    &Payload::Text(format!("m{offset}").into()),
                ),
            })
            .collect();
        vec![
            Saved {
                name: "news".into(),
                epoch: "abcd1234".into(),
                last: 7,
                policy,
                entries,
            },
            Saved {
                name: "user.1".into(),
                epoch: "zz99zz99".into(),
                last: 3,
                policy,
                entries: Vec::new(),
            },
        ]
    }

    #[test]
    fn round_trips_and_is_moved_aside_once_read() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let size = save(dir.path(), &saved(now), now).unwrap();
        assert_eq!(fs::metadata(path(dir.path())).unwrap().len(), size);
        let Loaded::Streams(back) = take(dir.path(), 1 << 20, now).unwrap() else {
            panic!("nothing loaded");
        };
        assert_eq!(back.len(), 2);
        let news = &back[0];
        assert_eq!(
            (&*news.name, &*news.epoch, news.last),
            ("news", "abcd1234", 7)
        );
        let offsets: Vec<u64> = news.entries.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [5, 6, 7]);
        assert_eq!(
            news.entries[2].frame.encoded(),
            saved(now)[0].entries[2].frame.encoded()
        );
        // Ages survive to the millisecond or so.
        let age = now.saturating_duration_since(news.entries[0].at);
        assert!(
            age >= Duration::from_millis(4_900) && age <= Duration::from_millis(5_100),
            "{age:?}"
        );
        assert_eq!(
            (&*back[1].name, back[1].last, back[1].entries.len()),
            ("user.1", 3, 0)
        );
        assert!(
            matches!(take(dir.path(), 1 << 20, now), Ok(Loaded::Nothing)),
            "read once"
        );
        assert!(path(dir.path()).with_extension("bin.loaded").exists());
    }

    #[test]
    fn truncated_flipped_or_foreign_files_are_refused_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        save(dir.path(), &saved(now), now).unwrap();
        let good = fs::read(path(dir.path())).unwrap();
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 1].to_vec(), "truncated"),
            (good[..20].to_vec(), "truncated"),
            (b"{\"not\": \"ours\"}".to_vec(), "magic"),
            (Vec::new(), "truncated"),
        ];
        for i in [MAGIC.len() + 8 + 3, good.len() / 2, good.len() - 2] {
            let mut flipped = good.clone();
            flipped[i] ^= 0x10;
            cases.push((flipped, "checksum"));
        }
        for (bytes, why) in cases {
            fs::write(path(dir.path()), &bytes).unwrap();
            let err = take(dir.path(), 1 << 20, now).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
            assert!(!path(dir.path()).exists(), "set aside: {err}");
            assert!(path(dir.path()).with_extension("bin.corrupt").exists());
        }
        fs::write(path(dir.path()), vec![0u8; (1 << 20) + 201]).unwrap();
        let err = take(dir.path(), 100, now).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
    }

    #[test]
    fn values_out_of_range_are_refused_even_with_a_good_checksum() {
        let now = Instant::now();
        let mut bad = saved(now);
        bad[0].entries.swap(0, 1);
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &bad, now).unwrap();
        let err = parse(&fs::read(path(dir.path())).unwrap(), now).unwrap_err();
        assert!(err.contains("out of order"), "{err}");
        let mut bad = saved(now);
        bad[1].epoch = "NOT-OURS".into();
        save(dir.path(), &bad, now).unwrap();
        let err = parse(&fs::read(path(dir.path())).unwrap(), now).unwrap_err();
        assert!(err.contains("invalid epoch"), "{err}");
    }
}

//! History and recovery through the real hub: offsets under concurrent publishes, a
//! recovery racing live publishes, and each way a recovery can fail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::history::{ENTRY_COST, History};
use super::{Conn, Hub, Limits, Registration, Resume, Subscriber, Target};
use crate::config::{self, HistoryPolicy, SlowConsumer};
use crate::envelope::{self, At};
use crate::metrics::{HistoryCounters, Metrics};
use crate::wire::{Payload, WireFrame};

const TOML: &str = r#"
[server]
outbound_queue = 4096
[[route]]
path = "/h"
format = "envelope"
channels = ["news", "user.{query.u}"]
history_size = 1000
history_ttl = "1m"
[[route]]
path = "/raw"
channel = "news"
"#;

fn hub() -> Arc<Hub> {
    let config = config::from_toml(TOML, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"));
    let hub = Arc::new(Hub::new(Arc::new(Metrics::new())));
    hub.apply(&config);
    hub
}

fn connect(hub: &Hub, path: &str, channels: &[&str], resume: Vec<Resume>) -> (Conn, Registration) {
    let route = hub.route(path).unwrap();
    let who = Subscriber {
        user: None,
        channels: channels.iter().map(|c| Arc::from(*c)).collect(),
        resume,
    };
    let limits = Limits {
        policy: SlowConsumer::Disconnect,
        messages: 4096,
        bytes: 64 << 20,
    };
    hub.register(&route, "127.0.0.1:1".parse().unwrap(), who, limits)
}

fn publish(hub: &Hub, channel: &str, text: &str) -> u64 {
    let receipt = hub.deliver(
        &Target::Channels(vec![channel.to_owned()]),
        &Payload::Text(text.to_owned().into()),
    );
    receipt.per_channel[0].at.as_ref().map_or(0, |(_, o)| *o)
}

/// Everything queued for `conn`, as JSON.
fn received(conn: &Conn) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let mut batch = Vec::new();
        let taken = conn.mailbox.take(&mut batch);
        assert!(taken.ending.is_none(), "{:?}", taken.ending);
        all.extend(
            batch
                .iter()
                .map(|f| serde_json::from_str::<Value>(f.message().to_text().unwrap()).unwrap()),
        );
        if taken.left == 0 {
            return all;
        }
    }
}

fn offsets(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["offset"].as_u64().unwrap())
        .collect()
}

fn resume(channel: &str, offset: u64, epoch: &str) -> Vec<Resume> {
    vec![Resume {
        channel: channel.into(),
        offset,
        epoch: epoch.into(),
    }]
}

#[test]
fn offsets_are_contiguous_under_concurrent_publishes() {
    let hub = hub();
    let (conn, _reg) = connect(&hub, "/h", &["news"], Vec::new());
    let got: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let hub = &hub;
                s.spawn(move || {
                    (0..250)
                        .map(|i| publish(hub, "news", &format!("{w}.{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=1000).collect::<Vec<_>>(), "each offset once");
    let frames = received(&conn);
    assert_eq!(frames[0]["type"], "position");
    assert_eq!(offsets(&frames), (1..=1000).collect::<Vec<_>>(), "in order");
}

#[test]
fn a_recovery_racing_publishes_has_no_gap_and_no_duplicate() {
    let hub = hub();
    let (first, _reg) = connect(&hub, "/h", &["news"], Vec::new());
    let position = received(&first).remove(0);
    let epoch = position["epoch"].as_str().unwrap().to_owned();
    assert_eq!(position["offset"], 0);
    let conns = std::thread::scope(|s| {
        let publisher = s.spawn(|| {
            for i in 1..=600 {
                publish(&hub, "news", &i.to_string());
            }
        });
        let mut conns = Vec::new();
        // Recover from a few points while publishes go on.
        for from in [0u64, 0, 0, 0, 0, 0] {
            conns.push(connect(&hub, "/h", &["news"], resume("news", from, &epoch)));
            std::thread::yield_now();
        }
        publisher.join().unwrap();
        conns
    });
    for (conn, _reg) in &conns {
        let frames = received(conn);
        let head = &frames[0];
        assert_eq!(head["type"], "position");
        assert_eq!(head["recovered"], true, "{head}");
        let replayed = head["replayed"].as_u64().unwrap();
        assert_eq!(
            head["offset"].as_u64(),
            Some(replayed),
            "replay ends at the position"
        );
        assert_eq!(offsets(&frames), (1..=600).collect::<Vec<_>>());
    }
}

#[test]
fn recoveries_say_why_they_cannot_replay() {
    let hub = hub();
    let (c, _r) = connect(&hub, "/h", &["news"], Vec::new());
    let epoch = received(&c)[0]["epoch"].as_str().unwrap().to_owned();
    for i in 1..=5 {
        publish(&hub, "news", &i.to_string());
    }
    let cases = [
        (resume("news", 3, &epoch), Some(2), None),
        (resume("news", 5, &epoch), Some(0), None),
        (resume("news", 3, "zzzzzzzz"), None, Some("epoch_changed")),
        (resume("news", 9, &epoch), None, Some("epoch_changed")),
        (
            resume("elsewhere", 1, &epoch),
            None,
            Some("unknown_channel"),
        ),
    ];
    for (asked, replayed, reason) in cases {
        let (c, _r) = connect(&hub, "/h", &["news"], asked.clone());
        let frames = received(&c);
        let pos = frames
            .iter()
            .find(|f| f["type"] == "position" && f["channel"] == asked[0].channel.as_str())
            .unwrap();
        match (replayed, reason) {
            (Some(n), _) => {
                assert_eq!(pos["replayed"], n, "{asked:?}");
                assert_eq!(offsets(&frames), (6 - n..=5).collect::<Vec<_>>());
            }
            (None, Some(why)) => {
                assert_eq!(pos["recovered"], false, "{asked:?}");
                assert_eq!(pos["reason"], why, "{asked:?}");
                assert!(offsets(&frames).is_empty(), "no partial replay");
            }
            _ => unreachable!(),
        }
    }
    // A raw route's subscribers get the bare message and no positions.
    let (raw, _r) = connect(&hub, "/raw", &["news"], Vec::new());
    publish(&hub, "news", "plain");
    let mut batch = Vec::new();
    raw.mailbox.take(&mut batch);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].message().to_text().unwrap(), "plain");
}

fn store(max_bytes: usize) -> History {
    History::new(
        max_bytes,
        Duration::from_secs(3600),
        HistoryCounters::default(),
    )
}

fn frame(at: At<'_>) -> WireFrame {
    envelope::message(Some("c"), Some(at), &Payload::Text("0123456789".into()))
}

fn append(h: &History, name: &str, policy: HistoryPolicy, now: Instant) -> u64 {
    let stream = h.stream(name, policy, now);
    let mut s = super::history::lock(&stream);
    let (_, offset, _) = h.append(&mut s, policy, now, frame);
    drop(s);
    h.enforce_cap();
    offset
}

const POLICY: HistoryPolicy = HistoryPolicy {
    size: 3,
    ttl: Duration::from_secs(10),
};

#[test]
fn size_and_ttl_bound_a_channel_and_expiry_is_window_exceeded() {
    let h = store(1 << 20);
    let t0 = Instant::now();
    for i in 0..5 {
        append(&h, "c", POLICY, t0 + Duration::from_secs(i));
    }
    assert_eq!(h.len(), 3, "history_size keeps the last 3");
    let stream = h.stream("c", POLICY, t0);
    let epoch = super::history::lock(&stream).at().epoch.to_owned();
    let s = super::history::lock(&stream);
    let at = t0 + Duration::from_secs(5);
    assert_eq!(s.missed(&epoch, 2, at).map(|v| v.len()), Ok(3));
    assert_eq!(
        s.missed(&epoch, 1, at).map(|v| v.len()),
        Err(envelope::Miss::WindowExceeded)
    );
    // Message 3 was stored at t0+2s: gone at t0+12s, so from 2 is no longer whole.
    let later = t0 + Duration::from_secs(12);
    assert_eq!(
        s.missed(&epoch, 2, later).map(|v| v.len()),
        Err(envelope::Miss::WindowExceeded)
    );
    assert_eq!(s.missed(&epoch, 3, later).map(|v| v.len()), Ok(2));
    drop(s);
    h.sweep(later);
    assert_eq!(h.len(), 2, "the sweep drops what expired");
    h.sweep(t0 + Duration::from_secs(60));
    assert_eq!(h.len(), 0);
    assert_eq!(
        super::history::lock(&stream).at().offset,
        5,
        "the position outlives the messages"
    );
}

#[test]
fn the_byte_cap_evicts_the_oldest_of_any_channel_first() {
    let t0 = Instant::now();
    let one = ENTRY_COST
        + frame(At {
            epoch: "abcdefgh",
            offset: 1,
        })
        .encoded()
        .len();
    let h = store(1 << 20);
    let policy = HistoryPolicy {
        size: 100,
        ttl: Duration::from_secs(60),
    };
    for i in 0..4 {
        append(&h, "a", policy, t0 + Duration::from_millis(i));
    }
    for i in 0..3 {
        append(&h, "b", policy, t0 + Duration::from_millis(10 + i));
    }
    // Room for three messages less.
    let full = h.bytes();
    h.configure(full - 3 * one, Duration::from_secs(3600));
    assert_eq!(h.bytes(), full - 3 * one);
    let a = h.stream("a", policy, t0);
    let b = h.stream("b", policy, t0);
    let first = |s: &Arc<std::sync::Mutex<super::history::Stream>>| {
        super::history::lock(s).entries().next().map(|e| e.offset)
    };
    assert_eq!(first(&a), Some(4), "a's three oldest went first");
    assert_eq!(first(&b), Some(1), "b's are newer and stay");
    assert_eq!(h.len(), super::history::lock(&a).entries().count() + 3);
}

#[test]
fn a_lost_stream_gets_a_new_epoch() {
    let h = store(1 << 20);
    let t0 = Instant::now();
    append(&h, "c", POLICY, t0);
    let old = super::history::lock(&h.stream("c", POLICY, t0))
        .at()
        .epoch
        .to_owned();
    // Expired and idle past position_ttl (an hour): gone, epoch and all.
    h.sweep(t0 + Duration::from_secs(3601));
    let stream = h.stream("c", POLICY, t0);
    let s = super::history::lock(&stream);
    assert_ne!(s.at().epoch, old);
    assert_eq!(s.at().offset, 0);
    assert_eq!(
        s.missed(&old, 1, t0).map(|v| v.len()),
        Err(envelope::Miss::EpochChanged)
    );
}

#[test]
fn a_stored_message_costs_the_bookkeeping_the_docs_say() {
    // README and config/heartwire.toml say 56 bytes per message: keep them true.
    assert_eq!(ENTRY_COST, 56);
}

/// A node of a shared broker: messages arrive numbered; a gap, a copy that does not reach
/// back far enough, and a lost epoch are settled by [`Hub::sync`].
#[test]
fn a_bus_numbered_channel_fills_gaps_skips_duplicates_and_reports_lost_epochs() {
    use super::{BusSlice, Placed};
    let hub = hub();
    hub.numbered_by_bus();
    let text = |n: u64| Payload::Text(n.to_string().into());
    let slice = |epoch: &str, last: u64, from: u64, range: std::ops::Range<u64>| BusSlice {
        epoch: epoch.into(),
        last,
        from,
        entries: range.map(|o| (o, text(o))).collect(),
    };
    // Where the bus stands when the first subscriber comes: epoch aaaaaaaa, offset 3.
    hub.sync("news", &slice("aaaaaaaa", 3, u64::MAX, 0..0));
    let (conn, _reg) = connect(&hub, "/h", &["news"], Vec::new());
    assert_eq!(received(&conn)[0]["offset"], 3, "position");
    assert_eq!(
        hub.deliver_at("news", "aaaaaaaa", 4, &text(4)),
        Placed::Delivered(1)
    );
    assert_eq!(
        hub.deliver_at("news", "aaaaaaaa", 4, &text(4)),
        Placed::Duplicate
    );
    assert_eq!(
        hub.deliver_at("news", "aaaaaaaa", 7, &text(7)),
        Placed::Behind { from: 4 }
    );
    // The gap read from the bus: 5..8 once, in order; 7 again live is a duplicate.
    hub.sync("news", &slice("aaaaaaaa", 7, 4, 5..8));
    assert_eq!(
        hub.deliver_at("news", "aaaaaaaa", 7, &text(7)),
        Placed::Duplicate
    );
    assert_eq!(offsets(&received(&conn)), vec![4, 5, 6, 7]);
    // A recovery from before this node's copy: rebuilt from the bus, nothing sent twice.
    hub.sync("news", &slice("aaaaaaaa", 7, 1, 2..8));
    assert!(received(&conn).is_empty());
    let (back, _r) = connect(&hub, "/h", &["news"], resume("news", 1, "aaaaaaaa"));
    assert_eq!(offsets(&received(&back)), vec![2, 3, 4, 5, 6, 7]);
    // The bus lost the channel (Redis restarted empty): told, then live again.
    assert!(matches!(
        hub.deliver_at("news", "bbbbbbbb", 1, &text(1)),
        Placed::Behind { .. }
    ));
    hub.sync("news", &slice("bbbbbbbb", 1, 0, 1..2));
    let told = received(&conn);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (told[0]["recovered"].as_bool(), told[0]["reason"].as_str()),
        (Some(false), Some("epoch_changed"))
    );
    assert_eq!(
        (told[0]["epoch"].as_str(), told[0]["offset"].as_u64()),
        (Some("bbbbbbbb"), Some(1))
    );
    assert_eq!(
        hub.deliver_at("news", "bbbbbbbb", 2, &text(2)),
        Placed::Delivered(2)
    );
    // Messages the bus no longer holds: told window_exceeded.
    hub.sync("news", &slice("bbbbbbbb", 9, 2, 6..10));
    let told = received(&conn);
    assert_eq!(offsets(&told), vec![2], "{told:?}");
    assert_eq!(told[1]["reason"], "window_exceeded", "{told:?}");
    assert_eq!(told[1]["offset"], 9);
}

#!/usr/bin/env python3
"""Writes the "History and recovery (issue 14)" section of BENCHMARKS.md from
bench/run.sh's SUITE=history results, leaving the rest of the file as it is.

Usage: history_report.py RESULTS_DIR BENCHMARKS.md   (stdlib only; run.sh calls it)
"""

from pathlib import Path


from channels_report import fmt, met, paired, per_run, provenance, runs, versus, write

BEGIN = "<!-- history: written by bench/run.sh with SUITE=history -->"
END = "<!-- /history -->"
CPU_TARGET = 1.10


def both(rows, case, path):
    """Median of the raw and the history variant of `case`, and their ratio."""
    return versus(rows, case, path, "raw", "hist")


def section(rows, env):
    clients = fmt(float(env.get("FANOUT_CLIENTS", 0)))
    storm_n = fmt(float(env.get("STORM_CLIENTS", 0)))
    missed = env.get("STORM_MISSED", "?")
    L = ["## History and recovery (issue 14)", "",
         provenance("history", rows, env, "each figure is compared with a reference"), "",
         "Routes (config written by run.sh): `/news` raw (`channel = \"news\"`, no history), `/hist` with",
         "`format = \"envelope\"`, `channel = \"hist\"`, `history_size = 100`, `history_ttl = \"5m\"`; for memory `/hm`",
         "(`channels = [\"hm.{query.c}\"]`, history_size 100) and `/hone` (`channel = \"hone\"`, history_size 10 000), both",
         "envelope. Slow consumers are disconnected (the default, which history needs). Envelope clients count only",
         "`{\"type\":\"message\"}` frames; the position frame each gets on connect is counted apart.", ""]

    b1 = both(rows, "B1", "cpu_us_per_delivery")
    b3 = both(rows, "B3", "cpu_us_per_delivery")

    def cpu_met(t):
        raw, hist, _ = t
        return met(None if raw is None or hist is None else hist / raw <= CPU_TARGET)

    live = med(rows, "storm", "storm.all_live_s")
    base_req = med(rows, "storm", "others.baseline.publish_req_ms.p99")
    storm_req = med(rows, "storm", "others.storm.publish_req_ms.p99")
    base_lat = med(rows, "storm", "others.baseline.latency_ms.p99")
    storm_lat = med(rows, "storm", "others.storm.latency_ms.p99")
    exact = [s.get("storm", {}).get("exact") for s in rows.get("storm", [])]
    clients_storm = [s.get("connected") for s in rows.get("storm", [])]
    all_exact = None if not exact else all(e == c for e, c in zip(exact, clients_storm))
    L += ["| id | what | target | measured | reference (same run) | ratio | met |", "|---|---|---|---|---|---|---|"]
    L.append(f"| R1 | B1 ({env.get('B1_COUNT', '?')} broadcasts to {clients}): server CPU per delivery, envelope + history (us) | "
             f"<= {CPU_TARGET:.2f}x raw | {fmt(b1[1])} | {fmt(b1[0])} (raw `/news`) | {b1[2]} (per run "
             f"{per_run(paired(rows, 'B1', 'cpu_us_per_delivery', 'raw', 'hist'))}) | {cpu_met(b1)} |")
    L.append(f"| R3 | B3 ({env.get('B3_RATE', '?')} publishes/s for {env.get('B3_SECS', '?')} s to {clients}): server CPU per delivery (us) | "
             f"<= {CPU_TARGET:.2f}x raw | {fmt(b3[1])} | {fmt(b3[0])} (raw) | {b3[2]} (per run "
             f"{per_run(paired(rows, 'B3', 'cpu_us_per_delivery', 'raw', 'hist'))}) | {cpu_met(b3)} |")
    for case in ("B1", "B3"):
        raw, hist, r = both(rows, case, "latency_ms.p99")
        L.append(f"| {case} p99 | {case} delivery latency p99, envelope + history (ms) | (none set) | {fmt(hist)} | {fmt(raw)} (raw) | {r} | - |")
    raw, hist, r = both(rows, "B1", "bytes_per_frame")
    L.append(f"| bytes | bytes per message frame (100-byte payload) | - | {fmt(hist)} | {fmt(raw)} (raw) | {r} | - |")
    L.append(f"| S1 | reconnect storm: {storm_n} clients each recovering {missed} messages, until all live again (s) | (none set) | "
             f"{fmt(live)} | - | - | - |")
    L.append(f"| S2 | publish request p99 to other clients during the storm (ms) | not stalled | {fmt(storm_req)} | "
             f"{fmt(base_req)} (no storm) | {ratio(storm_req, base_req)} | - |")
    L.append(f"| S3 | delivery p99 to other clients during the storm (ms) | not stalled | {fmt(storm_lat)} | "
             f"{fmt(base_lat)} (no storm) | {ratio(storm_lat, base_lat)} | - |")
    L.append(f"| S4 | clients that got `\"recovered\":true,\"replayed\":{missed}` and exactly {missed} messages in order (all runs) | all | "
             f"{' / '.join(f'{fmt(e)} of {fmt(c)}' for e, c in zip(exact, clients_storm)) or 'n/a'} | - | - | {met(all_exact)} |")
    for size in env.get("HM_SIZES", "100 1024").split():
        for layout, what in (("many", f"{fmt(float(env.get('HM_CHANNELS', 0)))} channels"), ("one", "one channel")):
            case = f"mem-{layout}-{size}"
            h, rss = med(rows, case, "history_bytes_per_msg"), med(rows, case, "rss_bytes_per_msg")
            L.append(f"| M-{layout}-{size} | bytes per stored {size}-byte message, {what}: `heartwire_history_bytes` (RSS) | "
                     f"(document) | {fmt(h)} ({fmt(rss)}) | {size} (payload) | {ratio(h, float(size))} ({ratio(rss, float(size))}) | - |")
    L.append("")

    L += [f"### Fan-out: raw `/news` against envelope `/hist` with history, {clients} clients, one server, interleaved", "",
          f"B1: {env.get('B1_COUNT', '?')} broadcasts of 100 bytes at {env.get('B1_RATE', '?')}/s; B3: {env.get('B3_RATE', '?')} "
          f"publishes/s for {env.get('B3_SECS', '?')} s. Odd runs raw first, even runs envelope first.", "",
          "| figure | B1 raw | B1 envelope | env/raw | B3 raw | B3 envelope | env/raw |", "|---|---|---|---|---|---|---|"]
    for label, path in (("receivers", "receivers"), ("published", "published"), ("achieved publishes/s", "achieved_rate"),
                        ("latency p50 (ms)", "latency_ms.p50"),
                        ("latency p99 (ms)", "latency_ms.p99"), ("latency max (ms)", "latency_ms.max"),
                        ("last client p99 (ms)", "last_client_ms.p99"), ("deliveries/s", "deliveries_per_s"),
                        ("server CPU per delivery (us)", "cpu_us_per_delivery"), ("bytes per message frame", "bytes_per_frame"),
                        ("position frames (one per client)", "position_frames"), ("lost", "lost"), ("duplicated", "duplicated"),
                        ("out of order", "out_of_order"), ("dropped connections", "dropped"),
                        ("publish request p99 (ms)", "publish_req_ms.p99")):
        cells = []
        for case in ("B1", "B3"):
            raw, hist, r = both(rows, case, path)
            cells += [fmt(raw), fmt(hist), r]
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    for label, path in (("latency p99, runs", "latency_ms.p99"), ("CPU per delivery, runs", "cpu_us_per_delivery"),
                        ("achieved publishes/s, runs", "achieved_rate")):
        cells = []
        for case in ("B1", "B3"):
            ratios = paired(rows, case, path, "raw", "hist")
            cells += [runs(rows, f"{case}-raw", path), runs(rows, f"{case}-hist", path),
                      " / ".join(f"{x:.2f}x" for x in ratios)]
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L.append("")

    L += [f"### Reconnect storm: {storm_n} clients on `/hist` disconnect, {missed} messages are published, all reconnect with `recover=`", "",
          f"Each recorded its position from its position frame, all disconnected, {missed} messages went to `hist`, then all",
          f"reconnected at once (at most {env.get('STORM_CONC', '?')} handshakes in flight) with `?recover=hist:<offset>:<epoch>`. A",
          f"client is live once it has its position frame (`\"recovered\":true,\"replayed\":{missed}`) and its {missed} replayed",
          f"messages, each checked for its offset and order. Meanwhile {env.get('STORM_OTHERS', '?')} other clients on `/news`",
          f"get {env.get('STORM_RATE', '?')} publishes/s, compared with {env.get('STORM_BASE_SECS', '?')} s of the same just before",
          "the storm (the recovering clients then connected and idle).", "",
          "| figure | median | runs |", "|---|---|---|"]
    for label, path in (("clients connected before", "connected"), ("connect failures", "connect_failures"),
                        ("published while away", "missed_published"), ("queued while away (0: all were gone)", "queued_while_away"),
                        ("reconnected", "storm.reconnected"), ("`recovered:true` with the right count", "storm.recovered_true"),
                        ("live with exactly the missed messages, in order", "storm.exact"), ("problems", "storm.problems"),
                        ("messages after going live (duplicates)", "storm.extras"),
                        ("all handshakes done (s)", "storm.all_connected_s"), ("all live (s)", "storm.all_live_s"),
                        ("live p50 (s)", "storm.live_s.p50"), ("live p99 (s)", "storm.live_s.p99"),
                        ("messages replayed", "storm.replayed"), ("server CPU during the storm (s)", "storm.cpu_s"),
                        ("server CPU per replayed message (us)", "storm.cpu_us_per_replayed"),
                        ("others: publishes without storm", "others.baseline.published"),
                        ("others: publishes during storm", "others.storm.published"),
                        ("others: publish request p50, no storm (ms)", "others.baseline.publish_req_ms.p50"),
                        ("others: publish request p50, storm (ms)", "others.storm.publish_req_ms.p50"),
                        ("others: publish request p99, no storm (ms)", "others.baseline.publish_req_ms.p99"),
                        ("others: publish request p99, storm (ms)", "others.storm.publish_req_ms.p99"),
                        ("others: delivery p50, no storm (ms)", "others.baseline.latency_ms.p50"),
                        ("others: delivery p50, storm (ms)", "others.storm.latency_ms.p50"),
                        ("others: delivery p99, no storm (ms)", "others.baseline.latency_ms.p99"),
                        ("others: delivery p99, storm (ms)", "others.storm.latency_ms.p99"),
                        ("others: delivery max, storm (ms)", "others.storm.latency_ms.max"),
                        ("others: lost", "others.lost"), ("others: dropped", "others.dropped")):
        L.append(f"| {label} | {fmt(med(rows, 'storm', path))} | {runs(rows, 'storm', path)} |")
    problems = [s.get("storm", {}).get("first_problem") for s in rows.get("storm", [])]
    if any(problems):
        L.append(f"| first problem, per run | | {' / '.join(p or '-' for p in problems)} |")
    L.append("")

    L += ["### Memory per stored message (a fresh server per case)", "",
          f"{fmt(float(env.get('HM_MESSAGES', 0)))} messages spread round robin over {fmt(float(env.get('HM_CHANNELS', 0)))} channels "
          f"`hm.<c>` (history_size 100), or {fmt(float(env.get('HM_ONE', 0)))} into the one channel `hone` (history_size 10 000), "
          "published with 4 keep-alive publishers; readings (RSS, admin /metrics) 1 s after the last publish, minus the same "
          "before. One subscriber per case reads the envelope frames to give their size. Overhead = bytes per message minus the payload.", "",
          "| figure | " + " | ".join(f"{s} B, {l}" for s in env.get("HM_SIZES", "100 1024").split() for l in ("many", "one")) + " |",
          "|---|" + "---|" * (2 * len(env.get("HM_SIZES", "100 1024").split()))]
    cases = [f"mem-{l}-{s}" for s in env.get("HM_SIZES", "100 1024").split() for l in ("many", "one")]
    for label, path in (("messages stored (`heartwire_history_messages` delta)", "stored"),
                        ("channels created (the subscriber's already existed)", "history_channels"), ("evicted", "evicted"),
                        ("publishes/s", "publishes_per_s"), ("envelope frame (bytes)", "frame_bytes"),
                        ("`heartwire_history_bytes` per message", "history_bytes_per_msg"),
                        ("  over the payload", "history_overhead_per_msg"),
                        ("  over the envelope frame", "history_over_frame_per_msg"),
                        ("RSS delta (KiB)", "rss_delta_kib"), ("RSS per message (bytes)", "rss_bytes_per_msg"),
                        ("  over the payload", "rss_overhead_per_msg")):
        L.append(f"| {label} | " + " | ".join(fmt(med(rows, c, path)) for c in cases) + " |")
    L.append("| RSS per message, runs | " + " | ".join(runs(rows, c, "rss_bytes_per_msg") for c in cases) + " |")
    L.append("")

    notes = Path(__file__).with_name("history-notes.md")
    if notes.exists():
        L += ["### Notes", "", notes.read_text().rstrip(), ""]

    L += ["### Commands", "", "```sh", "cargo build --release --workspace", "SUITE=history bench/run.sh", "```", "",
          "Scale (environment variables of bench/run.sh, as used here):", "", "```",
          " ".join(f"{k}={env.get(k, '?')!r}" if " " in env.get(k, "") else f"{k}={env.get(k, '?')}"
                   for k in ("RUNS", "FANOUT_CLIENTS", "B1_COUNT", "B1_RATE", "B3_RATE", "B3_SECS", "DRAIN", "STORM_CLIENTS",
                             "STORM_MISSED", "STORM_OTHERS", "STORM_RATE", "STORM_BASE_SECS", "STORM_CONC", "STORM_MAX_SECS",
                             "HM_MESSAGES", "HM_CHANNELS", "HM_ONE", "HM_SIZES", "IDLE_PING")),
          "```", "", "Client invocations of run 1 (one server for B1/B3, a fresh one for the storm and for each memory case):", "", "```"]
    L += env.get("_cmds", [])
    L += ["```"]
    return "\n".join(L)


def main():
    write("history", BEGIN, END, section)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes BENCHMARKS.md (and the latency plot) from bench/run.sh's results.

Usage: report.py RESULTS_DIR BENCHMARKS.md   (stdlib only; run.sh calls it)
"""

import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

from channels_report import BEGIN as CHANNELS_BEGIN, END as CHANNELS_END, dig

SERVERS = ["heartwire", "floor", "tornado"]
COLORS = {"heartwire": "#d62728", "floor": "#1f77b4", "tornado": "#2ca02c"}
# Sections of BENCHMARKS.md that other runs write (begin and end markers), in this order.
KEPT_SECTIONS = [("<!-- tls -->", "<!-- /tls -->"), (CHANNELS_BEGIN, CHANNELS_END)]


def load(results):
    rows = {}
    path = results / "results.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                s = r["summary"]
                rows.setdefault((s["server"], r["case"]), []).append(s)
    return rows


def median(rows, server, case, path):
    vals = [dig(s, path) for s in rows.get((server, case), [])]
    vals = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.median(vals) if vals else None


def runs(rows, server, case):
    return len(rows.get((server, case), []))


def fmt(v, digits=3):
    if v is None:
        return "n/a"
    if isinstance(v, float) and not v.is_integer():
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{digits}g}" if abs(v) < 10 else f"{v:.1f}"
    return f"{int(v):,}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001 - machine info is best effort
        return "?"


def load_avg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine(env):
    cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
    mem = sh("free -g | awk '/^Mem:/ {print $2}'")
    venv_py = Path("bench/.venv/bin/python")
    tornado = sh(f"{venv_py} -c 'import tornado; print(tornado.version)'") if venv_py.exists() else "?"
    return [
        f"- heartwire revision: {env.get('REVISION', '?')}",
        f"- CPU: {cpu} ({os.cpu_count()} cores), {mem} GiB RAM, shared by the server and the client",
        f"- Kernel: {platform.release()}; RLIMIT_NOFILE {sh('ulimit -Hn')} (hard)",
        f"- {sh('rustc --version')}; Python {platform.python_version()}, Tornado {tornado}",
        f"- Run on {sh('date -u +%Y-%m-%dT%H:%MZ')}; load average at report time: {load_avg()}",
    ]


def metrics_h2(results):
    """Payloads built vs pings sent per policy, from /metrics after each idle run."""
    out = []
    for f in sorted(results.glob("metrics-idle-*.txt")):
        text = f.read_text()
        built = dict(re.findall(r'ping_payloads_built_total\{policy="(\w+)"\} (\d+)', text))
        sent = dict(re.findall(r'pings_sent_total\{policy="(\w+)",[^}]*\} (\d+)', text))
        out.append({p: (int(built.get(p, 0)), int(sent.get(p, 0))) for p in sorted(set(built) | set(sent))})
    return out


def svg_cdf(results, path, env):
    """CDF of per-delivery fan-out latency (B3), log-scale x, one line per server."""
    series = {}
    for s in SERVERS:
        files = sorted(results.glob(f"latency-{s}-*.json"))
        if files:
            q = json.loads(files[0].read_text())
            if q:
                series[s] = q
    if not series:
        return False
    w, h, ml, mr, mt, mb = 720, 420, 70, 150, 40, 50
    lo = 0.05
    hi = max(max(q) for q in series.values())
    lo_l, hi_l = math.log10(lo), math.log10(max(hi * 1.2, 1.0))

    def x(ms):
        return ml + (math.log10(max(ms, lo)) - lo_l) / (hi_l - lo_l) * (w - ml - mr)

    def y(p):
        return mt + (1 - p / 100) * (h - mt - mb)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="14">Fan-out latency per delivery, '
        f'{env.get("FANOUT_CLIENTS", "?")} clients, {env.get("B3_RATE", "?")} publishes/s (B3, run 1)</text>',
    ]
    decade = math.floor(lo_l)
    while decade <= math.ceil(hi_l):
        for m in (1, 2, 5):
            v = m * 10**decade
            if lo <= v <= 10**hi_l:
                xv = x(v)
                parts.append(f'<line x1="{xv:.1f}" y1="{mt}" x2="{xv:.1f}" y2="{h - mb}" stroke="#ddd"/>')
                label = f"{v:g}"
                parts.append(f'<text x="{xv:.1f}" y="{h - mb + 16}" text-anchor="middle">{label}</text>')
        decade += 1
    for p in (0, 25, 50, 75, 90, 99, 100):
        yv = y(p)
        parts.append(f'<line x1="{ml}" y1="{yv:.1f}" x2="{w - mr}" y2="{yv:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{ml - 6}" y="{yv + 4:.1f}" text-anchor="end">p{p}</text>')
    parts.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 12}" text-anchor="middle">latency (ms, log scale)</text>')
    parts.append(f'<rect x="{ml}" y="{mt}" width="{w - ml - mr}" height="{h - mt - mb}" fill="none" stroke="#333"/>')
    for i, (s, q) in enumerate(series.items()):
        n = len(q) - 1
        pts = " ".join(f"{x(v):.1f},{y(100 * k / n):.1f}" for k, v in enumerate(q))
        parts.append(f'<polyline fill="none" stroke="{COLORS[s]}" stroke-width="2" points="{pts}"/>')
        ly = mt + 20 + 22 * i
        parts.append(f'<line x1="{w - mr + 12}" y1="{ly}" x2="{w - mr + 36}" y2="{ly}" stroke="{COLORS[s]}" stroke-width="3"/>')
        parts.append(f'<text x="{w - mr + 42}" y="{ly + 4}">{s}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
    return True


# What limits a target that is not met, and what was tried (kept with the generator so
# the notes travel with the numbers).
NOTES = json.loads(Path(__file__).with_name("notes.json").read_text()) if Path(__file__).with_name("notes.json").exists() else {}


def main():
    results, out = Path(sys.argv[1]), Path(sys.argv[2])
    rows = load(results)
    env = dict(os.environ)
    saved = results / "env.json"
    if saved.exists():
        env.update({k: v for k, v in json.loads(saved.read_text()).items() if v is not None})
    def m(s, c, p):
        if p == "_h3_30":
            us = median(rows, s, c, "cpu_us_per_ping")
            return None if us is None else 100 * float(env.get("IDLE_CONNS", 0)) * us * 1e-6 / 30
        return median(rows, s, c, p)

    # (id, what, target text, case, figure path, lower_is_better, check(hw, floor) -> bool|None)
    targets = [
        ("M1", f"RSS per idle connection at {env.get('IDLE_CONNS')} connections, heartbeats on (KiB)",
         "<= 2 KiB (must: <= 4)", "idle", "kib_per_conn", True, lambda h, f: h is not None and h <= 2.0),
        ("M2", f"RSS 5 s after one {env.get('BIG_BYTES')}-byte broadcast to all, / idle RSS",
         "<= 1.1x", "idle", "big.rss_after_over_idle", True, lambda h, f: h is not None and h <= 1.1),
        ("C1", f"{env.get('IDLE_CONNS')} connections established (s)",
         "<= 2 s, 0 failures", "idle", "connect_s", True,
         lambda h, f: h is not None and h <= 2.0 and (m("heartwire", "idle", "connect_failures") or 0) == 0),
        ("H1", f"one heartbeat tick to {env.get('IDLE_CONNS')} connections: tick to last client (ms, protocol)",
         "<= 1.2x floor", "idle", "ticks./news.token_to_last_ms_median", True,
         lambda h, f: None if h is None or f is None else h <= 1.2 * f),
        ("H1b", "server CPU per ping delivered while idle (us)",
         "<= 1.2x floor", "idle", "cpu_us_per_ping", True,
         lambda h, f: None if h is None or f is None else h <= 1.2 * f),
        ("H3", f"idle CPU, {env.get('IDLE_CONNS')} connections, {env.get('IDLE_PING')} s ping interval (% of a core)",
         "<= 2.5%", "idle", "cpu_pct_of_core", True, lambda h, f: h is not None and h <= 2.5),
        ("H3@30s", f"idle CPU at a 30 s interval, derived: {env.get('IDLE_CONNS')} x CPU per ping / 30 s (% of a core)",
         "<= 2.5%", "idle", "_h3_30", True, lambda h, f: h is not None and h <= 2.5),
        ("B1", f"one {100}-byte broadcast to {env.get('FANOUT_CLIENTS')} clients: p99 time until the last client has it (ms)",
         "<= 1.25x floor", "B1", "last_client_ms.p99", True,
         lambda h, f: None if h is None or f is None else h <= 1.25 * f),
        ("B3", f"{env.get('B3_RATE')} publishes/s to {env.get('FANOUT_CLIENTS')} clients for {env.get('B3_SECS')} s: p99 latency (ms)",
         "0 lost, p99 <= 250 ms", "B3", "latency_ms.p99", True,
         lambda h, f: h is not None and h <= 250 and m("heartwire", "B3", "lost") == 0
         and (m("heartwire", "B3", "achieved_rate") or 0) >= 0.95 * float(env.get("B3_RATE", 50))),
        ("B3 lost", "B3 deliveries lost", "0", "B3", "lost", True, lambda h, f: h == 0),
        ("B3 rate", "B3 publishes/s achieved", f"{env.get('B3_RATE')}", "B3", "achieved_rate", False,
         lambda h, f: h is not None and h >= 0.95 * float(env.get("B3_RATE", 50))),
        ("B3 thr", "B3 deliveries per second", "(500 000/s at full scale)", "B3", "deliveries_per_s", False, lambda h, f: None),
        ("E1", "server user+sys CPU per delivery in B3 (us)", "<= 0.3 us", "B3", "cpu_us_per_delivery", True,
         lambda h, f: h is not None and h <= 0.3),
        ("P1", f"publish request p99 at {env.get('P1_RATE')} requests/s with {env.get('FANOUT_CLIENTS')} connected (ms)",
         "<= 1 ms", "P1", "publish_req_ms.p99", True, lambda h, f: h is not None and h <= 1.0),
    ]

    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run.sh` (do not edit by hand: rerun it). heartwire is measured side by side",
        "with the seed's Tornado demo (`bench/peers/tornado_demo.py`, from the two seed articles) and a",
        "raw-socket floor (`heartwire-bench floor`: one frame encoded once and written with one",
        "non-blocking send per socket, no WebSocket library on the write path). Same client",
        "(`heartwire-bench`, tokio-tungstenite), same settings, same machine, loopback only.",
        f"Figures are medians of {env.get('RUNS')} runs (each server restarted for every run); the whole",
        f"script took {int(env.get('ELAPSED', '0')) // 60} min {int(env.get('ELAPSED', '0')) % 60} s, of which {env.get('BUILD_S', '?')} s building.",
        "",
        "## Machine",
        "",
        *machine(env),
        "",
        "## Targets (issue 5)",
        "",
        "Ratios: `hw/floor` is heartwire over the floor (1.00x = as good as the kernel allows; lower",
        "is better for times, memory and CPU). `tornado/hw` is how many times better heartwire is than",
        "Tornado on that figure (X1 wants >= 10x).",
        "",
        "| id | what | target | heartwire | floor | tornado | hw/floor | tornado/hw | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    x1 = []
    for tid, what, target, case, path, lower, check in targets:
        h, f, t = (m(s, case, path) for s in SERVERS)
        hf = ratio(h, f)
        better = ratio(t, h) if lower else ratio(h, t)
        # A ratio near 1 (M2) or a count that must be 0 cannot be "10x better".
        if tid in ("B3 lost", "M2", "H3@30s"):
            better = None
        if better is not None:
            x1.append((tid, better))
        ok = check(h, f)
        met = "-" if ok is None else ("**met**" if ok else "not met")
        lines.append(f"| {tid} | {what} | {target} | {fmt(h)} | {fmt(f)} | {fmt(t)} | {fmt_ratio(hf)} | {fmt_ratio(better)} | {met} |")
    h2 = metrics_h2(results)
    if h2:
        first = h2[0]
        conns = float(env.get("IDLE_CONNS", 0) or 0)
        # Each policy serves half the idle connections: one payload per tick means
        # pings sent / payloads built is about that many (every connection, same bytes).
        # A payload built per connection would give about 1 ping per payload.
        exact = bool(first) and all(b > 0 and s / b >= min(100, conns / 4) for b, s in first.values())
        shown = "; ".join(f"{p}: {b} built / {s:,} sent ({s / max(b, 1):,.0f} per payload)" for p, (b, s) in first.items())
        lines.append(
            "| H2 | ping payload built / compressed per tick (`heartwire_heartbeat_ping_payloads_built_total` vs "
            "`..._pings_sent_total`, /metrics after idle run 1) | once per policy per tick, 0 allocations per connection | "
            f"{shown} | - | once per tick (the seed's beatping) | - | - | {'**met**' if exact else 'not met'} |"
        )
    worst = min(x1, key=lambda kv: kv[1]) if x1 else None
    x1_ok = all(v >= 10 for _, v in x1) if x1 else None
    lines.append(
        f"| X1 | every figure against Tornado | >= 10x better | worst: {worst[0] if worst else 'n/a'} "
        f"{fmt_ratio(worst[1]) if worst else ''} | | | | | {'**met**' if x1_ok else 'not met'} |"
    )
    lines += ["", "## Notes on the targets", ""]
    for key, note in NOTES.items():
        lines.append(f"- **{key}**: {note}")
    if not NOTES:
        lines.append("- (no notes)")

    # Scenario tables.
    def table(title, case, cols):
        out = ["", f"### {title}", "", "| figure | " + " | ".join(SERVERS) + " |", "|---|" + "---|" * len(SERVERS)]
        out.append("| runs | " + " | ".join(str(runs(rows, s, case)) for s in SERVERS) + " |")
        for label, path in cols:
            out.append(f"| {label} | " + " | ".join(fmt(m(s, case, path)) for s in SERVERS) + " |")
        return out

    lines += ["", "## All scenarios (medians)"]
    lines += table(f"idle: {env.get('IDLE_CONNS')} connections held {env.get('IDLE_HOLD')} s, pings every {env.get('IDLE_PING')} s (both kinds answered)", "idle", [
        ("connections established", "established"), ("connect failures", "connect_failures"), ("connect time (s)", "connect_s"),
        ("RSS before (KiB)", "rss_before_kib"), ("RSS at full load (KiB)", "rss_full_kib"), ("KiB per connection", "kib_per_conn"),
        ("CPU s per s of hold (% of a core)", "cpu_pct_of_core"), ("CPU per ping delivered (us)", "cpu_us_per_ping"),
        ("dropped during hold", "dropped_in_hold"),
        ("protocol tick: token to last client (ms)", "ticks./news.token_to_last_ms_median"),
        ("protocol tick: first to last client (ms)", "ticks./news.spread_ms_median"),
        ("json-gzip tick: token to last client (ms)", "ticks./app.token_to_last_ms_median"),
        ("json-gzip tick: first to last client (ms)", "ticks./app.spread_ms_median"),
        ("big broadcast: all received (ms)", "big.all_received_ms"), ("big broadcast: received", "big.received"),
        ("RSS 5 s after big broadcast (KiB)", "big.rss_after_kib"), ("  / RSS at full load", "big.rss_after_over_idle"),
    ])
    fan_cols = [
        ("receivers", "receivers"), ("published / asked", "published"), ("achieved publishes/s", "achieved_rate"),
        ("latency p50 (ms)", "latency_ms.p50"), ("latency p90 (ms)", "latency_ms.p90"), ("latency p99 (ms)", "latency_ms.p99"),
        ("latency max (ms)", "latency_ms.max"), ("last client p50 (ms)", "last_client_ms.p50"),
        ("last client p99 (ms)", "last_client_ms.p99"), ("deliveries/s", "deliveries_per_s"),
        ("lost", "lost"), ("duplicated", "duplicated"), ("out of order", "out_of_order"), ("dropped connections", "dropped"),
        ("publish request p50 (ms)", "publish_req_ms.p50"), ("publish request p99 (ms)", "publish_req_ms.p99"),
        ("server CPU per delivery (us)", "cpu_us_per_delivery"),
    ]
    lines += table(f"fanout B1: {env.get('B1_COUNT')} broadcasts of 100 bytes at {env.get('B1_RATE')}/s to {env.get('FANOUT_CLIENTS')} clients", "B1", fan_cols)
    lines += table(f"fanout B3: {env.get('B3_RATE')} publishes/s for {env.get('B3_SECS')} s to {env.get('FANOUT_CLIENTS')} clients", "B3", fan_cols)
    lines += table(f"P1: {env.get('P1_COUNT')} publishes at {env.get('P1_RATE')}/s to one client on /quiet, {env.get('FANOUT_CLIENTS')} others connected", "P1", fan_cols[1:7] + fan_cols[10:16])
    lines += table(f"echo: {env.get('ECHO_CLIENTS')} clients x {env.get('ECHO_TRIPS')} round trips", "echo", [
        ("round trips completed", "completed"), ("failed", "failed"), ("messages/s", "msgs_per_s"),
        ("round trip p50 (ms)", "rtt_ms.p50"), ("round trip p99 (ms)", "rtt_ms.p99"), ("server CPU per round trip (us)", "cpu_us_per_round_trip"),
    ])
    lines += table(f"heartbeat: {env.get('HB_CONNS')} answering + {env.get('HB_SILENT')} silent per strategy, {env.get('HB_INTERVAL')} s interval, timeout = interval, max_missed 2", "heartbeat", [
        ("protocol: silent peers detected", "paths./news.detected"), ("protocol: detection p50 (s)", "paths./news.detect_s_p50"),
        ("protocol: detection max (s)", "paths./news.detect_s_max"),
        ("json-gzip: silent peers detected", "paths./app.detected"), ("json-gzip: detection p50 (s)", "paths./app.detect_s_p50"),
        ("json-gzip: detection max (s)", "paths./app.detect_s_max"),
        ("pings delivered in window", "pings"), ("server CPU per ping (us)", "cpu_us_per_ping"),
        ("CPU (% of a core)", "cpu_pct_of_core"), ("answering peers dropped", "answering_dropped"),
        ("protocol tick: first to last (ms)", "paths./news.ticks.spread_ms_median"),
        ("json-gzip tick: first to last (ms)", "paths./app.ticks.spread_ms_median"),
    ])
    lines += table(f"reload: {env.get('RELOAD_HUPS')} SIGHUPs during 50 publishes/s for {env.get('RELOAD_SECS')} s to {env.get('RELOAD_CLIENTS')} clients", "reload", [
        ("SIGHUPs sent", "sighups"), ("published", "published"), ("lost", "lost"), ("duplicated", "duplicated"),
        ("out of order", "out_of_order"), ("dropped connections", "dropped"), ("latency p99 (ms)", "latency_ms.p99"),
    ])

    plot = out.parent / "bench" / "fanout-latency.svg"
    if svg_cdf(results, plot, env):
        lines += ["", "## Fan-out latency distribution", "", f"![B3 per-delivery latency CDF]({plot.relative_to(out.parent)})", "",
                  "Per-delivery latency (publish request sent to client has it) of B3, run 1, as a cumulative",
                  "distribution. The SVG is drawn by `bench/report.py`."]

    lines += ["", "## Commands", "", "```sh", "bench/run.sh   # everything below, RUNS times per server", "```", "",
              "Scale (environment variables of bench/run.sh, as used for this file):", "", "```"]
    keys = ["RUNS", "IDLE_CONNS", "IDLE_HOLD", "IDLE_PING", "BIG_BYTES", "FANOUT_CLIENTS", "B1_COUNT", "B1_RATE", "B3_RATE", "B3_SECS",
            "P1_RATE", "P1_COUNT", "ECHO_CLIENTS", "ECHO_TRIPS", "HB_CONNS", "HB_SILENT", "HB_INTERVAL", "HB_WINDOW",
            "RELOAD_CLIENTS", "RELOAD_SECS", "RELOAD_HUPS", "DRAIN"]
    lines.append(" ".join(f"{k}={env.get(k, '?')}" for k in keys))
    lines += ["```", "", "Servers: `heartwire --config bench/results/heartwire.toml` (written by run.sh: routes /news",
              "protocol pings, /app json-gzip, /quiet, /echo), `bench/.venv/bin/python bench/peers/tornado_demo.py`,",
              "`heartwire-bench floor`. Client invocations of run 1:", "", "```"]
    cmds = results / "commands.txt"
    if cmds.exists():
        lines += cmds.read_text().splitlines()
    lines += ["```", ""]
    scaled = NOTES.get("_scale")
    # Sections written by other runs, kept as they are until those runs are repeated: TLS
    # (SERVERS="heartwire heartwire-tls" COMPARE=..., see bench/run.sh; copied from
    # $OUT/compare.md) and channels (SUITE=channels, written by bench/channels_report.py).
    if out.exists():
        old = out.read_text()
        for begin, end in KEPT_SECTIONS:
            start = old.find(begin)
            stop = old.find(end, start + len(begin)) if start >= 0 else -1
            if stop >= 0:
                lines += ["", old[start:stop + len(end)]]
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

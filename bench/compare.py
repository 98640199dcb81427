#!/usr/bin/env python3
"""Medians of two servers' runs from one bench/run.sh results.jsonl, and their ratio.

    python3 bench/compare.py RESULTS.jsonl BEFORE AFTER
"""

import json
import statistics
import sys

from channels_report import dig

# (figure, case, path in the scenario's summary): the hot-path figures a change is judged by.
FIGURES = [
    ("M1 RSS per idle connection (KiB)", "idle", "kib_per_conn"),
    ("M1 connections established", "idle", "established"),
    ("M2 RSS after a broadcast to all / idle RSS", "idle", "big.rss_after_over_idle"),
    ("idle connect rate (connections/s)", "idle", "connect_rate"),
    ("H1b CPU per ping while idle (us)", "idle", "cpu_us_per_ping"),
    ("B1 p99 to the last client (ms)", "B1", "last_client_ms.p99"),
    ("B1 CPU per delivery (us)", "B1", "cpu_us_per_delivery"),
    ("B3 p99 latency (ms)", "B3", "latency_ms.p99"),
    ("E1 CPU per delivery in B3 (us)", "B3", "cpu_us_per_delivery"),
    ("B3 deliveries lost", "B3", "lost"),
    ("P1 publish p99 (ms)", "P1", "publish_req_ms.p99"),
    ("echo round trip p99 (ms)", "echo", "rtt_ms.p99"),
    ("handshakes/s (open, upgrade, close)", "handshake", "handshakes_per_s"),
    ("server CPU per handshake (us)", "handshake", "cpu_us_per_handshake"),
    ("handshake latency p50 (ms)", "handshake", "handshake_ms.p50"),
    ("handshake latency p99 (ms)", "handshake", "handshake_ms.p99"),
]


def main() -> int:
    path, before, after = sys.argv[1:4]
    rows = {}
    # Figures the summaries do not hold directly.
    derived = {
        "connect_rate": lambda s: s["established"] / s["connect_s"]
        if s.get("connect_s") and "established" in s
        else None
    }
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            label = r["summary"].get("server")
            summary = r["summary"]
            for key, figure in derived.items():
                summary.setdefault(key, figure(summary))
            rows.setdefault((label, r["case"]), []).append(summary)

    def med(server, case, p):
        vals = [dig(s, p) for s in rows.get((server, case), [])]
        vals = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return (statistics.median(vals), len(vals)) if vals else (None, 0)

    print(f"| figure | {before} | {after} | {after}/{before} | runs |")
    print("|---|---|---|---|---|")
    for name, case, p in FIGURES:
        (b, nb), (a, na) = med(before, case, p), med(after, case, p)
        if nb == na == 0:
            continue  # a case this run did not include
        ratio = f"{a / b:.2f}x" if a is not None and b else "-"
        fmt = lambda v: "-" if v is None else f"{v:.3g}"
        print(f"| {name} | {fmt(b)} | {fmt(a)} | {ratio} | {nb}/{na} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes the "Channels and subscriber auth (issue 13)" section of BENCHMARKS.md from
bench/run.sh's SUITE=channels results, leaving the rest of the file as it is.

Usage: channels_report.py RESULTS_DIR BENCHMARKS.md   (stdlib only; run.sh calls it)
"""

import json
import os
import platform
import statistics
import sys
from pathlib import Path

BEGIN = "<!-- channels: written by bench/run.sh with SUITE=channels -->"
END = "<!-- /channels -->"


def dig(d, path):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def load(results, name="channels.jsonl"):
    rows = {}
    path = results / name
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows.setdefault(r["case"], []).append(r["summary"])
    return rows


def vals(rows, case, path):
    return [v for v in (dig(s, path) for s in rows.get(case, [])) if isinstance(v, (int, float))]


def med(rows, case, path):
    v = vals(rows, case, path)
    return statistics.median(v) if v else None


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, float) and not v.is_integer():
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.3g}"
    return f"{int(v):,}"


def runs(rows, case, path):
    v = vals(rows, case, path)
    return " / ".join(fmt(x) for x in v) if v else "n/a"


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b not in (None, 0) else "n/a"


def versus(rows, case, path, ref, new):
    """Medians of `case-ref` and `case-new` (two variants measured in the same runs), and new/ref."""
    a, b = med(rows, f"{case}-{ref}", path), med(rows, f"{case}-{new}", path)
    return a, b, ratio(b, a)


def paired(rows, case, path, ref, new):
    """new/ref of `case` per run (the variants of one run pair up); [] when they do not."""
    a, b = vals(rows, f"{case}-{ref}", path), vals(rows, f"{case}-{new}", path)
    if not a or len(a) != len(b):
        return []
    return [y / x for x, y in zip(a, b) if x]


def per_run(ratios):
    """Per-run ratios and their median, as a table cell."""
    if not ratios:
        return "n/a"
    return f"{' / '.join(f'{x:.2f}x' for x in ratios)}, median {statistics.median(ratios):.2f}x"


def met(ok):
    return "n/a" if ok is None else ("**met**" if ok else "not met")


def provenance(suite, rows, env, reference, setup=""):
    """The paragraph each suite's section opens with: how, on what build and machine, when."""
    n = max((len(v) for v in rows.values()), default=0)
    return (f"Written by `SUITE={suite} bench/run.sh` (heartwire only; {reference}, measured by the same script in "
            f"the same run, on the same server build). Medians of {n} run(s), runs listed as run 1 / run 2 / ...; the "
            f"suite took {env.get('ELAPSED', '?')} s including a {env.get('BUILD_S', '?')} s release build. heartwire "
            f"revision {env.get('REVISION', '?')}{setup}; run on "
            f"{env.get('RUN_DATE') or os.popen('date -u +%Y-%m-%dT%H:%MZ').read().strip()}, "
            f"load average at report time {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {platform.machine()}, "
            "2 shared cores, loopback only.")


def section(rows, env):
    L = []
    L += ["## Channels and subscriber auth (issue 13)", "",
          provenance("channels", rows, env, "every figure is compared with a plain route"), "",
          "Routes (config written by run.sh): `/news` plain (`channel = \"news\"`, no templates), `/user` with",
          "`channels = [\"user.{query.u}\", \"shared\"]` (each client connects to `/user?u=<its index>`), `/me` with",
          "`auth = \"jwt\"` and `channels = [\"user.{sub}\", \"shared\"]` (token in `?token=`, `sub` = the client's",
          "index; keys from tests/keys/: HS256 `hs.secret`, ES256 `ec.pub`). All with protocol pings every",
          f"{env.get('IDLE_PING', '?')} s. Tokens are signed by the client with `jsonwebtoken` (same version as the",
          "daemon); in the handshake figures they are all signed before the clock starts.", ""]

    plain = med(rows, "M1-plain", "kib_per_conn")
    user = med(rows, "M1-user", "kib_per_conn")
    jwt = med(rows, "M1-jwt", "kib_per_conn")
    b1p99 = med(rows, "B1-plain", "latency_ms.p99")
    b1s99 = med(rows, "B1-shared", "latency_ms.p99")
    u99 = med(rows, "U1", "latency_ms.p99")
    ulost = vals(rows, "U1", "lost")
    L += ["| id | what | target | measured | reference (same run) | ratio | met |", "|---|---|---|---|---|---|---|"]
    L.append(f"| C1m | RSS per connection, {fmt(float(env.get('CH_CONNS', 0)))} connections each on `user.<u>` + `shared` (KiB) | "
             f"<= plain + 1 KiB | {fmt(user)} (+{fmt(None if user is None or plain is None else round(user - plain, 3))}) | "
             f"{fmt(plain)} (plain `/news`) | {ratio(user, plain)} | {met(None if user is None or plain is None else user - plain <= 1.0)} |")
    L.append(f"| C1j | the same on `/me` (HS256 token, `user.{{sub}}` + `shared`) (KiB) | (none set) | {fmt(jwt)} "
             f"(+{fmt(None if jwt is None or plain is None else round(jwt - plain, 3))}) | {fmt(plain)} | {ratio(jwt, plain)} | - |")
    L.append(f"| C2 | broadcast to `shared`, {fmt(float(env.get('FANOUT_CLIENTS', 0)))} clients on `/user`: latency p99 (ms) | "
             f"(compare with B1) | {fmt(b1s99)} | {fmt(b1p99)} (B1 on `/news`) | {ratio(b1s99, b1p99)} | - |")
    L.append(f"| C3 | {fmt(float(env.get('CH_RATE', 0)))} personal publishes/s to random users, p99 publish to delivery (ms) | "
             f"<= 5 ms | {fmt(u99)} | - | - | {met(None if u99 is None else u99 <= 5.0)} |")
    L.append(f"| C3 lost | messages lost in C3 (all runs) | 0 | {fmt(sum(ulost)) if ulost else 'n/a'} | - | - | "
             f"{met(None if not ulost else sum(ulost) == 0)} |")
    for kind, label in (("conc", f"{env.get('HS_IN_FLIGHT', '?')} in flight"), ("seq", "sequential")):
        none = med(rows, f"A1-{kind}-none", "handshakes_per_s")
        for alg in ("hs256", "es256"):
            v = med(rows, f"A1-{kind}-{alg}", "handshakes_per_s")
            L.append(f"| A1 {alg} {kind} | handshakes/s with {alg.upper()} verification, {label} | (none set) | {fmt(v)} | "
                     f"{fmt(none)} (no auth) | {ratio(v, none)} | - |")
    L.append("")

    L += ["### Memory: connections held, RSS read after connecting and a short hold (fresh server each)", "",
          "| figure | plain `/news` | `/user?u=<i>` | `/me?token=` (HS256) |", "|---|---|---|---|"]
    for label, path in (("connections established", "established"), ("connect failures", "connect_failures"),
                        ("connect time (s)", "connect_s"), ("RSS before (KiB)", "rss_before_kib"),
                        ("RSS with all connected (KiB)", "rss_full_kib"), ("KiB per connection", "kib_per_conn"),
                        ("dropped", "dropped_total")):
        L.append(f"| {label} | " + " | ".join(fmt(med(rows, c, path)) for c in ("M1-plain", "M1-user", "M1-jwt")) + " |")
    L.append("| KiB per connection, runs | " + " | ".join(runs(rows, c, "kib_per_conn") for c in ("M1-plain", "M1-user", "M1-jwt")) + " |")
    L.append("")

    L += [f"### Fan-out: {env.get('B1_COUNT', '?')} broadcasts of 100 bytes at {env.get('B1_RATE', '?')}/s (one server, plain first)", "",
          f"| figure | B1 plain `/news`, {fmt(float(env.get('FANOUT_CLIENTS', 0)))} | `shared` on `/user`, {fmt(float(env.get('FANOUT_CLIENTS', 0)))} | shared/plain | `shared` on `/user`, {fmt(float(env.get('CH_CONNS', 0)))} |",
          "|---|---|---|---|---|"]
    for label, path in (("receivers", "receivers"), ("latency p50 (ms)", "latency_ms.p50"), ("latency p99 (ms)", "latency_ms.p99"),
                        ("latency max (ms)", "latency_ms.max"), ("last client p50 (ms)", "last_client_ms.p50"),
                        ("last client p99 (ms)", "last_client_ms.p99"), ("lost", "lost"), ("duplicated", "duplicated"),
                        ("dropped connections", "dropped"), ("publish request p99 (ms)", "publish_req_ms.p99"),
                        ("server CPU per delivery (us)", "cpu_us_per_delivery")):
        p, s = med(rows, "B1-plain", path), med(rows, "B1-shared", path)
        L.append(f"| {label} | {fmt(p)} | {fmt(s)} | {ratio(s, p)} | {fmt(med(rows, 'B1-shared19k', path))} |")
    L.append(f"| latency p99, runs | {runs(rows, 'B1-plain', 'latency_ms.p99')} | {runs(rows, 'B1-shared', 'latency_ms.p99')} | | {runs(rows, 'B1-shared19k', 'latency_ms.p99')} |")
    L.append("")

    L += [f"### Personal publishes: {fmt(float(env.get('CH_COUNT', 0)))} publishes at {fmt(float(env.get('CH_RATE', 0)))}/s, each to `user.<random u>`, "
          f"{fmt(float(env.get('CH_CONNS', 0)))} connections on `/user`, {env.get('CH_PUBLISHERS', '?')} keep-alive publishers", "",
          "| figure | median | runs |", "|---|---|---|"]
    for label, path in (("receivers", "receivers"), ("published", "published"), ("achieved publishes/s", "achieved_rate"),
                        ("publish errors", "publish_errors"), ("publishes that found no subscriber (queued 0)", "queued_zero"),
                        ("deliveries expected (sum of queued)", "expected"), ("delivered", "delivered"), ("lost", "lost"),
                        ("duplicated", "duplicated"), ("dropped connections", "dropped"),
                        ("publish to delivery p50 (ms)", "latency_ms.p50"), ("publish to delivery p90 (ms)", "latency_ms.p90"),
                        ("publish to delivery p99 (ms)", "latency_ms.p99"), ("publish to delivery max (ms)", "latency_ms.max"),
                        ("publish request p50 (ms)", "publish_req_ms.p50"), ("publish request p99 (ms)", "publish_req_ms.p99"),
                        ("server CPU per publish (us)", "cpu_us_per_publish")):
        L.append(f"| {label} | {fmt(med(rows, 'U1', path))} | {runs(rows, 'U1', path)} |")
    L.append("")

    L += [f"### Handshakes: connections opened (TCP + WebSocket upgrade, token verified) and closed", "",
          f"Sequential: {env.get('HS_SEQ', '?')} one after another; concurrent: {env.get('HS_N', '?')} with "
          f"{env.get('HS_IN_FLIGHT', '?')} in flight. CPU is the server's user+sys over the timed phase (/proc/PID/stat, 10 ms ticks).", "",
          "| figure | none (`/news`) | HS256 | HS256/none | ES256 | ES256/none |", "|---|---|---|---|---|---|"]
    for kind in ("seq", "conc"):
        for label, path in (("handshakes/s", "handshakes_per_s"), ("failures", "failures"),
                            ("handshake p50 (ms)", "handshake_ms.p50"), ("handshake p99 (ms)", "handshake_ms.p99"),
                            ("server CPU per handshake (us)", "cpu_us_per_handshake")):
            n0, h, e = (med(rows, f"A1-{kind}-{a}", path) for a in ("none", "hs256", "es256"))
            L.append(f"| {kind}: {label} | {fmt(n0)} | {fmt(h)} | {ratio(h, n0)} | {fmt(e)} | {ratio(e, n0)} |")
        L.append(f"| {kind}: handshakes/s, runs | {runs(rows, f'A1-{kind}-none', 'handshakes_per_s')} | "
                 f"{runs(rows, f'A1-{kind}-hs256', 'handshakes_per_s')} | | {runs(rows, f'A1-{kind}-es256', 'handshakes_per_s')} | |")
    L.append(f"| client signing per token (us, not in the figures) | - | {fmt(med(rows, 'A1-conc-hs256', 'client_mint_us_per_token'))} | | "
             f"{fmt(med(rows, 'A1-conc-es256', 'client_mint_us_per_token'))} | |")
    L.append("")

    notes = Path(__file__).with_name("channels-notes.md")
    if notes.exists():
        L += ["### Notes", "", notes.read_text().rstrip(), ""]

    L += ["### Commands", "", "```sh", "cargo build --release --workspace",
          "SUITE=channels bench/run.sh", "```", "", "Scale (environment variables of bench/run.sh, as used here):", "", "```",
          " ".join(f"{k}={env.get(k, '?')}" for k in ("RUNS", "CH_CONNS", "CH_HOLD", "CH_COUNT", "CH_RATE", "CH_PUBLISHERS",
                                                      "HS_SEQ", "HS_N", "HS_IN_FLIGHT", "FANOUT_CLIENTS", "B1_COUNT", "B1_RATE",
                                                      "DRAIN", "IDLE_PING")),
          "```", "", "Client invocations of run 1 (a fresh server before each M1 case, one for B1 and U1, one for the handshakes):", "", "```"]
    cmds = env.get("_cmds")
    if cmds:
        L += cmds
    L += ["```"]
    return "\n".join(L)


def splice(out, begin, end, section_text):
    """Replaces what lies between `begin` and `end` in file `out` (appends both if absent)."""
    body = f"{begin}\n{section_text}\n{end}"
    text = out.read_text() if out.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + body + tail
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    out.write_text(text)


def write(suite, begin, end, make_section):
    """The suite's section of BENCHMARKS.md from argv: RESULTS_DIR/<suite>.jsonl (and
    <suite>-commands.txt), written between `begin` and `end` of the file named second."""
    results, out = Path(sys.argv[1]), Path(sys.argv[2])
    rows = load(results, f"{suite}.jsonl")
    env = dict(os.environ)
    cmds = results / f"{suite}-commands.txt"
    if cmds.exists():
        env["_cmds"] = cmds.read_text().splitlines()
    splice(out, begin, end, make_section(rows, env))


def main():
    write("channels", BEGIN, END, section)


if __name__ == "__main__":
    main()

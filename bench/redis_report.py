#!/usr/bin/env python3
"""Writes the "Scale-out on Redis (issue 15)" section of BENCHMARKS.md from bench/run.sh's
SUITE=redis results, leaving the rest of the file as it is.

Usage: redis_report.py RESULTS_DIR BENCHMARKS.md   (stdlib only; run.sh calls it)
"""

from pathlib import Path

from channels_report import fmt, med, met, paired, per_run, provenance, ratio, runs, versus, write

BEGIN = "<!-- redis: written by bench/run.sh with SUITE=redis -->"
END = "<!-- /redis -->"
CPU_TARGET = 1.10


def pair(rows, case, path):
    """Median of the memory and the redis variant of `case`, and their ratio."""
    return versus(rows, case, path, "memory", "redis")


def sustained(rows, kind, rates):
    """The highest rate whose every run lost nothing and achieved >= 95% of it."""
    best = None
    for rate in rates:
        got = rows.get(f"rate-{rate}-{kind}", [])
        ok = got and all(s.get("lost") == 0 and s.get("publish_errors") == 0
                         and (s.get("achieved_rate") or 0) >= 0.95 * rate for s in got)
        if ok:
            best = rate
    return best


def section(rows, env):
    clients = fmt(float(env.get("FANOUT_CLIENTS", 0)))
    half = fmt(float(env.get("FANOUT_CLIENTS", 0)) / 2)
    rates = [int(r) for r in env.get("RL_RATES", "").split()]
    L = ["## Scale-out on Redis (issue 15)", "",
         provenance("redis", rows, env, "the Redis figures against the memory broker",
                    f"; {env.get('REDIS_VERSION', 'redis-server')} with persistence off, started by run.sh; the 2 cores "
                    "run both nodes, Redis and the clients"), "",
         f"**memory**: one node, the embedded broker, {clients} clients. **redis**: two nodes on one Redis, {half} clients",
         "each; every publish goes to node A, runs the publish script in Redis and comes back to both nodes through pub/sub.",
         "Server CPU is both nodes' together (Redis apart). `/hist` is an envelope route with history (`history_size =",
         "100`: the script numbers, XADDs and PUBLISHes), `/news` raw without history (a plain PUBLISH). Odd runs memory first.", ""]
    L += ["| id | what | target | redis | memory (same run) | ratio | met |", "|---|---|---|---|---|---|---|"]
    for route in ("hist", "news"):
        case = f"B1-{route}"
        for q in ("p50", "p99"):
            m, r, x = pair(rows, case, f"latency_ms.{q}")
            L.append(f"| L-{route}-{q} | publish to delivery {q}, `/{route}`, across nodes (ms) | (document) | {fmt(r)} | "
                     f"{fmt(m)} | {x} | - |")
        m, r, x = pair(rows, case, "cpu_us_per_delivery")
        ok = None if m is None or r is None else r / m <= CPU_TARGET
        L.append(f"| C-{route} | server CPU per delivery, `/{route}` (us) | <= {CPU_TARGET:.2f}x memory | {fmt(r)} | {fmt(m)} | "
                 f"{x} (per run {per_run(paired(rows, case, 'cpu_us_per_delivery', 'memory', 'redis'))}) | {met(ok)} |")
        bad = [sum((s.get(k) or 0) for k in ("lost", "duplicated", "out_of_order", "dropped"))
               for s in rows.get(f"{case}-redis", [])]
        L.append(f"| E-{route} | lost + duplicated + out of order + dropped, `/{route}`, redis (all runs) | 0 | "
                 f"{' / '.join(fmt(b) for b in bad) or 'n/a'} | - | - | {met(None if not bad else not any(bad))} |")
    best_m, best_r = sustained(rows, "memory", rates), sustained(rows, "redis", rates)
    L.append(f"| T | publishes/s sustained with 0 lost, {env.get('RL_PUBLISHERS', '?')} keep-alive publishers, one user per "
             f"publish (highest rate tried: {max(rates) if rates else '?'}) | (document) | {fmt(best_r)} | {fmt(best_m)} | "
             f"{ratio(best_r, best_m)} | - |")
    L.append("")

    L += [f"### Fan-out, {clients} clients, {env.get('B1_COUNT', '?')} broadcasts of 100 bytes at {env.get('B1_RATE', '?')}/s", "",
          "| figure | `/hist` memory | `/hist` redis | redis/memory | `/news` memory | `/news` redis | redis/memory |",
          "|---|---|---|---|---|---|---|"]
    for label, path in (("receivers", "receivers"), ("published", "published"), ("latency p50 (ms)", "latency_ms.p50"),
                        ("latency p99 (ms)", "latency_ms.p99"), ("latency max (ms)", "latency_ms.max"),
                        ("last client p99 (ms)", "last_client_ms.p99"), ("publish request p50 (ms)", "publish_req_ms.p50"),
                        ("publish request p99 (ms)", "publish_req_ms.p99"), ("server CPU (s, all nodes)", "cpu_s"),
                        ("server CPU per delivery (us)", "cpu_us_per_delivery"), ("Redis CPU (s)", "broker_cpu_s"),
                        ("Redis CPU per publish (us)", "broker_cpu_us_per_publish"), ("lost", "lost"),
                        ("duplicated", "duplicated"), ("out of order", "out_of_order"), ("dropped", "dropped")):
        cells = []
        for route in ("hist", "news"):
            m, r, x = pair(rows, f"B1-{route}", path)
            cells += [fmt(m), fmt(r), x]
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    for label, path in (("latency p99, runs", "latency_ms.p99"), ("CPU per delivery, runs", "cpu_us_per_delivery")):
        cells = []
        for route in ("hist", "news"):
            cells += [runs(rows, f"B1-{route}-memory", path), runs(rows, f"B1-{route}-redis", path),
                      per_run(paired(rows, f"B1-{route}", path, "memory", "redis"))]
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    L.append("")

    L += [f"### Publishes per second: {fmt(float(env.get('RL_USERS', 0)))} users on node A, each publish to one user, 2 s per rate", "",
          "Each rate runs on a fresh server (pair); one connection per user (`/user?u=<i>`, raw, no history), so every",
          "publish is one PUBLISH through Redis and one delivery. Sustained: every run lost nothing and achieved >= 95%.", "",
          "| rate | broker | achieved/s | lost | publish errors | publish req p50 (ms) | p99 (ms) | node CPU per publish (us) | "
          "Redis CPU per publish (us) | Redis CPU (share of one core) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for rate in rates:
        for kind in ("memory", "redis"):
            case = f"rate-{rate}-{kind}"
            rcpu = med(rows, case, "broker_cpu_s")
            secs = med(rows, case, "publish_s") or 2.0
            share = None if rcpu is None else rcpu / secs
            L.append(f"| {rate} | {kind} | {fmt(med(rows, case, 'achieved_rate'))} | {runs(rows, case, 'lost')} | "
                     f"{fmt(med(rows, case, 'publish_errors'))} | {fmt(med(rows, case, 'publish_req_ms.p50'))} | "
                     f"{fmt(med(rows, case, 'publish_req_ms.p99'))} | {fmt(med(rows, case, 'cpu_us_per_publish'))} | "
                     f"{fmt(med(rows, case, 'broker_cpu_us_per_publish'))} | {fmt(share)} |")
    L.append("")

    notes = Path(__file__).with_name("redis-notes.md")
    if notes.exists():
        L += ["### Notes", "", notes.read_text().rstrip(), ""]

    L += ["### Commands", "", "```sh", "apt-get install redis-server   # Debian's", "SUITE=redis bench/run.sh", "```", "",
          "Scale (environment variables of bench/run.sh, as used here):", "", "```",
          " ".join(f"{k}={env.get(k, '?')!r}" if " " in env.get(k, "") else f"{k}={env.get(k, '?')}"
                   for k in ("RUNS", "FANOUT_CLIENTS", "B1_COUNT", "B1_RATE", "DRAIN", "RL_USERS", "RL_RATES",
                             "RL_PUBLISHERS", "IDLE_PING")),
          "```", "", "Client invocations of run 1:", "", "```"]
    L += env.get("_cmds", [])
    L += ["```"]
    return "\n".join(L)


def main():
    write("redis", BEGIN, END, section)


if __name__ == "__main__":
    main()

"""A heartwire client in the seed articles' style (websocket-client, gzip, json): prints
every message, answers json-gzip pings, finds a silent server, and reconnects with
full-jitter backoff, waiting out the drain's `reconnect in N ms` hint.

With --envelope (a route with `format = "envelope"` and history) it also recovers: it
keeps each channel's last offset and epoch, asks for what it missed on every reconnect
(`?recover=CHANNEL:OFFSET:EPOCH`) and hands each message over once, in order. When the
history cannot cover the gap (`recovered: false`) the app must reload its state.

    pip install websocket-client==1.9.2
    python heartwire_client.py ws://127.0.0.1:8080/app
    python heartwire_client.py --envelope ws://127.0.0.1:8080/live
"""
import base64
import gzip
import json
import random
import sys
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websocket

BASE_DELAY, MAX_DELAY = 0.5, 20.0  # seconds: the backoff's first ceiling and its cap
DEAD_AFTER = 15 + 1  # ping_interval x (max_missed + 1) + a margin: the seed's 5 s, 2 missed
# What we sent breaks the protocol, a refusal (4003) or a kick by the backend (4009): a
# retry repeats it.
TERMINAL = {1002, 1003, 1007, 1010, 4003, 4009}


def say(text):
    print(text, file=sys.stderr, flush=True)


def beat(data):
    """{"ping": ms} from a small gzip binary message, else None (never inflates a bomb)."""
    if len(data) > 256 or not data.startswith(b"\x1f\x8b"):
        return None
    try:
        msg = json.loads(gzip.decompress(data))
    except (OSError, ValueError, EOFError):
        return None
    return msg if isinstance(msg, dict) and "ping" in msg else None


def hint(code, reason):
    """N from the drain's close reason `server shutting down; reconnect in N ms`, in s."""
    if code == 1001 and "reconnect in " in reason:
        n = reason.rsplit("reconnect in ", 1)[1].split(" ")[0]
        if n.isdigit():
            return min(int(n), 300_000) / 1000
    return None


def frame(text):
    """A `{"type": "message" | "position"}` frame of an envelope route, else None."""
    try:
        v = json.loads(text)
    except ValueError:
        return None
    return v if isinstance(v, dict) and v.get("type") in ("message", "position") else None


def track(positions, f):
    """Applies a frame to positions ({channel: (epoch, offset)}): "ok", "dup" (already
    delivered: drop it) or "gap" (messages were lost: reconnect to recover them)."""
    channel, at = f.get("channel"), (f.get("epoch"), f.get("offset"))
    last = positions.get(channel)
    if f["type"] == "position":
        if at[0] is None:
            positions.pop(channel, None)  # unknown_channel: not asked again
        elif not f.get("recovered"):
            positions[channel] = at  # recovered: the replayed messages advance it
    elif channel is not None and at[1] is not None:
        if last and last[0] == at[0] and at[1] <= last[1]:
            return "dup"
        if last and (last[0] != at[0] or at[1] > last[1] + 1):
            return "gap"
        positions[channel] = at
    return "ok"


def recover_url(url, positions):
    """`url` with one recover=CHANNEL:OFFSET:EPOCH per channel (earlier ones replaced)."""
    u = urlsplit(url)
    query = [kv for kv in parse_qsl(u.query, keep_blank_values=True) if kv[0] != "recover"]
    query += [("recover", f"{c}:{off}:{epoch}") for c, (epoch, off) in positions.items()]
    return urlunsplit(u._replace(query=urlencode(query)))


def session(url, on_message, positions, on_position):
    """One connection, until it ends; returns (close code, reason, whether it opened).
    `positions` is None on raw routes."""
    if positions is not None:
        url = recover_url(url, positions)
    try:
        ws = websocket.create_connection(url, timeout=10)
    except websocket.WebSocketBadStatusException as err:
        return (4003 if err.status_code == 403 else 1006), str(err), False
    except (OSError, websocket.WebSocketException) as err:
        return 1006, str(err), False
    say("connected")
    ws.settimeout(DEAD_AFTER)  # nothing at all for this long: the server is gone
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                return code, data[2:].decode("utf-8", "replace"), True
            if opcode == websocket.ABNF.OPCODE_BINARY and (ping := beat(data)):
                ws.send(json.dumps({"pong": ping["ping"]}))
                continue
            if opcode == websocket.ABNF.OPCODE_TEXT:
                data = data.decode("utf-8", "replace")
                f = positions is not None and frame(data)
                if f:
                    last, kind = positions.get(f.get("channel")), track(positions, f)
                    if kind == "dup":
                        continue
                    if kind == "gap":
                        ws.close(4000)
                        gap = f"gap in {f['channel']}: {f['offset']} after {last[1]}"
                        return 4000, gap, True
                    if f["type"] == "position":
                        on_position(f)
                        continue
                    data = {k: v for k, v in f.items() if k not in ("type", "data_base64")}
                    if "data_base64" in f:
                        data["data"] = base64.b64decode(f["data_base64"])
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                on_message(data)
    except websocket.WebSocketTimeoutException:
        return 4000, "heartbeat timeout", True
    except (OSError, websocket.WebSocketException) as err:
        return 1006, str(err), True
    finally:
        ws.close()


def position(f):
    """Where a channel stands after connect, and whether what was missed follows."""
    channel = f["channel"]
    if f.get("recovered") is True:
        say(f"{channel}: recovered, {f.get('replayed', 0)} replayed")
    elif f.get("recovered") is False:
        say(f"{channel}: not recovered ({f.get('reason')}): the app must reload its state")
    else:
        say(f"{channel}: at offset {f.get('offset')} (epoch {f.get('epoch')})")


def show(msg):
    print(json.dumps(msg, default=repr) if isinstance(msg, dict) else msg, flush=True)


def run(url, on_message=show, envelope=False, on_position=position):
    """Forever: each message to on_message (with envelope, a dict: channel, offset, epoch,
    data); each position frame to on_position (`recovered` False: reload that channel)."""
    positions = {} if envelope else None
    attempt = 0
    while True:
        started = time.monotonic()
        code, reason, opened = session(url, on_message, positions, on_position)
        if opened and time.monotonic() - started > 5:
            attempt = 0  # it lasted: start the backoff over
        if code in TERMINAL:
            sys.exit(f"closed with {code} {reason}: not reconnecting")
        delay = hint(code, reason)
        if delay is None:
            delay = random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt))
        attempt += 1
        say(f"disconnected ({code} {reason}); reconnecting in {round(delay * 1000)} ms")
        time.sleep(delay)


if __name__ == "__main__":
    args = sys.argv[1:]
    envelope = "--envelope" in args
    urls = [a for a in args if a != "--envelope"]
    run(urls[0] if urls else "ws://127.0.0.1:8080/app", envelope=envelope)

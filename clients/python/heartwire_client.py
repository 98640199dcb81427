"""A heartwire client in the seed articles' style (websocket-client, gzip, json): prints
every message, answers json-gzip pings, finds a silent server, and reconnects with
full-jitter backoff, waiting out the drain's `reconnect in N ms` hint. No recovery of
messages missed while disconnected.

    pip install websocket-client==1.9.2
    python heartwire_client.py ws://127.0.0.1:8080/app
"""
import gzip
import json
import random
import sys
import time

import websocket

BASE_DELAY, MAX_DELAY = 0.5, 20.0  # seconds: the backoff's first ceiling and its cap
DEAD_AFTER = 15 + 1  # ping_interval x (max_missed + 1) + a margin: the seed's 5 s, 2 missed
TERMINAL = {1002, 1003, 1007, 1010}  # what we sent breaks the protocol: retrying repeats it


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


def session(url, on_message):
    """One connection, until it ends; returns (close code, reason, whether it opened)."""
    try:
        ws = websocket.create_connection(url, timeout=10)
    except (OSError, websocket.WebSocketException) as err:
        return 1006, str(err), False
    ws.settimeout(DEAD_AFTER)  # nothing at all for this long: the server is gone
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                return code, data[2:].decode("utf-8", "replace"), True
            if opcode == websocket.ABNF.OPCODE_BINARY and (ping := beat(data)):
                ws.send(json.dumps({"pong": ping["ping"]}))
            elif opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                on_message(data)
    except websocket.WebSocketTimeoutException:
        return 4000, "heartbeat timeout", True
    except (OSError, websocket.WebSocketException) as err:
        return 1006, str(err), True
    finally:
        ws.close()


def run(url, on_message=print):
    attempt = 0
    while True:
        started = time.monotonic()
        code, reason, opened = session(url, on_message)
        if opened and time.monotonic() - started > 5:
            attempt = 0  # it lasted: start the backoff over
        if code in TERMINAL:
            sys.exit(f"closed with {code} {reason}: not reconnecting")
        delay = hint(code, reason)
        if delay is None:
            delay = random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt))
        attempt += 1
        print(f"disconnected ({code} {reason}); reconnecting in {delay:.2f} s", file=sys.stderr)
        time.sleep(delay)


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/app")

"""A client written like the seed articles' (websocket-client, gzip, json), run by
tests/seed_client.rs against the real daemon. Exits 0 when every check passes."""
import gzip
import json
import sys
import time

import websocket

base = sys.argv[1]


def next_text(ws):
    """The next text message, skipping heartbeat traffic."""
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return data


# json-gzip route: gunzip each binary ping and answer {"pong": same value}.
ws = websocket.create_connection(base + "/", timeout=5)
pings = 0
while pings < 6:
    opcode, data = ws.recv_data()
    if opcode == websocket.ABNF.OPCODE_BINARY:
        msg = json.loads(gzip.decompress(data).decode("utf-8"))
        if "ping" in msg:
            ws.send(json.dumps({"pong": msg["ping"]}))
            pings += 1
ws.send("hello")
assert next_text(ws) == b"server said: hello"
ws.close()

# protocol route: ping frames carry a 13-byte big-endian ms timestamp; pongs are automatic.
ws = websocket.create_connection(base + "/ws", timeout=5)
assert ws.recv() == "Welcome"
pings = 0
while pings < 6:
    frame = ws.recv_data_frame(True)[1]
    if frame.opcode == websocket.ABNF.OPCODE_PING:
        assert len(frame.data) == 13, frame.data
        assert abs(int.from_bytes(frame.data, "big") - time.time() * 1000) < 5000
        pings += 1
ws.send("hi")
assert next_text(ws) == b"new message :hi"
ws.close()
print("seed client ok")

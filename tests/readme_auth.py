"""The README's "Channels and authentication" example, as a backend developer runs it:
PyJWT mints the token, websocket-client connects the way the browser snippet does.

Usage: readme_auth.py WS_URL SECRET_FILE
Prints "connected <subprotocol>", then every message received, one per line, until the
server closes.
"""
import sys
import time

import jwt
import websocket

url, secret_file = sys.argv[1], sys.argv[2]

# The README's lines, the secret's path aside.
secret = open(secret_file, "rb").read().rstrip(b"\n")
claims = {"sub": "42", "iss": "https://app.example", "aud": "heartwire",
          "exp": int(time.time()) + 3600}
token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "2026-12"})

ws = websocket.create_connection(url, subprotocols=["heartwire", "heartwire.bearer." + token],
                                 timeout=10)
print("connected", ws.getsubprotocol(), flush=True)
while True:
    try:
        print("got:", ws.recv(), flush=True)
    except websocket.WebSocketConnectionClosedException:
        break

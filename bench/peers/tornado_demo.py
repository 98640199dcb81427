"""The seed's two Tornado WebSocket demos as one small server, for heartwire-bench.

From the seed articles (../shared/seeds/): the /index page, the echo handler with its
"new message :" prefix, GET /receive?msg=M pushing M to every client (ProStatus.trigger),
Tornado's own RFC 6455 pings (websocket_ping_interval / websocket_ping_timeout), and the
gzip-compressed {"ping": ms} heartbeat answered by {"pong": ms}, closing a client after
two unanswered pings (beatping + user_times).

Adapted so the same client drives heartwire, this and the floor:
  WS   /news, /quiet      channels "news" and "quiet", Tornado protocol pings
  WS   /app               channel "app", the seed's gzip JSON heartbeat instead
  WS   /echo              echoes "new message :" + message
  POST /publish?channel=C body -> every client of C (all when absent): text/plain as a
                          text frame, application/octet-stream as binary; {"queued": N}
  GET  /receive?msg=M     the seed's push to every client (also GET /publish?msg=M)
SIGHUP is logged and ignored (nothing to reload); SIGTERM closes every client with 1001.

One deliberate difference from the seed: its on_pong answers Tornado's empty pong with
an extra 13-byte timestamp ping, doubling ping traffic; heartwire sends one ping per
interval, so this server does too.
"""

import argparse
import gzip
import json
import logging
import signal
import time

import tornado.ioloop
import tornado.web
import tornado.websocket

channels: dict[str, set] = {}
# json-gzip peers, as the seed's user_times: handler -> {"count": unanswered, "ping": last}
user_times: dict = {}


def push(channel, message, binary=False):
    """Writes message to every client of channel (all clients when None); returns how many."""
    if channel is None:
        targets = [u for users in channels.values() for u in users]
    else:
        targets = list(channels.get(channel, ()))
    sent = 0
    for user in targets:
        try:
            user.write_message(message, binary=binary)
            sent += 1
        except tornado.websocket.WebSocketClosedError:
            pass
    return sent


class ChannelHandler(tornado.websocket.WebSocketHandler):
    channel = "news"

    def check_origin(self, origin):
        # The seed's fix for 403 on cross-origin pages.
        return True

    def open(self):
        channels.setdefault(self.channel, set()).add(self)

    def on_close(self):
        channels.get(self.channel, set()).discard(self)
        user_times.pop(self, None)

    def on_message(self, message):
        pass


class NewsHandler(ChannelHandler):
    channel = "news"


class QuietHandler(ChannelHandler):
    channel = "quiet"


class AppHandler(ChannelHandler):
    """The seed's business-level heartbeat: gzip {"ping": ms}, answered by {"pong": ms}."""

    channel = "app"

    @property
    def ping_interval(self):
        return None  # no protocol pings on this route: the JSON heartbeat replaces them

    def open(self):
        super().open()
        user_times[self] = {"count": 0, "ping": None}

    def on_message(self, message):
        try:
            msg = json.loads(message)
        except ValueError:
            return
        user_dic = user_times.get(self)
        if isinstance(msg, dict) and "pong" in msg and user_dic and user_dic["ping"] == msg["pong"]:
            user_dic["count"] = 0


class EchoHandler(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin):
        return True

    @property
    def ping_interval(self):
        return None

    def on_message(self, message):
        self.write_message("new message :" + message)


class IndexHandler(tornado.web.RequestHandler):
    def get(self):
        self.write("Hello world")


class ReceiveHandler(tornado.web.RequestHandler):
    def get(self):
        msg = self.get_argument("msg", "")
        self.write({"queued": push(self.get_argument("channel", None), msg)})


class PublishHandler(ReceiveHandler):
    def post(self):
        channel = self.get_argument("channel", None)
        ctype = self.request.headers.get("Content-Type", "text/plain")
        if ctype.startswith("application/octet-stream"):
            queued = push(channel, self.request.body, binary=True)
        else:
            queued = push(channel, self.request.body.decode("utf-8"))
        self.write({"queued": queued})


def beatping(max_missed):
    # The seed's beatping: one payload per tick, compressed once, sent to every peer.
    ping_dic = {"ping": round(time.time() * 1000)}
    ping_gzip = gzip.compress(json.dumps(ping_dic).encode("utf-8"))
    for user in list(channels.get("app", ())):
        state = user_times.get(user)
        if state is None:
            continue
        if state["count"] >= max_missed:
            user.close()
            user_times.pop(user, None)
            continue
        try:
            user.write_message(ping_gzip, binary=True)
        except tornado.websocket.WebSocketClosedError:
            continue
        state["ping"] = ping_dic["ping"]
        state["count"] += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8091)
    ap.add_argument("--ping-interval", type=float, default=5.0, help="protocol pings, seconds")
    ap.add_argument("--ping-timeout", type=float, default=5.0, help="Tornado caps it at the interval")
    ap.add_argument("--app-interval", type=float, default=5.0, help="gzip JSON pings, seconds")
    ap.add_argument("--max-missed", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    app = tornado.web.Application(
        [
            (r"/index", IndexHandler),
            (r"/news", NewsHandler),
            (r"/quiet", QuietHandler),
            (r"/app", AppHandler),
            (r"/echo", EchoHandler),
            (r"/receive", ReceiveHandler),
            (r"/publish", PublishHandler),
        ],
        websocket_ping_interval=args.ping_interval,
        websocket_ping_timeout=args.ping_timeout,
        websocket_max_message_size=1 << 20,
    )
    app.listen(args.port, address=args.listen, backlog=4096)
    loop = tornado.ioloop.IOLoop.current()
    tornado.ioloop.PeriodicCallback(lambda: beatping(args.max_missed), args.app_interval * 1000).start()

    def stop():
        for user in [u for users in channels.values() for u in users]:
            user.close(1001, "server shutting down")
        loop.call_later(0.5, loop.stop)

    signal.signal(signal.SIGTERM, lambda *_: loop.add_callback_from_signal(stop))
    signal.signal(signal.SIGHUP, lambda *_: logging.warning("SIGHUP: nothing to reload"))
    loop.start()


if __name__ == "__main__":
    main()

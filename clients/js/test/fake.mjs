// Shared by the unit tests: a fake WebSocket that records what is sent and lets a test
// play the server, and a bounded wait for a client event.

export class FakeSocket {
  static all = [];
  constructor(url, protocols) { Object.assign(this, { url, protocols, sent: [], closed: null }); FakeSocket.all.push(this); }
  send(d) { this.sent.push(d); }
  close(code, reason) { this.closed = { code, reason }; }
  open() { this.onopen?.(); }
  message(data) { this.onmessage?.({ data }); }
  /** An envelope route's frame, as JSON text. */
  frame(v) { this.message(JSON.stringify(v)); }
  end(code, reason) { this.onclose?.({ code, reason }); }
}

/** The socket the client opened last. */
export const last = () => FakeSocket.all.at(-1);

/** The next `type` event matching `pred`, failing after `ms` rather than hanging the run. */
export const nextEvent = (c, type, pred = () => true, ms = 3000) => new Promise((resolve, reject) => {
  const t = setTimeout(() => { off(); reject(new Error(`no ${type} event within ${ms} ms`)); }, ms);
  const off = c.on(type, (d) => { if (pred(d)) { clearTimeout(t); off(); resolve(d); } });
});

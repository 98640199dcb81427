// heartwire-client. Docs: heartwire.d.ts. License: MIT OR Apache-2.0.

const MAX_BEAT = 256;
const MAX_HINT = 300000;
const SPREAD = 5000; // 1001 without a hint: the default reconnect_jitter
const GAPS = 4;
// A retry would repeat what the server refused.
export const TERMINAL = [1002, 1003, 1007, 1010, 4003];

const DEFAULTS = {
  pingInterval: 0,
  maxMissed: 2,
  margin: 1000,
  clientPings: true,
  rttEvery: 4,
  baseDelay: 500,
  maxDelay: 20000,
  resetAfter: 5000,
  connectTimeout: 10000,
  failuresBeforeError: 5,
  buffer: 1000,
};
const now = () => performance.now();
const wsUrl = (u) => {
  if (!globalThis.location) return u;
  const x = new URL(u, location.href);
  x.protocol = x.protocol.replace('http', 'ws');
  return x.href;
};

export function backoff(attempt, baseDelay = 500, maxDelay = 20000, random = Math.random) {
  return random() * Math.min(maxDelay, baseDelay * 2 ** Math.min(attempt, 30));
}

export function parseHint(reason) {
  const m = /reconnect in (\d{1,9}) ms/.exec(reason || '');
  return m ? Math.min(Number(m[1]), MAX_HINT) : null;
}

// exp in ms, unverified (the server verifies)
export function tokenExp(token) {
  try {
    const exp = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).exp;
    return Number.isFinite(exp) ? exp * 1000 : null;
  } catch { return null; }
}

// 10% of the time left, in [5 s, 60 s], at most half of it
export function refreshIn(token, t = Date.now()) {
  const exp = tokenExp(token), left = exp - t;
  return exp === null ? null : Math.max(0, left - Math.min(60000, Math.max(5000, left / 10), left / 2));
}

// 4001: at once with a fresh token, unless the last reconnect was for that
export function plan(code, reason, attempt, o = DEFAULTS, random = Math.random, retried = false) {
  if (TERMINAL.includes(code) || (code === 4001 && !o.getToken)) return null;
  if (code === 4001 && !retried) return 0;
  if (code === 1001) return parseHint(reason) ?? random() * SPREAD;
  return backoff(attempt, o.baseDelay, o.maxDelay, random);
}

export function parseBeat(text) {
  if (typeof text !== 'string' || text.length > MAX_BEAT || text.trimStart()[0] !== '{') return null;
  let v;
  try { v = JSON.parse(text); } catch { return null; }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null;
  if ('pong' in v) return { pong: v.pong };
  if ('ping' in v) return { ping: v.ping };
  return null;
}

export async function gunzipBeat(data) {
  const b = new Uint8Array(data);
  if (b.length > MAX_BEAT || b[0] !== 0x1f || b[1] !== 0x8b || typeof DecompressionStream !== 'function') return null;
  try {
    const s = new Blob([b]).stream().pipeThrough(new DecompressionStream('gzip'));
    return parseBeat(await new Response(s).text());
  } catch { return null; }
}

export class HeartwireClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    for (const k of ['position', 'positions'])
      if (options[k] !== undefined) throw new Error(`heartwire-client: option ${k} is not supported yet`);
    this.url = url;
    this.o = { ...DEFAULTS, ...options };
    this.rtt = null;
    this.state = 'disconnected';
    this._attempt = 0;
    this._fails = 0;
    this._tok = options.token;
    this._iters = new Set();
    this._probes = new Map();
    this._gaps = [];
    const g = globalThis;
    this._env = [];
    const on = (t, type, f) => { if (t?.addEventListener) { t.addEventListener(type, f); this._env.push(() => t.removeEventListener(type, f)); } };
    on(g, 'online', () => this._wake(true));
    on(g, 'offline', () => clearTimeout(this._timer));
    on(g.document, 'visibilitychange', () => { if (g.document.visibilityState === 'visible') this._wake(false); });
    this._open();
  }

  on(type, fn) {
    const h = (e) => fn(type === 'message' ? e.data : e.detail, e);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  send(data) {
    if (this.state !== 'connected') return false;
    this._ws.send(data);
    return true;
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    this._env.forEach((off) => off());
    if (this._ws) this._drop(this._ws, 1000, 'closed by client');
    else this._finish();
  }

  [Symbol.asyncIterator]() {
    const q = [], waiting = [];
    const it = {
      push: (v) => waiting.length ? waiting.shift()({ value: v, done: false }) : q.push(v) > this.o.buffer && q.shift(),
      end: () => waiting.splice(0).forEach((r) => r({ value: undefined, done: true })),
    };
    if (!this._closed) this._iters.add(it);
    return {
      next: () => q.length ? Promise.resolve({ value: q.shift(), done: false })
        : this._iters.has(it) ? new Promise((r) => waiting.push(r)) : Promise.resolve({ value: undefined, done: true }),
      return: () => { this._iters.delete(it); it.end(); return Promise.resolve({ value: undefined, done: true }); },
      [Symbol.asyncIterator]() { return this; },
    };
  }

  get interval() { return this.o.pingInterval || this._learned || 5000; }
  get deadAfter() { return this.interval * (this.o.maxMissed + 1) + this.o.margin; }

  _emit(type, detail) { this.dispatchEvent(Object.assign(new Event(type), { detail })); }

  _set(state, detail = {}) {
    this.state = state;
    this._emit('state', { state, attempt: this._attempt, ...detail });
  }

  // Online or shown: check the socket, or retry now (a drain's hint still runs out).
  _wake(online) {
    if (this._closed) return;
    if (this._ws) { if (now() - this._last >= this.deadAfter) this._dead(); return; }
    if (!this._pending) return;
    if (online) this._attempt = 0;
    this._schedule(this._hinted ? this._due - now() : 0);
  }

  _schedule(delay) {
    clearTimeout(this._timer);
    this._pending = true;
    this._due = now() + delay;
    if (globalThis.navigator?.onLine !== false) this._timer = setTimeout(() => this._open(), Math.max(0, delay));
  }

  async _open() {
    clearTimeout(this._timer);
    this._pending = false;
    if (this._closed) return;
    const o = this.o;
    let ws, tok = this._tok;
    try {
      if (o.getToken && !(refreshIn(tok) > 0)) tok = this._tok = await o.getToken();
    } catch (error) {
      this._emit('error', { message: `getToken: ${error}`, error });
      return this._closed || this._schedule(backoff(this._attempt++, o.baseDelay, o.maxDelay));
    }
    if (this._closed) return;
    try {
      const url = typeof this.url === 'function' ? this.url() : this.url;
      ws = new (o.WebSocket || WebSocket)(wsUrl(url), tok ? ['heartwire', 'heartwire.bearer.' + tok] : o.protocols);
    } catch (err) {
      this._emit('error', { message: `cannot connect: ${err.message}`, error: err });
      return this.close();
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._opened = 0;
    this._serverPings = 0;
    this._lastPing = 0;
    this._chain = Promise.resolve();
    this._set('connecting');
    const t = setTimeout(() => this._drop(ws, 1006, 'connect timeout'), this.o.connectTimeout);
    ws.onopen = () => {
      clearTimeout(t);
      this._opened = now();
      this._fails = 0;
      this._set('connected');
      this._renewal(ws);
      this._alive();
      this._check = setTimeout(() => this._tick(ws), this.deadAfter);
      if (this.o.clientPings) this._pinger = setTimeout(() => this._clientPing(ws), this.interval);
    };
    // Chained: messages keep their order though binary ones inflate asynchronously.
    ws.onmessage = (e) => {
      const t = now();
      this._chain = this._chain.then(() => this._message(ws, e.data, t))
        .catch((error) => this._emit('error', { message: String(error), error }));
    };
    ws.onclose = (e) => { clearTimeout(t); this._ended(ws, e.code, e.reason); };
  }

  _alive() { this._last = now(); }

  // {"token"} before the server's 4001; if getToken fails, that close reconnects.
  _renewal(ws) {
    const due = refreshIn(this._tok);
    if (this.o.getToken && due !== null) this._refresh = setTimeout(async () => {
      try {
        const t = await this.o.getToken();
        if (ws === this._ws) ws.send(JSON.stringify({ token: this._tok = t })), this._renewal(ws);
      } catch (error) { this._emit('error', { message: `getToken: ${error}`, error }); }
    }, due);
  }

  _tick(ws) {
    if (ws !== this._ws) return;
    const left = this.deadAfter - (now() - this._last);
    if (left <= 0) return this._dead();
    this._check = setTimeout(() => this._tick(ws), left);
  }

  _dead() { this._drop(this._ws, 4000, `heartbeat timeout: nothing for ${Math.round(now() - this._last)} ms`); }

  _clientPing(ws) {
    if (ws !== this._ws || this._serverPings) return;
    this._probe(ws);
    this._pinger = setTimeout(() => this._clientPing(ws), this.interval);
  }

  _probe(ws) {
    const token = Math.round(now() * 1000);
    if (this._probes.size > 8) this._probes.clear();
    this._probes.set(token, now());
    ws.send(JSON.stringify({ ping: token }));
  }

  async _message(ws, data, t) {
    if (ws !== this._ws) return;
    this._last = t;
    if (typeof data === 'string') {
      const b = this._probes.size && parseBeat(data);
      if (b && this._probes.has(b.pong)) {
        this.rtt = now() - this._probes.get(b.pong);
        this._probes.delete(b.pong);
        return this._emit('heartbeat', { rtt: this.rtt });
      }
    } else {
      const b = await gunzipBeat(data);
      if (ws !== this._ws) return;
      if (b && 'ping' in b) {
        // The longest recent gap: two pings flushed together do not shrink it.
        if (this._lastPing) {
          this._gaps = [...this._gaps, t - this._lastPing].slice(-GAPS);
          this._learned = Math.max(...this._gaps);
        }
        this._lastPing = t;
        clearTimeout(this._check);
        this._tick(ws);
        ws.send(JSON.stringify({ pong: b.ping }));
        if (this.o.clientPings && this._serverPings++ % this.o.rttEvery === 0) this._probe(ws);
        return this._emit('heartbeat', { ping: b.ping });
      }
    }
    this.dispatchEvent(new MessageEvent('message', { data }));
    this._iters.forEach((it) => it.push(data));
  }

  _drop(ws, code, reason) {
    if (!ws) return;
    try { ws.close(code === 1000 ? 1000 : 4000, reason.slice(0, 100)); } catch {}
    this._ended(ws, code, reason);
  }

  _ended(ws, code, reason) {
    if (ws !== this._ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    this._ws = null;
    clearTimeout(this._check);
    clearTimeout(this._pinger);
    clearTimeout(this._refresh);
    this._probes.clear();
    const o = this.o, opened = this._opened;
    if (opened && now() - opened >= o.resetAfter) this._attempt = this._retried = 0;
    if (!opened) this._fails++;
    let delay = this._closed ? null : plan(code, reason, this._attempt, o, Math.random, this._retried);
    if (code === 4001) this._tok = null, this._retried = 1;
    if (delay !== null && o.shouldReconnect) {
      const r = o.shouldReconnect({ code, reason, delay, attempt: this._attempt });
      delay = r === false ? null : typeof r === 'number' ? r : delay;
    }
    if (!opened && this._fails >= o.failuresBeforeError)
      this._emit('error', { message: `${this._fails} connection attempts failed before open (server down, or refused: origin, path, capacity)`, failures: this._fails });
    if (delay === null && !this._closed)
      this._emit('error', { message: `server closed with ${code} ${reason}: not reconnecting`, code, reason });
    this._set('disconnected', { code, reason, reconnectIn: delay });
    if (delay === null) return this._closed ? this._finish() : this.close();
    this._attempt++;
    this._hinted = code === 1001 && parseHint(reason) !== null;
    this._schedule(delay);
  }

  _finish() { this._iters.forEach((it) => it.end()); this._iters.clear(); }
}

export const connect = (url, options) => new HeartwireClient(url, options);

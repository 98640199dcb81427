// heartwire-client: docs in heartwire.d.ts. MIT OR Apache-2.0.

export const TERMINAL = [1002, 1003, 1007, 1010, 4003, 4009];

const DEFAULTS = {
  pingInterval: 0, maxMissed: 2, margin: 1000, clientPings: true, rttEvery: 4,
  baseDelay: 500, maxDelay: 20000, resetAfter: 5000, connectTimeout: 10000,
  failuresBeforeError: 5, buffer: 1000,
};
const now = () => performance.now();
const end = () => ({ value: undefined, done: true });

export function backoff(attempt, baseDelay = 500, maxDelay = 20000, random = Math.random) {
  return random() * Math.min(maxDelay, baseDelay * 2 ** Math.min(attempt, 30));
}

export function parseHint(reason) {
  const m = /reconnect in (\d{1,9}) ms/.exec(reason || '');
  return m ? Math.min(+m[1], 300000) : null;
}

export function tokenExp(token) {
  try {
    const exp = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).exp;
    return Number.isFinite(exp) ? exp * 1000 : null;
  } catch { return null; }
}

export function refreshIn(token, t = Date.now()) {
  const exp = tokenExp(token), left = exp - t;
  return exp === null ? null : Math.max(0, left - Math.min(60000, Math.max(5000, left / 10), left / 2));
}

export function plan(code, reason, attempt, o = DEFAULTS, random = Math.random, retried = false) {
  if (TERMINAL.includes(code) || (code === 4001 && !o.getToken)) return null;
  if (code === 4001 && !retried) return 0;
  if (code === 1001) return parseHint(reason) ?? random() * 5000;
  return backoff(attempt, o.baseDelay, o.maxDelay, random);
}

const object = (text) => {
  try { return /^\s*{/.test(text) ? JSON.parse(text) : null; } catch { return null; }
};

export function parseBeat(text) {
  const v = text?.length <= 256 && object(text);
  return !v ? null : 'pong' in v ? { pong: v.pong } : 'ping' in v ? { ping: v.ping } : null;
}

export function parseFrame(text) {
  const v = object(text);
  return v?.type === 'message' || v?.type === 'position' ? v : null;
}

export function track(pos, f) {
  const c = f.channel, last = pos[c], at = { epoch: f.epoch, offset: f.offset };
  if (f.type === 'position') {
    if (f.epoch === undefined) delete pos[c];
    else if (!f.recovered) pos[c] = at;
  } else if (c !== undefined && f.offset !== undefined) {
    if (last?.epoch === f.epoch && f.offset <= last.offset) return 'dup';
    if (last && (last.epoch !== f.epoch || f.offset > last.offset + 1)) return 'gap';
    pos[c] = at;
  }
  return 'ok';
}

export function recoverUrl(url, pos) {
  const u = new URL(url), q = u.searchParams;
  q.delete('recover');
  for (const c in pos) q.append('recover', `${c}:${pos[c].offset}:${pos[c].epoch}`);
  return u.href;
}

export async function gunzipBeat(data) {
  const b = new Uint8Array(data);
  if (b.length > 256 || b[0] !== 0x1f || b[1] !== 0x8b) return null;
  try {
    return parseBeat(await new Response(new Blob([b]).stream().pipeThrough(new DecompressionStream('gzip'))).text());
  } catch { return null; }
}

export class HeartwireClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    const g = globalThis, d = g.document, off = this._off = [];
    const on = (t, type, f) => t?.addEventListener && (t.addEventListener(type, f), off.push(() => t.removeEventListener(type, f)));
    this.url = url;
    this.positions = { ...options.positions };
    this.o = { ...DEFAULTS, ...options };
    this.rtt = null;
    this.state = 'disconnected';
    this._n = this._fails = 0;
    this._tok = options.token;
    this._its = new Set();
    this._probes = new Map();
    this._gaps = [];
    on(g, 'online', () => this._wake(1));
    on(g, 'offline', () => clearTimeout(this._timer));
    on(d, 'visibilitychange', () => d.visibilityState === 'visible' && this._wake());
    this._go();
  }

  on(type, fn) {
    const h = (e) => fn(type === 'message' ? e.data : e.detail, e);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  send(data) {
    return this.state === 'connected' && (this._ws.send(data), true);
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    this._off.forEach((f) => f());
    this._ws ? this._drop(this._ws, 1000, 'closed by client') : this._finish();
  }

  [Symbol.asyncIterator]() {
    const q = [], waiting = [], its = this._its;
    const it = {
      push: (value) => waiting.length ? waiting.shift()({ value, done: false }) : q.push(value) > this.o.buffer && q.shift(),
      end: () => waiting.splice(0).forEach((r) => r(end())),
    };
    if (!this._closed) its.add(it);
    return {
      next: async () => q.length ? { value: q.shift(), done: false } : its.has(it) ? new Promise((r) => waiting.push(r)) : end(),
      return: async () => (its.delete(it), it.end(), end()),
      [Symbol.asyncIterator]() { return this; },
    };
  }

  get interval() { return this.o.pingInterval || this._learned || 5000; }
  get deadAfter() { return this.interval * (this.o.maxMissed + 1) + this.o.margin; }

  _emit(type, detail) { this.dispatchEvent(Object.assign(new Event(type), { detail })); }
  _err(error, prefix = '') { this._emit('error', { message: prefix + error, error }); }

  _set(state, detail) {
    this.state = state;
    this._emit('state', { state, attempt: this._n, ...detail });
  }

  _wake(online) {
    if (this._closed) return;
    if (this._ws) return now() - this._last >= this.deadAfter && this._dead();
    if (!this._pending) return;
    if (online) this._n = 0;
    this._later(this._hinted ? this._due - now() : 0);
  }

  _later(delay) {
    clearTimeout(this._timer);
    this._pending = true;
    this._due = now() + delay;
    if (globalThis.navigator?.onLine !== false) this._timer = setTimeout(() => this._go(), Math.max(0, delay));
  }

  async _go() {
    clearTimeout(this._timer);
    this._pending = false;
    if (this._closed) return;
    const o = this.o;
    let ws, url, tok = this._tok;
    try {
      if (o.getToken && !(refreshIn(tok) > 0)) tok = this._tok = await o.getToken();
    } catch (e) {
      this._err(e, 'getToken: ');
      return this._closed || this._later(backoff(this._n++, o.baseDelay, o.maxDelay));
    }
    if (this._closed) return;
    try {
      url = typeof this.url === 'function' ? this.url() : this.url;
      if (globalThis.location) {
        const u = new URL(url, location.href);
        u.protocol = u.protocol.replace('http', 'ws');
        url = u.href;
      }
      if (o.envelope) url = recoverUrl(url, this.positions);
      ws = new (o.WebSocket || WebSocket)(url, tok ? ['heartwire', 'heartwire.bearer.' + tok] : o.protocols || ['heartwire']);
    } catch (e) {
      this._err(e, 'cannot connect: ');
      return this.close();
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._opened = this._pings = this._pingAt = 0;
    this._chain = Promise.resolve();
    this._set('connecting');
    const t = setTimeout(() => this._drop(ws, 1006, 'connect timeout'), o.connectTimeout);
    ws.onopen = () => {
      clearTimeout(t);
      this._opened = this._last = now();
      this._fails = 0;
      this._set('connected');
      this._renew(ws);
      this._tick(ws);
      if (o.clientPings) this._ping(ws, 1);
    };
    // Chained: binary messages inflate asynchronously, yet all keep their order.
    ws.onmessage = (e) => {
      const t = now();
      this._chain = this._chain.then(() => this._msg(ws, e.data, t)).catch((e) => this._err(e));
    };
    ws.onclose = (e) => { clearTimeout(t); this._ended(ws, e.code, e.reason); };
  }

  _renew(ws) {
    const due = refreshIn(this._tok);
    if (this.o.getToken && due !== null) this._refresh = setTimeout(async () => {
      try {
        const t = await this.o.getToken();
        if (ws === this._ws) ws.send(JSON.stringify({ token: this._tok = t })), this._renew(ws);
      } catch (e) { this._err(e, 'getToken: '); }
    }, due);
  }

  _tick(ws) {
    if (ws !== this._ws) return;
    const left = this.deadAfter - (now() - this._last);
    if (left <= 0) return this._dead();
    this._check = setTimeout(() => this._tick(ws), left);
  }

  _dead() { this._drop(this._ws, 4000, `heartbeat timeout: nothing for ${Math.round(now() - this._last)} ms`); }

  _ping(ws, first) {
    if (ws !== this._ws || this._pings) return;
    if (!first) this._probe(ws);
    this._pinger = setTimeout(() => this._ping(ws), this.interval);
  }

  _probe(ws) {
    const p = this._probes, token = Math.round(now() * 1000);
    if (p.size > 8) p.clear();
    p.set(token, now());
    ws.send(JSON.stringify({ ping: token }));
  }

  async _msg(ws, data, t) {
    if (ws !== this._ws) return;
    this._last = t;
    const p = this._probes, pos = this.positions;
    if (typeof data === 'string') {
      const b = p.size && parseBeat(data);
      if (b && p.has(b.pong)) {
        this.rtt = now() - p.get(b.pong);
        p.delete(b.pong);
        return this._emit('heartbeat', { rtt: this.rtt });
      }
      const f = this.o.envelope && parseFrame(data);
      if (f) {
        const last = pos[f.channel], k = track(pos, f);
        if (k === 'dup') return;
        if (k === 'gap') return this._drop(ws, 4000, `gap in ${f.channel}: offset ${f.offset} (${f.epoch}) after ${last.offset} (${last.epoch}); recovering`);
        if (f.type === 'position') return this._emit('recovered' in f ? 'recovered' : 'position', f);
        const { type, data_base64: b, ...m } = f;
        if (b !== undefined) m.data = Uint8Array.from(atob(b), (x) => x.charCodeAt(0)).buffer;
        data = m;
      }
    } else {
      const b = await gunzipBeat(data);
      if (ws !== this._ws) return;
      if (b && 'ping' in b) {
        if (this._pingAt) this._learned = Math.max(...(this._gaps = [...this._gaps, t - this._pingAt].slice(-4)));
        this._pingAt = t;
        clearTimeout(this._check);
        this._tick(ws);
        ws.send(JSON.stringify({ pong: b.ping }));
        if (this.o.clientPings && this._pings++ % this.o.rttEvery === 0) this._probe(ws);
        return this._emit('heartbeat', { ping: b.ping });
      }
    }
    this.dispatchEvent(new MessageEvent('message', { data }));
    this._its.forEach((it) => it.push(data));
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
    [this._check, this._pinger, this._refresh].forEach(clearTimeout);
    this._probes.clear();
    const o = this.o, opened = this._opened;
    if (opened && now() - opened >= o.resetAfter) this._n = this._retried = 0;
    if (!opened) this._fails++;
    let delay = this._closed ? null : plan(code, reason, this._n, o, Math.random, this._retried);
    if (code === 4001) this._tok = null, this._retried = 1;
    if (delay !== null && o.shouldReconnect) {
      const r = o.shouldReconnect({ code, reason, delay, attempt: this._n });
      delay = r === false ? null : typeof r === 'number' ? r : delay;
    }
    if (!opened && this._fails >= o.failuresBeforeError)
      this._emit('error', { message: `${this._fails} attempts failed before open (server down, or refused: path, capacity)`, failures: this._fails });
    if (delay === null && !this._closed)
      this._emit('error', { message: `server closed with ${code} ${reason}: not reconnecting`, code, reason });
    this._set('disconnected', { code, reason, reconnectIn: delay });
    if (delay === null) return this._closed ? this._finish() : this.close();
    this._n++;
    this._hinted = code === 1001 && parseHint(reason) !== null;
    this._later(delay);
  }

  _finish() { this._its.forEach((it) => it.end()); this._its.clear(); }
}

export const connect = (url, options) => new HeartwireClient(url, options);

// Unit tests of the client's pure logic and, with a fake socket, its state machine.
// Run: npm test   (Node 18 or newer: no browser, no WebSocket needed)
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { backoff, parseHint, plan, parseBeat, gunzipBeat, HeartwireClient, TERMINAL } from '../heartwire.js';
import { FakeSocket, last, nextEvent } from './fake.mjs';

test('backoff: full jitter between 0 and min(max, base x 2^attempt)', () => {
  assert.equal(backoff(0, 500, 20000, () => 0), 0);
  assert.equal(backoff(0, 500, 20000, () => 0.999999) < 500, true);
  assert.equal(backoff(1, 500, 20000, () => 0.5), 500);
  assert.equal(backoff(3, 500, 20000, () => 1), 4000);
  assert.equal(backoff(6, 500, 20000, () => 1), 20000);
  assert.equal(backoff(1e9, 500, 20000, () => 1), 20000);
  for (let a = 0; a < 50; a++) {
    const d = backoff(a);
    assert.ok(d >= 0 && d <= 20000, `attempt ${a}: ${d}`);
  }
});

test('parseHint: the drain reason, and nothing else', () => {
  assert.equal(parseHint('server shutting down; reconnect in 1234 ms'), 1234);
  assert.equal(parseHint('server shutting down; reconnect in 0 ms'), 0);
  assert.equal(parseHint('server shutting down'), null);
  assert.equal(parseHint('route removed from config'), null);
  assert.equal(parseHint(''), null);
  assert.equal(parseHint(undefined), null);
  assert.equal(parseHint('reconnect in -5 ms'), null);
  assert.equal(parseHint('reconnect in 999999999 ms'), 300000, 'capped at 5 min');
  assert.equal(parseHint('reconnect in 1e9 ms'), null);
});

test('plan: terminal codes stop, the hint replaces the backoff, the rest back off', () => {
  const o = { baseDelay: 500, maxDelay: 20000 };
  const half = () => 0.5;
  for (const code of TERMINAL) assert.equal(plan(code, 'x', 0, o, half), null, `code ${code}`);
  // Refused (token, origin) and disconnected by the backend (logout, ban) are terminal.
  for (const code of [4003, 4009]) assert.ok(TERMINAL.includes(code), `${code}`);
  assert.equal(plan(1001, 'server shutting down; reconnect in 2500 ms', 7, o, half), 2500);
  // 1001 without a hint (route removed, handshake during a drain): spread over 5 s.
  assert.equal(plan(1001, 'route removed from config', 0, o, half), 2500);
  assert.equal(plan(1001, 'server shutting down', 9, o, () => 0.999) < 5000, true);
  // 1008 slow consumer, 1009 too big, 4000 heartbeat timeout, 1006 failed: all reconnect.
  for (const code of [1000, 1006, 1008, 1009, 1011, 4000]) assert.equal(plan(code, '', 2, o, half), 1000, `code ${code}`);
  // A hint on another code is not a drain: ignored.
  assert.equal(plan(4000, 'reconnect in 9000 ms', 0, o, half), 250);
});

test('parseBeat: pings and pongs, small JSON objects only', () => {
  assert.deepEqual(parseBeat('{"ping": 1492420473027}'), { ping: 1492420473027 });
  assert.deepEqual(parseBeat(' {"pong":7,"x":1}'), { pong: 7 });
  assert.deepEqual(parseBeat('{"pong":"abc"}'), { pong: 'abc' });
  for (const t of ['hello', '{"data":1}', '[1]', '{"ping": ', 'null', '', '{"ping": "' + 'a'.repeat(300) + '"}'])
    assert.equal(parseBeat(t), null, t);
  assert.equal(parseBeat(new ArrayBuffer(4)), null);
});

test('gunzipBeat: the server ping, not other binary', async () => {
  const ping = gzipSync('{"ping": 1492420473027}');
  assert.deepEqual(await gunzipBeat(ping.buffer.slice(ping.byteOffset, ping.byteOffset + ping.length)), { ping: 1492420473027 });
  assert.equal(await gunzipBeat(new Uint8Array([0x1f, 0x8b, 1, 2, 3])), null, 'corrupt gzip');
  assert.equal(await gunzipBeat(new TextEncoder().encode('{"ping": 1}')), null, 'not gzip');
  assert.equal(await gunzipBeat(gzipSync(Buffer.alloc(100000, 32))), null, 'over 256 bytes compressed or not');
});


test('client: answers a gzip ping with the same value, delivers data in order, iterates', async () => {
  const c = new HeartwireClient('ws://x/app', { WebSocket: FakeSocket, rttEvery: 1000 });
  const ws = last();
  ws.open();
  assert.equal(c.state, 'connected');
  const it = c[Symbol.asyncIterator]();
  const beat = nextEvent(c, 'heartbeat');
  ws.message(new Uint8Array(gzipSync('{"ping": 42}')).buffer);
  ws.message('after the ping');
  assert.deepEqual(await beat, { ping: 42 });
  assert.deepEqual((await it.next()).value, 'after the ping');
  assert.equal(ws.sent[0], '{"pong":42}');
  // The first server ping also sends one RTT probe; its pong sets rtt and is not a message.
  const probe = JSON.parse(ws.sent[1]).ping;
  const rtt = nextEvent(c, 'heartbeat', (d) => 'rtt' in d);
  ws.message(JSON.stringify({ pong: probe }));
  assert.ok((await rtt).rtt >= 0 && c.rtt === (await rtt).rtt);
  c.close();
  assert.deepEqual(await it.next(), { value: undefined, done: true });
  assert.equal(ws.closed.code, 1000);
});

test('client: offers `heartwire` (refusals come as a close it can read) unless told otherwise', () => {
  const c = new HeartwireClient('ws://x/app', { WebSocket: FakeSocket, clientPings: false });
  assert.deepEqual(last().protocols, ['heartwire']);
  c.close();
  const d = new HeartwireClient('ws://x/app', { WebSocket: FakeSocket, clientPings: false, protocols: ['mqtt'] });
  assert.deepEqual(last().protocols, ['mqtt']);
  d.close();
});

test('client: a kick (4009) stops with an error, like a refused origin (4003)', async () => {
  for (const [code, reason] of [[4009, 'logged out'], [4003, 'origin `https://x` may not connect to /app: ...']]) {
    const c = new HeartwireClient('ws://x/app', { WebSocket: FakeSocket, clientPings: false, baseDelay: 1 });
    last().open();
    const down = nextEvent(c, 'state', (d) => d.state === 'disconnected');
    const error = nextEvent(c, 'error');
    last().end(code, reason);
    assert.equal((await down).reconnectIn, null, `${code}`);
    const e = await error;
    assert.equal(e.code, code);
    assert.ok(e.message.includes(reason), e.message);
    assert.equal(c._pending, false, 'no reconnect planned');
    assert.equal(c.state, 'disconnected');
  }
});

test('client: a drain close waits the hinted delay, a terminal close stops', async () => {
  const c = new HeartwireClient('ws://x/app', { WebSocket: FakeSocket, clientPings: false });
  last().open();
  // Stamped as the close is announced, before the client arms its timer: a loaded machine
  // may resume this test later than that.
  let t0;
  const down = nextEvent(c, 'state', (d) => d.state === 'disconnected' && (t0 = performance.now()));
  last().end(1001, 'server shutting down; reconnect in 30 ms');
  const d = await down;
  assert.equal(d.reconnectIn, 30);
  await nextEvent(c, 'state', (s) => s.state === 'connecting');
  assert.ok(performance.now() - t0 >= 29, 'waited the hint');
  last().open();
  const error = nextEvent(c, 'error');
  last().end(1002, 'protocol error: bad frame');
  assert.match((await error).message, /1002/);
  assert.equal(c.state, 'disconnected');
  assert.equal(c._timer === undefined || !c._pending, true, 'no reconnect planned');
});

test('client: finds a dead server from the learned interval', async () => {
  const c = new HeartwireClient('ws://x/hb', { WebSocket: FakeSocket, margin: 50, maxMissed: 1, rttEvery: 1000, baseDelay: 10000 });
  last().open();
  const ping = (v) => last().message(new Uint8Array(gzipSync(`{"ping": ${v}}`)).buffer);
  ping(1);
  await new Promise((r) => setTimeout(r, 40));
  // The silence is counted from the last arrival, just after t0.
  const t0 = performance.now();
  ping(2);
  const down = await nextEvent(c, 'state', (d) => d.state === 'disconnected');
  const took = performance.now() - t0;
  assert.equal(down.code, 4000);
  // Node's timers may fire a fraction of a ms early against performance.now().
  assert.ok(c.interval >= 38 && c.interval < 200, `learned ${c.interval}`);
  assert.ok(took >= c.deadAfter - 2 && took < c.deadAfter + 500, `dead after ${took} ms, bound ${c.deadAfter}`);
  assert.equal(c.deadAfter, c.interval * 2 + 50);
  c.close();
});

test('client: two pings flushed together do not shrink the learned interval', async () => {
  const c = new HeartwireClient('ws://x/hb', { WebSocket: FakeSocket, rttEvery: 1000 });
  last().open();
  const ping = (v) => last().message(new Uint8Array(gzipSync(`{"ping": ${v}}`)).buffer);
  const answered = (n) => nextEvent(c, 'heartbeat', (d) => d.ping === n);
  ping(1);
  await answered(1);
  // Time passing, not a wait for anything: the gap the client measures.
  await new Promise((r) => setTimeout(r, 40));
  ping(2);
  await answered(2);
  ping(3);
  await answered(3);
  assert.ok(c.interval >= 38 && c.interval < 200, `learned ${c.interval}`);
  c.close();
});

test('the module stays within its budget: 4 KiB gzipped', () => {
  const size = gzipSync(readFileSync(new URL('../heartwire.js', import.meta.url)), { level: 9 }).length;
  assert.ok(size <= 4096, `${size} bytes gzipped`);
});

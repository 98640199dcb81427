// Unit tests of recovery on envelope routes: the frame parser, the position tracking, the
// reconnect URL and, with a fake socket, what the app sees across a reconnect.
// Run: npm test   (Node 18 or newer)
import test from 'node:test';
import assert from 'node:assert/strict';
import { parseFrame, track, recoverUrl, HeartwireClient } from '../heartwire.js';
import { FakeSocket, last, nextEvent } from './fake.mjs';

test('parseFrame: message and position frames, nothing else', () => {
  const m = { type: 'message', channel: 'news', offset: 42, epoch: 'k3j9x2', data: { a: [1] } };
  assert.deepEqual(parseFrame(JSON.stringify(m)), m);
  const p = { type: 'position', channel: 'news', epoch: 'k3j9x2', offset: 41 };
  assert.deepEqual(parseFrame(JSON.stringify(p)), p);
  // Anything else is app data as it came (raw routes, relayed text).
  for (const t of ['hello', '{"type":"other"}', '{"data":1}', '[{"type":"message"}]', 'null', '{"type":', '', '{"pong":1}'])
    assert.equal(parseFrame(t), null, t);
  assert.equal(parseFrame(new ArrayBuffer(2)), null);
  assert.equal(parseFrame(undefined), null);
});

test('track: the next offset of the same epoch is kept, older ones are duplicates, the rest a gap', () => {
  const msg = (channel, offset, epoch = 'e1') => ({ type: 'message', channel, offset, epoch });
  const pos = {};
  // The position frame after connect sets where the channel is.
  assert.equal(track(pos, { type: 'position', channel: 'news', epoch: 'e1', offset: 41 }), 'ok');
  assert.deepEqual(pos, { news: { epoch: 'e1', offset: 41 } });
  const cases = [
    [msg('news', 42), 'ok', 42],
    [msg('news', 43), 'ok', 43],
    [msg('news', 43), 'dup', 43],
    [msg('news', 40), 'dup', 43],
    [msg('news', 45), 'gap', 43],
    [msg('news', 44, 'e2'), 'gap', 43],
    [msg('news', 1, 'e2'), 'gap', 43],
    [msg('news', 44), 'ok', 44],
  ];
  for (const [frame, want, offset] of cases) {
    assert.equal(track(pos, frame), want, JSON.stringify(frame));
    assert.equal(pos.news.offset, offset, JSON.stringify(frame));
  }
  // Channels without history and publishes to everyone are not tracked.
  assert.equal(track(pos, { type: 'message', channel: 'chat', data: 1 }), 'ok');
  assert.equal(track(pos, { type: 'message', data: 1 }), 'ok');
  assert.deepEqual(Object.keys(pos), ['news']);
  // A channel seen first in a message starts there.
  assert.equal(track(pos, msg('user.1', 7)), 'ok');
  assert.deepEqual(pos['user.1'], { epoch: 'e1', offset: 7 });
  // Recovered: the server took the position sent; the replayed messages advance it.
  assert.equal(track(pos, { type: 'position', channel: 'news', epoch: 'e1', offset: 47, recovered: true, replayed: 3 }), 'ok');
  assert.deepEqual(pos.news, { epoch: 'e1', offset: 44 });
  for (const o of [45, 46, 47]) assert.equal(track(pos, msg('news', o)), 'ok');
  // Not recovered: live messages follow the server's position.
  assert.equal(track(pos, { type: 'position', channel: 'news', epoch: 'e9', offset: 3, recovered: false, reason: 'epoch_changed' }), 'ok');
  assert.deepEqual(pos.news, { epoch: 'e9', offset: 3 });
  // Unknown to the server (not held, no history): never asked again.
  assert.equal(track(pos, { type: 'position', channel: 'user.1', recovered: false, reason: 'unknown_channel' }), 'ok');
  assert.equal('user.1' in pos, false);
});

test('recoverUrl: one recover per channel, earlier ones replaced, other parameters kept', () => {
  const pos = { news: { epoch: 'k3j9x2', offset: 42 }, 'user:a@b/c.d_e-f': { epoch: 'z', offset: 0 } };
  const url = recoverUrl('ws://h:1/me?token=a.b&recover=old:1:x&x=%20y', pos);
  const u = new URL(url);
  assert.deepEqual(u.searchParams.getAll('recover'), ['news:42:k3j9x2', 'user:a@b/c.d_e-f:0:z']);
  assert.equal(u.searchParams.get('token'), 'a.b');
  assert.equal(u.searchParams.get('x'), ' y');
  assert.equal(u.pathname, '/me');
  // The server splits from the right: the channel keeps its own colons.
  const [epoch, offset, ...rest] = u.searchParams.getAll('recover')[1].split(':').reverse();
  assert.deepEqual([rest.reverse().join(':'), Number(offset), epoch], ['user:a@b/c.d_e-f', 0, 'z']);
  // Nothing held: the recover parameters go, the rest stays.
  assert.deepEqual(new URL(recoverUrl(url, {})).searchParams.getAll('recover'), []);
  assert.equal(new URL(recoverUrl(url, {})).searchParams.get('token'), 'a.b');
});

const recovers = (ws) => new URL(ws.url).searchParams.getAll('recover');
// The next `n` messages from an iterator, each within the bound.
const take = async (it, n) => {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = await Promise.race([it.next(), new Promise((_, no) => setTimeout(() => no(new Error(`message ${i} of ${n} did not come`)), 3000))]);
    out.push(r.value);
  }
  return out;
};

test('client: envelopes become {channel, offset, epoch, data}; a reconnect recovers where it was', async () => {
  const c = new HeartwireClient('ws://x/app?k=v', { WebSocket: FakeSocket, clientPings: false, envelope: true, baseDelay: 1 });
  const it = c[Symbol.asyncIterator]();
  let ws = last();
  assert.deepEqual(recovers(ws), [], 'nothing to recover yet');
  ws.open();
  const positions = [];
  c.on('position', (p) => positions.push(p));
  ws.frame({ type: 'position', channel: 'news', epoch: 'e1', offset: 41 });
  ws.frame({ type: 'message', channel: 'news', offset: 42, epoch: 'e1', data: { n: 42 } });
  ws.frame({ type: 'message', channel: 'news', offset: 42, epoch: 'e1', data: { n: 42 } });
  ws.frame({ type: 'message', channel: 'chat', data: 'no history' });
  ws.frame({ type: 'message', data_base64: Buffer.from([0, 255, 7]).toString('base64') });
  ws.message('not an envelope');
  const got = await take(it, 4);
  assert.deepEqual(got.slice(0, 2), [
    { channel: 'news', offset: 42, epoch: 'e1', data: { n: 42 } },
    { channel: 'chat', data: 'no history' },
  ], 'the duplicate is dropped');
  assert.ok(got[2].data instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(got[2].data)], [0, 255, 7]);
  assert.equal('data_base64' in got[2] || 'channel' in got[2], false);
  assert.equal(got[3], 'not an envelope');
  assert.deepEqual(positions, [{ type: 'position', channel: 'news', epoch: 'e1', offset: 41 }]);
  assert.deepEqual(c.positions, { news: { epoch: 'e1', offset: 42 } });

  // Lost: the next attempt asks for what came after 42, keeping the other parameters.
  ws.end(1006, '');
  await nextEvent(c, 'state', (d) => d.state === 'connecting');
  ws = last();
  assert.deepEqual(recovers(ws), ['news:42:e1']);
  assert.equal(new URL(ws.url).searchParams.get('k'), 'v');
  ws.open();
  const recovered = nextEvent(c, 'recovered');
  ws.frame({ type: 'position', channel: 'news', epoch: 'e1', offset: 44, recovered: true, replayed: 2 });
  assert.deepEqual(await recovered, { type: 'position', channel: 'news', epoch: 'e1', offset: 44, recovered: true, replayed: 2 });
  for (const o of [43, 44, 45]) ws.frame({ type: 'message', channel: 'news', offset: o, epoch: 'e1', data: o });
  assert.deepEqual((await take(it, 3)).map((m) => m.data), [43, 44, 45]);

  // Again, and the history no longer covers it: the app hears it must reload.
  ws.end(1006, '');
  await nextEvent(c, 'state', (d) => d.state === 'connecting');
  ws = last();
  assert.deepEqual(recovers(ws), ['news:45:e1'], 'replaced, not appended');
  ws.open();
  const lost = nextEvent(c, 'recovered');
  ws.frame({ type: 'position', channel: 'news', epoch: 'e2', offset: 0, recovered: false, reason: 'epoch_changed' });
  const p = await lost;
  assert.equal(p.recovered, false);
  assert.equal(p.reason, 'epoch_changed');
  ws.frame({ type: 'message', channel: 'news', offset: 1, epoch: 'e2', data: 'fresh' });
  assert.deepEqual(await take(it, 1), [{ channel: 'news', offset: 1, epoch: 'e2', data: 'fresh' }]);
  c.close();
});

test('client: a gap closes and reconnects to recover it from the last offset delivered', async () => {
  const c = new HeartwireClient('ws://x/app', {
    WebSocket: FakeSocket, clientPings: false, envelope: true, baseDelay: 1,
    positions: { news: { epoch: 'e1', offset: 10 } },
  });
  let ws = last();
  assert.deepEqual(recovers(ws), ['news:10:e1'], 'the positions given are recovered from the first attempt');
  ws.open();
  ws.frame({ type: 'position', channel: 'news', epoch: 'e1', offset: 10, recovered: true, replayed: 0 });
  const seen = [];
  c.on('message', (m) => seen.push(m.offset));
  ws.frame({ type: 'message', channel: 'news', offset: 11, epoch: 'e1', data: 1 });
  const down = nextEvent(c, 'state', (d) => d.state === 'disconnected');
  ws.frame({ type: 'message', channel: 'news', offset: 14, epoch: 'e1', data: 4 });
  const d = await down;
  assert.equal(d.code, 4000);
  assert.match(d.reason, /^gap in news: offset 14 \(e1\) after 11 \(e1\)/);
  assert.notEqual(d.reconnectIn, null);
  assert.deepEqual(seen, [11], 'nothing after the gap is delivered');
  assert.equal(ws.closed.code, 4000);
  await nextEvent(c, 'state', (s) => s.state === 'connecting');
  assert.deepEqual(recovers(last()), ['news:11:e1']);
  c.close();
});

test('client: without `envelope`, envelope-looking text is data as before', async () => {
  const c = new HeartwireClient('ws://x/app?recover=a:1:b', { WebSocket: FakeSocket, clientPings: false });
  const ws = last();
  assert.deepEqual(recovers(ws), ['a:1:b'], 'the URL is left alone');
  ws.open();
  const got = nextEvent(c, 'message');
  const text = JSON.stringify({ type: 'message', channel: 'news', offset: 1, epoch: 'e', data: 1 });
  ws.message(text);
  assert.equal(await got, text);
  assert.deepEqual(c.positions, {});
  c.close();
});

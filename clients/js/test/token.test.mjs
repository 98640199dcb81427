// Unit tests of the client's tokens: exp decoding, the refresh schedule, the close-code
// plan for 4001 / 4003, and, with a fake socket, getToken around connects and refreshes.
// Run: npm test   (Node 18 or newer)
import test from 'node:test';
import assert from 'node:assert/strict';
import { tokenExp, refreshIn, plan, TERMINAL, HeartwireClient } from '../heartwire.js';
import { FakeSocket, last, nextEvent } from './fake.mjs';

const b64url = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
// Unsigned: the client never verifies (the server does).
const jwt = (claims) => `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}.c2ln`;

test('tokenExp: the payload exp in ms, base64url without padding, else null', () => {
  assert.equal(tokenExp(jwt({ exp: 1700000000 })), 1700000000000);
  // '-' and '_' in the payload (bytes 0xfb 0xff encode to them) and every padding length.
  const odd = jwt({ sub: '\u00fb\u00ff>?', exp: 1 });
  assert.match(odd.split('.')[1], /[-_]/);
  assert.equal(tokenExp(odd), 1000);
  for (const sub of ['', 'a', 'ab', 'abc']) assert.equal(tokenExp(jwt({ sub, exp: 2 })), 2000, sub);
  assert.equal(tokenExp(jwt({ exp: 1.5 })), 1500, 'fractional exp');
  for (const bad of [jwt({ sub: 'x' }), jwt({ exp: '1700000000' }), jwt({ exp: null }), 'a.!!!.c', 'abc', '', null, undefined, 42])
    assert.equal(tokenExp(bad), null, String(bad));
});

test('refreshIn: 10% of the time left before exp, clamped to [5 s, 60 s] and to half of it', () => {
  const t = 1700000000000;
  const at = (secs) => jwt({ exp: (t + secs * 1000) / 1000 });
  assert.equal(refreshIn(at(3600), t), 3600000 - 60000, 'an hour: 60 s before');
  assert.equal(refreshIn(at(300), t), 300000 - 30000, '5 min: 10%');
  assert.equal(refreshIn(at(20), t), 20000 - 5000, '20 s: 5 s before');
  assert.equal(refreshIn(at(4), t), 2000, '4 s: half way, never at once');
  assert.equal(refreshIn(at(0), t), 0);
  assert.equal(refreshIn(at(-10), t), 0, 'past: due now');
  assert.equal(refreshIn(jwt({ sub: 'x' }), t), null, 'no exp: never');
  assert.equal(refreshIn(undefined, t), null);
  const live = refreshIn(jwt({ exp: Date.now() / 1000 + 100 }));
  assert.ok(live > 89000 && live <= 90000, `${live}`);
});

test('plan: 4003 is terminal, 4001 reconnects at once once, then backs off; no getToken: stops', () => {
  const half = () => 0.5;
  const o = { baseDelay: 500, maxDelay: 20000, getToken: () => 't' };
  assert.ok(TERMINAL.includes(4003));
  assert.equal(plan(4003, 'token refused (channel): ...', 0, o, half), null);
  assert.equal(plan(4001, 'token expired', 3, o, half), 0);
  assert.equal(plan(4001, 'token expired', 3, o, half, false), 0);
  assert.equal(plan(4001, 'token expired', 3, o, half, true), 2000, 'backoff on a second 4001 in a row');
  assert.equal(plan(4001, 'token expired', 0, { baseDelay: 500, maxDelay: 20000 }, half), null, 'no way to a fresh token');
  // Other codes are as before with a token.
  assert.equal(plan(4000, '', 1, o, half), 500);
  // 4009: the backend disconnected this client on purpose (logout, ban): never back.
  assert.equal(plan(4009, 'banned', 1, o, half), null);
});

const connecting = (c) => nextEvent(c, 'state', (d) => d.state === 'connecting');
// A token that expires `ms` from now (exp may be fractional: the client reads it as is).
const expiring = (ms, sub = 'u') => jwt({ sub, exp: (Date.now() + ms) / 1000 });

test('client: a token is offered as subprotocols; only `token` and a 4001 stops', async () => {
  const tok = jwt({ sub: 'u', exp: Date.now() / 1000 + 3600 });
  const c = new HeartwireClient('ws://x/me', { WebSocket: FakeSocket, clientPings: false, token: tok, protocols: ['other'] });
  // Without getToken nothing is awaited: the socket exists once the constructor returns.
  assert.equal(c.state, 'connecting');
  assert.deepEqual(last().protocols, ['heartwire', `heartwire.bearer.${tok}`]);
  last().open();
  const error = nextEvent(c, 'error');
  last().end(4001, 'token expired: ...');
  assert.match((await error).message, /4001/);
  assert.equal(c.state, 'disconnected');
  assert.equal(c._pending, false, 'no reconnect planned');
});

test('client: getToken before connecting, a refresh over the open socket before exp', async () => {
  const tokens = [];
  const getToken = async () => { tokens.push(expiring(400)); return tokens.at(-1); };
  const c = new HeartwireClient('ws://x/me', { WebSocket: FakeSocket, clientPings: false, getToken });
  await connecting(c);
  const ws = last();
  assert.deepEqual(ws.protocols, ['heartwire', `heartwire.bearer.${tokens[0]}`]);
  ws.open();
  // Refreshed half way to exp (200 ms), then again for the new token: each sent as is.
  const sent = () => ws.sent.filter((m) => m.startsWith('{"token"'));
  const t0 = performance.now();
  for (let i = 0; i < 200 && sent().length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(sent(), [JSON.stringify({ token: tokens[1] }), JSON.stringify({ token: tokens[2] })]);
  assert.ok(performance.now() - t0 >= 300, 'not before they are due');
  assert.equal(FakeSocket.all.at(-1), ws, 'the same socket');
  c.close();
  const calls = tokens.length;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(tokens.length, calls, 'no refresh after close');
});

test('client: 4001 fetches a token and reconnects at once, a second 4001 in a row backs off', async () => {
  let calls = 0;
  const getToken = () => { calls++; return jwt({ sub: 'u', exp: Date.now() / 1000 + 3600, n: calls }); };
  const c = new HeartwireClient('ws://x/me', { WebSocket: FakeSocket, clientPings: false, getToken, baseDelay: 60000 });
  await connecting(c);
  last().open();
  let down = nextEvent(c, 'state', (d) => d.state === 'disconnected');
  let up = connecting(c);
  last().end(4001, 'token expired');
  assert.equal((await down).reconnectIn, 0);
  await up;
  assert.equal(calls, 2, 'a fresh token despite the old one\'s exp');
  assert.equal(tokenExp(last().protocols[1].slice('heartwire.bearer.'.length)) > Date.now(), true);
  last().open();
  down = nextEvent(c, 'state', (d) => d.state === 'disconnected');
  last().end(4001, 'token refused (expired): clock skew');
  const d = await down;
  assert.ok(d.reconnectIn > 0, `backs off: ${d.reconnectIn}`);
  c.close();
});

test('client: 4003 stops with an error naming the reason; getToken failing retries', async () => {
  let calls = 0;
  const getToken = async () => { if (++calls === 1) throw new Error('backend down'); return jwt({ sub: 'u' }); };
  const c = new HeartwireClient('ws://x/me', { WebSocket: FakeSocket, clientPings: false, getToken, baseDelay: 1 });
  const failed = await nextEvent(c, 'error');
  assert.match(failed.message, /getToken: Error: backend down/);
  await connecting(c);
  assert.equal(calls, 2);
  last().open();
  const error = nextEvent(c, 'error');
  last().end(4003, 'token refused (channel): channel "x" is not allowed');
  const e = await error;
  assert.equal(e.code, 4003);
  assert.match(e.message, /token refused \(channel\)/);
  assert.equal(c.state, 'disconnected');
  assert.equal(c._pending, false);
  assert.equal(calls, 2);
});

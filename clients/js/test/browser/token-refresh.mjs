// Tokens that expire within seconds (the daemon's leeway is 0): the first one given has
// expired already, so the handshake closes with 4001 and the client fetches a fresh one
// and reconnects at once; that connection then stays open past its token's exp because
// getToken() is called before it and the new token is sent over the open socket. A
// publish after that exp must still arrive on that same socket. Run by tests/browser.rs.
import { scenario, tokenPage, until } from './lib.mjs';

const SUB = 'alice';

scenario('token-refresh', async (base, page) => {
  const secs = () => Math.floor(Date.now() / 1000);
  // Call 0: expired 10 s ago. Then: valid for 2 to 3 s (exp is whole seconds).
  await tokenPage(page, base, '/me', (n) => ({ sub: SUB, exp: n === 0 ? secs() - 10 : secs() + 3 }));
  const up = await until(page, () => window.t.events.filter((e) => e.type === 'state' && e.state === 'connected').length >= 2 && window.t.calls.length >= 2 && window.t.client.state === 'connected', null, 15000, 'reconnected with a fresh token');
  // The exp of the token the open connection started with: the server would close at it.
  const first = await page.evaluate(() => window.t.calls[1].exp);
  await until(page, (first) => Date.now() > first + 1500 && window.t.calls.length >= 3, first, 15000, 'past the first exp, refreshed');
  const res = await fetch(`${base}/publish?channel=user.${SUB}`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'after exp' });
  if (res.status !== 200) throw new Error(`publish: ${res.status} ${await res.text()}`);
  const msg = await until(page, () => window.t.events.find((e) => e.type === 'message' && e.data === 'after exp'), null, 10000, 'the publish after exp');
  const { events, calls } = await page.evaluate(() => ({ events: window.t.events, calls: window.t.calls }));
  const states = (s) => events.filter((e) => e.type === 'state' && e.state === s);
  const down = states('disconnected');
  return {
    up,
    calls: calls.length,
    connects: states('connecting').length,
    disconnects: down.map((d) => ({ code: d.code, reason: d.reason, reconnectIn: d.reconnectIn })),
    // From the 4001 to the next attempt: getToken's round trip to node, no backoff.
    retry_ms: down.length ? states('connecting')[1].t - down[0].t : null,
    message_after_exp_ms: msg.t - calls[1].exp,
    errors: events.filter((e) => e.type === 'error').map((e) => e.message),
    state: await page.evaluate(() => window.t.client.state),
  };
});

// A token whose `channels` claim does not allow the route's channel: the handshake is
// refused with a close 4003 the page can read, and the client stops with an `error`
// naming the reason, after exactly one attempt (counted over a window of several backoff
// periods). Run by tests/browser.rs.
import { scenario, tokenPage, until } from './lib.mjs';

// Longer than several backoffs of the default 500 ms base: a retry would show in it.
const WINDOW = 3000;

scenario('token-refused', async (base, page) => {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  await tokenPage(page, base, '/me', () => ({ sub: 'alice', exp, channels: ['news', 'other.*'] }));
  const error = await until(page, () => window.t.events.find((e) => e.type === 'error'), null, 15000, 'the terminal error');
  // A bounded window for a retry that must not come: it ends in a timeout, as it should.
  let retried = false;
  try {
    await page.waitForFunction(() => window.t.events.filter((e) => e.type === 'state' && e.state === 'connecting').length > 1, null, { timeout: WINDOW, polling: 20 });
    retried = true;
  } catch (err) {
    if (!/Timeout/i.test(String(err))) throw err;
  }
  const { events, calls } = await page.evaluate(() => ({ events: window.t.events, calls: window.t.calls }));
  const down = events.find((e) => e.type === 'state' && e.state === 'disconnected');
  return {
    retried,
    attempts: events.filter((e) => e.type === 'state' && e.state === 'connecting').length,
    calls: calls.length,
    code: error.code,
    reason: error.reason,
    message: error.message,
    errors: events.filter((e) => e.type === 'error').length,
    reconnect_in: down?.reconnectIn,
    state: await page.evaluate(() => window.t.client.state),
    window_ms: WINDOW,
  };
});

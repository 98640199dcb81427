// A token whose `channels` claim does not allow the route's channel: the handshake is
// refused with a close 4003 the page can read, and the client stops with an `error`
// naming the reason, after exactly one attempt (counted over a window of several backoff
// periods). Run by tests/browser.rs.
import { scenario, tokenPage, stopped } from './lib.mjs';

scenario('token-refused', async (base, page) => {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  await tokenPage(page, base, '/me', () => ({ sub: 'alice', exp, channels: ['news', 'other.*'] }));
  const result = await stopped(page, 't');
  return { ...result, calls: await page.evaluate(() => window.t.calls.length) };
});

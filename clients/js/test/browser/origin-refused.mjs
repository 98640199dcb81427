// A page whose origin the route does not allow (`origins` lists another): a browser never
// sees the handshake's 403, so the server answers the `heartwire` the client offers with a
// 101 and a close 4003 naming the origin and the key to change; the page stops with an
// `error` after exactly one attempt. Run by tests/browser.rs.
import { scenario, gotoDemo, stopped } from './lib.mjs';

scenario('origin-refused', async (base, page) => {
  await gotoDemo(page, base, { route: '/strict' });
  return { origin: await page.evaluate(() => location.origin), ...(await stopped(page, 'demo')) };
});

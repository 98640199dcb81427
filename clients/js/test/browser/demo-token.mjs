// The demo page on a route with `auth = "jwt"`: without a token it is refused (4003
// missing) and shows the token form; a pasted JWT connects; a token URL (answered here by
// node, nothing on the network) is asked for a fresh token, which connects too.
// Run by tests/browser.rs.
import { scenario, gotoDemo, until, mint } from './lib.mjs';

const connected = (page, n) => until(page, (n) => window.demo.events.filter((e) => e.type === 'state' && e.state === 'connected').length >= n, n, 15000, `connection ${n}`);

scenario('demo-token', async (base, page) => {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  let served = 0;
  await page.route('**/token', (route) => {
    served++;
    return route.fulfill({ contentType: 'application/json', body: JSON.stringify({ token: mint({ sub: 'bob', exp }) }) });
  });
  await gotoDemo(page, base, { route: '/me' });
  const refused = await until(page, () => window.demo.events.find((e) => e.type === 'error'), null, 15000, 'the refusal');
  const formShown = await page.evaluate(() => document.getElementById('auth').open);
  // The first `connected` is the refused handshake's brief 101.
  const before = await page.evaluate(() => window.demo.events.filter((e) => e.type === 'state' && e.state === 'connected').length);
  await page.fill('#jwt', mint({ sub: 'alice', exp }));
  await page.click('#tokens button');
  await connected(page, before + 1);
  const pasted = await page.evaluate(() => window.demo.client.state);
  await page.fill('#jwt', '');
  await page.fill('#endpoint', `${base}/token`);
  await page.click('#tokens button');
  await connected(page, before + 2);
  const events = await page.evaluate(() => window.demo.events);
  return {
    refused: { code: refused.code, reason: refused.reason },
    form_shown: formShown,
    pasted,
    from_endpoint: await page.evaluate(() => window.demo.client.state),
    served,
    errors: events.filter((e) => e.type === 'error').length,
    // After the token form: closes other than the demo's own close() of the client before.
    other_closes: events.filter((e) => e.type === 'state' && e.state === 'disconnected' && ![1000, 4003].includes(e.code)).length,
  };
});

// json-gzip route pinging every 200 ms: the page answers 20 pings, is never closed, and
// measures a plausible RTT. Then a protocol-ping route, whose pings the page never sees:
// its own {"ping"} every 200 ms is answered, which gives an RTT and keeps it connected.
// Prints {result: {...}} for tests/browser.rs.
import { scenario, openDemo, until, events } from './lib.mjs';

scenario('heartbeat', async (base, page) => {
  await openDemo(page, base, { route: '/hb' });
  await until(page, () => window.demo.events.filter((e) => e.type === 'heartbeat' && 'ping' in e).length >= 20, null, 20000, '20 pings');
  const all = await events(page);
  return {
    pings: all.filter((e) => e.type === 'heartbeat' && 'ping' in e).length,
    disconnects: all.filter((e) => e.type === 'state' && e.state === 'disconnected').length,
    connects: all.filter((e) => e.type === 'state' && e.state === 'connected').length,
    rtt: await page.evaluate(() => window.demo.client.rtt),
    interval: await page.evaluate(() => window.demo.client.interval),
    shown: await page.textContent('#state'),
    protocol: await protocolRoute(page, base),
  };
});

// The same tab, navigated to the other route (a fresh page, a fresh client).
async function protocolRoute(page, base) {
  await openDemo(page, base, { route: '/pp', pingInterval: 200 });
  await until(page, () => window.demo.events.filter((e) => e.type === 'heartbeat' && 'rtt' in e).length >= 5, null, 10000, '5 pongs');
  const all = await events(page);
  return {
    rtts: all.filter((e) => e.type === 'heartbeat' && 'rtt' in e).map((e) => e.rtt),
    pings: all.filter((e) => e.type === 'heartbeat' && 'ping' in e).length,
    disconnects: all.filter((e) => e.type === 'state' && e.state === 'disconnected').length,
    messages: all.filter((e) => e.type === 'message').length,
  };
}

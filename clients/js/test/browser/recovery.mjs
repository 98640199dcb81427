// Recovery across a restart, on an envelope route with history: the page gets messages
// live, goes offline (no attempt is made while offline), the daemon is restarted with its
// history on disk and messages are published meanwhile; back online, the page recovers:
// every message the test saw accepted arrives exactly once, in order. Steps are driven by
// tests/browser.rs, which publishes; prints the message numbers seen and the positions.
import { scenario, openDemo, until, nextLine, say } from './lib.mjs';

const positions = (page) => page.evaluate(() => window.demo.events.filter((e) => e.type === 'position'));

scenario('recovery', async (base, page) => {
  await openDemo(page, base, { route: '/live', envelope: 1 });
  await until(page, () => window.demo.events.some((e) => e.type === 'position'), null, 15000, 'the first position');
  say({ step: 'connected' });
  await nextLine(30000);
  await page.context().setOffline(true);
  say({ step: 'offline' });
  await nextLine(60000);
  await page.context().setOffline(false);
  await until(page, () => window.demo.events.filter((e) => e.type === 'position').length >= 2, null, 20000, 'the position after the reconnect');
  say({ step: 'recovered' });
  const last = Number(await nextLine(30000));
  await until(page, (last) => window.demo.events.some((e) => e.type === 'message' && JSON.parse(e.data).n >= last), last, 15000, `message ${last}`);
  const events = await page.evaluate(() => window.demo.events);
  return {
    ns: events.filter((e) => e.type === 'message').map((e) => JSON.parse(e.data).n),
    positions: await positions(page),
    closes: events.filter((e) => e.type === 'state' && e.state === 'disconnected').map((e) => e.code),
  };
});

// The daemon drains (SIGTERM): the page waits at least the hinted delay before its next
// attempt, and reconnects to the daemon the test restarts on the same port.
import { scenario, openDemo, until, events, say } from './lib.mjs';

scenario('drain', async (base, page) => {
  await openDemo(page, base, { route: '/hb' });
  say({ step: 'connected' });
  const down = await until(page, () => window.demo.events.find((e) => e.type === 'state' && e.state === 'disconnected'), null, 15000, 'drained');
  const next = await until(page, (since) => window.demo.events.find((e) => e.type === 'state' && e.state === 'connecting' && e.t >= since), down.t, 15000, 'next attempt');
  const up = await until(page, (since) => window.demo.events.find((e) => e.type === 'state' && e.state === 'connected' && e.t >= since), down.t, 20000, 'reconnected');
  const all = await events(page);
  return {
    code: down.code,
    reason: down.reason,
    reconnect_in: down.reconnectIn,
    waited_ms: next.t - down.t,
    reconnected_ms: up.t - down.t,
    attempts: all.filter((e) => e.type === 'state' && e.state === 'connecting' && e.t >= down.t).length,
  };
});

// The daemon is stopped (SIGSTOP) under a connected page: the page must report
// `disconnected` within its bound, then reconnect once the daemon continues.
// Talks to tests/browser.rs: prints {step} lines, reads `stopped` / `continued`.
import { scenario, openDemo, until, events, nextLine, say } from './lib.mjs';

scenario('dead-server', async (base, page) => {
  await openDemo(page, base, { route: '/hb', maxMissed: 2, margin: 300 });
  // Two pings teach the client the interval; a third shows it in force.
  await until(page, () => window.demo.events.filter((e) => e.type === 'heartbeat' && 'ping' in e).length >= 3, null, 10000, '3 pings');
  say({ step: 'connected' });
  if ((await nextLine()) !== 'stopped') throw new Error('expected `stopped`');
  const stopped = Date.now();
  const down = await until(page, (since) => window.demo.events.find((e) => e.type === 'state' && e.state === 'disconnected' && e.t >= since), stopped, 15000, 'disconnected');
  say({ step: 'disconnected' });
  if ((await nextLine()) !== 'continued') throw new Error('expected `continued`');
  const continued = Date.now();
  const up = await until(page, (since) => window.demo.events.find((e) => e.type === 'state' && e.state === 'connected' && e.t >= since), down.t, 15000, 'reconnected');
  const all = await events(page);
  const lastBeat = all.filter((e) => e.type === 'heartbeat' && e.t <= down.t).at(-1).t;
  return {
    code: down.code,
    reason: down.reason,
    // As they were when the page gave up (a reconnect learns them again).
    interval: down.interval,
    dead_after: down.deadAfter,
    // The client's own count (from the last arrival), and the page's (from the last answer).
    client_silence_ms: Number(/nothing for (\d+) ms/.exec(down.reason)?.[1]),
    silence_ms: down.t - lastBeat,
    detected_ms: down.t - stopped,
    reconnected_ms: up.t - continued,
  };
});

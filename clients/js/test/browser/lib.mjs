// Shared by the browser scenarios: launch the system Chromium through playwright-core
// (nothing is downloaded), talk to the Rust test over stdin/stdout in JSON lines, and
// bound every wait. The scenarios run from tests/browser.rs, which starts the daemon.
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/** Runs `main(baseUrl, page)` in Chromium at CHROMIUM_PATH (tests/browser.rs sets both). */
export async function scenario(name, main) {
  const [base, chromium] = [process.argv[2], process.env.CHROMIUM_PATH];
  if (!base || !chromium) fail(`${name}: run by tests/browser.rs (cargo test --test browser), which starts the daemon and passes its URL and CHROMIUM_PATH`);
  // No wait below may outlive this: a stuck scenario fails rather than hangs the test.
  const guard = setTimeout(() => fail(`${name}: scenario timed out`), 60000);
  const stdin = listen();
  let browser;
  try {
    const playwright = await import('playwright-core');
    browser = await playwright.chromium.launch({
      executablePath: chromium,
      headless: true,
      // Tests run as root in CI, where Chromium's sandbox cannot start.
      args: ['--no-sandbox'],
    });
    const page = await browser.newPage();
    page.on('pageerror', (err) => say({ pageerror: String(err) }));
    say({ result: await main(base, page) });
  } catch (err) {
    fail(`${name}: ${err && err.stack || err}`);
  } finally {
    clearTimeout(guard);
    stdin.close();
    await browser?.close();
  }
}

export function say(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function fail(message) {
  say({ error: message });
  process.exit(1);
}

// Lines from the test, read only once a scenario runs (an open stdin keeps node alive).
const lines = [];
let waiter = null;
function listen() {
  const stdin = createInterface({ input: process.stdin });
  stdin.on('line', (line) => { if (waiter) { const w = waiter; waiter = null; w(line); } else lines.push(line); });
  return stdin;
}

/** The next line the Rust test writes, within `ms`. */
export function nextLine(ms = 15000) {
  if (lines.length) return Promise.resolve(lines.shift());
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { waiter = null; reject(new Error(`no line from the test within ${ms} ms`)); }, ms);
    waiter = (line) => { clearTimeout(t); resolve(line); };
  });
}

/** Opens the demo page on `route` with client options, and waits until it is connected. */
export async function openDemo(page, base, query) {
  await page.goto(`${base}/demo?${new URLSearchParams(query)}`, { timeout: 15000 });
  await until(page, () => window.demo?.client.state === 'connected', null, 15000, 'connected');
}

/** Opens the demo page on `route` with client options, without waiting for anything. */
export async function gotoDemo(page, base, query) {
  await page.goto(`${base}/demo?${new URLSearchParams(query)}`, { timeout: 15000 });
}

/** After a close the client must not retry: the page's first `error` event, then a window
 *  of `ms` (several backoffs of the default 500 ms base) in which a second attempt must not
 *  start. `where`: the page global holding `events` and `client` (`demo`, or `t` of
 *  `tokenPage`). */
export async function stopped(page, where, ms = 3000) {
  const error = await until(page, (w) => window[w].events.find((e) => e.type === 'error'), where, 15000, 'the terminal error');
  // A bounded window for a retry that must not come: it ends in a timeout, as it should.
  let retried = false;
  try {
    await page.waitForFunction((w) => window[w].events.filter((e) => e.type === 'state' && e.state === 'connecting').length > 1, where, { timeout: ms, polling: 20 });
    retried = true;
  } catch (err) {
    if (!/Timeout/i.test(String(err))) throw err;
  }
  const events = await page.evaluate((w) => window[w].events, where);
  const down = events.find((e) => e.type === 'state' && e.state === 'disconnected');
  return {
    retried,
    attempts: events.filter((e) => e.type === 'state' && e.state === 'connecting').length,
    code: error.code,
    reason: error.reason,
    message: error.message,
    errors: events.filter((e) => e.type === 'error').length,
    reconnect_in: down?.reconnectIn,
    state: await page.evaluate((w) => window[w].client.state, where),
    window_ms: ms,
  };
}

/** Waits until `fn(arg)` is truthy in the page; returns its value. */
export async function until(page, fn, arg, ms, what) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: ms, polling: 20 });
    return await handle.jsonValue();
  } catch (err) {
    const events = await page.evaluate(() => window.demo?.events.slice(-20)).catch(() => null);
    throw new Error(`waiting for ${what}: ${err.message}; last events: ${JSON.stringify(events)}`);
  }
}

/** The page's recorded events (see demo.html), with wall-clock times `t` in ms. */
export const events = (page) => page.evaluate(() => window.demo.events);

/** An HS256 JWT signed with tests/keys/hs.secret (the bytes less one trailing newline), as
 *  a backend mints them: the browser tests' daemon verifies it with the same file. */
export function mint(claims) {
  const file = readFileSync(new URL('../../../../tests/keys/hs.secret', import.meta.url));
  const secret = file.at(-1) === 10 ? file.subarray(0, -1) : file;
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

/** Opens a page on the daemon's origin with a client on `route` whose getToken asks node
 *  for `window.nextClaims(n)` (n: calls so far) signed by `mint`; the page records events
 *  in `window.t.events` and token calls in `window.t.calls`. */
export async function tokenPage(page, base, route, claims) {
  await page.exposeFunction('mintFor', (n) => mint(claims(n)));
  await page.goto(`${base}/heartwire.js`, { timeout: 15000 });
  await page.evaluate(async (route) => {
    const { HeartwireClient, tokenExp } = await import('/heartwire.js');
    const t = { events: [], calls: [] };
    window.t = t;
    const getToken = async () => {
      const token = await window.mintFor(t.calls.length);
      t.calls.push({ t: Date.now(), exp: tokenExp(token) });
      return token;
    };
    t.client = new HeartwireClient(route, { getToken });
    for (const type of ['state', 'error', 'message'])
      t.client.on(type, (d) => t.events.push({ type, t: Date.now(), ...(type === 'message' ? { data: d } : d) }));
  }, route);
}

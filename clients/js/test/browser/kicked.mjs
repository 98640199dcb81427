// The backend kicks the page's channel (POST /publish/disconnect, as on logout or a ban):
// the page reads 4009 with the backend's reason and stops with an `error`, after exactly
// one attempt (counted over a window of several backoff periods). Run by tests/browser.rs.
import { scenario, openDemo, stopped } from './lib.mjs';

scenario('kicked', async (base, page) => {
  await openDemo(page, base, { route: '/room' });
  const res = await fetch(`${base}/publish/disconnect?channel=lobby&reason=logged+out`, { method: 'POST' });
  const kick = { status: res.status, body: await res.json() };
  return { kick, ...(await stopped(page, 'demo')) };
});

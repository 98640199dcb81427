// Types for heartwire.js, the heartwire browser client.

/** Connection states, announced by the `state` event. */
export type State = 'connecting' | 'connected' | 'disconnected';

/** Detail of the `state` event. */
export interface StateDetail {
  state: State;
  /** Reconnect attempts since the last connection that lasted `resetAfter`. */
  attempt: number;
  /** On `disconnected`: the close code (1006: failed or lost without a close frame;
   *  4000: no heartbeat for `deadAfter` ms, or a gap in a channel's offsets; 1000:
   *  `close()`; 4001: the token expired; 4003: the token or the page's origin was refused;
   *  4009: the backend disconnected this client). */
  code?: number;
  /** On `disconnected`: the close reason. */
  reason?: string;
  /** On `disconnected`: ms until the next attempt; null: no reconnect (closed or terminal). */
  reconnectIn?: number | null;
}

/** Detail of the `heartbeat` event: a server ping answered, or an RTT measured. */
export interface HeartbeatDetail {
  /** The value of the server's `{"ping": ms}` just answered. */
  ping?: unknown;
  /** A round trip of the client's own `{"ping"}`, in ms. */
  rtt?: number;
}

/** Detail of the `position` event (routes with `format = "envelope"`, option `envelope`):
 *  where a channel with history stands, sent by the server right after connect, before
 *  any message of that channel. */
export interface PositionDetail {
  type: 'position';
  channel: string;
  /** The history's epoch and the offset of the last message it stored (0: none); absent
   *  when `reason` is `unknown_channel`. */
  epoch?: string;
  offset?: number;
  /** Present when the client asked to recover this channel (it held a position). true:
   *  the `replayed` missed messages follow, in order, then live ones. false: they are
   *  lost, reload the channel's state from the backend; live messages follow. */
  recovered?: boolean;
  replayed?: number;
  /** Why not recovered: the history restarted (`epoch_changed`), no longer holds the
   *  next message (`window_exceeded`), or the connection does not hold this channel or it
   *  has no history (`unknown_channel`: not asked again). */
  reason?: 'epoch_changed' | 'window_exceeded' | 'unknown_channel' | string;
}

/** Where a channel stands: the last offset delivered and the history's epoch. */
export interface Position {
  epoch: string;
  offset: number;
}

/** A message on an envelope route (option `envelope`). */
export interface Envelope {
  /** Absent for a publish to everyone. */
  channel?: string;
  /** Absent on channels without history. */
  offset?: number;
  epoch?: string;
  /** The published JSON, or the bytes of a binary payload (`data_base64` decoded). */
  data: unknown;
}

/** Detail of the `error` event. */
export interface ErrorDetail {
  message: string;
  code?: number;
  reason?: string;
  /** Consecutive attempts that failed before open. */
  failures?: number;
  error?: unknown;
}

export interface Options {
  /** The server's ping interval in ms, and the period of the client's own pings.
   *  0 (default): learned from the server's pings, the longest of the last 4 gaps between
   *  them (5000 until then). */
  pingInterval?: number;
  /** Pings that may go missing before the server counts as dead (default 2, the server's). */
  maxMissed?: number;
  /** Slack added to the dead bound, ms (default 1000). */
  margin?: number;
  /** Send `{"ping": X}` every interval while the server sends no json-gzip pings (routes
   *  with protocol pings, which browsers never see), and once every `rttEvery` server pings
   *  to measure the RTT. Turn off on a route with `client_pings = false`. Default true. */
  clientPings?: boolean;
  /** On json-gzip routes, one RTT probe every this many server pings (default 4). */
  rttEvery?: number;
  /** Backoff: the first attempt waits up to this, each failure doubles it (default 500). */
  baseDelay?: number;
  /** Backoff ceiling, ms (default 20000). */
  maxDelay?: number;
  /** A connection that lasted this long (ms) resets the backoff (default 5000). */
  resetAfter?: number;
  /** A handshake taking longer (ms) is abandoned and retried (default 10000). */
  connectTimeout?: number;
  /** After this many consecutive attempts failing before open, each further failure
   *  emits `error` (retries go on; call close() to stop). Default 5. */
  failuresBeforeError?: number;
  /** Messages each async iterator holds when not read fast enough; the oldest are
   *  dropped beyond it (default 1000). */
  buffer?: number;
  /** WebSocket subprotocols (default `["heartwire"]`: a refused token or origin then
   *  comes as a close 4001/4003 the page can read, instead of a failed connection);
   *  replaced by `["heartwire", "heartwire.bearer.<token>"]` when there is a token. */
  protocols?: string | string[];
  /** A JWT for a route with `auth = "jwt"`, sent as the subprotocols
   *  `["heartwire", "heartwire.bearer.<token>"]`. Alone it is never renewed: a 4001
   *  (expired) then stops the client like a terminal code. */
  token?: string;
  /** Returns a fresh JWT. Called before an attempt when there is no token yet or the one
   *  held is due for refresh (always for a token without `exp`), after a 4001, and, on an
   *  open connection, `refreshIn(token)` ms after it got its token (10% of the time left
   *  before `exp`, in [5 s, 60 s], at most half of it): the new token is sent as
   *  `{"token": "..."}` and the connection stays open. A rejection emits `error`; before an
   *  attempt the attempt is retried with backoff, on an open connection the server's 4001
   *  then reconnects. `exp` is read from the token unverified and compared with this
   *  machine's clock. */
  getToken?: () => string | Promise<string>;
  /** The WebSocket class (default: the global one). */
  WebSocket?: typeof WebSocket;
  /** Called before each planned reconnect: false stops, a number replaces the delay. */
  shouldReconnect?: (close: { code: number; reason: string; delay: number; attempt: number }) => boolean | number | void;
  /** For a route with `format = "envelope"`: each `{"type":"message"}` frame is delivered
   *  as an {@link Envelope}, each `{"type":"position"}` frame emits `position` (`recovered` when it
   *  answers a recovery), and the
   *  client keeps each channel's last {epoch, offset} in `positions`. Every attempt then
   *  asks to recover them, one query parameter `recover=<channel>:<offset>:<epoch>` each
   *  (replacing earlier ones, other parameters kept): the server replays what was missed,
   *  or says `recovered: false`. A message whose offset is not the next (same epoch) is
   *  dropped when older (a duplicate), else the connection closes (4000, `gap in ...`) and
   *  reconnects to recover from the last delivered. Other text is delivered as it came. */
  envelope?: boolean;
  /** With `envelope`: positions to recover from on the first attempt, e.g. saved from
   *  `client.positions` by an earlier page. */
  positions?: Record<string, Position>;
}

/** Message data: text as string, binary as ArrayBuffer; with `envelope`, an {@link Envelope}
 *  (other text as a string). Heartbeat traffic is never a message. */
export type Data = string | ArrayBuffer | Envelope;

export class HeartwireClient extends EventTarget implements AsyncIterable<Data> {
  /** `url`: ws(s)://, http(s):// or a path relative to the page; or a function called
   *  before each attempt. Connects at once. */
  constructor(url: string | URL | (() => string | URL), options?: Options);
  readonly state: State;
  /** Last measured round trip in ms; null until the first. */
  readonly rtt: number | null;
  /** The ping interval in use, ms (option, learned, or 5000). */
  readonly interval: number;
  /** No message for this long (ms) means the server is dead: interval x (maxMissed + 1) + margin. */
  readonly deadAfter: number;
  /** With `envelope`: each channel's last delivered position, as the next attempt will
   *  ask to recover it (the app may save it, and pass it back as `positions`). */
  readonly positions: Record<string, Position>;
  /** Listens to `type`; returns a function that stops listening. */
  on(type: 'message', fn: (data: Data, event: MessageEvent) => void): () => void;
  on(type: 'state', fn: (detail: StateDetail, event: CustomEvent<StateDetail>) => void): () => void;
  on(type: 'heartbeat', fn: (detail: HeartbeatDetail, event: CustomEvent<HeartbeatDetail>) => void): () => void;
  on(type: 'error', fn: (detail: ErrorDetail, event: CustomEvent<ErrorDetail>) => void): () => void;
  on(type: 'position', fn: (detail: PositionDetail, event: CustomEvent<PositionDetail>) => void): () => void;
  /** A position frame answering a recovery (it has `recovered`): emitted instead of `position`. */
  on(type: 'recovered', fn: (detail: PositionDetail, event: CustomEvent<PositionDetail>) => void): () => void;
  /** Sends when connected and returns true; returns false otherwise (nothing is queued). */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): boolean;
  /** Closes with 1000 and stops reconnecting; iterators end. */
  close(): void;
  /** Messages from now on, until close() or a terminal close. */
  [Symbol.asyncIterator](): AsyncIterator<Data>;
}

/** `new HeartwireClient(url, options)`. */
export function connect(url: string | URL | (() => string | URL), options?: Options): HeartwireClient;

/** Close codes after which the client does not reconnect but emits `error`: 1002, 1003,
 *  1007, 1010 (what it sent breaks the protocol), 4003 (refused: its token, missing,
 *  invalid, a channel it does not allow, ..., or the page's origin, not in the route's
 *  `origins`; a retry is refused again) and 4009 (the backend disconnected this client on
 *  purpose: logout, ban). */
export const TERMINAL: readonly number[];
/** Full-jitter delay for `attempt`: uniform in [0, min(maxDelay, baseDelay x 2^attempt)]. */
export function backoff(attempt: number, baseDelay?: number, maxDelay?: number, random?: () => number): number;
/** N from a close reason `... reconnect in N ms` (capped at 300000), or null. */
export function parseHint(reason: string | undefined): number | null;
/** The wait after a close; null: do not reconnect. 1001 with a drain hint: the hint; 1001
 *  without one: uniform in [0, 5000]; a terminal code: null; 4001 (token expired): 0 with
 *  `options.getToken` unless `retried` (the previous close was a 4001 answered at once,
 *  and no connection since lasted `resetAfter`), then `backoff`; null without `getToken`;
 *  anything else: `backoff`. */
export function plan(code: number, reason: string, attempt: number, options?: Options, random?: () => number, retried?: boolean): number | null;
/** The `exp` claim of a JWT in ms since the epoch (its payload decoded, not verified), or
 *  null when it has none or is no JWT. */
export function tokenExp(token: string | null | undefined): number | null;
/** Ms from `now` (default `Date.now()`) until `token` should be refreshed: the time left
 *  before `exp` less 10% of it, the 10% clamped to [5 s, 60 s] and to at most half the
 *  time left; 0 when due or past; null without `exp`. */
export function refreshIn(token: string | null | undefined, now?: number): number | null;
/** `{ping}` / `{pong}` from heartbeat JSON text of at most 256 characters, else null. */
export function parseBeat(text: unknown): { ping?: unknown; pong?: unknown } | null;
/** A `{"type": "message" | "position", ...}` frame of an envelope route, else null. */
export function parseFrame(text: unknown): ({ type: 'message'; data_base64?: string } & Envelope) | PositionDetail | null;
/** Applies a frame to `positions`: `ok` (position or next message: recorded; other
 *  messages: untracked), `dup` (offset at or before the last of that epoch: drop it),
 *  `gap` (a later offset or another epoch: messages were lost). A position frame with
 *  `recovered: true` keeps the position sent (the replayed messages advance it); one
 *  without an epoch forgets the channel. */
export function track(positions: Record<string, Position>, frame: object): 'ok' | 'dup' | 'gap';
/** `url` (absolute) with one `recover=<channel>:<offset>:<epoch>` per position, replacing
 *  any there; other parameters kept. */
export function recoverUrl(url: string | URL, positions: Record<string, Position>): string;
/** The beat in a gzip binary message of at most 256 bytes, else null. */
export function gunzipBeat(data: ArrayBuffer | ArrayBufferView): Promise<{ ping?: unknown; pong?: unknown } | null>;

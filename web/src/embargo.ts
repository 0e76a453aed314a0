// embargo in the browser: connects to one or more edges' WebSocket endpoints
// (`embargo edge -browser`), feeds every message to the device receiver
// compiled to WebAssembly (cmd/embargo-wasm), and hands each released
// period — its content keys, releaseAt and presentAt — to the page: to an
// unmodified player through EME ClearKey (attachClearKey, clearKeyLicence),
// and to a presentation callback at presentAt.
//
// Load Go's wasm_exec.js (from `go env GOROOT`/lib/wasm) before this module.
//
// Clock: instants are UTC milliseconds, Date.now()'s epoch, converted
// from the signed TAI instants as UTC = TAI − 37 s. The page measures its
// clock against its edges' with time echoes over each session (8 at
// connect, then one every 15 s; the echo of least round trip counts):
// Receiver.now() is the edges' time, and presentation keeps to it, not to
// the page's own clock.

/** Go's wasm_exec.js runtime. */
declare class Go {
  importObject: WebAssembly.Imports;
  run(instance: WebAssembly.Instance): Promise<void>;
}

interface WasmReceiver {
  feed(datagram: Uint8Array, receivedMs?: number): Error | undefined;
  stats(): string;
  timeRequest(sentMs?: number): Uint8Array;
  clock(): string;
}

/** The page's clock measured against its edges' (PROTOCOL.md §4.8):
 * offsetMs is the edges' UTC minus the page's clock, from the time echo
 * of least round trip (rttMs) among the last 8; samples is how many
 * echoes were taken (0: no measure yet, offsetMs is 0). */
export interface ClockOffset {
  offsetMs: number;
  rttMs: number;
  samples: number;
}

declare function embargoReceiver(options: string, onPeriod: (json: string) => void): WasmReceiver | Error;

/** One content key, KID and key in hex. */
export interface Key {
  kid: string;
  key: string;
}

/** One released period, as cmd/embargo-wasm's Period. */
export interface Period {
  stream: number;
  period: number;
  /** Milliseconds since the Unix epoch, UTC (the page's clock). */
  releaseAtUTC: number;
  presentAtUTC: number;
  /** The signed instants, TAI nanoseconds, as decimal strings. */
  releaseAtTAI: string;
  presentAtTAI: string;
  /** When the keys were ready in the page (UTC ms). */
  openedUTC: number;
  keys?: Key[];
  resource?: string;
  catchUp: boolean;
  edgeID: number;
}

export interface Options {
  /** Edges: WebSocket URLs (ws://, wss://) or WebTransport URLs
   * (https://). Several edges are deduplicated by the receiver. */
  edges: string[];
  /** The subscription token for edges that require one (`embargo edge
   * -require-tokens`): the licence's Embargo-Subscription-Token header as
   * it is. A function is asked again at every (re)connect, so a page that
   * refreshes its licence passes the fresh token. It goes in each edge
   * URL's query as `token=`. */
  token?: string | (() => string | undefined);
  /** SHA-256 hashes (hex) of self-signed WebTransport edge certificates
   * (ECDSA, valid ≤ 14 days) for serverCertificateHashes; without them
   * the edge needs a certificate the browser trusts. */
  serverCertificateHashes?: string[];
  /** The origin's public key, origin.pub's PEM. */
  originPub: string;
  /** The event's master key in hex. */
  master: string;
  streams: number[];
  /** URL of embargo.wasm. */
  wasm: string | URL;
  /** Called once per period when its keys are ready (never before releaseAt). */
  onPeriod?: (p: Period) => void;
  /** Called at the period's presentAt on the edges' clock (Receiver.now);
   * lateMs is how far after presentAt it ran. A catch-up period whose presentAt has
   * passed is presented at once, late. */
  onPresent?: (p: Period, lateMs: number) => void;
  /** Milliseconds before reconnecting a closed edge (default 1000). */
  reconnectMs?: number;
}

/** now is the page's clock in UTC milliseconds, with sub-millisecond
 * resolution where the browser gives it. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export class Receiver {
  private readonly keyset = new Map<string, string>();
  private readonly waiting = new Map<string, Array<(key: string) => void>>();
  private readonly got: Period[] = [];
  private readonly sockets: WebSocket[] = [];
  private readonly sessions: WebTransport[] = [];
  private closed = false;
  private measured: ClockOffset = { offsetMs: 0, rttMs: 0, samples: 0 };

  private constructor(
    private readonly opts: Options,
    private readonly wasm: WasmReceiver,
  ) {}

  /** Loads the WebAssembly receiver and connects to every edge. */
  static async start(opts: Options): Promise<Receiver> {
    const go = new Go();
    const { instance } = await WebAssembly.instantiateStreaming(fetch(opts.wasm), go.importObject);
    void go.run(instance);
    let r: Receiver | undefined;
    const pending: Period[] = [];
    const w = embargoReceiver(
      JSON.stringify({ originPub: opts.originPub, master: opts.master, streams: opts.streams }),
      (json: string) => {
        const p = JSON.parse(json) as Period;
        if (r) r.deliver(p);
        else pending.push(p);
      },
    );
    if (w instanceof Error) throw w;
    r = new Receiver(opts, w);
    for (const p of pending) r.deliver(p);
    for (const url of opts.edges) r.connect(url);
    return r;
  }

  /** The periods received so far, in the order they were opened. */
  periods(): readonly Period[] {
    return this.got;
  }

  /** The key of a KID (hex), waiting for its period's release; if
   * signal aborts first, the wait is dropped and the promise rejects with
   * its reason. */
  key(kid: string, signal?: AbortSignal): Promise<string> {
    const k = this.keyset.get(kid);
    if (k !== undefined) return Promise.resolve(k);
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const list = this.waiting.get(kid) ?? [];
      const done = (key: string) => {
        signal?.removeEventListener("abort", dropped);
        resolve(key);
      };
      const dropped = () => {
        const rest = (this.waiting.get(kid) ?? []).filter((f) => f !== done);
        if (rest.length > 0) this.waiting.set(kid, rest);
        else this.waiting.delete(kid);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", dropped, { once: true });
      list.push(done);
      this.waiting.set(kid, list);
    });
  }

  /** How many key() calls are waiting for a release: a player plugin
   * drops its waits when its request is aborted or its player detached
   * or reset, so this does not grow with requests nobody will use. */
  pendingKeys(): number {
    let n = 0;
    for (const list of this.waiting.values()) n += list.length;
    return n;
  }

  /** now is the edges' time in UTC milliseconds: the page's clock
   * corrected by the measured offset (clock()). presentAt is kept by it. */
  now(): number {
    return now() + this.measured.offsetMs;
  }

  /** The page's clock measured against its edges'. */
  clock(): ClockOffset {
    return this.measured;
  }

  /** The receiver's counters (drops by reason, skew), as its Stats. */
  stats(): unknown {
    return JSON.parse(this.wasm.stats());
  }

  close(): void {
    this.closed = true;
    for (const s of this.sockets) s.close();
    for (const s of this.sessions) s.close();
  }

  private connect(url: string): void {
    const t = typeof this.opts.token === "function" ? this.opts.token() : this.opts.token;
    if (url.startsWith("https://")) this.connectWebTransport(url, withToken(url, t));
    else this.connectWebSocket(url, withToken(url, t));
  }

  /** feed hands a message from an edge to the receiver; a time echo
   * updates the measured offset. */
  private feed(b: Uint8Array): void {
    if (b.length >= 4 && b[0] === 0x45 && b[1] === 0x4d && b[2] === 0x42 && b[3] === 0x54) {
      this.wasm.feed(b, now());
      this.measured = JSON.parse(this.wasm.clock()) as ClockOffset;
      return;
    }
    this.wasm.feed(b);
  }

  /** askTime sends time requests while alive(): 8 a quarter second
   * apart to measure quickly, then one every 15 s to follow the clocks
   * (an edge answers a few at once, then one a second). */
  private askTime(send: (b: Uint8Array) => void, alive: () => boolean): void {
    let sent = 0;
    const tick = () => {
      if (this.closed || !alive()) return;
      try {
        send(this.wasm.timeRequest(now()));
      } catch {
        return;
      }
      sent++;
      setTimeout(tick, sent < 8 ? 250 : 15000);
    };
    tick();
  }

  private again(url: string): void {
    if (!this.closed) setTimeout(() => this.connect(url), this.opts.reconnectMs ?? 1000);
  }

  /** WebTransport: live RELEASEs come as datagrams, every other datagram
   * as a frame on the session's unidirectional stream. */
  private connectWebTransport(url: string, dial: string): void {
    const hashes = (this.opts.serverCertificateHashes ?? []).map((h) => ({ algorithm: "sha-256", value: bytesOf(h) }));
    const wt = new WebTransport(dial, hashes.length ? { serverCertificateHashes: hashes } : {});
    this.sessions.push(wt);
    const feed = (b: Uint8Array) => this.feed(b);
    void wt.ready
      .then(() => {
        const w = wt.datagrams.writable.getWriter();
        this.askTime((b) => void w.write(b).catch(() => {}), () => this.sessions.includes(wt));
      })
      .catch(() => {});
    void (async () => {
      const r = wt.datagrams.readable.getReader();
      for (;;) {
        const { value, done } = await r.read();
        if (done) return;
        feed(value as Uint8Array);
      }
    })().catch(() => {});
    void (async () => {
      const streams = wt.incomingUnidirectionalStreams.getReader();
      for (;;) {
        const { value, done } = await streams.read();
        if (done) return;
        void readFrames(value as ReadableStream<Uint8Array>, feed).catch(() => {});
      }
    })().catch(() => {});
    wt.closed
      .catch(() => {})
      .finally(() => {
        const i = this.sessions.indexOf(wt);
        if (i >= 0) this.sessions.splice(i, 1);
        this.again(url);
      });
  }

  private connectWebSocket(url: string, dial: string): void {
    const ws = new WebSocket(dial);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev: MessageEvent) => {
      if (ev.data instanceof ArrayBuffer) this.feed(new Uint8Array(ev.data));
    };
    ws.onopen = () => this.askTime((b) => ws.send(b), () => ws.readyState === WebSocket.OPEN);
    ws.onclose = () => {
      const i = this.sockets.indexOf(ws);
      if (i >= 0) this.sockets.splice(i, 1);
      this.again(url);
    };
    this.sockets.push(ws);
  }

  private deliver(p: Period): void {
    this.got.push(p);
    for (const k of p.keys ?? []) {
      this.keyset.set(k.kid, k.key);
      for (const resolve of this.waiting.get(k.kid) ?? []) resolve(k.key);
      this.waiting.delete(k.kid);
    }
    this.opts.onPeriod?.(p);
    if (this.opts.onPresent) schedulePresent(p, this.opts.onPresent, () => this.now());
  }
}

/** withToken is url with the subscription token t in its query
 * (webedge.TokenParam), or url itself without one. */
export function withToken(url: string, t: string | undefined): string {
  if (!t) return url;
  const u = new URL(url);
  u.searchParams.set("token", t);
  return u.toString();
}

/** How long before presentAt schedulePresent stops trusting timers: a
 * timer fires up to a few milliseconds late, and nested timers are
 * clamped to 4 ms. */
const timerSlackMs = 4;

/** schedulePresent calls f at p's presentAt by clock. */
function schedulePresent(p: Period, f: (p: Period, lateMs: number) => void, clock: () => number): void {
  at(p.presentAtUTC, (t) => f(p, t - p.presentAtUTC), clock);
}

/** at calls f once clock reads atUTC or later, with that reading: a
 * timer to timerSlackMs before it, then message-channel turns of the
 * event loop (not clamped, and the page stays responsive) until the
 * instant. */
function at(atUTC: number, f: (t: number) => void, clock: () => number): void {
  const ch = new MessageChannel();
  const turn = () => {
    const t = clock();
    const left = atUTC - t;
    if (left > timerSlackMs) {
      setTimeout(turn, left - timerSlackMs);
    } else if (left > 0) {
      ch.port2.postMessage(null);
    } else {
      ch.port1.close();
      f(t);
    }
  };
  ch.port1.onmessage = turn;
  turn();
}

/** holdUntil keeps media out of sight (CSS visibility: hidden, its place
 * in the layout kept) until clock reads atUTC — a period's presentAtUTC
 * on the receiver's clock, () => r.now(). A paused player shows a
 * period's first frame as soon as it can decrypt it, after releaseAt but
 * before presentAt: call it before appending the period's media, and
 * start playback at presentAt (onPresent). It resolves, as the element
 * is shown again, to the clock's reading then (≥ atUTC). */
export function holdUntil(media: ElementCSSInlineStyle, atUTC: number, clock: () => number = now): Promise<number> {
  const show = hide(media);
  return new Promise((resolve) =>
    at(
      atUTC,
      (t) => {
        show();
        resolve(t);
      },
      clock,
    ),
  );
}

/** hide makes media invisible (its place in the layout kept) and returns
 * the function that shows it again as it was. */
function hide(media: ElementCSSInlineStyle): () => void {
  const was = media.style.visibility;
  media.style.visibility = "hidden";
  return () => {
    media.style.visibility = was;
  };
}

/** The largest datagram a frame may hold (wire.MaxDatagram): a longer
 * frame is not an embargo datagram, and its stream is dropped. */
const maxFrameBytes = 9000;

/** readFrames reads a session stream to its end, calling f with each
 * frame's datagram: a 2-byte big-endian length (1 to maxFrameBytes) and
 * that many bytes (PROTOCOL.md §4.8). A bad length ends the stream. */
async function readFrames(s: ReadableStream<Uint8Array>, f: (b: Uint8Array) => void): Promise<void> {
  const r = s.getReader();
  let buf = new Uint8Array(0);
  for (;;) {
    const { value, done } = await r.read();
    if (done) return;
    const joined = new Uint8Array(buf.length + value.length);
    joined.set(buf);
    joined.set(value, buf.length);
    let at = 0;
    while (joined.length - at >= 2) {
      const n = (joined[at] << 8) | joined[at + 1];
      if (n === 0 || n > maxFrameBytes) {
        await r.cancel();
        return;
      }
      if (joined.length - at - 2 < n) break;
      f(joined.slice(at + 2, at + 2 + n));
      at += 2 + n;
    }
    buf = joined.slice(at);
  }
}

/** hex → bytes. */
function bytesOf(hex: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** hex → base64url without padding, as JWK wants. */
function b64url(hex: string): string {
  let bin = "";
  for (let i = 0; i < hex.length; i += 2) bin += String.fromCharCode(parseInt(hex.slice(i, i + 2), 16));
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** base64url → hex. */
function hexOf(b64: string): string {
  const bin = atob(b64.replace(/-/g, "+").replace(/_/g, "/"));
  let hex = "";
  for (let i = 0; i < bin.length; i++) hex += bin.charCodeAt(i).toString(16).padStart(2, "0");
  return hex;
}

/** clearKeyLicence is the ClearKey licence (a JWK set, W3C EME §9.1.4)
 * for keys: what MediaKeySession.update takes. */
export function clearKeyLicence(keys: readonly Key[]): Uint8Array<ArrayBuffer> {
  const set = { keys: keys.map((k) => ({ kty: "oct", kid: b64url(k.kid), k: b64url(k.key) })), type: "temporary" };
  return new TextEncoder().encode(JSON.stringify(set));
}

/** answerClearKey answers a ClearKey session's licence requests from r,
 * each once the keys it names are released: an unmodified player's
 * session gets its keys from the page itself, no licence server. */
export function answerClearKey(session: MediaKeySession, r: Receiver): void {
  session.addEventListener("message", (ev: MediaKeyMessageEvent) => {
    const req = JSON.parse(new TextDecoder().decode(ev.message)) as { kids: string[] };
    const kids = req.kids.map(hexOf);
    void Promise.all(kids.map((kid) => r.key(kid))).then((keys) =>
      session.update(clearKeyLicence(kids.map((kid, i) => ({ kid, key: keys[i] })))),
    );
  });
}

/** attachClearKey gives a media element ClearKey MediaKeys whose sessions
 * r answers: call it before the player attaches encrypted media. Each
 * `encrypted` event (the media's pssh boxes, or other init data naming
 * KIDs) opens a session; onSession, if given, sees each as it opens. */
export async function attachClearKey(
  media: HTMLMediaElement,
  r: Receiver,
  contentType = 'video/mp4; codecs="avc1.42E01E"',
  onSession?: (session: MediaKeySession, initDataType: string) => void,
): Promise<void> {
  const access = await navigator.requestMediaKeySystemAccess("org.w3.clearkey", [
    { initDataTypes: ["cenc", "keyids", "webm"], videoCapabilities: [{ contentType }] },
  ]);
  const keys = await access.createMediaKeys();
  await media.setMediaKeys(keys);
  media.addEventListener("encrypted", (ev: MediaEncryptedEvent) => {
    if (!ev.initData) return;
    const session = keys.createSession();
    answerClearKey(session, r);
    onSession?.(session, ev.initDataType);
    void session.generateRequest(ev.initDataType, ev.initData);
  });
}

/** What keepInStep needs of a player: an HTMLMediaElement has it. */
export interface SteppedMedia {
  currentTime: number;
  playbackRate: number;
}

export interface StepOptions {
  /** The media time (seconds) to show at a UTC instant (ms, the page's
   * clock), from the period schedule: each period's first frame at its
   * presentAtUTC, e.g. (utc) => firstFrameS + (utc - p.presentAtUTC) / 1000. */
  mediaTimeAt: (utcMs: number) => number;
  /** The clock mediaTimeAt is read at: the receiver's (() => r.now(),
   * the edges' time); default the page's own, now. */
  clock?: () => number;
  /** The largest rate correction (default 0.1: 0.9× to 1.1×, which
   * viewers do not hear as pitch with preservesPitch). */
  maxCorrection?: number;
  /** How long a correction takes to close the gap, seconds (default 2). */
  horizonS?: number;
  /** A gap beyond this (seconds, default 3) is closed by one seek, not by
   * rate: a player that far off has just joined or fallen behind. */
  seekBeyondS?: number;
  /** Hold playbackRate this far off 1 (a fraction; default 0, off),
   * slower and faster by turns, each for detuneCycleS (default 2 s),
   * turning at detuneAtUTC (e.g. a period's presentAtUTC; default 0) and
   * every detuneCycleS from it, slower in the cycles that begin an even
   * number of cycles after the Unix epoch: every player on the clock
   * detunes alike. Chromium locks a video's frames to a display cadence
   * of its own at rate 1 (a frame may then stray up to half a frame from
   * the media clock, each player by its own phase); 0.006 keeps the rate
   * out of that lock (±0.25 %), so each frame is shown at the refresh its
   * media time falls in — the same one for players whose clocks agree.
   * The media then runs behind the schedule by up to detune ×
   * detuneCycleS (12 ms at 0.006), never ahead. Keep detuneCycleS ≥ 2 s:
   * Chromium judges the rate from the last ~32 frames' durations, and
   * must see it off 1 at the turns' ends. */
  detune?: number;
  detuneCycleS?: number;
  detuneAtUTC?: number;
}

/** detuned is the media time keepInStep aims at when the schedule reads
 * targetS at utcMs (StepOptions.detune), and how fast that moves (1
 * undetuned). */
export function detuned(targetS: number, utcMs: number, o: StepOptions): { targetS: number; rate: number } {
  const d = o.detune ?? 0;
  if (d <= 0) return { targetS, rate: 1 };
  const cycleMs = 1000 * (o.detuneCycleS ?? 2);
  const phase = (o.detuneAtUTC ?? 0) % cycleMs;
  const k = Math.floor((utcMs - phase) / cycleMs);
  const intoS = (utcMs - phase - k * cycleMs) / 1000;
  // Falling behind through even cycles, catching up through odd ones.
  return k % 2 === 0 ? { targetS: targetS - d * intoS, rate: 1 - d } : { targetS: targetS - d * (cycleMs / 1000 - intoS), rate: 1 + d };
}

/** playbackRateFor is the rate that closes the gap between the media's
 * time and the scheduled one within horizonS, within 1 ± maxCorrection:
 * ahead plays slower, behind faster, never stopped (no stall). */
export function playbackRateFor(mediaTimeS: number, targetS: number, o: StepOptions = { mediaTimeAt: () => 0 }): number {
  const max = o.maxCorrection ?? 0.1;
  const horizon = o.horizonS ?? 2;
  const c = (targetS - mediaTimeS) / horizon;
  return 1 + Math.max(-max, Math.min(max, c));
}

/** keepInStep keeps media on the schedule every everyMs: by playbackRate
 * within a few percent, by one seek when it is more than seekBeyondS off;
 * detuned (StepOptions.detune) if asked. It returns a function that stops
 * it and restores rate 1. */
export function keepInStep(media: SteppedMedia, o: StepOptions, everyMs = 200): () => void {
  const tick = () => {
    const t = (o.clock ?? now)();
    const aim = detuned(o.mediaTimeAt(t), t, o);
    if (Math.abs(aim.targetS - media.currentTime) > (o.seekBeyondS ?? 3)) {
      media.currentTime = aim.targetS;
      media.playbackRate = aim.rate;
      return;
    }
    // The aim's own rate, corrected by the gap; detuned, never nearer
    // 1 than half the detune, on the turn's side (a player that starts,
    // or falls, a detune's worth off the aim closes the gap at that rate,
    // never at 1).
    let rate = aim.rate - 1 + playbackRateFor(media.currentTime, aim.targetS, o);
    const least = (o.detune ?? 0) / 2;
    if (least > 0 && Math.abs(rate - 1) < least) rate = aim.rate > 1 ? 1 + least : 1 - least;
    media.playbackRate = rate;
  };
  tick();
  const id = setInterval(tick, everyMs);
  return () => {
    clearInterval(id);
    media.playbackRate = 1;
  };
}

/** followSchedule keeps media on the period schedule of r's released
 * periods: anchor(p) is the media time (s) of period p's first frame, or
 * undefined for a period the media does not hold. At the first anchored
 * period's presentAt (on r's clock, the edges' time) it plays the media,
 * seeking it onto the schedule first if it is short of that period's
 * first frame by more than rate closes within horizonS (a live player
 * starts at its own live edge);
 * from then keepInStep keeps each anchored period's first frame at its
 * presentAt, re-anchoring at every presentAt (a period boundary may sit
 * off its period's nominal length). Until that presentAt the media is
 * hidden (as holdUntil does): a player shows a period's first frame as
 * soon as it can decrypt it, after releaseAt but before presentAt; onShown
 * is called with the instant it is shown. For a plain MSE player as for
 * attachShaka. It returns a function that stops it (rate back to 1,
 * visibility as it was). */
export function followSchedule(
  media: HTMLMediaElement,
  r: Receiver,
  anchor: (p: Period) => number | undefined,
  o: Omit<StepOptions, "mediaTimeAt" | "clock"> = {},
  everyMs = 200,
  onShown?: (utc: number) => void,
): () => void {
  const clock = () => r.now();
  const show = hide(media);
  // The anchored period of latest presentAt at or before utc (the
  // earliest anchored one before any is due).
  const mediaTimeAt = (utc: number): number => {
    let due: Period | undefined;
    let next: Period | undefined;
    for (const p of r.periods()) {
      if (anchor(p) === undefined) continue;
      if (p.presentAtUTC <= utc) {
        if (due === undefined || p.presentAtUTC > due.presentAtUTC) due = p;
      } else if (next === undefined || p.presentAtUTC < next.presentAtUTC) {
        next = p;
      }
    }
    const b = due ?? next;
    return b === undefined ? media.currentTime : (anchor(b) ?? 0) + (utc - b.presentAtUTC) / 1000;
  };
  let stopped = false;
  let stopStep: (() => void) | undefined;
  // The first period is looked for often, not every everyMs: it may be
  // released less than everyMs before its presentAt.
  const wait = setInterval(() => look(), Math.min(everyMs, 20));
  const look = () => {
    const first = r.periods().find((p) => anchor(p) !== undefined);
    if (first === undefined) return;
    clearInterval(wait);
    schedulePresent(
      first,
      (p, lateMs) => {
        if (stopped) return;
        // A live player starts at its own live edge, which may be short of
        // the first anchored period: it is not on screen yet, so one seek
        // puts it there, on the schedule. (Lateness within the period is
        // keepInStep's, by rate: no frame of it is skipped.)
        if ((anchor(p) ?? 0) - media.currentTime > (o.maxCorrection ?? 0.1) * (o.horizonS ?? 2)) media.currentTime = mediaTimeAt(clock());
        show();
        onShown?.(p.presentAtUTC + lateMs);
        // Detuned turns at presentAt: every player's boundaries alike.
        stopStep = keepInStep(media, { ...o, detuneAtUTC: o.detuneAtUTC ?? p.presentAtUTC, mediaTimeAt, clock }, everyMs);
        void media.play().catch(() => {});
      },
      clock,
    );
  };
  look();
  return () => {
    stopped = true;
    clearInterval(wait);
    stopStep?.();
    show();
  };
}

/** What attachShaka needs of Shaka Player's namespace (the `shaka`
 * global of shaka-player's dist build, or its module's default export). */
export interface ShakaNamespace {
  net: {
    NetworkingEngine: {
      registerScheme(scheme: string, plugin: ShakaSchemePlugin, priority?: number, progressSupport?: boolean): void;
    };
  };
  util: {
    AbortableOperation: new (promise: Promise<unknown>, onAbort: () => Promise<unknown>) => unknown;
    Error: {
      new (severity: number, category: number, code: number, ...data: unknown[]): Error;
      Severity: { CRITICAL: number };
      Category: { DRM: number; PLAYER: number };
      Code: { LICENSE_REQUEST_FAILED: number; OPERATION_ABORTED: number };
    };
  };
}

/** What attachShaka needs of a shaka.Player. */
export interface ShakaPlayer {
  configure(config: object): boolean;
  getMediaElement(): HTMLMediaElement | null;
  getConfiguration(): { manifest: { dash: { manifestPreprocessorTXml?: (mpd: ShakaXmlNode) => void } } };
}

/** A node of Shaka's parsed XML (shaka.extern.xml.Node). */
export interface ShakaXmlNode {
  tagName: string;
  attributes: Record<string, string>;
  children: Array<ShakaXmlNode | string>;
}

/** withoutDefaultKIDs removes the cenc:default_KID of every
 * ContentProtection element under node. */
function withoutDefaultKIDs(node: ShakaXmlNode): void {
  if (node.tagName === "ContentProtection" || node.tagName.endsWith(":ContentProtection")) {
    for (const name of Object.keys(node.attributes)) {
      if (name === "default_KID" || name.endsWith(":default_KID")) delete node.attributes[name];
    }
  }
  for (const c of node.children) if (typeof c !== "string") withoutDefaultKIDs(c);
}

/** A Shaka networking scheme plugin (shaka.extern.SchemePlugin). */
export type ShakaSchemePlugin = (uri: string, request: { body?: BufferSource | null }) => unknown;

/** How attachShaka and attachDashjs tie a player to a receiver. */
export interface PlayerOptions {
  /** The media time (s) of period p's first frame in the player's
   * presentation, undefined for a period it does not hold: with it, the
   * player's media element is kept on the schedule (followSchedule).
   * Without it, only the licences are answered. */
  anchor?: (p: Period) => number | undefined;
  /** keepInStep's tuning (maxCorrection, horizonS, seekBeyondS). */
  step?: Omit<StepOptions, "mediaTimeAt" | "clock">;
  /** Called as each licence request is answered: its KIDs (hex) and the
   * instants (UTC ms, the edges' time, Receiver.now) the player asked and
   * the answer was made. */
  onLicence?: (kids: string[], requestedUTC: number, answeredUTC: number) => void;
  /** Called when the media, hidden until the first anchored period's
   * presentAt, is shown: that instant (UTC ms, the edges' time). */
  onShown?: (utc: number) => void;
}

/** The URI scheme of the players' licence servers: embargo:clearkey#N. */
const licenceScheme = "embargo";
let licenceServers = 0;
/** The receivers answering each attached Shaka player's licence server. */
const shakaLicensors = new Map<string, { r: Receiver; o: PlayerOptions }>();
const shakaRegistered = new WeakSet<ShakaNamespace>();

/** releasedLicence is the ClearKey licence answering a ClearKey licence
 * request (W3C EME §9.1.3: JSON naming KIDs in base64url) once r holds
 * the keys of every KID it names — after their RELEASE, never before —
 * or an error if body is not such a request. It gives up when cancelled
 * rejects. */
async function releasedLicence(r: Receiver, body: BufferSource | string | null | undefined, signal?: AbortSignal): Promise<{ kids: string[]; licence: Uint8Array<ArrayBuffer> }> {
  let kids: string[];
  try {
    const text = typeof body === "string" ? body : new TextDecoder().decode(body ?? new Uint8Array(0));
    kids = (JSON.parse(text) as { kids: string[] }).kids.map(hexOf);
    if (kids.length === 0 || kids.some((k) => k.length !== 32)) throw new Error("want one or more 16-byte KIDs");
  } catch (e) {
    throw new Error(`not a ClearKey licence request: ${String(e)}`);
  }
  const keys = await Promise.all(kids.map((kid) => r.key(kid, signal)));
  return { kids, licence: clearKeyLicence(kids.map((kid, i) => ({ kid, key: keys[i] }))) };
}

/** attachShaka makes a Shaka Player take its ClearKey licences from r:
 * its licence server for org.w3.clearkey becomes embargo:clearkey#N, a
 * networking scheme that answers each licence request once r holds the
 * keys of every KID it names (releasedLicence) with their JWK set. The
 * player opens licence requests from the media's init data (a ClearKey
 * pssh in each period's init segment), not from the MPD's
 * cenc:default_KID, which it drops: see the comment within. With
 * opts.anchor it also keeps the player's media element on the period
 * schedule (followSchedule). Call it after player.attach, before
 * player.load; the returned function detaches it. */
export function attachShaka(shaka: ShakaNamespace, player: ShakaPlayer, r: Receiver, opts: PlayerOptions = {}): () => void {
  if (!shakaRegistered.has(shaka)) {
    shakaRegistered.add(shaka);
    shaka.net.NetworkingEngine.registerScheme(licenceScheme, (uri, request) => shakaLicence(shaka, uri, request));
  }
  const uri = `${licenceScheme}:clearkey#${++licenceServers}`;
  shakaLicensors.set(uri, { r, o: opts });
  player.configure({ drm: { servers: { "org.w3.clearkey": uri } } });
  // Shaka takes every Period's KID from the MPD (cenc:default_KID) and,
  // at each update of a live MPD, finds a stream unplayable whose KIDs
  // are not all usable (RESTRICTIONS_CANNOT_BE_MET, 4012): a period listed
  // ahead of its release — its media early, its key embargoed — would
  // stop playback. Without them Shaka opens each period's licence request
  // from its init segment's pssh as it buffers it, and leaves what is
  // playable to the CDM's key statuses.
  const pre = player.getConfiguration().manifest.dash.manifestPreprocessorTXml;
  player.configure({
    manifest: {
      dash: {
        manifestPreprocessorTXml: (mpd: ShakaXmlNode) => {
          pre?.(mpd);
          withoutDefaultKIDs(mpd);
        },
      },
    },
  });
  let stop: (() => void) | undefined;
  const media = player.getMediaElement();
  // Shaka's own live sync would fight keepInStep over playbackRate.
  if (opts.anchor) player.configure({ streaming: { liveSync: { enabled: false } } });
  if (opts.anchor && media) stop = followSchedule(media, r, opts.anchor, opts.step, undefined, opts.onShown);
  return () => {
    shakaLicensors.delete(uri);
    stop?.();
  };
}

/** shakaLicence answers one Shaka licence request for uri: an abortable
 * operation resolving to a Shaka response holding the ClearKey licence;
 * a bad request fails as LICENSE_REQUEST_FAILED, an abort as
 * OPERATION_ABORTED. */
function shakaLicence(shaka: ShakaNamespace, uri: string, request: { body?: BufferSource | null }): unknown {
  const E = shaka.util.Error;
  // An aborted request's waits for keys are dropped with it.
  const ac = new AbortController();
  const abort = () => ac.abort(new E(E.Severity.CRITICAL, E.Category.PLAYER, E.Code.OPERATION_ABORTED));
  const answer = (async () => {
    const l = shakaLicensors.get(uri);
    if (!l) throw new E(E.Severity.CRITICAL, E.Category.DRM, E.Code.LICENSE_REQUEST_FAILED, `${uri}: no receiver attached (attachShaka)`);
    const requested = l.r.now();
    const { kids, licence } = await releasedLicence(l.r, request.body, ac.signal).catch((e: unknown) => {
      throw e instanceof E ? e : new E(E.Severity.CRITICAL, E.Category.DRM, E.Code.LICENSE_REQUEST_FAILED, `${uri}: ${String(e)}`);
    });
    l.o.onLicence?.(kids, requested, l.r.now());
    return { uri, originalUri: uri, data: licence.buffer, headers: { "content-type": "application/json" }, originalRequest: request };
  })();
  return new shaka.util.AbortableOperation(answer, async () => abort());
}

/** What attachDashjs needs of a dash.js MediaPlayer. */
export interface DashjsPlayer {
  setProtectionData(data: object): void;
  registerLicenseRequestFilter(filter: (request: DashjsLicenceRequest) => Promise<unknown>): void;
  unregisterLicenseRequestFilter(filter: (request: DashjsLicenceRequest) => Promise<unknown>): void;
  getVideoElement(): HTMLVideoElement;
  updateSettings(settings: object): void;
  on(type: string, listener: () => void): void;
  off(type: string, listener: () => void): void;
}

/** The parts of a dash.js LicenseRequest attachDashjs reads and sets. */
export interface DashjsLicenceRequest {
  url: string;
  method: string;
  data: unknown;
}

/** dash.js's event when a player is reset or its source replaced: the
 * licence requests of the old source will never be used. */
const dashjsTeardown = "streamTeardownComplete";

/** attachDashjs makes a dash.js MediaPlayer take its ClearKey licences
 * from r: its org.w3.clearkey licence server becomes
 * embargo:clearkey#N, and a licence request filter holds each request
 * for it until r holds the keys of every KID it names
 * (releasedLicence), then points it at a data: URL holding their JWK
 * set. A request it cannot answer gets a licence holding no keys and an
 * error naming the request and why, so dash.js reports a licence error
 * (MEDIA_KEY_MESSAGE_LICENSER_ERROR, 114; the licence, {"error": why},
 * in the error's data.serverResponse): a body that is
 * not a ClearKey licence request at once; a request still held when the
 * player is reset or its source replaced (dash.js's
 * streamTeardownComplete), or when the returned function detaches it,
 * then, its waits for keys dropped. (dash.js does not catch a filter that
 * rejects: the request would hang, so the filter never rejects.) With
 * opts.anchor it also keeps the player's video on the period schedule
 * (followSchedule), dash.js's own live catch-up off. Call it after
 * player.initialize(video), before attachSource; it sets the player's
 * protection data (protData is merged into the ClearKey entry). */
export function attachDashjs(player: DashjsPlayer, r: Receiver, opts: PlayerOptions & { protData?: object } = {}): () => void {
  const url = `${licenceScheme}:clearkey#${++licenceServers}`;
  player.setProtectionData({ "org.w3.clearkey": { ...opts.protData, serverURL: url } });
  const dataURL = (b: Uint8Array) => "data:application/json;base64," + btoa(String.fromCharCode(...b));
  // Held requests give up when held is aborted: at teardown, a new one
  // takes its place.
  let held = new AbortController();
  const teardown = () => {
    held.abort(new Error("the player was reset before the keys were released"));
    held = new AbortController();
  };
  const filter = async (req: DashjsLicenceRequest) => {
    if (req.url !== url) return;
    const requested = r.now();
    try {
      const { kids, licence } = await releasedLicence(r, req.data as string | BufferSource, held.signal);
      req.url = dataURL(licence);
      opts.onLicence?.(kids, requested, r.now());
    } catch (e) {
      req.url = dataURL(new TextEncoder().encode(JSON.stringify({ error: `${url}: ${String(e)}` })));
    }
    req.method = "GET";
    req.data = null;
  };
  player.registerLicenseRequestFilter(filter);
  player.on(dashjsTeardown, teardown);
  let stop: (() => void) | undefined;
  if (opts.anchor) {
    // dash.js's live catch-up would fight keepInStep over playbackRate.
    player.updateSettings({ streaming: { liveCatchup: { enabled: false } } });
    stop = followSchedule(player.getVideoElement(), r, opts.anchor, opts.step, undefined, opts.onShown);
  }
  return () => {
    player.off(dashjsTeardown, teardown);
    held.abort(new Error("detached (attachDashjs) before the keys were released"));
    player.unregisterLicenseRequestFilter(filter);
    stop?.();
  };
}

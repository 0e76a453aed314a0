/** The page's clock measured against its edges' (PROTOCOL.md §4.8):
 * offsetMs is the edges' UTC minus the page's clock, from the time echo
 * of least round trip (rttMs) among the last 8; samples is how many
 * echoes were taken (0: no measure yet, offsetMs is 0). */
export interface ClockOffset {
    offsetMs: number;
    rttMs: number;
    samples: number;
}
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
export declare function now(): number;
export declare class Receiver {
    private readonly opts;
    private readonly wasm;
    private readonly keyset;
    private readonly waiting;
    private readonly got;
    private readonly sockets;
    private readonly sessions;
    private closed;
    private measured;
    private constructor();
    /** Loads the WebAssembly receiver and connects to every edge. */
    static start(opts: Options): Promise<Receiver>;
    /** The periods received so far, in the order they were opened. */
    periods(): readonly Period[];
    /** The key of a KID (hex), waiting for its period's release; if
     * signal aborts first, the wait is dropped and the promise rejects with
     * its reason. */
    key(kid: string, signal?: AbortSignal): Promise<string>;
    /** How many key() calls are waiting for a release: a player plugin
     * drops its waits when its request is aborted or its player detached
     * or reset, so this does not grow with requests nobody will use. */
    pendingKeys(): number;
    /** now is the edges' time in UTC milliseconds: the page's clock
     * corrected by the measured offset (clock()). presentAt is kept by it. */
    now(): number;
    /** The page's clock measured against its edges'. */
    clock(): ClockOffset;
    /** The receiver's counters (drops by reason, skew), as its Stats. */
    stats(): unknown;
    close(): void;
    private connect;
    /** feed hands a message from an edge to the receiver; a time echo
     * updates the measured offset. */
    private feed;
    /** askTime sends time requests while alive(): 8 a quarter second
     * apart to measure quickly, then one every 15 s to follow the clocks
     * (an edge answers a few at once, then one a second). */
    private askTime;
    private again;
    /** WebTransport: live RELEASEs come as datagrams, every other datagram
     * as a frame on the session's unidirectional stream. */
    private connectWebTransport;
    private connectWebSocket;
    private deliver;
}
/** withToken is url with the subscription token t in its query
 * (webedge.TokenParam), or url itself without one. */
export declare function withToken(url: string, t: string | undefined): string;
/** holdUntil keeps media out of sight (CSS visibility: hidden, its place
 * in the layout kept) until clock reads atUTC — a period's presentAtUTC
 * on the receiver's clock, () => r.now(). A paused player shows a
 * period's first frame as soon as it can decrypt it, after releaseAt but
 * before presentAt: call it before appending the period's media, and
 * start playback at presentAt (onPresent). It resolves, as the element
 * is shown again, to the clock's reading then (≥ atUTC). */
export declare function holdUntil(media: ElementCSSInlineStyle, atUTC: number, clock?: () => number): Promise<number>;
/** clearKeyLicence is the ClearKey licence (a JWK set, W3C EME §9.1.4)
 * for keys: what MediaKeySession.update takes. */
export declare function clearKeyLicence(keys: readonly Key[]): Uint8Array<ArrayBuffer>;
/** answerClearKey answers a ClearKey session's licence requests from r,
 * each once the keys it names are released: an unmodified player's
 * session gets its keys from the page itself, no licence server. */
export declare function answerClearKey(session: MediaKeySession, r: Receiver): void;
/** attachClearKey gives a media element ClearKey MediaKeys whose sessions
 * r answers: call it before the player attaches encrypted media. Each
 * `encrypted` event (the media's pssh boxes, or other init data naming
 * KIDs) opens a session; onSession, if given, sees each as it opens. */
export declare function attachClearKey(media: HTMLMediaElement, r: Receiver, contentType?: string, onSession?: (session: MediaKeySession, initDataType: string) => void): Promise<void>;
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
export declare function detuned(targetS: number, utcMs: number, o: StepOptions): {
    targetS: number;
    rate: number;
};
/** playbackRateFor is the rate that closes the gap between the media's
 * time and the scheduled one within horizonS, within 1 ± maxCorrection:
 * ahead plays slower, behind faster, never stopped (no stall). */
export declare function playbackRateFor(mediaTimeS: number, targetS: number, o?: StepOptions): number;
/** keepInStep keeps media on the schedule every everyMs: by playbackRate
 * within a few percent, by one seek when it is more than seekBeyondS off;
 * detuned (StepOptions.detune) if asked. It returns a function that stops
 * it and restores rate 1. */
export declare function keepInStep(media: SteppedMedia, o: StepOptions, everyMs?: number): () => void;
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
export declare function followSchedule(media: HTMLMediaElement, r: Receiver, anchor: (p: Period) => number | undefined, o?: Omit<StepOptions, "mediaTimeAt" | "clock">, everyMs?: number, onShown?: (utc: number) => void): () => void;
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
            Severity: {
                CRITICAL: number;
            };
            Category: {
                DRM: number;
                PLAYER: number;
            };
            Code: {
                LICENSE_REQUEST_FAILED: number;
                OPERATION_ABORTED: number;
            };
        };
    };
}
/** What attachShaka needs of a shaka.Player. */
export interface ShakaPlayer {
    configure(config: object): boolean;
    getMediaElement(): HTMLMediaElement | null;
    getConfiguration(): {
        manifest: {
            dash: {
                manifestPreprocessorTXml?: (mpd: ShakaXmlNode) => void;
            };
        };
    };
}
/** A node of Shaka's parsed XML (shaka.extern.xml.Node). */
export interface ShakaXmlNode {
    tagName: string;
    attributes: Record<string, string>;
    children: Array<ShakaXmlNode | string>;
}
/** A Shaka networking scheme plugin (shaka.extern.SchemePlugin). */
export type ShakaSchemePlugin = (uri: string, request: {
    body?: BufferSource | null;
}) => unknown;
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
export declare function attachShaka(shaka: ShakaNamespace, player: ShakaPlayer, r: Receiver, opts?: PlayerOptions): () => void;
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
export declare function attachDashjs(player: DashjsPlayer, r: Receiver, opts?: PlayerOptions & {
    protData?: object;
}): () => void;

// Browser client for proof-bff: starts a checkout, follows its status, reads the KYC status.
// No runtime dependencies: it needs `fetch`, and `EventSource` for live status (it polls without).

/** The codes of the errors proof-bff itself answers with (its own envelope). */
export type ServiceErrorCode =
  | "validation_error"
  | "malformed_request"
  | "headers_too_large"
  | "no_session"
  | "invalid_session"
  | "session_expired"
  | "forbidden_origin"
  | "csrf"
  | "cors_request_not_allowed"
  | "request_timeout"
  | "body_too_large"
  | "unsupported_media_type"
  | "not_found"
  | "method_not_allowed"
  | "request_in_progress"
  | "idempotency_key_reused"
  | "per_user"
  | "per_ip"
  | "per_user_status"
  | "too_many_streams"
  | "upstream_misconfigured"
  | "provider_error"
  | "upstream_unavailable"
  | "invalid_upstream_response"
  | "upstream_timeout"
  | "shutting_down"
  | "rate_limit_backend"
  | "session_backend"
  | "upstream_busy";

/** Proof's own documented 4xx codes, which proof-bff passes through unchanged. */
export type ProofErrorCode =
  | "decode_error"
  | "missing_param"
  | "currency_not_allowed"
  | "WALLET_NOT_SUPPORTED"
  | "rate_limit_exceeded"
  | "session_already_used"
  | "kyc_required";

/** An answer that is not in the envelope at all (a proxy's HTML error page, a cut-off body). */
export type ClientErrorCode = "unexpected_response";

/**
 * Every code an error can carry. Proof's 4xx answers are passed through verbatim, so a code Proof
 * adds later reaches the page too: `string & {}` keeps such a code representable while editors
 * still suggest the documented ones.
 */
export type ErrorCode = ServiceErrorCode | ProofErrorCode | ClientErrorCode | (string & {});

/** The checkout a user chose; identity and IP are added by the service, never sent from here. */
export interface CheckoutRequest {
  network: string;
  currency: string;
  /** A positive decimal string, e.g. "100" or "99.50"; forwarded exactly as given. */
  amount: string;
  type?: "buy" | "sell";
  redirect_url?: string;
}

/** Proof's `/widget/session` answer, as the service relays it. Pass it on unchanged. */
export interface WidgetParams {
  merchant_transaction_id: string;
  widget_id: string;
  address: string;
  signature: string;
  init_token: string;
  init_token_type: string;
  currency: string;
  currencies?: string[];
  fix_currency: boolean;
  network: string;
  networks?: string[];
  fix_network: string[];
  amount: string;
  fix_amount: boolean;
  fiat_currency: string;
  fiat_currencies?: string[];
  fix_fiat_currency?: boolean;
  fix_fiat_amount?: boolean;
  type: string;
  lang?: string;
  theme?: string;
  redirect_url?: string;
  [field: string]: unknown;
}

/** The argument of `proofWidget.run(...)`. */
export interface ProofWidgetOptions<Host = HTMLElement> {
  host: Host;
  widgetId: string;
  address: string;
  signature: string;
  initToken: string;
  initTokenType: string;
  merchantTransactionId: string;
  currency: string;
  network: string;
  amount: string;
  fixCurrency: boolean;
  fixNetwork: string[];
  fixAmount: boolean;
  fiatCurrency: string;
  type: string;
}

/** Statuses after which a transaction never changes again. */
export const TERMINAL_STATUSES = ["completed", "failed", "cancelled"] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];
export type TransactionStatus = "pending" | "processing" | TerminalStatus;

/** Proof's transaction (`GET /checkout/{id}` and each status event), as the service relays it. */
export interface Transaction {
  merchant_transaction_id: string;
  status: TransactionStatus | (string & {});
  type?: string;
  currency?: string;
  network?: string;
  crypto_amount?: string;
  fiat_currency?: string;
  fiat_amount?: string;
  created_at?: string;
  updated_at?: string;
  [field: string]: unknown;
}

export interface KycStatus {
  partner_user_id: string;
  status: "not_started" | "pending" | "verified" | "failed" | (string & {});
  [field: string]: unknown;
}

/** An answer from the service other than success, in the service's (and Proof's) envelope. */
export class ProofBffError extends Error {
  override readonly name = "ProofBffError";
  /** The HTTP status. */
  readonly status: number;
  /** The envelope's `error` slug, e.g. `rate_limited`. */
  readonly error: string;
  readonly code: ErrorCode;
  /** Seconds to wait before trying again, from `Retry-After`; null when the answer had none. */
  readonly retryAfter: number | null;
  /** The answer's `X-Request-Id`: log it, support asks for it. */
  readonly requestId: string | null;
  /** The parsed body (null when it was not JSON), for fields beyond the envelope. */
  readonly body: unknown;

  constructor(init: {
    status: number;
    error: string;
    code: ErrorCode;
    message: string;
    retryAfter: number | null;
    requestId: string | null;
    body: unknown;
  }) {
    super(init.message);
    this.status = init.status;
    this.error = init.error;
    this.code = init.code;
    this.retryAfter = init.retryAfter;
    this.requestId = init.requestId;
    this.body = init.body;
  }
}

/** No answer at all: the network failed, the service is unreachable, or CORS refused the call. */
export class ProofBffNetworkError extends Error {
  override readonly name = "ProofBffNetworkError";
  /** How many times the request was sent before giving up. */
  readonly attempts: number;
  constructor(message: string, cause: unknown, attempts: number) {
    super(message, { cause });
    this.attempts = attempts;
  }
}

/** What `startCheckout` resolves with. */
export interface CheckoutResult {
  /** Proof's widget parameters, parsed. */
  params: WidgetParams;
  /** The body exactly as received, for a page that stores or forwards it. */
  text: string;
  requestId: string | null;
  /** True when the service replayed the first answer to this key (`Idempotent-Replayed`). */
  replayed: boolean;
  /** The key the checkout was sent with: keep it to retry the same intent later. */
  idempotencyKey: string;
  /** How many `409 request_in_progress` answers were waited out. */
  waits: number;
}

export interface StartCheckoutOptions {
  /**
   * The intent's key: 1 to 255 printable ASCII characters. Give one for an intent that outlives a
   * page (stored with the order) so a retry after a reload gets the first answer; by default
   * every call makes a fresh one.
   */
  idempotencyKey?: string;
  /** Abandons the call, its waits included; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Most `409 request_in_progress` answers to wait out (default 60). */
  maxWaits?: number;
  /** Most time, in milliseconds, spent waiting them out in total (default 60000). */
  maxWaitMs?: number;
  /** Resends after a connection that failed without an answer (default 2). */
  networkRetries?: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export type WatchMode = "stream" | "polling" | "closed";

export interface WatchOptions {
  /** Polling cadence in milliseconds when the stream cannot be used (default 5000). */
  pollIntervalMs?: number;
  /** Stream errors in a row, without a successful (re)connection, before polling (default 3). */
  maxStreamFailures?: number;
  /** Called when the watch stops on an error it cannot get past (401, 404, ...). */
  onError?: (error: ProofBffError | ProofBffNetworkError) => void;
  /** Called when the watch changes between the stream and polling, and when it ends. */
  onModeChange?: (mode: WatchMode) => void;
  signal?: AbortSignal;
}

export interface WatchHandle {
  /** Stops watching: the stream is closed and no further poll is made. */
  close(): void;
  readonly mode: WatchMode;
}

/** The part of `EventSource` the client uses. */
export interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  close(): void;
}

export type EventSourceConstructor = new (
  url: string,
  init?: { withCredentials?: boolean },
) => EventSourceLike;

export interface ClientOptions {
  /** Where the service is, e.g. "https://bff.example.com"; "" for the page's own origin. */
  baseUrl: string;
  /** Defaults to the global `fetch`. */
  fetch?: typeof fetch;
  /** Defaults to the global `EventSource`; null to always poll. */
  EventSource?: EventSourceConstructor | null;
  /** How the client waits (defaults to timers); replaceable for tests and other runtimes. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface ProofBffClient {
  startCheckout(body: CheckoutRequest, options?: StartCheckoutOptions): Promise<CheckoutResult>;
  getCheckout(id: string, options?: RequestOptions): Promise<Transaction>;
  getKycStatus(options?: RequestOptions): Promise<KycStatus>;
  watchCheckout(
    id: string,
    onStatus: (transaction: Transaction) => void,
    options?: WatchOptions,
  ): WatchHandle;
}

/** Maps Proof's answer to `proofWidget.run`'s argument; the values are passed through untouched. */
export function toWidgetOptions<Host = HTMLElement>(
  params: WidgetParams,
  host: Host,
): ProofWidgetOptions<Host> {
  return {
    host,
    widgetId: params.widget_id,
    address: params.address,
    signature: params.signature,
    initToken: params.init_token,
    initTokenType: params.init_token_type,
    merchantTransactionId: params.merchant_transaction_id,
    currency: params.currency,
    network: params.network,
    amount: params.amount,
    fixCurrency: params.fix_currency,
    fixNetwork: params.fix_network,
    fixAmount: params.fix_amount,
    fiatCurrency: params.fiat_currency,
    type: params.type,
  };
}

export function isTerminalStatus(status: string): status is TerminalStatus {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

// The service holds a key while the first request is at Proof, for at most `proof.deadline_ms` (15 s
// by default; 2 s more with Redis): a minute covers it with room to spare.
const CHECKOUT_DEFAULTS = { maxWaits: 60, maxWaitMs: 60_000, networkRetries: 2 };
/** The first resend after a failed connection waits this long, then twice as long each time. */
const NETWORK_RETRY_BASE_MS = 500;

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
}

function timerSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal ? abortReason(signal) : undefined);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** `Retry-After` in seconds: whole seconds as the service sends them, or an HTTP date. */
function retryAfterSeconds(value: string | null): number | null {
  if (value === null) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** The key as the header's quoted string (a structured-field string). */
function quoteKey(key: string): string {
  if (key.length < 1 || key.length > 255 || !/^[\x20-\x7e]+$/.test(key)) {
    throw new TypeError("idempotencyKey must be 1 to 255 printable ASCII characters");
  }
  return `"${key.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function errorFrom(response: Response, text: string): ProofBffError {
  const body = parseJson(text);
  const envelope = isObject(body) ? body : {};
  const str = (field: string) =>
    typeof envelope[field] === "string" ? (envelope[field] as string) : null;
  const code = str("code");
  return new ProofBffError({
    status: response.status,
    error: str("error") ?? "unexpected_response",
    code: code ?? "unexpected_response",
    message:
      str("message") ??
      `HTTP ${response.status}: the answer is not in the service's error envelope`,
    retryAfter: retryAfterSeconds(response.headers.get("Retry-After")),
    requestId: response.headers.get("X-Request-Id"),
    body,
  });
}

function isAbort(error: unknown, signal?: AbortSignal): boolean {
  return (
    (signal?.aborted ?? false) ||
    (error instanceof Error && error.name === "AbortError")
  );
}

export function createClient(options: ClientOptions): ProofBffClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const fetchImpl: typeof fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const EventSourceImpl: EventSourceConstructor | null =
    options.EventSource === undefined
      ? ((globalThis as { EventSource?: EventSourceConstructor }).EventSource ?? null)
      : options.EventSource;
  const sleep = options.sleep ?? timerSleep;
  const url = (path: string) => `${baseUrl}${path}`;
  const checkoutPath = (id: string) => `/checkout/${encodeURIComponent(id)}`;

  /** A GET with the session cookie and no custom header, so a cross-origin one needs no preflight. */
  async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
    let response: Response;
    try {
      response = await fetchImpl(url(path), {
        method: "GET",
        credentials: "include",
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (isAbort(error, signal)) throw signal ? abortReason(signal) : error;
      throw new ProofBffNetworkError(`GET ${path} got no answer`, error, 1);
    }
    const text = await response.text();
    if (!response.ok) throw errorFrom(response, text);
    const body = parseJson(text);
    if (!isObject(body)) throw errorFrom(response, text);
    return body as T;
  }

  async function startCheckout(
    body: CheckoutRequest,
    options: StartCheckoutOptions = {},
  ): Promise<CheckoutResult> {
    const { signal } = options;
    const maxWaits = options.maxWaits ?? CHECKOUT_DEFAULTS.maxWaits;
    const maxWaitMs = options.maxWaitMs ?? CHECKOUT_DEFAULTS.maxWaitMs;
    const networkRetries = options.networkRetries ?? CHECKOUT_DEFAULTS.networkRetries;
    const idempotencyKey = options.idempotencyKey ?? globalThis.crypto.randomUUID();
    const headers = {
      "Content-Type": "application/json",
      // Required by services with `browser.require_csrf_header`; harmless elsewhere.
      "X-CSRF": "1",
      "Idempotency-Key": quoteKey(idempotencyKey),
    };
    const payload = JSON.stringify(body);
    let waits = 0;
    let waitedMs = 0;
    let attempts = 0;
    let networkFailures = 0;
    for (;;) {
      if (signal?.aborted) throw abortReason(signal);
      attempts += 1;
      let response: Response;
      try {
        response = await fetchImpl(url("/start-checkout"), {
          method: "POST",
          credentials: "include",
          headers,
          body: payload,
          ...(signal ? { signal } : {}),
        });
      } catch (error) {
        if (isAbort(error, signal)) throw signal ? abortReason(signal) : error;
        // Safe to resend: under the same key the service answers a checkout at most once, and a
        // resend while the first is still at Proof is told 409 and then gets the first answer.
        if (networkFailures >= networkRetries) {
          throw new ProofBffNetworkError("POST /start-checkout got no answer", error, attempts);
        }
        await sleep(NETWORK_RETRY_BASE_MS * 2 ** networkFailures, signal);
        networkFailures += 1;
        continue;
      }
      const text = await response.text();
      if (response.ok) {
        const params = parseJson(text);
        if (!isObject(params)) throw errorFrom(response, text);
        return {
          params: params as WidgetParams,
          text,
          requestId: response.headers.get("X-Request-Id"),
          replayed: response.headers.get("Idempotent-Replayed") === "true",
          idempotencyKey,
          waits,
        };
      }
      const error = errorFrom(response, text);
      if (response.status !== 409 || error.code !== "request_in_progress") throw error;
      const waitMs = (error.retryAfter ?? 1) * 1000;
      if (waits >= maxWaits || waitedMs + waitMs > maxWaitMs) throw error;
      await sleep(waitMs, signal);
      waits += 1;
      waitedMs += waitMs;
    }
  }

  function watchCheckout(
    id: string,
    onStatus: (transaction: Transaction) => void,
    options: WatchOptions = {},
  ): WatchHandle {
    const pollIntervalMs = options.pollIntervalMs ?? 5000;
    const maxStreamFailures = options.maxStreamFailures ?? 3;
    const stopper = new AbortController();
    const seen = new Set<string>();
    let mode: WatchMode = "stream";
    let source: EventSourceLike | null = null;

    const setMode = (next: WatchMode) => {
      if (mode === next) return;
      mode = next;
      options.onModeChange?.(next);
    };
    const close = () => {
      if (mode === "closed") return;
      source?.close();
      source = null;
      stopper.abort();
      setMode("closed");
    };
    options.signal?.addEventListener("abort", close, { once: true });

    // Each status once: a new stream and a poll both start with the current status, which may
    // already have been shown (statuses only move forward).
    const deliver = (transaction: Transaction) => {
      if (mode === "closed" || seen.has(transaction.status)) return;
      seen.add(transaction.status);
      onStatus(transaction);
      if (isTerminalStatus(transaction.status)) close();
    };
    const fail = (error: ProofBffError | ProofBffNetworkError) => {
      if (mode === "closed") return;
      close();
      options.onError?.(error);
    };

    async function poll() {
      setMode("polling");
      while (mode === "polling") {
        let waitMs = pollIntervalMs;
        try {
          deliver(await getJson<Transaction>(checkoutPath(id), stopper.signal));
        } catch (error) {
          if (mode !== "polling") return;
          if (error instanceof ProofBffError) {
            const transient =
              error.status === 429 || error.status === 408 || error.status >= 500;
            if (!transient) {
              fail(error);
              return;
            }
            waitMs = Math.max(waitMs, (error.retryAfter ?? 0) * 1000);
          } else if (!(error instanceof ProofBffNetworkError)) {
            return; // closed while the request was out
          }
        }
        if (mode !== "polling") return;
        try {
          await sleep(waitMs, stopper.signal);
        } catch {
          return;
        }
      }
    }

    function stream(Source: EventSourceConstructor) {
      let failures = 0;
      const events = new Source(url(`${checkoutPath(id)}/events`), { withCredentials: true });
      source = events;
      events.addEventListener("open", () => {
        failures = 0;
      });
      events.addEventListener("status", (event) => {
        const transaction = parseJson(String(event.data));
        if (isObject(transaction) && typeof transaction["status"] === "string") {
          deliver(transaction as Transaction);
        }
      });
      events.addEventListener("error", () => {
        if (source !== events) return;
        failures += 1;
        // CLOSED: the browser gave up on its own, which it does for any answer but a 200 stream
        // (a 429 too_many_streams, 401, 404, the 204 after the final status). EventSource cannot
        // show that status, so polling the transaction both carries on and finds out: a status
        // is shown, a 404 or 401 stops the watch with that error. CONNECTING: the browser is
        // reconnecting with Last-Event-ID; past a few failures in a row, polling is steadier.
        if (events.readyState === 2 || failures >= maxStreamFailures) {
          events.close();
          source = null;
          void poll();
        }
      });
    }

    if (EventSourceImpl) {
      stream(EventSourceImpl);
    } else {
      void poll();
    }
    return {
      close,
      get mode() {
        return mode;
      },
    };
  }

  return {
    startCheckout,
    getCheckout: (id, options = {}) => getJson<Transaction>(checkoutPath(id), options.signal),
    getKycStatus: (options = {}) => getJson<KycStatus>("/kyc-status", options.signal),
    watchCheckout,
  };
}

// Browser client for proof-bff: starts a checkout, follows its status, reads the KYC status.
// No runtime dependencies: it needs `fetch`, and `EventSource` for live status (it polls without).
/** Statuses after which a transaction never changes again. */
export const TERMINAL_STATUSES = ["completed", "failed", "cancelled"];
/** An answer from the service other than success, in the service's (and Proof's) envelope. */
export class ProofBffError extends Error {
    name = "ProofBffError";
    /** The HTTP status. */
    status;
    /** The envelope's `error` slug, e.g. `rate_limited`. */
    error;
    code;
    /** Seconds to wait before trying again, from `Retry-After`; null when the answer had none. */
    retryAfter;
    /** The answer's `X-Request-Id`: log it, support asks for it. */
    requestId;
    /** The parsed body (null when it was not JSON), for fields beyond the envelope. */
    body;
    constructor(init) {
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
    name = "ProofBffNetworkError";
    /** How many times the request was sent before giving up. */
    attempts;
    constructor(message, cause, attempts) {
        super(message, { cause });
        this.attempts = attempts;
    }
}
/** Maps Proof's answer to `proofWidget.run`'s argument; the values are passed through untouched. */
export function toWidgetOptions(params, host) {
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
export function isTerminalStatus(status) {
    return TERMINAL_STATUSES.includes(status);
}
// The service holds a key while the first request is at Proof, for at most `proof.deadline_ms` (15 s
// by default; 2 s more with Redis): a minute covers it with room to spare.
const CHECKOUT_DEFAULTS = { maxWaits: 60, maxWaitMs: 60_000, networkRetries: 2 };
/** The first resend after a failed connection waits this long, then twice as long each time. */
const NETWORK_RETRY_BASE_MS = 500;
function abortReason(signal) {
    return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
}
function timerSleep(ms, signal) {
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
function retryAfterSeconds(value) {
    if (value === null)
        return null;
    const trimmed = value.trim();
    if (/^\d+$/.test(trimmed))
        return Number(trimmed);
    const date = Date.parse(trimmed);
    if (Number.isNaN(date))
        return null;
    return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}
/** The key as the header's quoted string (a structured-field string). */
function quoteKey(key) {
    if (key.length < 1 || key.length > 255 || !/^[\x20-\x7e]+$/.test(key)) {
        throw new TypeError("idempotencyKey must be 1 to 255 printable ASCII characters");
    }
    return `"${key.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
function parseJson(text) {
    try {
        return JSON.parse(text);
    }
    catch {
        return null;
    }
}
function isObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
function errorFrom(response, text) {
    const body = parseJson(text);
    const envelope = isObject(body) ? body : {};
    const str = (field) => typeof envelope[field] === "string" ? envelope[field] : null;
    const code = str("code");
    return new ProofBffError({
        status: response.status,
        error: str("error") ?? "unexpected_response",
        code: code ?? "unexpected_response",
        message: str("message") ??
            `HTTP ${response.status}: the answer is not in the service's error envelope`,
        retryAfter: retryAfterSeconds(response.headers.get("Retry-After")),
        requestId: response.headers.get("X-Request-Id"),
        body,
    });
}
function isAbort(error, signal) {
    return ((signal?.aborted ?? false) ||
        (error instanceof Error && error.name === "AbortError"));
}
export function createClient(options) {
    const baseUrl = options.baseUrl.replace(/\/+$/, "");
    const fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const EventSourceImpl = options.EventSource === undefined
        ? (globalThis.EventSource ?? null)
        : options.EventSource;
    const sleep = options.sleep ?? timerSleep;
    const url = (path) => `${baseUrl}${path}`;
    const checkoutPath = (id) => `/checkout/${encodeURIComponent(id)}`;
    /** A GET with the session cookie and no custom header, so a cross-origin one needs no preflight. */
    async function getJson(path, signal) {
        let response;
        try {
            response = await fetchImpl(url(path), {
                method: "GET",
                credentials: "include",
                ...(signal ? { signal } : {}),
            });
        }
        catch (error) {
            if (isAbort(error, signal))
                throw signal ? abortReason(signal) : error;
            throw new ProofBffNetworkError(`GET ${path} got no answer`, error, 1);
        }
        const text = await response.text();
        if (!response.ok)
            throw errorFrom(response, text);
        const body = parseJson(text);
        if (!isObject(body))
            throw errorFrom(response, text);
        return body;
    }
    async function startCheckout(body, options = {}) {
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
            if (signal?.aborted)
                throw abortReason(signal);
            attempts += 1;
            let response;
            try {
                response = await fetchImpl(url("/start-checkout"), {
                    method: "POST",
                    credentials: "include",
                    headers,
                    body: payload,
                    ...(signal ? { signal } : {}),
                });
            }
            catch (error) {
                if (isAbort(error, signal))
                    throw signal ? abortReason(signal) : error;
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
                if (!isObject(params))
                    throw errorFrom(response, text);
                return {
                    params: params,
                    text,
                    requestId: response.headers.get("X-Request-Id"),
                    replayed: response.headers.get("Idempotent-Replayed") === "true",
                    idempotencyKey,
                    waits,
                };
            }
            const error = errorFrom(response, text);
            if (response.status !== 409 || error.code !== "request_in_progress")
                throw error;
            const waitMs = (error.retryAfter ?? 1) * 1000;
            if (waits >= maxWaits || waitedMs + waitMs > maxWaitMs)
                throw error;
            await sleep(waitMs, signal);
            waits += 1;
            waitedMs += waitMs;
        }
    }
    function watchCheckout(id, onStatus, options = {}) {
        const pollIntervalMs = options.pollIntervalMs ?? 5000;
        const maxStreamFailures = options.maxStreamFailures ?? 3;
        const stopper = new AbortController();
        const seen = new Set();
        let mode = "stream";
        let source = null;
        const setMode = (next) => {
            if (mode === next)
                return;
            mode = next;
            options.onModeChange?.(next);
        };
        const close = () => {
            if (mode === "closed")
                return;
            source?.close();
            source = null;
            stopper.abort();
            setMode("closed");
        };
        options.signal?.addEventListener("abort", close, { once: true });
        // Each status once: a new stream and a poll both start with the current status, which may
        // already have been shown (statuses only move forward).
        const deliver = (transaction) => {
            if (mode === "closed" || seen.has(transaction.status))
                return;
            seen.add(transaction.status);
            onStatus(transaction);
            if (isTerminalStatus(transaction.status))
                close();
        };
        const fail = (error) => {
            if (mode === "closed")
                return;
            close();
            options.onError?.(error);
        };
        async function poll() {
            setMode("polling");
            while (mode === "polling") {
                let waitMs = pollIntervalMs;
                try {
                    deliver(await getJson(checkoutPath(id), stopper.signal));
                }
                catch (error) {
                    if (mode !== "polling")
                        return;
                    if (error instanceof ProofBffError) {
                        const transient = error.status === 429 || error.status === 408 || error.status >= 500;
                        if (!transient) {
                            fail(error);
                            return;
                        }
                        waitMs = Math.max(waitMs, (error.retryAfter ?? 0) * 1000);
                    }
                    else if (!(error instanceof ProofBffNetworkError)) {
                        return; // closed while the request was out
                    }
                }
                if (mode !== "polling")
                    return;
                try {
                    await sleep(waitMs, stopper.signal);
                }
                catch {
                    return;
                }
            }
        }
        function stream(Source) {
            let failures = 0;
            const events = new Source(url(`${checkoutPath(id)}/events`), { withCredentials: true });
            source = events;
            events.addEventListener("open", () => {
                failures = 0;
            });
            events.addEventListener("status", (event) => {
                const transaction = parseJson(String(event.data));
                if (isObject(transaction) && typeof transaction["status"] === "string") {
                    deliver(transaction);
                }
            });
            events.addEventListener("error", () => {
                if (source !== events)
                    return;
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
        }
        else {
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
        getCheckout: (id, options = {}) => getJson(checkoutPath(id), options.signal),
        getKycStatus: (options = {}) => getJson("/kyc-status", options.signal),
        watchCheckout,
    };
}

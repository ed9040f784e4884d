/** The codes of the errors proof-bff itself answers with (its own envelope). */
export type ServiceErrorCode = "validation_error" | "malformed_request" | "headers_too_large" | "no_session" | "invalid_session" | "session_expired" | "forbidden_origin" | "csrf" | "cors_request_not_allowed" | "request_timeout" | "body_too_large" | "unsupported_media_type" | "not_found" | "method_not_allowed" | "request_in_progress" | "idempotency_key_reused" | "per_user" | "per_ip" | "per_user_status" | "too_many_streams" | "upstream_misconfigured" | "provider_error" | "upstream_unavailable" | "invalid_upstream_response" | "upstream_timeout" | "shutting_down" | "rate_limit_backend" | "session_backend" | "upstream_busy";
/** Proof's own documented 4xx codes, which proof-bff passes through unchanged. */
export type ProofErrorCode = "decode_error" | "missing_param" | "currency_not_allowed" | "WALLET_NOT_SUPPORTED" | "rate_limit_exceeded" | "session_already_used" | "kyc_required";
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
export declare const TERMINAL_STATUSES: readonly ["completed", "failed", "cancelled"];
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
export declare class ProofBffError extends Error {
    readonly name = "ProofBffError";
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
    });
}
/** No answer at all: the network failed, the service is unreachable, or CORS refused the call. */
export declare class ProofBffNetworkError extends Error {
    readonly name = "ProofBffNetworkError";
    /** How many times the request was sent before giving up. */
    readonly attempts: number;
    constructor(message: string, cause: unknown, attempts: number);
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
export type EventSourceConstructor = new (url: string, init?: {
    withCredentials?: boolean;
}) => EventSourceLike;
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
    watchCheckout(id: string, onStatus: (transaction: Transaction) => void, options?: WatchOptions): WatchHandle;
}
/** Maps Proof's answer to `proofWidget.run`'s argument; the values are passed through untouched. */
export declare function toWidgetOptions<Host = HTMLElement>(params: WidgetParams, host: Host): ProofWidgetOptions<Host>;
export declare function isTerminalStatus(status: string): status is TerminalStatus;
export declare function createClient(options: ClientOptions): ProofBffClient;

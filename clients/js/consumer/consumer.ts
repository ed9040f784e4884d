// A strict consumer of the packed package, type-checked in CI (`.ci/run`, step "clients/js") after
// installing the tarball: every export is used as a partner would use it, so a type that is
// missing from the published declarations, or an `exports` map that hides them, fails the build.
// The `@ts-expect-error` lines fail it too if the types stop refusing what they must refuse.
import {
  type CheckoutRequest,
  type CheckoutResult,
  type ClientErrorCode,
  type ClientOptions,
  type ErrorCode,
  type EventSourceConstructor,
  type EventSourceLike,
  type KycStatus,
  type ProofBffClient,
  type ProofErrorCode,
  type ProofWidgetOptions,
  type RequestOptions,
  type ServiceErrorCode,
  type StartCheckoutOptions,
  type TerminalStatus,
  type Transaction,
  type TransactionStatus,
  type WatchHandle,
  type WatchMode,
  type WatchOptions,
  type WidgetParams,
  ProofBffError,
  ProofBffNetworkError,
  TERMINAL_STATUSES,
  createClient,
  isTerminalStatus,
  toWidgetOptions,
} from "@proof-bff/client";

declare const proofWidget: { run(options: ProofWidgetOptions): void };

const Source: EventSourceConstructor = EventSource;
const options: ClientOptions = { baseUrl: "https://bff.example.com", EventSource: Source };
const client: ProofBffClient = createClient(options);

// @ts-expect-error: the base URL is required
createClient({});

const body: CheckoutRequest = { network: "TRC20", currency: "USDT", amount: "100", type: "buy" };
// @ts-expect-error: an amount is a decimal string, never a number
const wrong: CheckoutRequest = { network: "TRC20", currency: "USDT", amount: 100 };
void wrong;

const start: StartCheckoutOptions = { idempotencyKey: "order-7", maxWaits: 5, maxWaitMs: 10_000 };
const read: RequestOptions = { signal: new AbortController().signal };

function handle(error: unknown): string {
  if (error instanceof ProofBffError) {
    const code: ErrorCode = error.code;
    const ours: ServiceErrorCode = "request_in_progress";
    const proofs: ProofErrorCode = "currency_not_allowed";
    const local: ClientErrorCode = "unexpected_response";
    const seconds: number | null = error.retryAfter;
    const id: string | null = error.requestId;
    return `${error.status} ${error.error} ${code} ${ours} ${proofs} ${local} ${seconds} ${id}`;
  }
  if (error instanceof ProofBffNetworkError) {
    return `${error.attempts} ${error.message}`;
  }
  return String(error);
}

async function checkout(host: HTMLElement): Promise<string> {
  try {
    const result: CheckoutResult = await client.startCheckout(body, start);
    const params: WidgetParams = result.params;
    const widget: ProofWidgetOptions = toWidgetOptions(params, host);
    // @ts-expect-error: the widget takes camelCase names
    void widget.widget_id;
    proofWidget.run(widget);
    const text: string = result.text;
    return `${text} ${result.replayed} ${result.waits} ${result.idempotencyKey}`;
  } catch (error) {
    return handle(error);
  }
}

async function statuses(id: string): Promise<string> {
  const transaction: Transaction = await client.getCheckout(id, read);
  const status: TransactionStatus | (string & {}) = transaction.status;
  const kyc: KycStatus = await client.getKycStatus(read);
  const final: readonly TerminalStatus[] = TERMINAL_STATUSES;
  return `${status} ${kyc.status} ${final.join()} ${isTerminalStatus(status)}`;
}

const watchOptions: WatchOptions = {
  pollIntervalMs: 5000,
  maxStreamFailures: 3,
  onError: (error) => void handle(error),
  onModeChange: (mode: WatchMode) => void mode,
};
const watch: WatchHandle = client.watchCheckout(
  "tx-1",
  (transaction: Transaction) => void transaction.status,
  watchOptions,
);
const mode: WatchMode = watch.mode;
watch.close();
// @ts-expect-error: the mode is read-only
watch.mode = "polling";

const fake: EventSourceLike = { readyState: 0, addEventListener() {}, close() {} };

export { checkout, statuses, fake, mode };

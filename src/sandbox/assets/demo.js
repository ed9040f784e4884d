// The sandbox demo: what a partner's frontend does around POST /start-checkout, through the
// browser client (clients/js), served beside this page as /sandbox/client.js.
import {
  ProofBffError,
  ProofBffNetworkError,
  createClient,
  toWidgetOptions,
} from "/sandbox/client.js";

const $ = (id) => document.getElementById(id);

function show(id, value) {
  $(id).textContent = value;
}

const bff = createClient({ baseUrl: window.location.origin });

// Proof's answer as the `proofWidget.run({...})` call it maps to. The page has no widget, so the
// host is shown as the expression a partner would write.
function widgetCall(params) {
  const options = toWidgetOptions(params, "document.getElementById('proof-widget')");
  const lines = Object.entries(options).map(([key, value]) =>
    key === "host" ? `  host: ${value},` : `  ${key}: ${JSON.stringify(value)},`);
  return `proofWidget.run({\n${lines.join("\n")}\n});`;
}

function describeError(error) {
  if (error instanceof ProofBffError) {
    const wait = error.retryAfter !== null ? `, retry after ${error.retryAfter} s` : "";
    return {
      status: `${error.status} ${error.error} / ${error.code} (request id ${error.requestId}${wait})`,
      detail: JSON.stringify(error.body ?? error.message, null, 2),
    };
  }
  if (error instanceof ProofBffNetworkError) {
    return {
      status: `No answer after ${error.attempts} attempts.`,
      detail: `${error.message}: ${String(error.cause)}`,
    };
  }
  return { status: "The call failed.", detail: String(error) };
}

// The transaction's live status, as a partner's page follows it after the widget.
let watch = null;

function followTransaction(merchantTransactionId) {
  if (watch) {
    watch.close();
  }
  $("tx-events").replaceChildren();
  show("tx-status", `Following ${merchantTransactionId}...`);
  let last = null;
  watch = bff.watchCheckout(merchantTransactionId, (tx) => {
    last = tx.status;
    const item = document.createElement("li");
    item.textContent = tx.status;
    $("tx-events").append(item);
    show("tx-status", `Status: ${tx.status}`);
  }, {
    // The stand-in moves a transaction along every two seconds.
    pollIntervalMs: 2000,
    onModeChange: (mode) => {
      if (mode === "polling") {
        show("tx-status", `Status: ${last ?? "unknown"} (the stream was refused: polling)`);
      }
    },
    onError: (error) => {
      show("tx-status", `Status unavailable: ${describeError(error).status}`);
    },
  });
}

async function login(event) {
  event.preventDefault();
  show("login-status", "Signing in...");
  // The sandbox's own dev login stands in for the partner's: not part of the client.
  const response = await fetch("/sandbox/login", {
    method: "POST",
    credentials: "include",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: $("user-id").value, email: $("email").value }),
  });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // shown as text below
  }
  if (response.ok && body) {
    show("login-status", `Signed in as ${body.user_id}.`);
  } else {
    show("login-status", `Sign-in refused (${response.status}): ${body ? body.message : text}`);
  }
}

// One Idempotency-Key per intent: a second submit of the same checkout while the first is still
// running (a double click) is the same intent, so it reuses the key and gets the first answer.
let inFlight = null;
let calls = 0;

function logCall(text) {
  const item = document.createElement("li");
  item.textContent = text;
  $("calls").append(item);
}

async function startCheckout(event) {
  event.preventDefault();
  const body = {
    network: $("network").value,
    currency: $("currency").value,
    amount: $("amount").value,
    type: $("type").value,
  };
  const intent = JSON.stringify(body);
  if (!inFlight || inFlight.intent !== intent) {
    inFlight = { intent, key: crypto.randomUUID(), pending: 0 };
  }
  const current = inFlight;
  current.pending += 1;
  calls += 1;
  const call = calls;
  show("result-status", `Calling /start-checkout (call ${call})...`);
  try {
    const result = await bff.startCheckout(body, { idempotencyKey: current.key });
    const how = result.replayed
      ? `replayed after waiting out ${result.waits} answers 409 request_in_progress`
      : "first answer";
    logCall(`call ${call}: 200 ${how}, ${result.params.merchant_transaction_id}`);
    show("result-status", `200 OK (request id ${result.requestId}; ${how})`);
    show("error", "");
    show("result", result.text);
    show("widget-call", widgetCall(result.params));
    followTransaction(result.params.merchant_transaction_id);
  } catch (error) {
    const { status, detail } = describeError(error);
    logCall(`call ${call}: ${status}`);
    show("result-status", status);
    show("result", "");
    show("widget-call", "");
    show("error", detail);
  } finally {
    current.pending -= 1;
    if (current.pending === 0 && inFlight === current) {
      inFlight = null;
    }
  }
}

$("login-form").addEventListener("submit", login);
$("checkout-form").addEventListener("submit", startCheckout);

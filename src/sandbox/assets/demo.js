// The sandbox demo: what a partner's frontend does around POST /start-checkout.
"use strict";

const $ = (id) => document.getElementById(id);

function show(id, value) {
  $(id).textContent = value;
}

async function readAnswer(response) {
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text), text };
  } catch {
    return { status: response.status, body: null, text };
  }
}

// Proof's snake_case answer mapped to the widget's camelCase options, values untouched.
function widgetCall(params) {
  const options = {
    host: "document.getElementById('proof-widget')",
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
  const lines = Object.entries(options).map(([key, value]) =>
    key === "host" ? `  host: ${value},` : `  ${key}: ${JSON.stringify(value)},`);
  return `proofWidget.run({\n${lines.join("\n")}\n});`;
}

// The transaction's live status, as a partner's page follows it after the widget: an EventSource
// on /checkout/{id}/events, closed at the terminal status.
let statusEvents = null;

function followTransaction(merchantTransactionId) {
  if (statusEvents) {
    statusEvents.close();
  }
  $("tx-events").replaceChildren();
  show("tx-status", `Following ${merchantTransactionId}...`);
  statusEvents = new EventSource(`/checkout/${encodeURIComponent(merchantTransactionId)}/events`,
    { withCredentials: true });
  statusEvents.addEventListener("status", (event) => {
    const tx = JSON.parse(event.data);
    const item = document.createElement("li");
    item.textContent = tx.status;
    $("tx-events").append(item);
    show("tx-status", `Status: ${tx.status}`);
    if (["completed", "failed", "cancelled"].includes(tx.status)) {
      statusEvents.close();
      statusEvents = null;
    }
  });
  statusEvents.addEventListener("error", () => {
    if (statusEvents && statusEvents.readyState === EventSource.CLOSED) {
      show("tx-status", "The status stream was refused.");
    }
  });
}

async function login(event) {
  event.preventDefault();
  show("login-status", "Signing in...");
  const response = await fetch("/sandbox/login", {
    method: "POST",
    credentials: "include",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: $("user-id").value, email: $("email").value }),
  });
  const answer = await readAnswer(response);
  if (response.ok) {
    show("login-status", `Signed in as ${answer.body.user_id}.`);
  } else {
    show("login-status", `Sign-in refused (${answer.status}): ${answer.body ? answer.body.message : answer.text}`);
  }
}

async function startCheckout(event) {
  event.preventDefault();
  show("result-status", "Calling /start-checkout...");
  show("result", "");
  show("widget-call", "");
  show("error", "");
  const body = {
    network: $("network").value,
    currency: $("currency").value,
    amount: $("amount").value,
    type: $("type").value,
  };
  let response;
  try {
    response = await fetch("/start-checkout", {
      method: "POST",
      credentials: "include",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (error) {
    show("result-status", "The request failed before any answer.");
    show("error", String(error));
    return;
  }
  const answer = await readAnswer(response);
  const requestId = response.headers.get("X-Request-Id");
  if (response.ok && answer.body) {
    show("result-status", `200 OK (request id ${requestId})`);
    show("result", answer.text);
    show("widget-call", widgetCall(answer.body));
    followTransaction(answer.body.merchant_transaction_id);
  } else {
    const retryAfter = response.headers.get("Retry-After");
    const wait = retryAfter ? `, retry after ${retryAfter} s` : "";
    show("result-status", `${answer.status} (request id ${requestId}${wait})`);
    show("error", answer.body ? JSON.stringify(answer.body, null, 2) : answer.text);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("checkout-form").addEventListener("submit", startCheckout);
});

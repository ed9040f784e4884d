// startCheckout, getCheckout, getKycStatus and the errors, against a recorded fetch.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ProofBffError,
  ProofBffNetworkError,
  createClient,
  toWidgetOptions,
} from "../dist/index.js";
import { answer, envelope, recordedFetch, recordedSleep } from "./fakes.mjs";

const PARAMS_TEXT =
  '{"merchant_transaction_id":"tx-1","widget_id":"w","address":"T9","signature":"v2:ab",' +
  '"init_token":"it","init_token_type":"sdk_partner_authorization","currency":"USDT",' +
  '"fix_currency":true,"network":"TRC20","fix_network":["TRC20"],"amount":"99.50",' +
  '"fix_amount":true,"fiat_currency":"EUR","type":"buy"}';
const BODY = { network: "TRC20", currency: "USDT", amount: "99.50" };
const QUOTED_UUID = /^"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$/;

function client(script, extra = {}) {
  const recorded = recordedFetch(script);
  const sleeper = recordedSleep();
  const bff = createClient({
    baseUrl: "https://bff.example.com/",
    fetch: recorded.fetch,
    EventSource: null,
    sleep: sleeper.sleep,
    ...extra,
  });
  return { bff, requests: recorded.requests, waits: sleeper.waits, remaining: recorded.remaining };
}

test("a checkout is posted with the session cookie, a fresh key and the CSRF header", async () => {
  const { bff, requests } = client([answer(200, PARAMS_TEXT, { "X-Request-Id": "r-1" })]);
  const result = await bff.startCheckout(BODY);
  assert.equal(requests.length, 1);
  const [sent] = requests;
  assert.equal(sent.url, "https://bff.example.com/start-checkout");
  assert.equal(sent.method, "POST");
  assert.equal(sent.credentials, "include");
  assert.equal(sent.headers["content-type"], "application/json");
  assert.equal(sent.headers["x-csrf"], "1");
  assert.match(sent.headers["idempotency-key"], QUOTED_UUID);
  assert.deepEqual(JSON.parse(sent.body), BODY);
  // Proof's answer untouched: the exact text, and its parse.
  assert.equal(result.text, PARAMS_TEXT);
  assert.deepEqual(result.params, JSON.parse(PARAMS_TEXT));
  assert.equal(result.requestId, "r-1");
  assert.equal(result.replayed, false);
  assert.equal(result.waits, 0);
  assert.equal(`"${result.idempotencyKey}"`, sent.headers["idempotency-key"]);
});

test("each call is its own intent: a new key every time", async () => {
  const { bff, requests } = client([answer(200, PARAMS_TEXT), answer(200, PARAMS_TEXT)]);
  await bff.startCheckout(BODY);
  await bff.startCheckout(BODY);
  assert.notEqual(requests[0].headers["idempotency-key"], requests[1].headers["idempotency-key"]);
});

test("a caller's key is sent as a quoted string, escaped, and refused when it cannot be one", async () => {
  const { bff, requests } = client([answer(200, PARAMS_TEXT)]);
  const result = await bff.startCheckout(BODY, { idempotencyKey: 'order-7 "a\\b"' });
  assert.equal(requests[0].headers["idempotency-key"], '"order-7 \\"a\\\\b\\""');
  assert.equal(result.idempotencyKey, 'order-7 "a\\b"');
  for (const bad of ["", "x".repeat(256), "caf\u00e9", "line\nbreak"]) {
    await assert.rejects(bff.startCheckout(BODY, { idempotencyKey: bad }), TypeError);
  }
  assert.equal(requests.length, 1, "nothing sent with a bad key");
});

test("409 request_in_progress is waited out per Retry-After, with the same key, until the replay", async () => {
  const { bff, requests, waits } = client([
    envelope(409, "conflict", "request_in_progress", { "Retry-After": "1" }),
    envelope(409, "conflict", "request_in_progress", { "Retry-After": "2" }),
    answer(200, PARAMS_TEXT, { "Idempotent-Replayed": "true" }),
  ]);
  const result = await bff.startCheckout(BODY);
  assert.equal(requests.length, 3);
  const keys = new Set(requests.map((r) => r.headers["idempotency-key"]));
  assert.equal(keys.size, 1, "one key across the waits");
  assert.equal(new Set(requests.map((r) => r.body)).size, 1, "the same body each time");
  assert.deepEqual(waits, [1000, 2000]);
  assert.equal(result.waits, 2);
  assert.equal(result.replayed, true);
  assert.equal(result.text, PARAMS_TEXT);
});

test("the waits are bounded in number and in total time", async () => {
  const busy = () => envelope(409, "conflict", "request_in_progress", { "Retry-After": "1" });
  const byCount = client([busy(), busy(), busy(), busy()]);
  const error = await byCount.bff.startCheckout(BODY, { maxWaits: 2 }).catch((e) => e);
  assert.ok(error instanceof ProofBffError);
  assert.equal(error.code, "request_in_progress");
  assert.equal(byCount.requests.length, 3, "two waits, then the third 409 is the answer");
  assert.deepEqual(byCount.waits, [1000, 1000]);

  const slow = () => envelope(409, "conflict", "request_in_progress", { "Retry-After": "5" });
  const byTime = client([slow(), slow(), slow()]);
  await assert.rejects(byTime.bff.startCheckout(BODY, { maxWaitMs: 8000 }), {
    code: "request_in_progress",
  });
  assert.deepEqual(byTime.waits, [5000], "a second 5 s wait would pass 8 s");
});

test("an abort during a wait stops the call with the signal's reason", async () => {
  const controller = new AbortController();
  const { bff, requests } = client([
    () => {
      queueMicrotask(() => controller.abort(new Error("user left")));
      return envelope(409, "conflict", "request_in_progress", { "Retry-After": "1" });
    },
    answer(200, PARAMS_TEXT),
  ]);
  await assert.rejects(bff.startCheckout(BODY, { signal: controller.signal }), /user left/);
  assert.equal(requests.length, 1);
});

test("a connection that fails without an answer is resent with the same key, a bounded number of times", async () => {
  const ok = client([new TypeError("Failed to fetch"), answer(200, PARAMS_TEXT)]);
  const result = await ok.bff.startCheckout(BODY);
  assert.equal(ok.requests.length, 2);
  assert.equal(ok.requests[0].headers["idempotency-key"], ok.requests[1].headers["idempotency-key"]);
  assert.equal(result.params.merchant_transaction_id, "tx-1");
  assert.deepEqual(ok.waits, [500]);

  const down = client([
    new TypeError("Failed to fetch"),
    new TypeError("Failed to fetch"),
    new TypeError("Failed to fetch"),
  ]);
  const error = await down.bff.startCheckout(BODY).catch((e) => e);
  assert.ok(error instanceof ProofBffNetworkError, String(error));
  assert.equal(error.attempts, 3);
  assert.ok(error.cause instanceof TypeError);
  assert.deepEqual(down.waits, [500, 1000]);
});

test("an error answer is parsed from the envelope, with Retry-After and X-Request-Id", async () => {
  const { bff } = client([
    envelope(429, "rate_limited", "per_user", { "Retry-After": "7", "X-Request-Id": "r-429" }),
  ]);
  const error = await bff.startCheckout(BODY).catch((e) => e);
  assert.ok(error instanceof ProofBffError);
  assert.ok(error instanceof Error);
  assert.equal(error.name, "ProofBffError");
  assert.equal(error.status, 429);
  assert.equal(error.error, "rate_limited");
  assert.equal(error.code, "per_user");
  assert.equal(error.message, "per_user happened");
  assert.equal(error.retryAfter, 7);
  assert.equal(error.requestId, "r-429");
});

test("Proof's own 4xx keeps Proof's code; an answer outside the envelope is unexpected_response", async () => {
  const { bff } = client([
    envelope(400, "invalid_request", "currency_not_allowed"),
    new Response("<html>Bad gateway</html>", {
      status: 502,
      headers: { "Content-Type": "text/html", "X-Request-Id": "req-502" },
    }),
    answer(200, "not json"),
  ]);
  await assert.rejects(bff.startCheckout(BODY), {
    status: 400,
    code: "currency_not_allowed",
    retryAfter: null,
  });
  await assert.rejects(bff.startCheckout(BODY), {
    name: "ProofBffError",
    status: 502,
    code: "unexpected_response",
    requestId: "req-502",
  });
  await assert.rejects(bff.startCheckout(BODY), { status: 200, code: "unexpected_response" });
});

test("no other error is retried", async () => {
  const { bff, requests, remaining } = client([
    envelope(503, "unavailable", "upstream_busy", { "Retry-After": "1" }),
    answer(200, PARAMS_TEXT),
  ]);
  await assert.rejects(bff.startCheckout(BODY), { code: "upstream_busy", retryAfter: 1 });
  assert.equal(requests.length, 1);
  assert.equal(remaining(), 1);
});

test("status reads send the session cookie and no custom header (no preflight)", async () => {
  const { bff, requests } = client([
    answer(200, { merchant_transaction_id: "a/b", status: "pending" }),
    answer(200, { partner_user_id: "u", status: "verified" }),
    envelope(404, "not_found", "not_found"),
  ]);
  const tx = await bff.getCheckout("a/b");
  assert.equal(tx.status, "pending");
  const kyc = await bff.getKycStatus();
  assert.equal(kyc.status, "verified");
  await assert.rejects(bff.getCheckout("gone"), { status: 404, code: "not_found" });
  assert.deepEqual(
    requests.map((r) => [r.method, r.url, r.credentials, Object.keys(r.headers)]),
    [
      ["GET", "https://bff.example.com/checkout/a%2Fb", "include", []],
      ["GET", "https://bff.example.com/kyc-status", "include", []],
      ["GET", "https://bff.example.com/checkout/gone", "include", []],
    ],
  );
});

test("toWidgetOptions maps every field the widget takes, values untouched", () => {
  const params = JSON.parse(PARAMS_TEXT);
  const host = { element: true };
  assert.deepEqual(toWidgetOptions(params, host), {
    host,
    widgetId: "w",
    address: "T9",
    signature: "v2:ab",
    initToken: "it",
    initTokenType: "sdk_partner_authorization",
    merchantTransactionId: "tx-1",
    currency: "USDT",
    network: "TRC20",
    amount: "99.50",
    fixCurrency: true,
    fixNetwork: ["TRC20"],
    fixAmount: true,
    fiatCurrency: "EUR",
    type: "buy",
  });
});

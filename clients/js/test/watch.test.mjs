// watchCheckout against a hand-driven EventSource and a recorded fetch.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ProofBffError, createClient } from "../dist/index.js";
import { FakeEventSource, answer, envelope, recordedFetch, recordedSleep, until } from "./fakes.mjs";

const tx = (status) => ({ merchant_transaction_id: "tx-1", status });

function watch(script, { EventSource = FakeEventSource, ...options } = {}) {
  FakeEventSource.instances = [];
  const recorded = recordedFetch(script);
  const sleeper = recordedSleep();
  const bff = createClient({
    baseUrl: "http://127.0.0.1:8080",
    fetch: recorded.fetch,
    EventSource,
    sleep: sleeper.sleep,
  });
  const seen = [];
  const modes = [];
  const errors = [];
  const handle = bff.watchCheckout("tx-1", (t) => seen.push(t.status), {
    onModeChange: (mode) => modes.push(mode),
    onError: (error) => errors.push(error),
    ...options,
  });
  return { handle, seen, modes, errors, requests: recorded.requests, waits: sleeper.waits };
}

test("the stream is followed with credentials and closed at the final status", () => {
  const { handle, seen, modes, requests } = watch([]);
  const [source] = FakeEventSource.instances;
  assert.equal(source.url, "http://127.0.0.1:8080/checkout/tx-1/events");
  assert.equal(source.withCredentials, true);
  assert.equal(handle.mode, "stream");
  source.open();
  source.status(tx("pending"));
  source.status(tx("processing"));
  assert.equal(source.closed, false);
  source.status(tx("completed"));
  assert.deepEqual(seen, ["pending", "processing", "completed"]);
  assert.equal(source.closed, true, "closed at the final status");
  assert.equal(handle.mode, "closed");
  assert.deepEqual(modes, ["closed"]);
  assert.equal(requests.length, 0, "no polling while the stream works");
});

for (const final of ["failed", "cancelled"]) {
  test(`${final} is a final status too`, () => {
    const { handle, seen } = watch([]);
    const [source] = FakeEventSource.instances;
    source.status(tx("pending"));
    source.status(tx(final));
    assert.deepEqual(seen, ["pending", final]);
    assert.equal(source.closed, true);
    assert.equal(handle.mode, "closed");
  });
}

test("a refused stream falls back to polling, which honours Retry-After and stops at the final status", async () => {
  const { handle, seen, modes, waits, requests } = watch(
    [
      envelope(429, "rate_limited", "per_user_status", { "Retry-After": "12" }),
      answer(200, tx("processing")),
      answer(200, tx("processing")),
      answer(200, tx("completed")),
    ],
    { pollIntervalMs: 5000 },
  );
  const [source] = FakeEventSource.instances;
  source.open();
  source.status(tx("pending"));
  // The browser's answer to a 429 too_many_streams: an error, and the source gives up.
  source.fail(true);
  assert.equal(handle.mode, "polling");
  await until(() => handle.mode === "closed", "the watch ends");
  assert.deepEqual(seen, ["pending", "processing", "completed"], "each status once");
  assert.deepEqual(modes, ["polling", "closed"]);
  assert.deepEqual(waits, [12000, 5000, 5000], "Retry-After first, then the interval");
  assert.equal(requests.length, 4);
  for (const request of requests) {
    assert.equal(request.url, "http://127.0.0.1:8080/checkout/tx-1");
    assert.equal(request.credentials, "include");
  }
  assert.equal(FakeEventSource.instances.length, 1, "no second stream");
});

test("errors in a row while the browser reconnects fall back to polling; a reconnection resets the count", async () => {
  const { handle, seen } = watch([answer(200, tx("completed"))], { maxStreamFailures: 3 });
  const [source] = FakeEventSource.instances;
  source.fail(false);
  source.fail(false);
  source.open();
  source.fail(false);
  source.fail(false);
  assert.equal(handle.mode, "stream", "four errors, but never three in a row");
  source.fail(false);
  assert.equal(source.closed, true);
  assert.equal(handle.mode, "polling");
  await until(() => handle.mode === "closed", "the poll finds the final status");
  assert.deepEqual(seen, ["completed"]);
});

test("without EventSource it polls from the start", async () => {
  const { handle, seen, modes } = watch(
    [answer(200, tx("pending")), answer(200, tx("completed"))],
    { EventSource: null },
  );
  assert.equal(handle.mode, "polling");
  await until(() => handle.mode === "closed", "the watch ends");
  assert.equal(FakeEventSource.instances.length, 0);
  assert.deepEqual(seen, ["pending", "completed"]);
  assert.deepEqual(modes, ["polling", "closed"]);
});

test("a poll answered 404 stops the watch and reports the error", async () => {
  const { handle, seen, errors } = watch([envelope(404, "not_found", "not_found")]);
  FakeEventSource.instances[0].fail(true);
  await until(() => handle.mode === "closed", "the watch ends");
  assert.deepEqual(seen, []);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof ProofBffError);
  assert.equal(errors[0].code, "not_found");
});

test("close() closes the stream, and stops polling between polls", async () => {
  const streaming = watch([]);
  const [source] = FakeEventSource.instances;
  streaming.handle.close();
  assert.equal(source.closed, true);
  source.status(tx("pending"));
  assert.deepEqual(streaming.seen, [], "nothing after close");
  assert.equal(streaming.handle.mode, "closed");

  const polling = watch(
    [answer(200, tx("pending")), answer(200, tx("processing")), answer(200, tx("completed"))],
    { EventSource: null },
  );
  await until(() => polling.seen.length === 1, "the first poll");
  polling.handle.close();
  for (let turn = 0; turn < 100; turn += 1) await new Promise((r) => setImmediate(r));
  assert.deepEqual(polling.seen, ["pending"]);
  assert.equal(polling.requests.length, 1, "no poll after close");
});

test("an abort signal closes the watch", () => {
  const controller = new AbortController();
  const { handle } = watch([], { signal: controller.signal });
  controller.abort();
  assert.equal(FakeEventSource.instances[0].closed, true);
  assert.equal(handle.mode, "closed");
});

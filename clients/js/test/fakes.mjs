// Recorded fakes for the client's tests: a fetch that answers from a script and keeps every
// request, an EventSource driven by hand, and a sleep that only records what was asked.

export function answer(status, body, headers = {}) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return new Response(status === 204 ? null : text, {
    status,
    headers: { "Content-Type": "application/json", "X-Request-Id": `req-${status}`, ...headers },
  });
}

export function envelope(status, error, code, headers = {}) {
  return answer(status, { error, code, message: `${code} happened` }, headers);
}

/** A fetch whose answers come from `script` in order (a Response, an Error to throw, or a function of the request). */
export function recordedFetch(script) {
  const requests = [];
  const queue = [...script];
  const fetch = async (url, init = {}) => {
    const headers = new Headers(init.headers);
    requests.push({
      url: String(url),
      method: init.method ?? "GET",
      headers: Object.fromEntries(headers.entries()),
      credentials: init.credentials,
      body: init.body,
    });
    if (init.signal?.aborted) throw init.signal.reason;
    if (queue.length === 0) throw new Error(`unexpected request ${init.method} ${url}`);
    let next = queue.shift();
    if (typeof next === "function") next = await next(init);
    if (next instanceof Error) throw next;
    return next;
  };
  return { fetch, requests, remaining: () => queue.length };
}

export function recordedSleep() {
  const waits = [];
  const sleep = async (ms, signal) => {
    if (signal?.aborted) throw signal.reason;
    waits.push(ms);
    await new Promise((resolve) => setImmediate(resolve));
    if (signal?.aborted) throw signal.reason;
  };
  return { sleep, waits };
}

export class FakeEventSource {
  static instances = [];
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;

  constructor(url, init = {}) {
    this.url = url;
    this.withCredentials = init.withCredentials === true;
    this.readyState = FakeEventSource.CONNECTING;
    this.listeners = new Map();
    this.closed = false;
    FakeEventSource.instances.push(this);
  }

  addEventListener(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(listener);
  }

  close() {
    this.closed = true;
    this.readyState = FakeEventSource.CLOSED;
  }

  dispatch(type, event = {}) {
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }

  open() {
    this.readyState = FakeEventSource.OPEN;
    this.dispatch("open");
  }

  status(transaction) {
    this.dispatch("status", { data: JSON.stringify(transaction), lastEventId: transaction.status });
  }

  /** A connection error; `giveUp` as the browser does for a refused stream (any answer but a 200). */
  fail(giveUp) {
    this.readyState = giveUp ? FakeEventSource.CLOSED : FakeEventSource.CONNECTING;
    this.dispatch("error");
  }
}

/** Waits until `ready()` holds, yielding to the event loop in between; bounded by turns, not time. */
export async function until(ready, what) {
  for (let turn = 0; turn < 10_000; turn += 1) {
    if (ready()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`never happened: ${what}`);
}

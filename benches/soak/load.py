"""The soak's load: what browsers do, against both replicas, with every outcome written down.

Each answer is one record (when it was sent and answered, which replica and which of its
processes, the route as proof-bff's metrics name it, the status and `code`, or how the
connection failed); each event stream one record more (the statuses it got and how it ended).
The invariants are checked against these records, never against the load's intentions.
"""

import asyncio
import itertools
import json
import random
import time

import httpio

ORIGIN = "https://app.soak.example"
CHECKOUT = "/start-checkout"
STATUS = "/checkout/{merchant_transaction_id}"
EVENTS = "/checkout/{merchant_transaction_id}/events"
KYC = "/kyc-status"
TERMINAL = ("completed", "failed", "cancelled")
ANSWER_TIMEOUT_S = 60  # far past proof.deadline_ms: an answer that never comes is an outcome
RETRIES = 4  # a browser's retries of one keyed checkout after 409, 5xx or a broken connection


class Replica:
    """One replica's address; `gen` counts its processes (a restart starts a new one)."""

    def __init__(self, index: int, port: int, metrics_port: int):
        self.index = index
        self.port = port
        self.metrics_port = metrics_port
        self.gen = 0


class Load:
    def __init__(self, replicas, idp, rng: random.Random, users: int, hot_users: int,
                 openers: int, held_per_replica: int):
        self.replicas = replicas
        self.idp = idp
        self.rng = rng
        self.users = [f"user-{i:03d}" for i in range(users)]
        self.hot_users = [f"hot-{i:02d}" for i in range(hot_users)]
        self.held_users = [f"held-{r.index}-{i}" for r in replicas for i in range(held_per_replica)]
        self.openers = openers
        self.held_per_replica = held_per_replica
        self.answers: list[dict] = []
        self.streams: list[dict] = []
        self.intents: dict[str, dict] = {}  # amount -> {"user", "key" or None}
        self.transactions: dict[str, list[str]] = {}  # user -> merchant_transaction_ids
        self.stopping = False
        self._amounts = itertools.count(1)
        self._keys = itertools.count(1)
        self._tasks: list[asyncio.Task] = []

    # ---- plumbing -------------------------------------------------------------------------

    def ip(self, user: str) -> str:
        number = sum(ord(c) * 31**i for i, c in enumerate(user)) % 65000 + 256
        return f"10.77.{number // 256}.{number % 256}"

    def headers(self, user: str | None, extra: dict | None = None) -> dict:
        headers = {"Host": "bff.soak.example", "Origin": ORIGIN, "Connection": "close"}
        if user is not None:
            headers["Cookie"] = f"session={self.idp.token(user)}"
            headers["X-Forwarded-For"] = self.ip(user)
        headers.update(extra or {})
        return headers

    def pick(self) -> Replica:
        return self.rng.choice(self.replicas)

    async def call(self, replica: Replica, method: str, path: str, route: str, headers: dict,
                   body: bytes = b"", drop: bool = False, kind: str = "") -> dict:
        """One request on a connection of its own; the record of how it went."""
        record = {"t": time.time(), "replica": replica.index, "gen": replica.gen, "route": route,
                  "kind": kind, "status": None, "code": None, "outcome": "answer", "t_end": None,
                  "user": None}
        self.answers.append(record)
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", replica.port, limit=httpio.MAX_HEAD_BYTES),
                ANSWER_TIMEOUT_S)
            if body:
                headers = dict(headers, **{"Content-Length": str(len(body))})
            head = f"{method} {path} HTTP/1.1\r\n" + "".join(
                f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
            if drop:
                # The browser goes away before the answer (a tab closed, a phone changing networks).
                record["outcome"] = "dropped"
                return record
            answer = await asyncio.wait_for(httpio.read_head(reader), ANSWER_TIMEOUT_S)
            if answer is None:
                record["outcome"] = "closed"
                return record
            payload = await asyncio.wait_for(httpio.read_body(reader, answer, True), ANSWER_TIMEOUT_S)
            if "chunked" in answer.header("transfer-encoding").lower():
                payload = httpio.dechunk(payload)
            record["status"] = answer.status
            record["body"] = payload
            record["retry_after"] = answer.header("retry-after")
            if answer.status >= 400 and payload[:1] == b"{":
                try:
                    record["code"] = json.loads(payload).get("code")
                except ValueError:
                    record["code"] = "<not JSON>"
        except ConnectionRefusedError:
            record["outcome"] = "refused"
        except asyncio.TimeoutError:
            record["outcome"] = "timeout"
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            record["outcome"] = "reset"
        finally:
            record["t_end"] = time.time()
            if writer is not None:
                writer.transport.abort()
        return record

    # ---- checkouts ------------------------------------------------------------------------

    def new_amount(self, user: str, key: str | None) -> str:
        # Unique per intent, and far from the stand-in's test amounts (all below 10).
        amount = str(100 + next(self._amounts))
        self.intents[amount] = {"user": user, "key": key}
        return amount

    async def checkout(self, user: str, amount: str, key: str | None, replica: Replica | None = None,
                       drop: bool = False, kind: str = "checkout") -> dict:
        body = json.dumps({"network": "TRC20", "currency": "USDT", "amount": amount}).encode()
        extra = {"Content-Type": "application/json"}
        if key is not None:
            extra["Idempotency-Key"] = f'"{key}"'
        record = await self.call(replica or self.pick(), "POST", CHECKOUT, CHECKOUT,
                                 self.headers(user, extra), body, drop=drop, kind=kind)
        record["user"] = user
        record["amount"] = amount
        if record["status"] == 200:
            try:
                tx = json.loads(record["body"])["merchant_transaction_id"]
                self.transactions.setdefault(user, []).append(tx)
            except (ValueError, KeyError, TypeError):
                pass
        record.pop("body", None)
        return record

    async def keyed(self, user: str, amount: str, key: str, first: dict | None = None) -> None:
        """A browser that retries the same key after 409, a 5xx or a broken connection."""
        record = first
        for attempt in range(RETRIES + 1):
            if record is not None:
                if record["status"] == 409:
                    await asyncio.sleep(float(record.get("retry_after") or 1))
                elif record["status"] in (502, 503, 504) or record["outcome"] != "answer":
                    await asyncio.sleep(0.5 + self.rng.random())
                else:
                    return
            if self.stopping or attempt == RETRIES:
                return
            record = await self.checkout(user, amount, key, kind="retry" if attempt else "keyed")

    async def user_loop(self, user: str, mean_gap_s: float) -> None:
        while not self.stopping:
            await asyncio.sleep(self.rng.expovariate(1 / mean_gap_s))
            if self.stopping:
                return
            roll = self.rng.random()
            key = f"k{next(self._keys)}-{self.rng.getrandbits(32):08x}"
            if roll < 0.50:
                await self.keyed(user, self.new_amount(user, key), key)
            elif roll < 0.65:
                await self.checkout(user, self.new_amount(user, None), None, kind="unkeyed")
            elif roll < 0.77:
                # A double click: the same key twice at once, to either replica.
                amount = self.new_amount(user, key)
                pair = await asyncio.gather(self.checkout(user, amount, key, kind="double"),
                                            self.checkout(user, amount, key, kind="double"))
                for record in pair:
                    if record["status"] == 409 or record["outcome"] != "answer":
                        await self.keyed(user, amount, key, record)
                        break
            elif roll < 0.89:
                # The connection dropped before the answer, then the browser retries the key.
                amount = self.new_amount(user, key)
                await self.checkout(user, amount, key, drop=True, kind="dropped")
                await asyncio.sleep(0.2 + self.rng.random() / 2)
                await self.keyed(user, amount, key)
            elif roll < 0.95:
                await self.bad_body(user)
            else:
                await self.bad_session()
            if self.rng.random() < 0.6:
                await self.status_read(user)

    async def hot_loop(self, user: str, gap_s: float) -> None:
        """A user who clicks far faster than the per-user limit allows."""
        while not self.stopping:
            key = f"h{next(self._keys)}"
            await self.checkout(user, self.new_amount(user, key), key, kind="hot")
            await asyncio.sleep(gap_s * (0.5 + self.rng.random()))

    async def bad_body(self, user: str) -> None:
        body = self.rng.choice([
            b'{"network":"TRC20","currency":"USDT"',
            b'{"network":"TRC20","currency":"USDT","amount":"-1"}',
            b'{"network":"TRC20","currency":"USDT","amount":"100","partner_user_id":"someone"}',
        ])
        record = await self.call(self.pick(), "POST", CHECKOUT, CHECKOUT,
                                 self.headers(user, {"Content-Type": "application/json"}), body,
                                 kind="bad_body")
        record.pop("body", None)

    async def bad_session(self) -> None:
        headers = self.headers(None, {"Content-Type": "application/json"})
        if self.rng.random() < 0.5:
            headers["Cookie"] = "session=eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl"
        body = b'{"network":"TRC20","currency":"USDT","amount":"100"}'
        record = await self.call(self.pick(), "POST", CHECKOUT, CHECKOUT, headers, body,
                                 kind="bad_session")
        record.pop("body", None)

    async def status_read(self, user: str) -> None:
        known = self.transactions.get(user)
        if known and self.rng.random() < 0.7:
            path, route = f"/checkout/{self.rng.choice(known[-5:])}", STATUS
        else:
            path, route = KYC, KYC
        record = await self.call(self.pick(), "GET", path, route, self.headers(user), kind="status")
        record.pop("body", None)

    # ---- event streams --------------------------------------------------------------------

    async def stream(self, user: str, tx: str, replica: Replica, last_id: str | None,
                     hold_s: float | None, kind: str) -> dict:
        """One EventSource connection; returns its record (statuses seen, how it ended)."""
        headers = self.headers(user, {"Accept": "text/event-stream"})
        if last_id:
            headers["Last-Event-ID"] = last_id
        record = {"t": time.time(), "replica": replica.index, "gen": replica.gen, "route": EVENTS,
                  "kind": kind, "status": None, "code": None, "outcome": "answer", "t_end": None,
                  "user": user}
        self.answers.append(record)
        stream = {"t": record["t"], "replica": replica.index, "gen": replica.gen, "user": user,
                  "tx": tx, "kind": kind, "events": [], "end": None, "t_end": None}
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", replica.port), ANSWER_TIMEOUT_S)
            writer.write((f"GET /checkout/{tx}/events HTTP/1.1\r\n" + "".join(
                f"{n}: {v}\r\n" for n, v in headers.items()) + "\r\n").encode())
            await writer.drain()
            head = await asyncio.wait_for(httpio.read_head(reader), ANSWER_TIMEOUT_S)
            if head is None:
                record["outcome"] = "closed"
                return stream
            record["status"] = head.status
            if head.status != 200:
                payload = await asyncio.wait_for(httpio.read_body(reader, head, True), ANSWER_TIMEOUT_S)
                if "chunked" in head.header("transfer-encoding").lower():
                    payload = httpio.dechunk(payload)
                if head.status >= 400 and payload[:1] == b"{":
                    try:
                        record["code"] = json.loads(payload).get("code")
                    except ValueError:
                        record["code"] = "<not JSON>"
                if head.status == 204:
                    self.streams.append(stream)
                    stream["end"] = "204"
                return stream
            self.streams.append(stream)
            chunked = "chunked" in head.header("transfer-encoding").lower()
            deadline = None if hold_s is None else time.monotonic() + hold_s
            stream["end"] = await self._read_events(reader, chunked, stream, deadline)
        except ConnectionRefusedError:
            record["outcome"] = "refused"
        except asyncio.TimeoutError:
            record["outcome"] = "timeout"
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            if record["status"] == 200:
                stream["end"] = "reset"
            else:
                record["outcome"] = "reset"
        finally:
            record["t_end"] = stream["t_end"] = time.time()
            if writer is not None:
                writer.transport.abort()
        return stream

    async def _read_events(self, reader, chunked: bool, stream: dict, deadline) -> str:
        """Reads events until the stream ends (`final`, `eof`) or the client leaves (`client`)."""
        buffer = b""
        while True:
            if self.stopping:
                return "client"
            timeout = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if timeout <= 0:
                return "client"
            try:
                if chunked:
                    size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
                    size = int(size_line.split(b";")[0].strip(), 16)
                    data = await reader.readexactly(size + 2)
                    if size == 0:
                        return "final" if stream["events"][-1:] and stream["events"][-1] in TERMINAL else "eof"
                    buffer += data[:-2]
                else:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                    if not data:
                        return "final" if stream["events"][-1:] and stream["events"][-1] in TERMINAL else "eof"
                    buffer += data
            except asyncio.TimeoutError:
                continue
            except asyncio.IncompleteReadError:
                return "final" if stream["events"][-1:] and stream["events"][-1] in TERMINAL else "eof"
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"id:"):
                        stream["events"].append(line[3:].strip().decode())

    async def opener_loop(self) -> None:
        """Tabs that open a transaction's stream, watch it a while, and close it."""
        while not self.stopping:
            await asyncio.sleep(0.5 + self.rng.random())
            users = [u for u in self.users if self.transactions.get(u)]
            if not users:
                continue
            user = self.rng.choice(users)
            tx = self.rng.choice(self.transactions[user][-3:])
            await self.stream(user, tx, self.pick(), None, 1 + 9 * self.rng.random(), "opened")

    async def held_loop(self, user: str, replica: Replica) -> None:
        """A tab open for the whole run on one replica: EventSource's reconnects, Last-Event-ID
        included; after a terminal status it starts the next checkout and follows that."""
        tx, last_id, backoff = None, None, 0.5
        while not self.stopping:
            if tx is None:
                key = f"held{next(self._keys)}"
                record = await self.checkout(user, self.new_amount(user, key), key, replica, kind="held")
                if record["status"] != 200:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5)
                    continue
                tx, last_id = self.transactions[user][-1], None
            stream = await self.stream(user, tx, replica, last_id, None, "held")
            if stream["events"]:
                last_id = stream["events"][-1]
            if stream["end"] in ("final", "204"):
                tx, backoff = None, 0.5
            elif stream["end"] in ("eof", "reset", None):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
            else:
                backoff = 0.5

    # ---- running --------------------------------------------------------------------------

    def start(self, user_gap_s: float, hot_gap_s: float) -> None:
        for user in self.users:
            self._tasks.append(asyncio.create_task(self.user_loop(user, user_gap_s)))
        for user in self.hot_users:
            self._tasks.append(asyncio.create_task(self.hot_loop(user, hot_gap_s)))
        for _ in range(self.openers):
            self._tasks.append(asyncio.create_task(self.opener_loop()))
        for replica in self.replicas:
            for i in range(self.held_per_replica):
                user = f"held-{replica.index}-{i}"
                self._tasks.append(asyncio.create_task(self.held_loop(user, replica)))

    async def stop(self, grace_s: float) -> None:
        """Stops starting anything; what is in flight gets `grace_s` to finish, then is cut."""
        self.stopping = True
        done, pending = await asyncio.wait(self._tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                raise task.exception()

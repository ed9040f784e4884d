"""Helpers of benches/slow_proof.sh: the part of the stand-in for Proof that nginx cannot play, a
sampler of the stand-in's requests in flight, and the browsers of the event-stream part.

  slow_proof.py websocket PORT
      Proof's WebSocket, `GET /ws?tx_id=<id>` (nginx checks the Bearer token and passes the upgrade
      on): accepts the upgrade, then stays silent, answering pings with pongs and a close with a
      close. Any number of sockets, on one asyncio loop.

  slow_proof.py sample PORT INTERVAL_MS OUT
      Asks nginx's stub_status on 127.0.0.1:PORT every INTERVAL_MS over one kept-alive connection
      and appends "<unix ms> <requests in flight> <open connections>" to OUT, the sampler's own
      request left out of both. Runs until killed.

  slow_proof.py streams SERVICE_PORT SESSIONS ORIGIN STREAMS CONNECTIONS SECONDS TIMEOUT_S
      Prints a line once it has read SESSIONS and waits for a line on standard input; then STREAMS
      browsers, the first STREAMS users of SESSIONS (lines "<jwt> <address>", from
      benches/compare/sessions.js), each opening `GET /checkout/tx-<user>/events` at once and
      waiting up to TIMEOUT_S for its first event; prints one JSON line about them. Then waits for
      a line on standard input, and runs checkouts with the streams held open: CONNECTIONS
      kept-alive connections, each sending `POST /start-checkout` (the body, Origin, session cookie
      and X-Forwarded-For of benches/compare/checkout.lua, rotating over every user) as soon as its
      last answer came, for SECONDS; answers still awaited then are waited for, up to TIMEOUT_S,
      so that every checkout sent is counted with its status. Prints one JSON line about them and
      about the streams (still open or ended), then holds the streams until standard input closes.
"""

import asyncio
import base64
import hashlib
import json
import math
import resource
import socket
import sys
import time

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHECKOUT_BODY = b'{"network":"TRC20","currency":"USDT","amount":"100"}'


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def headers_of(head):
    """The status line and the headers (names lower-cased) of an HTTP head."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


# --- Proof's WebSocket ---------------------------------------------------------------------------


def frame(opcode, payload=b""):
    """A server's frame: final, unmasked."""
    length = len(payload)
    if length < 126:
        head = bytes([0x80 | opcode, length])
    elif length < 65536:
        head = bytes([0x80 | opcode, 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + length.to_bytes(8, "big")
    return head + payload


async def serve_websocket(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, headers = headers_of(head)
        key = headers.get("sec-websocket-key", "")
        if (not request_line.startswith("GET /ws?tx_id=") or not key
                or headers.get("upgrade", "").lower() != "websocket"):
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + WEBSOCKET_GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await writer.drain()
        while True:
            first, second = await reader.readexactly(2)
            opcode = first & 0x0F
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(length)))
            if opcode == 0x9:  # ping
                writer.write(frame(0xA, payload))
                await writer.drain()
            elif opcode == 0x8:  # close
                writer.write(frame(0x8, payload[:2]))
                await writer.drain()
                return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def websocket(port):
    server = await asyncio.start_server(serve_websocket, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# --- The sampler ---------------------------------------------------------------------------------


def sample(port, interval_ms, out):
    request = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    connection = None
    with open(out, "a", buffering=1) as log:
        while True:
            started = time.monotonic()
            try:
                if connection is None:
                    connection = socket.create_connection(("127.0.0.1", port), timeout=2)
                    stream = connection.makefile("rb")
                connection.sendall(request)
                _, headers = headers_of(read_head(stream))
                text = stream.read(int(headers.get("content-length", "0"))).decode()
                # "Active connections: N", "... Reading: R Writing: W Waiting: K"; the sampler's own
                # request is one of the writing and of the active.
                words = text.split()
                active = int(words[words.index("connections:") + 1]) - 1
                writing = int(words[words.index("Writing:") + 1]) - 1
                log.write(f"{int(time.time() * 1000)} {writing} {active}\n")
            except (OSError, ValueError):
                connection = None
            time.sleep(max(0.0, interval_ms / 1000 - (time.monotonic() - started)))


def read_head(stream):
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        if not line:
            raise ConnectionError("closed")
        head += line
    return head


# --- Browsers: event streams and checkouts -------------------------------------------------------


def percentile(values, p):
    """The nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Stream:
    def __init__(self, user):
        self.user = user
        self.writer = None
        self.first_event_ms = None
        self.failure = None
        self.ended = False
        self.events = 0


async def open_stream(port, stream, token, address, timeout):
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        stream.writer = writer
        writer.write(
            f"GET /checkout/tx-{stream.user}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Cookie: session={token}\r\nX-Forwarded-For: {address}\r\n"
            f"Accept: text/event-stream\r\n\r\n".encode())
        left = timeout - (time.monotonic() - started)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), left)
        status_line, _ = headers_of(head)
        if " 200 " not in status_line + " ":
            stream.failure = "HTTP " + status_line.split(" ", 2)[1]
            writer.close()
            return
        left = timeout - (time.monotonic() - started)
        event = await asyncio.wait_for(reader.readuntil(b"\n\n"), left)
        if b"event: status" not in event:
            stream.failure = "no status event"
            writer.close()
            return
        stream.first_event_ms = (time.monotonic() - started) * 1000
        stream.events = 1
        asyncio.get_running_loop().create_task(follow(stream, reader))
    except asyncio.TimeoutError:
        stream.failure = f"no first event in {timeout:g} s"
        if stream.writer:
            stream.writer.close()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
        stream.failure = type(error).__name__
        if stream.writer:
            stream.writer.close()


async def follow(stream, reader):
    """Reads what else the stream sends (heartbeats, changes) until it ends."""
    try:
        while await reader.read(65536):
            pass
    except (OSError, asyncio.IncompleteReadError):
        pass
    stream.ended = True


class Checkouts:
    def __init__(self):
        self.latencies_ms = []
        self.statuses = {}
        self.errors = {}
        self.answered_in_window = 0


async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, headers = headers_of(head)
    status = status_line.split(" ", 2)[1]
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    keep_alive = headers.get("connection", "").lower() != "close"
    return status, keep_alive


async def checkout_connection(port, requests, first, checkouts, stop_sending_at, give_up_at):
    """One connection's checkouts, one after the other, until stop_sending_at; a connection that
    broke is opened anew."""
    reader = writer = None
    n = first
    while time.monotonic() < stop_sending_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = requests[n % len(requests)]
            n += 1
            started = time.monotonic()
            writer.write(request)
            status, keep_alive = await asyncio.wait_for(
                read_answer(reader), max(0.001, give_up_at - started))
            done = time.monotonic()
            checkouts.latencies_ms.append((done - started) * 1000)
            checkouts.statuses[status] = checkouts.statuses.get(status, 0) + 1
            if done <= stop_sending_at:
                checkouts.answered_in_window += 1
            if not keep_alive:
                writer.close()
                writer = None
        except asyncio.TimeoutError:
            checkouts.errors["no answer in time"] = checkouts.errors.get("no answer in time", 0) + 1
            break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            name = type(error).__name__
            checkouts.errors[name] = checkouts.errors.get(name, 0) + 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def browsers(port, sessions_file, origin, count, connections, seconds, timeout):
    sessions = []
    with open(sessions_file) as f:
        for line in f:
            token, address = line.split()
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            sessions.append((claims["sub"], token, address))
    assert len(sessions) >= count, f"{count} streams need as many users, {len(sessions)} in {sessions_file}"

    # Ready: the caller starts counting CPU time from here.
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)

    # The streams, all at once.
    streams = [Stream(user) for user, _, _ in sessions[:count]]
    started = time.monotonic()
    await asyncio.gather(*(open_stream(port, stream, token, address, timeout)
                           for stream, (_, token, address) in zip(streams, sessions)))
    firsts = [s.first_event_ms for s in streams if s.first_event_ms is not None]
    failures = {}
    for s in streams:
        if s.failure:
            failures[s.failure] = failures.get(s.failure, 0) + 1
    print(json.dumps({
        "open": len(firsts), "failed": failures,
        "first_event_ms": {"p50": percentile(firsts, 50), "p99": percentile(firsts, 99),
                           "max": max(firsts) if firsts else None},
        "seconds": round(time.monotonic() - started, 2),
    }), flush=True)

    await loop.run_in_executor(None, sys.stdin.readline)

    # The checkouts, with the streams open.
    requests = [
        (f"POST /start-checkout HTTP/1.1\r\nHost: 127.0.0.1\r\n"
         f"Content-Type: application/json\r\nOrigin: {origin}\r\nCookie: session={token}\r\n"
         f"X-Forwarded-For: {address}\r\nContent-Length: {len(CHECKOUT_BODY)}\r\n\r\n").encode()
        + CHECKOUT_BODY
        for _, token, address in sessions
    ]
    checkouts = Checkouts()
    if connections > 0:
        started = time.monotonic()
        stop_sending_at = started + seconds
        give_up_at = stop_sending_at + timeout
        await asyncio.gather(*(
            checkout_connection(port, requests, i * len(requests) // connections, checkouts,
                                stop_sending_at, give_up_at)
            for i in range(connections)))
        finished = time.monotonic() - started
    else:
        finished = 0
    latencies = checkouts.latencies_ms
    print(json.dumps({
        "sent": len(latencies) + sum(checkouts.errors.values()),
        "answered": len(latencies),
        "statuses": checkouts.statuses,
        "errors": checkouts.errors,
        "requests_per_s": round(checkouts.answered_in_window / seconds, 1) if seconds else 0,
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
        "seconds": round(finished, 2),
        "streams_still_open": sum(1 for s in streams if s.first_event_ms is not None and not s.ended),
        "streams_ended": sum(1 for s in streams if s.first_event_ms is not None and s.ended),
    }), flush=True)

    # Hold the streams until the caller has measured.
    await loop.run_in_executor(None, sys.stdin.read)
    for s in streams:
        if s.writer:
            s.writer.close()


def main():
    raise_fd_limit()
    role = sys.argv[1]
    if role == "websocket":
        asyncio.run(websocket(int(sys.argv[2])))
    elif role == "sample":
        sample(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif role == "streams":
        port, sessions_file, origin, count, connections, seconds, timeout = sys.argv[2:9]
        asyncio.run(browsers(int(port), sessions_file, origin, int(count), int(connections),
                             float(seconds), float(timeout)))
    else:
        sys.exit(f"unknown role {role}")


if __name__ == "__main__":
    main()

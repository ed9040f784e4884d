"""Open event streams held by one instance: a stand-in for Proof and 10,000 browsers.

Used by benches/streams.sh. Two roles:

  streams.py proof PORT
      A minimal Proof on loopback: every transaction `tx-<n>` belongs to `bench-user-<n>` and stays
      `pending`; the WebSocket is refused (404), so each watcher falls back to polling, which the
      benchmark sets far apart. Keep-alive HTTP/1.1, answers only what the service asks.

  streams.py browsers SERVICE_PORT COUNT SECRET
      COUNT browsers, one user each, each opening GET /checkout/tx-<n>/events with an HS256 session
      and reading the first event; then holds them all open while the caller measures, and reports
      how many were refused. Prints "open N" once all are open and waits for stdin to close.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import resource
import sys
import time


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- Proof -------------------------------------------------------------------------------------


async def serve_proof_connection(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            _, target, _ = request_line.split(" ", 2)
            path = target.split("?", 1)[0]
            prefix = "/widget/transactions/tx-"
            if path.startswith(prefix):
                n = path[len(prefix):]
                body = json.dumps({
                    "merchant_transaction_id": f"tx-{n}",
                    "partner_user_id": f"bench-user-{n}",
                    "type": "buy",
                    "status": "pending",
                    "currency": "USDT",
                    "network": "TRC20",
                    "crypto_amount": "100",
                    "fiat_currency": "EUR",
                    "fiat_amount": "92.00",
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                }, separators=(",", ":")).encode()
                status = b"200 OK"
            else:
                body = b'{"error":"not_found","code":"not_found","message":"no such route"}'
                status = b"404 Not Found"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def proof(port):
    server = await asyncio.start_server(serve_proof_connection, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# --- Browsers ----------------------------------------------------------------------------------


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_token(secret, user):
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({
        "sub": user, "email": f"{user}@example.com", "iat": now, "exp": now + 3600,
    }).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return f"{header}.{claims}.{signature}"


async def open_stream(port, n, secret):
    """Returns the open connection after its first event, or the status line it was refused with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    token = session_token(secret, f"bench-user-{n}")
    writer.write(
        f"GET /checkout/tx-{n}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: session={token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode()
    if " 200 " not in status:
        writer.close()
        return None, status
    # The first event: the current status.
    await reader.readuntil(b"\n\n")
    return (reader, writer), status


async def browsers(port, count, secret):
    opened = []
    refused = {}
    batch = 250
    for start in range(0, count, batch):
        results = await asyncio.gather(
            *(open_stream(port, n, secret) for n in range(start, min(start + batch, count))),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception):
                refused[type(result).__name__] = refused.get(type(result).__name__, 0) + 1
            elif result[0] is None:
                refused[result[1]] = refused.get(result[1], 0) + 1
            else:
                opened.append(result[0])
    print(f"open {len(opened)} refused {refused}", flush=True)
    # Hold every stream open until the caller has measured (it closes our stdin).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for _, writer in opened:
        writer.close()


def main():
    raise_fd_limit()
    role = sys.argv[1]
    if role == "proof":
        asyncio.run(proof(int(sys.argv[2])))
    elif role == "browsers":
        asyncio.run(browsers(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
    else:
        sys.exit(f"unknown role {role}")


if __name__ == "__main__":
    main()

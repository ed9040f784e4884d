"""The two stand-ins that the soak makes fail: a proxy in front of Proof, and an identity provider.

FaultProxy sits between the replicas and proof-stand-in. Each request is handled by the mode in
force when it arrives:

- `pass`: forwarded, and the answer returned unchanged (a WebSocket upgrade is piped both ways);
- `502`: answered at once with Proof's 502 `upstream_error`/`upstream_unavailable`;
- `stall`: read, then never answered, until the replica gives up and closes the connection;
- `reset`: read, then the connection is reset (TCP RST); entering this mode also resets every
  WebSocket being piped, as when Proof's edge drops its connections.

Every `POST /widget/session` it receives is recorded with the replica's `X-Request-Id` (one per
checkout, the same for its retries), the user and amount, and what the replica was answered.

IdentityProvider serves a JWKS over HTTP (`/jwks.json`) and signs session tokens with
benches/jwks_token.py. It can go down (its listener closed: connections refused) and come back
with a rotated key set: a new signing key added, the oldest key dropped, so tokens signed before
the previous rotation stop verifying, as with a real provider's rotation.
"""

import asyncio
import json
import os
import subprocess
import sys
import time

import httpio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import jwks_token  # noqa: E402  (benches/jwks_token.py)

MODES = ("pass", "502", "stall", "reset")
STALL_LIMIT_S = 120

PROOF_502 = json.dumps(
    {"error": "upstream_error", "code": "upstream_unavailable", "message": "Bad gateway (soak fault)"}
).encode()


class FaultProxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.sessions: list[dict] = []  # one record per POST /widget/session received
        self.by_mode: dict[str, int] = {mode: 0 for mode in MODES}
        self._pipes: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", port, limit=httpio.MAX_HEAD_BYTES
        )

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode
        if mode == "reset":
            for writer in list(self._pipes):
                httpio.reset(writer)

    async def _connection(self, reader, writer) -> None:
        upstream = None
        try:
            while True:
                head = await httpio.read_head(reader)
                if head is None:
                    return
                body = await httpio.read_body(reader, head, until_close=False)
                mode = self.mode
                self.by_mode[mode] += 1
                record = None
                if head.first[0] == "POST" and head.first[1].split("?")[0] == "/widget/session":
                    record = self._record(head, body, mode)
                if mode == "502":
                    writer.write(
                        httpio.response(
                            502, "Bad Gateway", PROOF_502,
                            {"Content-Type": "application/json", "X-Request-Id": "soak-proxy"},
                        )
                    )
                    await writer.drain()
                    if record is not None:
                        record["answered"] = 502
                        record["t_end"] = time.time()
                    continue
                if mode == "stall":
                    # Holds the request unanswered; the replica's timeout closes the connection.
                    try:
                        await asyncio.wait_for(reader.read(), STALL_LIMIT_S)
                    except asyncio.TimeoutError:
                        pass
                    return
                if mode == "reset":
                    httpio.reset(writer)
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection(
                        "127.0.0.1", self.upstream_port, limit=httpio.MAX_HEAD_BYTES
                    )
                up_reader, up_writer = upstream
                up_writer.write(head.raw + body)
                await up_writer.drain()
                answer = await httpio.read_head(up_reader)
                if answer is None:
                    raise ConnectionError("Proof's stand-in closed the connection")
                if answer.status == 101:
                    writer.write(answer.raw)
                    await writer.drain()
                    await self._pipe(reader, writer, up_reader, up_writer)
                    return
                no_body = head.first[0] == "HEAD" or answer.status in (204, 304)
                answer_body = b"" if no_body else await httpio.read_body(up_reader, answer, True)
                writer.write(answer.raw + answer_body)
                await writer.drain()
                if record is not None:
                    record["answered"] = answer.status
                    record["t_end"] = time.time()
                if answer.header("connection").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass  # the replica or the stand-in went away, or the soak is over
        finally:
            if upstream is not None:
                upstream[1].transport.abort()
            writer.transport.abort()

    def _record(self, head, body: bytes, mode: str) -> dict:
        try:
            fields = json.loads(body)
        except ValueError:
            fields = {}
        record = {
            "t": time.time(),
            "request_id": head.header("x-request-id"),
            "user": fields.get("partner_user_id"),
            "amount": fields.get("amount"),
            "mode": mode,
            "answered": None,
            "t_end": None,
        }
        self.sessions.append(record)
        return record

    async def _pipe(self, reader, writer, up_reader, up_writer) -> None:
        self._pipes.add(writer)

        async def copy(source, sink):
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            self._pipes.discard(writer)


class IdentityProvider:
    def __init__(self, work_dir: str, issuer: str, audience: str):
        self.work_dir = work_dir
        self.issuer = issuer
        self.audience = audience
        self.keys: list[tuple[str, str, dict]] = []  # (kid, pem path, public JWK), oldest first
        self.fetches = 0
        self.up = False
        self._server = None
        self._port = 0
        self._tokens: dict[tuple[str, str], str] = {}
        self.rotate()

    @property
    def signing_kid(self) -> str:
        return self.keys[-1][0]

    def rotate(self) -> None:
        """Adds a new signing key and keeps only it and the one before."""
        kid = f"soak-{len(self.keys) + 1}-{os.urandom(3).hex()}"
        pem = os.path.join(self.work_dir, f"{kid}.pem")
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem],
            check=True, capture_output=True,
        )
        self.keys.append((kid, pem, jwks_token.public_jwk(pem, kid)))
        self.keys = self.keys[-2:]

    def token(self, user: str) -> str:
        """The user's session token, signed with the current key (made once per user and key)."""
        kid, pem, _ = self.keys[-1]
        cached = self._tokens.get((user, kid))
        if cached is None:
            claims = {
                "iss": self.issuer, "aud": self.audience, "sub": user,
                "email": f"{user}@soak.example", "exp": int(time.time()) + 86400,
            }
            cached = jwks_token.token(pem, kid, claims)
            self._tokens[(user, kid)] = cached
        return cached

    async def start(self, port: int) -> None:
        self._port = port
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", port)
        self.up = True

    async def go_down(self) -> None:
        self.up = False
        if self._server:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _connection(self, reader, writer) -> None:
        try:
            head = await httpio.read_head(reader)
            if head is None:
                return
            if head.first[1].split("?")[0] == "/jwks.json":
                self.fetches += 1
                body = json.dumps({"keys": [jwk for _, _, jwk in self.keys]}).encode()
                writer.write(httpio.response(200, "OK", body, {
                    "Content-Type": "application/json", "Cache-Control": "max-age=300",
                    "Connection": "close",
                }))
            else:
                writer.write(httpio.response(404, "Not Found", b"", {"Connection": "close"}))
            await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

"""HTTP/1.1 framing on asyncio streams, just what the soak's proxy, identity provider and load need.

Reading is strict about lengths (Content-Length, chunked, or until the connection closes) and
keeps the bytes as they came, so the proxy can pass them on unchanged.
"""

import asyncio
import socket
import struct

MAX_HEAD_BYTES = 64 * 1024


class Head:
    """A request or response head: the first line's words and the headers (names lower-cased)."""

    def __init__(self, raw: bytes):
        self.raw = raw
        lines = raw.decode("latin-1").split("\r\n")
        self.first = lines[0].split(" ", 2)
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    @property
    def status(self) -> int:
        return int(self.first[1])


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next head, or None when the peer closed before sending one."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise ConnectionError("head too large") from None
    return Head(raw)


async def read_body(reader: asyncio.StreamReader, head: Head, until_close: bool) -> bytes:
    """The body's bytes as sent (chunked framing kept). `until_close`: no length means the body
    runs to the end of the connection (a response); otherwise it means no body (a request)."""
    if "chunked" in head.header("transfer-encoding").lower():
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # Trailers (none expected), then the closing blank line.
                while True:
                    line = await reader.readuntil(b"\r\n")
                    parts.append(line)
                    if line == b"\r\n":
                        return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
    length = head.header("content-length")
    if length:
        return await reader.readexactly(int(length))
    if until_close:
        return await reader.read()
    return b""


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked body."""
    out, at = [], 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[end + 2 : end + 2 + size])
        at = end + 2 + size + 2


def reset(writer: asyncio.StreamWriter) -> None:
    """Closes the connection with a TCP reset instead of an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def response(status: int, reason: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await writer.wait_closed()
    except (OSError, asyncio.CancelledError):
        pass

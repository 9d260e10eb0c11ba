"""A request written byte for byte on a socket: headers that are not UTF-8, any percent-escape in the path.

aiohttp's client refuses to send such requests (it encodes header values and normalizes URLs), and
they are exactly what these tests need to send.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return orjson.loads(self.body)


async def send(port: int, method: str, target: bytes, headers: Headers = (), body: bytes = b"") -> Answer:
    """One request on its own connection (``Connection: close``), read to the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
        lines += [name + b": " + value for name, value in headers]
        if body or method not in ("GET", "HEAD"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), f"no answer: {raw[:200]!r}"
    answer_headers = {}
    for line in header_lines:
        name, _, value = line.decode("latin-1").partition(":")
        answer_headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), answer_headers, _unchunk(rest) if _chunked(answer_headers) else rest)


def _chunked(headers: dict[str, str]) -> bool:
    return headers.get("transfer-encoding", "").lower() == "chunked"


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)

"""Slow clients over real sockets: heads and bodies that dribble are cut off, others are served, connections capped."""

import asyncio
import contextlib
import time

import aiohttp
import pytest

from jobsvc.http import server

from .conftest import auth

pytestmark = pytest.mark.slow  # every test runs the real server on a loopback socket

SLOW_SOCKETS = 20
HEAD = b"GET /api/v4/version HTTP/1.1\r\nHost: test\r\nPRIVATE-TOKEN: glpat-test-root-0000000\r\n\r\n"


@contextlib.asynccontextmanager
async def serving(config, **limits):
    for name, value in limits.items():
        setattr(config, name, value)
    sockets = server.bind("127.0.0.1", 0)
    try:
        async with server.running(config, sockets) as guard:
            yield guard, sockets[0].getsockname()[1]
    finally:
        for sock in sockets:
            sock.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return status, await reader.readexactly(length)


async def dribble(writer: asyncio.StreamWriter, data: bytes, pause: float) -> None:
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause)


async def until_closed(port: int, data: bytes, pause: float, prefix: bytes = b"") -> tuple[float, bytes]:
    """Connect, send ``prefix`` at once and then ``data`` one byte per ``pause``; seconds until EOF, and what came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(prefix)
    sender = asyncio.create_task(dribble(writer, data, pause))
    try:
        received = await asyncio.wait_for(reader.read(), timeout=10)
    except ConnectionResetError:
        received = b""
    elapsed = time.monotonic() - started
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    writer.close()
    return elapsed, received


async def test_slow_heads_are_cut_off_while_a_normal_client_is_served(config):
    async with serving(config, header_timeout=0.5, body_timeout=0.5, max_connections=0) as (guard, port):
        slow = [asyncio.create_task(until_closed(port, HEAD, 0.2)) for _ in range(SLOW_SOCKETS)]
        latencies = []
        async with aiohttp.ClientSession() as session:
            while not all(task.done() for task in slow):
                started = time.monotonic()
                async with session.get(f"http://127.0.0.1:{port}/api/v4/version", headers=auth("root")) as resp:
                    assert resp.status == 200
                    await resp.read()
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.02)
        results = [task.result() for task in slow]
    for elapsed, received in results:
        assert 0.45 <= elapsed < 1.5
        assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    # served all along, never held up to a slow head's 0.5 s timeout (bounds loose enough for a loaded machine)
    assert len(latencies) >= 5
    assert max(latencies) < 0.45, latencies
    assert guard.open == 0


async def test_a_stalled_body_is_cut_off_and_a_slow_but_steady_one_is_not(config):
    async with serving(config, header_timeout=0.5, body_timeout=0.5) as (_, port):
        head = (
            b"POST /api/v4/runners/verify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 30\r\n\r\n"
        )
        elapsed, received = await until_closed(port, b"", 0, prefix=head + b'{"token":')
        assert 0.45 <= elapsed < 1.5 and received == b""
        # one byte every 0.2 s: longer than the body timeout in all, never idle that long
        body = b'{"token": "glrt-none-000000"}'
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head.replace(b"30", str(len(body)).encode()))
        started = time.monotonic()
        await dribble(writer, body, 0.05)
        status, _ = await read_response(reader)
        assert status == 403 and time.monotonic() - started > 1.0
        writer.close()


async def test_a_kept_alive_connection_may_idle_longer_than_the_head_timeout(config):
    async with serving(config, header_timeout=0.3, keepalive_timeout=5) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):
            writer.write(HEAD)
            assert (await read_response(reader))[0] == 200
            await asyncio.sleep(0.6)
        writer.close()


async def test_keepalive_timeout_closes_an_idle_connection(config):
    async with serving(config, header_timeout=0, keepalive_timeout=0.4) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD)
        assert (await read_response(reader))[0] == 200
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        assert 0.3 <= time.monotonic() - started < 1.5
        writer.close()


async def test_connections_past_the_cap_get_503_and_are_closed(config):
    async with serving(config, header_timeout=5, max_connections=3) as (guard, port):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert guard.open == 3
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        status, body = await read_response(reader)
        assert (status, body) == (503, b'{"message":"503 Service Unavailable"}')
        assert await asyncio.wait_for(reader.read(), timeout=2) == b""
        writer.close()
        # the held ones still work, and once one is gone a new connection is served
        held_reader, held_writer = held.pop()
        held_writer.write(HEAD)
        assert (await read_response(held_reader))[0] == 200
        held_writer.close()
        await asyncio.sleep(0.1)
        assert guard.open == 2
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD)
        assert (await read_response(reader))[0] == 200
        writer.close()
        for _, other in held:
            other.close()


@pytest.mark.parametrize("limit", ["header_timeout", "body_timeout"])
async def test_zero_turns_a_timeout_off(config, limit):
    async with serving(config, **{"header_timeout": 0.3, "body_timeout": 0.3, limit: 0}) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if limit == "header_timeout":
            writer.write(HEAD[:10])
        else:
            writer.write(b"POST /api/v4/runners/verify HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(), timeout=0.8)
        writer.close()


async def test_the_rest_of_an_unread_body_is_not_taken_for_a_slow_head(config):
    """A handler that answers without reading the body: the rest of it is aiohttp's lingering close, not a head."""
    async with serving(config, header_timeout=0.3, body_timeout=5) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /api/v4/jobs/1/artifacts HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n")
        writer.write(b"Content-Length: 40\r\n\r\nfirst")
        assert (await read_response(reader))[0] == 400
        sender = asyncio.create_task(dribble(writer, b"x" * 10, 0.1))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(100), timeout=0.9)
        await sender
        writer.write(b"y" * 25)  # the end of the body ends aiohttp's lingering read, and the connection lives on
        writer.write(HEAD)
        assert (await read_response(reader))[0] == 200
        writer.close()

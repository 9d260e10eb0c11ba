"""The listening side of ``jobsvc serve``: sockets bound first, slow clients cut off, connections capped.

aiohttp reads a request head and body with no time limit, and keeps an idle
connection for an hour by default. ``ConnectionGuard`` is the protocol factory
handed to ``loop.create_server``; it puts a ``_Watched`` proxy in front of each
of aiohttp's per-connection handlers, which enforces (``Limits``):

- ``header_timeout``: the whole request head must have arrived this long after
  the connection opened, or, on a kept-alive connection, after the first byte
  that follows the previous response (the idle gap before it is aiohttp's
  ``keepalive_timeout``, which also closes a connection whose next head is
  still incomplete when it runs out). The client gets ``408`` and the
  connection is closed.
- ``body_timeout``: while a request body is incomplete and the server is ready
  for more, some byte of it must arrive this often; otherwise the connection is
  dropped (the handler sees the client go away). Time the server itself spends
  not reading (a full buffer) does not count, nor does a handler's own work
  once the body is complete.
- ``max_connections``: a connection past the cap is answered ``503`` with
  ``Connection: close`` and closed before any of it is read.

Stopping (``running`` ending, on SIGTERM or SIGINT): the listening sockets close first, so no new
connection is taken; idle keep-alive connections close; requests in flight (a download being sent,
an upload being received) get ``shutdown_timeout`` seconds to finish, and are then cancelled and their
connections closed, a client seeing its body cut short of Content-Length; ``abort_all`` (a second
signal) cuts them off at once. Only then does the app's cleanup run: the background tasks stop and the
database closes, after its write in flight.

A request's head has arrived when aiohttp calls the app's request handler
(``web.Server.request_handler``, wrapped here), and its response is complete
when aiohttp's per-request task ends; both are aiohttp's public surfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from jobsvc.http.accesslog import AccessLogger, JsonAccessLogger, flush_json_lines, http_logger
from jobsvc.http.app import create_app
from jobsvc.settings import Config

log = logging.getLogger(__name__)

BACKLOG = 128
_CLOSE_GRACE = 1.0  # seconds a closing connection may take to flush before it is aborted
_EARLY = 0.001  # a timer that fires this close to its deadline counts as on time
_CUT_OFF = 0.001  # seconds: the grace period of --shutdown-timeout 0


def _canned(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nX-Content-Type-Options: nosniff\r\n"
    )
    if status.startswith("503"):
        head += "Retry-After: 1\r\n"
    return head.encode("ascii") + b"\r\n" + body


REQUEST_TIMEOUT = _canned("408 Request Timeout", b'{"message":"408 Request Timeout"}')
UNAVAILABLE = _canned("503 Service Unavailable", b'{"message":"503 Service Unavailable"}')


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 20
    body_timeout: float = 60
    max_connections: int = 500

    @classmethod
    def of(cls, config: Config) -> Limits:
        return cls(config.header_timeout, config.body_timeout, config.max_connections)


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address of ``host``, bound now: a taken port fails before any data is read.

    Raises OSError (socket.gaierror for a host that does not resolve).
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # the same free port on every address
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ConnectionGuard:
    """The protocol factory for ``loop.create_server``: aiohttp's handler behind a watchdog, with a cap."""

    def __init__(self, server: web.Server, limits: Limits) -> None:
        self.limits = limits
        self.open = 0  # connections counted against max_connections
        self._server = server
        self._watched: dict[Any, _Watched] = {}
        app_handler = server.request_handler

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            watched = self._watched.get(request.protocol)
            if watched is not None:
                watched.request_started(request)
            return await app_handler(request)

        server.request_handler = handler  # aiohttp's handlers copy it when they are made, so before any connection

    def __call__(self) -> asyncio.Protocol:
        inner = self._server()
        watched = _Watched(self, inner)
        self._watched[inner] = watched
        return watched

    def in_flight(self) -> int:
        """Requests whose response is not complete yet."""
        return sum(1 for watched in self._watched.values() if watched.state == _BODY)

    def abort_all(self) -> int:
        """Drop every connection now (a second stop signal); returns how many there were.

        A request's task is cancelled first: aborting the transport alone would leave a sendfile in
        flight waiting for a socket the loop no longer watches."""
        watched = [w for w in self._watched.values() if w.transport is not None]
        for connection in watched:
            if connection.task is not None and connection.state == _BODY:
                connection.task.cancel()
        for connection in watched:
            if connection.transport is not None:
                connection.transport.abort()
        return len(watched)

    def _admit(self) -> bool:
        cap = self.limits.max_connections
        if cap and self.open >= cap:
            return False
        self.open += 1
        return True

    def _release(self, watched: _Watched, admitted: bool) -> None:
        self._watched.pop(watched.inner, None)
        if admitted:
            self.open -= 1


_IDLE, _HEAD, _BODY = "idle", "head", "body"


class _Watched(asyncio.Protocol):
    """One connection: forwards everything to aiohttp's handler and cuts it off when the client is too slow."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self.guard, self.inner = guard, inner
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.closing = False  # answered 408 or 503 and half-closed: what the client still sends is dropped
        self.state = _HEAD
        self.last_byte = self.loop.time()
        self.payload: Any = None
        self.task: asyncio.Task[Any] | None = None  # the request's, while one is in flight
        # One timer per connection, re-armed lazily: a request moves ``deadline`` and leaves the timer be, so
        # keep-alive traffic makes no timer of its own (the timer, when early, re-arms for the deadline)
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0
        self.on_deadline: Any = None

    # --- asyncio.Protocol, forwarded ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.admitted = self.guard._admit()
        if not self.admitted:
            log.warning("refused a connection from %s: %d open, the cap", self._peer(), self.guard.open)
            self._answer_and_close(UNAVAILABLE)
            return
        self.inner.connection_made(transport)
        self._start_head(self.loop.time())

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        now = self.loop.time()
        self.last_byte = now
        if self.state == _IDLE and (self.payload is None or self.payload.is_eof()):
            self._start_head(now)  # (bytes of a body the handler did not read are aiohttp's lingering close)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.closing:
            return None  # the transport closes
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.state = _IDLE
        self.payload = None
        self.guard._release(self, self.admitted)
        if self.admitted:
            self.inner.connection_lost(exc)
        self.transport = None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    # --- request life cycle, from the guard's handler ---

    def request_started(self, request: web.BaseRequest) -> None:
        self._cancel_timer()
        self.state = _BODY
        self.payload = request.content
        task = self.task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(self._response_done)
        if self.guard.limits.body_timeout and not self.payload.is_eof():
            self._schedule(self.last_byte + self.guard.limits.body_timeout, self._check_body)

    def _response_done(self, task: asyncio.Task[Any]) -> None:
        if self.task is task:
            self.task = None
        if self.transport is None or self.state != _BODY:
            return
        self._cancel_timer()
        self.state = _IDLE

    # --- timers ---

    def _start_head(self, now: float) -> None:
        self.state = _HEAD
        if self.guard.limits.header_timeout:
            self._schedule(now + self.guard.limits.header_timeout, self._head_late)

    def _head_late(self) -> None:
        if self.state != _HEAD or self.transport is None:
            return
        log.info(
            "closed a connection from %s: no request head within %gs", self._peer(), self.guard.limits.header_timeout
        )
        self._answer_and_close(REQUEST_TIMEOUT)

    def _check_body(self) -> None:
        if self.state != _BODY or self.transport is None or self.payload is None or self.payload.is_eof():
            return
        now, limit = self.loop.time(), self.guard.limits.body_timeout
        if not self.transport.is_reading():  # the server is not taking bytes: not the client's delay
            self.last_byte = now
        if now - self.last_byte < limit:
            self._schedule(self.last_byte + limit, self._check_body)
            return
        log.info("closed a connection from %s: request body idle for %gs", self._peer(), limit)
        self.transport.abort()

    def _schedule(self, when: float, callback: Any) -> None:
        self.deadline, self.on_deadline = when, callback
        if self.timer is not None and self.timer.when() <= when:
            return  # it fires first, and re-arms for this deadline
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer = None
        if self.on_deadline is None:
            return
        if self.loop.time() + _EARLY < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._fire)
            return
        callback, self.on_deadline = self.on_deadline, None
        callback()

    def _cancel_timer(self) -> None:
        """Disarm: nothing is due; an armed timer fires harmlessly (cheaper than cancelling it each request)."""
        self.on_deadline = None

    def _stop_timer(self) -> None:
        self.on_deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _answer_and_close(self, response: bytes) -> None:
        """Send a canned response, then EOF; close once the client closes too, or abort after a grace period.

        Closing at once while the client's bytes sit unread would make the kernel send a reset, which a
        client may see before the response.
        """
        transport = self.transport
        if transport is None:
            return
        self.closing = True
        self._stop_timer()
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()
        self.loop.call_later(_CLOSE_GRACE, transport.abort)  # a client that neither reads nor closes

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "?"


class GuardedSite(web.BaseSite):
    """A site on a socket bound beforehand, serving through a ConnectionGuard."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, guard: ConnectionGuard) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._sock = sock
        self._guard = guard

    @property
    def name(self) -> str:
        return url_of(self._sock)

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._guard, sock=self._sock, backlog=BACKLOG)


@contextlib.asynccontextmanager
async def running(config: Config, sockets: list[socket.socket]) -> AsyncIterator[ConnectionGuard]:
    """The app served on ``sockets`` with the configured limits, until the block ends."""
    app = create_app(config)
    runner = web.AppRunner(
        app,
        # aiohttp reads 0 as "no limit"; here 0 means "cut off at once"
        shutdown_timeout=max(config.shutdown_timeout, _CUT_OFF),
        keepalive_timeout=config.keepalive_timeout,
        access_log_class=JsonAccessLogger if config.access_log_format == "json" else AccessLogger,
        logger=http_logger(),
        access_log=logging.getLogger("jobsvc.access") if config.access_log else None,
    )
    await runner.setup()
    guard: ConnectionGuard | None = None
    try:
        assert runner.server is not None
        guard = ConnectionGuard(runner.server, Limits.of(config))
        for sock in sockets:
            await GuardedSite(runner, sock, guard).start()
            log.debug("serving %s with %s, keep-alive %gs", url_of(sock), guard.limits, config.keepalive_timeout)
        yield guard
    finally:
        in_flight = guard.in_flight() if guard is not None else 0
        if in_flight:
            log.info(
                "stopping: no new connections; %d request(s) in flight get %gs to finish",
                in_flight,
                config.shutdown_timeout,
            )
        await runner.cleanup()
        flush_json_lines()
        log.info("stopped: connections closed, database closed")

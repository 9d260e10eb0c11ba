"""The two ways a test runs jobsvc: the real server in a thread of the test's process, or ``jobsvc serve`` as a child.

Both serve through ``jobsvc.http.server`` (the connection guard, the limits), so a test meets what a
client of ``jobsvc serve`` meets. The thread runs an event loop of its own: a sync test can call it,
and an async test's loop (pytest-aiohttp, pytest-asyncio) never sees it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from jobsvc.settings import SETTINGS, Config

START_TIMEOUT = 60.0  # seconds a start may take (loading a large fixture included)
STOP_TIMEOUT = 30.0


class ServerError(RuntimeError):
    """The server did not start, or did not stop cleanly; the message has what it said."""


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class ThreadServer:
    """``jobsvc.http.server.running`` on a socket bound now, in a thread with its own event loop."""

    def __init__(self, config: Config, timeout: float = START_TIMEOUT) -> None:
        from jobsvc.http import server

        self.config = config
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        sockets = server.bind(config.host, config.port)  # here: a taken port raises in the test, not the thread
        self.url = server.url_of(sockets[0])
        self._thread = threading.Thread(target=self._run, args=(sockets,), name=f"jobsvc {self.url}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise ServerError(f"jobsvc did not start within {timeout:g}s")
        if self._error is not None:
            self._thread.join()
            raise ServerError(f"jobsvc did not start: {_described(self._error)}") from self._error

    def _run(self, sockets: list) -> None:
        try:
            asyncio.run(self._serve(sockets))
        except BaseException as exc:  # kept for the test's thread: nothing may escape to threading.excepthook
            self._error = exc
        finally:
            for sock in sockets:
                sock.close()
            self._ready.set()

    async def _serve(self, sockets: list) -> None:
        from jobsvc.http import server

        async with server.running(self.config, sockets):
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        """Stop serving and wait for the thread; a failure while running or closing is raised here."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed meanwhile: the thread is ending by itself
                pass
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise ServerError(f"jobsvc at {self.url} did not stop within {STOP_TIMEOUT:g}s")
        error, self._error = self._error, None
        if error is not None and self._loop is not None:
            raise ServerError(f"jobsvc at {self.url} failed: {_described(error)}") from error


def serve_arguments(config: Config) -> list[str]:
    """``jobsvc serve``'s flags for ``config``: every setting that differs from its default, the fixtures repeated."""
    args = []
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        if setting.name == "fixtures":
            args += [arg for path in value for arg in ("--fixtures", str(path))]
        elif setting.name in ("host", "port", "data_dir") or value != setting.default:
            if isinstance(value, bool):
                args += [setting.flag] if value else []
            else:
                args += [setting.flag, str(value)]
    return args


class ChildServer:
    """``python -m jobsvc serve`` in a child process, its output in a file; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, config: Config, log_path: Path, timeout: float = START_TIMEOUT) -> None:
        self.config = config
        self.log_path = log_path
        # the child takes its settings from the flags only: the test's own JOBSVC_* variables stay out
        env = {name: value for name, value in os.environ.items() if not name.startswith("JOBSVC_")}
        command = [sys.executable, "-m", "jobsvc", "serve", *serve_arguments(config)]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self.url = self._wait_listening(timeout)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.output().splitlines():
                if " listening on " in line:
                    return line.split(" listening on ", 1)[1].split()[0]
            if self.proc.poll() is not None:
                raise ServerError(f"jobsvc serve exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self._end()
                raise ServerError(f"jobsvc serve did not listen within {timeout:g}s:\n{self.output()}")
            time.sleep(0.02)

    def _end(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop(self) -> None:
        """SIGTERM, as an operator stops it; anything but a clean exit 0 is raised with the output."""
        code = self._end()
        if code != 0:
            raise ServerError(f"jobsvc serve at {self.url} exited with {code}:\n{self.output()}")

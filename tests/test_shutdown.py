"""Stopping ``jobsvc serve`` with a download in flight: no new connections, the download finishes within the
grace period or is cut off after it (at once on a second signal), and the database is closed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from jobsvc.storage.db import Database
from tests.conftest import RunningServer

TOKEN = "glpat-shutdown-test-0000"
LOG = bytes(range(256)) * (48 * 4096)  # 48 MiB: far more than the socket buffers hold


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shutdown-fixture")
    (folder / "big.log").write_bytes(LOG)
    data = {
        "users": [{"username": "root", "admin": True, "tokens": [{"token": TOKEN}]}],
        "projects": [
            {
                "path": "ops/big",
                "id": 1,
                "pipelines": [{"id": 1, "jobs": [{"id": 1, "name": "build", "status": "success",
                                                    "trace_file": "big.log"}]}],
            }
        ],
    }  # fmt: skip
    path = folder / "fixture.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def serve(tmp_path: Path, fixture_file: Path, grace: str) -> RunningServer:
    data_dir = tmp_path / "var"
    return RunningServer(["--data-dir", str(data_dir), "--fixtures", str(fixture_file), "--shutdown-timeout", grace])


class Download:
    """``GET`` of the big log on a raw socket, read when the test likes: until then the socket buffers (a few
    MiB; the receive side grows only as the client reads) hold what the server sent, and the rest waits."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.sock = socket.socket()
        self.sock.settimeout(20)
        self.sock.connect(self.address)
        request = f"GET /api/v4/projects/1/jobs/1/trace HTTP/1.1\r\nHost: t\r\nPRIVATE-TOKEN: {TOKEN}\r\n\r\n"
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        head, self.body = head.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        self.length = int(length[0].split(b":")[1])
        assert self.length == len(LOG)

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def read_rest(self) -> bytes:
        """Everything until the server closes or the body is complete."""
        while len(self.body) < self.length:
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not chunk:
                break
            self.body += chunk
        self.sock.close()
        return self.body


def refuses_connections(address: tuple[str, int], within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def exit_code(server: RunningServer, within: float) -> int:
    try:
        return server.proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"jobsvc serve still running {within}s after the signal")


def closed_cleanly(tmp_path: Path) -> bool:
    """SQLite removes the write-ahead log when its last connection closes."""
    database = tmp_path / "var" / "jobsvc.sqlite3"
    return database.is_file() and not database.with_name("jobsvc.sqlite3-wal").exists()


@contextlib.contextmanager
def download_in_flight(tmp_path: Path, fixture_file: Path, grace: str) -> Iterator[tuple[RunningServer, Download]]:
    """A server with the big log's download under way; stopped (and the socket closed) at the end."""
    server = serve(tmp_path, fixture_file, grace)
    try:
        with Download(server.url) as download:
            yield server, download
    finally:
        server.stop()


@pytest.mark.slow
def test_a_download_in_flight_finishes_after_sigterm(tmp_path, fixture_file):
    with download_in_flight(tmp_path, fixture_file, "30") as (server, download):
        server.proc.send_signal(signal.SIGTERM)
        assert refuses_connections(download.address)  # stopped listening while the download goes on
        assert server.proc.poll() is None
        body = download.read_rest()
        assert hashlib.sha256(body).digest() == hashlib.sha256(LOG).digest()
        assert exit_code(server, 15) == 0
        assert closed_cleanly(tmp_path)
        assert "1 request(s) in flight get 30s to finish" in server.proc.stderr.read()


@pytest.mark.slow
def test_a_download_still_running_after_the_grace_period_is_cut_off(tmp_path, fixture_file):
    with download_in_flight(tmp_path, fixture_file, "1") as (server, download):  # not read: the rest must wait
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert exit_code(server, 15) == 0
        assert 1 <= time.monotonic() - started < 10
        assert len(download.read_rest()) < len(LOG)  # the client sees its body cut short of Content-Length
        assert closed_cleanly(tmp_path)


@pytest.mark.slow
def test_a_second_signal_cuts_off_at_once(tmp_path, fixture_file):
    with download_in_flight(tmp_path, fixture_file, "120") as (server, download):
        server.proc.send_signal(signal.SIGTERM)
        assert refuses_connections(download.address)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        assert exit_code(server, 15) == 0
        assert time.monotonic() - started < 10
        assert len(download.read_rest()) < len(LOG)
        assert closed_cleanly(tmp_path)
        assert "stopping now: cut off 1 connection(s)" in server.proc.stderr.read()


async def test_closing_the_database_waits_for_the_write_in_flight(tmp_path):
    db = Database(tmp_path / "jobsvc.sqlite3")
    await db.open()
    begun = asyncio.Event()

    async def work(tx):
        await tx.execute("INSERT INTO instance_settings (key, value) VALUES ('probe', 'committed')")
        begun.set()
        await asyncio.sleep(0.2)

    writing = asyncio.create_task(db.write(work))
    await begun.wait()
    await db.close()
    assert writing.done() and writing.exception() is None
    await db.open()
    try:
        assert await db.fetchone("SELECT value FROM instance_settings WHERE key = 'probe'") == {"value": "committed"}
    finally:
        await db.close()

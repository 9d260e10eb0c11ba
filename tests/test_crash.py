"""kill -9 in the middle of an upload: the next start finds a consistent database and no leftovers."""

import signal
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import RUNNING_JOB_TOKEN, RunningServer, world

pytestmark = pytest.mark.slow  # `jobsvc serve` child processes, killed with SIGKILL and started again


def test_kill_9_mid_upload(tmp_path):
    fixture = tmp_path / "world.yaml"
    fixture.write_text(yaml.safe_dump(world(), sort_keys=False))
    args = ["--data-dir", str(tmp_path / "var"), "--fixtures", str(fixture)]
    server = RunningServer(args)
    try:
        url = urlsplit(server.url)
        boundary = "jobsvcboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="artifacts.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
            conn.sendall(
                (
                    f"POST /api/v4/jobs/11/artifacts HTTP/1.1\r\nHost: {url.netloc}\r\n"
                    f"JOB-TOKEN: {RUNNING_JOB_TOKEN}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                    f"Content-Length: {len(head) + 10 * 1024 * 1024}\r\n\r\n"
                ).encode()
                + head
            )
            conn.sendall(b"x" * (1024 * 1024))
            parts = tmp_path / "var" / "tmp"
            for _ in range(200):
                if any(parts.glob("*.part")):
                    break
                time.sleep(0.02)
            assert any(parts.glob("*.part")), "the upload never reached the disk"
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=10)
    finally:
        server.stop()

    db = sqlite3.connect(tmp_path / "var" / "jobsvc.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("SELECT count(*) FROM job_artifacts WHERE job_id = 11").fetchone()[0] == 0
    finally:
        db.close()

    again = RunningServer(args)
    try:
        assert list((tmp_path / "var" / "tmp").glob("*.part")) == []
        request = urllib.request.Request(f"{again.url}/api/v4/job", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
    finally:
        assert again.stop() == 0


def _patch(url: str, start: int, data: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/api/v4/jobs/11/trace",
        data=data,
        method="PATCH",
        headers={"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": f"{start}-{start + len(data)}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers["Range"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Range", "")


def test_kill_9_mid_log_append_keeps_every_acknowledged_byte(tmp_path):
    fixture = tmp_path / "world.yaml"
    fixture.write_text(yaml.safe_dump(world(), sort_keys=False))
    args = ["--data-dir", str(tmp_path / "var"), "--fixtures", str(fixture)]
    acknowledged = b"started\n"
    in_flight = b"y" * (3 * 1024 * 1024)
    server = RunningServer(args)
    try:
        for index in range(20):
            chunk = f"line {index}\n".encode() * 100
            assert _patch(server.url, len(acknowledged), chunk)[0] == 202
            acknowledged += chunk
        url = urlsplit(server.url)
        with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
            conn.sendall(
                (
                    f"PATCH /api/v4/jobs/11/trace HTTP/1.1\r\nHost: {url.netloc}\r\nJOB-TOKEN: {RUNNING_JOB_TOKEN}\r\n"
                    f"Content-Range: {len(acknowledged)}-{len(acknowledged) + len(in_flight)}\r\n"
                    f"Content-Length: {len(in_flight)}\r\n\r\n"
                ).encode()
                + in_flight[: len(in_flight) // 2]
            )
            log = tmp_path / "var" / "traces" / "11.log"
            for _ in range(200):  # part of the body is on the log (unacknowledged)
                if log.stat().st_size > len(acknowledged):
                    break
                time.sleep(0.02)
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=10)
    finally:
        server.stop()

    text = (tmp_path / "var" / "traces" / "11.log").read_bytes()
    assert text.startswith(acknowledged)
    assert in_flight.startswith(text[len(acknowledged) :])  # a torn tail is still a prefix of what was sent
    db = sqlite3.connect(tmp_path / "var" / "jobsvc.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()

    again = RunningServer(args)
    try:
        # the runner resends from its own offset: 416 names the real length, and it continues from there
        status, header = _patch(again.url, len(acknowledged), in_flight)
        size = int(header.split("-")[1])
        assert (status, size) in ((202, len(acknowledged) + len(in_flight)), (416, len(text)))
        if status == 416:
            assert _patch(again.url, size, in_flight[size - len(acknowledged) :])[0] == 202
        assert (tmp_path / "var" / "traces" / "11.log").read_bytes() == acknowledged + in_flight
    finally:
        assert again.stop() == 0

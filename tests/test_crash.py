"""kill -9 in the middle of an upload: the next start finds a consistent database and no leftovers."""

import signal
import socket
import sqlite3
import time
import urllib.request
from urllib.parse import urlsplit

import yaml

from tests.conftest import RUNNING_JOB_TOKEN, RunningServer, world


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

"""No write after a job ends: a log append or an upload whose body arrives after the job finished, was
canceled or erased is refused (GitLab's 403) and leaves nothing behind; log bodies are never held whole."""

from __future__ import annotations

import asyncio
import os
import socket
import tracemalloc

import pytest

from jobsvc.http.keys import DB, STORE
from tests.conftest import RUNNING_JOB_TOKEN, auth

BOUNDARY = "jobsvcboundary"
NOT_RUNNING = {"message": "403 Forbidden - Job is not running"}
ERASED = {"message": "403 Forbidden - Job has been erased!"}


async def slow(first: bytes, rest: bytes, gate: asyncio.Event):
    yield first
    await gate.wait()
    yield rest


async def until(predicate, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.01)):
        if await predicate():
            return True
        await asyncio.sleep(0.01)
    return False


def start_patch(client, gate: asyncio.Event, first=b"late ", rest=b"bytes\n"):
    headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "8-19"}
    task = asyncio.ensure_future(client.patch("/api/v4/jobs/11/trace", data=slow(first, rest, gate), headers=headers))
    return task


async def patch_waiting(client) -> None:
    """The PATCH was authenticated and waits for the rest of its body, holding the job's log."""
    lock = client.server.app[STORE].trace_lock(11)

    async def held():
        return lock.locked()

    await until(held, 1.0)  # without the lock (the bug) there is nothing to wait for


def start_upload(client, gate: asyncio.Event):
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="artifacts.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    body = slow(head + b"a" * 300_000, b"b" * 1000 + tail, gate)
    return asyncio.ensure_future(client.post("/api/v4/jobs/11/artifacts", data=body, headers=headers))


async def upload_waiting(client, config) -> None:
    async def part():
        return any((config.data_dir / "tmp").glob("*.part"))

    assert await until(part), "the upload never reached the disk"


async def status_of(client, job_id=11) -> str:
    return (await (await client.get(f"/api/v4/projects/1/jobs/{job_id}", headers=auth("root"))).json())["status"]


async def rows(client, sql: str, params=()) -> list:
    """The rows as tuples, read through the app's own database (SQLite or PostgreSQL)."""
    return [tuple(row.values()) for row in await client.app[DB].fetchall(sql, params)]


async def cancel(client) -> None:
    assert (await client.post("/api/v4/projects/1/jobs/11/cancel", headers=auth("root"))).status == 201
    assert await status_of(client) == "canceled"


@pytest.mark.directory_store
class TestLatePatch:
    async def test_after_success(self, client, config):
        gate = asyncio.Event()
        patch = start_patch(client, gate)
        await patch_waiting(client)
        put = asyncio.ensure_future(
            client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
        )

        async def finished():
            return await status_of(client) == "success"

        assert await until(finished)
        gate.set()
        resp = await patch
        assert resp.status == 403 and await resp.json() == NOT_RUNNING
        assert resp.headers["Job-Status"] == "success"
        assert (await put).status == 200
        log = config.data_dir / "traces" / "11.log"
        assert log.read_bytes() == b"started\n"
        [(size,)] = await rows(client, "SELECT size FROM job_artifacts WHERE job_id = 11 AND file_type = 'trace'")
        assert size == log.stat().st_size

    async def test_after_cancel(self, client, config):
        gate = asyncio.Event()
        patch = start_patch(client, gate)
        await patch_waiting(client)
        await cancel(client)
        gate.set()
        resp = await patch
        assert resp.status == 403 and await resp.json() == NOT_RUNNING
        assert resp.headers["Job-Status"] == "canceled"
        assert (config.data_dir / "traces" / "11.log").read_bytes() == b"started\n"

    async def test_after_erase(self, client, config):
        gate = asyncio.Event()
        patch = start_patch(client, gate)
        await patch_waiting(client)
        await cancel(client)
        erase = asyncio.ensure_future(client.post("/api/v4/projects/1/jobs/11/erase", headers=auth("root")))
        await asyncio.sleep(0.1)
        gate.set()
        resp = await patch
        assert resp.status == 403
        assert (await erase).status == 201
        assert not (config.data_dir / "traces" / "11.log").exists()
        trace = await client.get("/api/v4/projects/1/jobs/11/trace", headers=auth("root"))
        assert trace.status == 200 and await trace.read() == b""

    async def test_client_gone_mid_body_leaves_the_log_as_it_was(self, client, config):
        host, port = client.server.host, client.server.port
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(
                (
                    f"PATCH /api/v4/jobs/11/trace HTTP/1.1\r\nHost: {host}:{port}\r\nJOB-TOKEN: {RUNNING_JOB_TOKEN}\r\n"
                    f"Content-Range: 8-{8 + 2_000_000}\r\nContent-Length: 2000000\r\n\r\n"
                ).encode()
                + b"x" * 700_000
            )
            await asyncio.sleep(0.2)
        lock = client.server.app[STORE].trace_lock(11)

        async def released():
            return not lock.locked()

        assert await until(released)
        log = config.data_dir / "traces" / "11.log"
        assert log.read_bytes() == b"started\n"
        resp = await client.patch(
            "/api/v4/jobs/11/trace", data=b"next\n", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "8-12"}
        )
        assert resp.status == 202 and log.read_bytes() == b"started\nnext\n"


@pytest.mark.directory_store
class TestLateUpload:
    async def test_after_erase(self, client, config):
        gate = asyncio.Event()
        upload = start_upload(client, gate)
        await upload_waiting(client, config)
        await cancel(client)
        assert (await client.post("/api/v4/projects/1/jobs/11/erase", headers=auth("root"))).status == 201
        gate.set()
        resp = await upload
        assert resp.status == 403 and await resp.json() == ERASED
        assert await rows(client, "SELECT * FROM job_artifacts WHERE job_id = 11") == []
        assert not list((config.data_dir / "artifacts").glob("11/*"))
        assert not list((config.data_dir / "tmp").glob("*.part"))
        download = await client.get("/api/v4/projects/1/jobs/11/artifacts", headers=auth("root"))
        assert download.status == 404

    async def test_after_success(self, client, config):
        gate = asyncio.Event()
        upload = start_upload(client, gate)
        await upload_waiting(client, config)
        put = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
        assert put.status == 200
        gate.set()
        resp = await upload
        assert resp.status == 403 and await resp.json() == NOT_RUNNING
        assert resp.headers["Job-Status"] == "success"
        assert await rows(client, "SELECT file_type FROM job_artifacts WHERE job_id = 11") == [("trace",)]
        assert not list((config.data_dir / "artifacts").glob("11/*"))


@pytest.mark.directory_store
async def test_a_big_log_body_is_streamed_not_held(client, config):
    """A 32 MiB PATCH: the server's Python allocations stay a few MiB (it used to hold the body twice)."""
    chunk = b"x" * (256 * 1024)
    count = 128

    async def body():
        for _ in range(count):
            yield chunk

    headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": f"8-{8 + count * len(chunk)}"}
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        resp = await client.patch("/api/v4/jobs/11/trace", data=body(), headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status == 202 and resp.headers["Range"] == f"0-{8 + count * len(chunk)}"
    assert (config.data_dir / "traces" / "11.log").stat().st_size == 8 + count * len(chunk)
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1024 / 1024:.1f} MiB"


@pytest.mark.directory_store
async def test_an_acknowledged_append_was_fdatasynced_first(client, config, monkeypatch):
    from jobsvc.storage import store as storemod

    log = config.data_dir / "traces" / "11.log"
    synced: list[int] = []

    def datasync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        os.fdatasync(fd)

    monkeypatch.setattr(storemod, "_datasync", datasync)
    headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "8-12"}
    resp = await client.patch("/api/v4/jobs/11/trace", data=b"more\n", headers=headers)
    assert resp.status == 202 and synced == [13] and log.stat().st_size == 13
    resp = await client.patch("/api/v4/jobs/11/trace", data=b"more\n", headers=headers)
    assert resp.status == 416 and synced == [13]  # nothing written, nothing to sync


@pytest.mark.directory_store
async def test_a_late_upload_of_a_file_already_there_is_refused_too(client, config):
    """Not the idempotent 201: the job has ended."""
    import aiohttp

    def form():
        data = aiohttp.FormData()
        data.add_field("file", b"same bytes", filename="artifacts.zip", content_type="application/zip")
        return data

    url = "/api/v4/jobs/11/artifacts"
    assert (await client.post(url, data=form(), headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})).status == 201
    assert (await client.post(url, data=form(), headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})).status == 201
    gate = asyncio.Event()
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="artifacts.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    late = asyncio.ensure_future(
        client.post(url, data=slow(head + b"same ", f"bytes\r\n--{BOUNDARY}--\r\n".encode(), gate), headers=headers)
    )
    await upload_waiting(client, config)
    await cancel(client)
    gate.set()
    resp = await late
    assert resp.status == 403 and await resp.json() == NOT_RUNNING
    assert not list((config.data_dir / "tmp").glob("*.part"))


@pytest.mark.directory_store
class TestLateSmallPatch:
    """A body of known small length takes one log-thread hop with the job's last read alongside it: a job that
    ends before that read still gets the 403, and the bytes already written and synced are cut back, durably."""

    @pytest.fixture
    def syncs(self, monkeypatch) -> list[int]:
        from jobsvc.storage import store as storemod

        synced: list[int] = []

        def datasync(fd: int) -> None:
            synced.append(os.fstat(fd).st_size)
            os.fdatasync(fd)

        monkeypatch.setattr(storemod, "_datasync", datasync)
        return synced

    def end_before_the_last_read(self, monkeypatch, end) -> None:
        from jobsvc.services import jobstate

        real = jobstate.alive_status

        async def late(repo, job_id):
            await end()
            return await real(repo, job_id)

        monkeypatch.setattr(jobstate, "alive_status", late)

    async def patch(self, client):
        headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "8-18"}
        return await client.patch("/api/v4/jobs/11/trace", data=b"late bytes\n", headers=headers)

    async def test_after_cancel(self, client, config, monkeypatch, syncs):
        self.end_before_the_last_read(monkeypatch, lambda: cancel(client))
        resp = await self.patch(client)
        assert resp.status == 403 and await resp.json() == NOT_RUNNING
        assert resp.headers["Job-Status"] == "canceled"
        assert (config.data_dir / "traces" / "11.log").read_bytes() == b"started\n"
        assert syncs[-1] == 8  # whatever was synced, the cut back to 8 bytes was synced last

    async def test_after_success(self, client, config, monkeypatch, syncs):
        put = None

        async def succeed():
            nonlocal put
            put = asyncio.ensure_future(
                client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
            )

            async def finished():
                return await status_of(client) == "success"

            assert await until(finished)

        self.end_before_the_last_read(monkeypatch, succeed)
        resp = await self.patch(client)
        assert resp.status == 403 and await resp.json() == NOT_RUNNING
        assert resp.headers["Job-Status"] == "success"
        assert put is not None and (await put).status == 200
        log = config.data_dir / "traces" / "11.log"
        assert log.read_bytes() == b"started\n"
        [(size,)] = await rows(client, "SELECT size FROM job_artifacts WHERE job_id = 11 AND file_type = 'trace'")
        assert size == log.stat().st_size
        assert syncs[-1] == 8

    async def test_after_erase(self, client, config, monkeypatch):
        erase = None

        async def cancel_and_erase():
            nonlocal erase
            await cancel(client)
            erase = asyncio.ensure_future(client.post("/api/v4/projects/1/jobs/11/erase", headers=auth("root")))
            await asyncio.sleep(0.1)  # the erase waits for the log the PATCH holds

        self.end_before_the_last_read(monkeypatch, cancel_and_erase)
        resp = await self.patch(client)
        assert resp.status == 403
        assert erase is not None and (await erase).status == 201
        assert not (config.data_dir / "traces" / "11.log").exists()

    async def test_a_mismatched_start_on_a_missing_log_makes_no_file(self, client, config, syncs):
        log = config.data_dir / "traces" / "11.log"
        log.unlink()
        resp = await self.patch(client)
        assert resp.status == 416 and resp.headers["Range"] == "0-0"
        assert not log.exists() and syncs == []
        headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "0-4"}
        resp = await client.patch("/api/v4/jobs/11/trace", data=b"next\n", headers=headers)
        assert resp.status == 202 and log.read_bytes() == b"next\n" and syncs == [5]

"""A full disk never wedges the service: 507 instead of 500, a free-space reserve, deletes that free space.

The main test runs on a real 20 MB tmpfs (it needs root to mount one, as CI has); without root the
injected-failure test below still covers the 507 mapping of every database-writing route.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from jobsvc.http.app import create_app
from jobsvc.http.keys import DB, REPO, STORE
from jobsvc.services import artifacts
from jobsvc.settings import Config
from jobsvc.storage import db as dbmod
from tests.conftest import RUNNING_JOB_TOKEN, auth

RUNNER = "glrt-test-runner-00000"
REG = "reg-token-123"
FULL = {"message": "507 Insufficient Storage"}
MB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MB tmpfs under tmp_path, always unmounted; skipped where it cannot be mounted (not root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path, leave: int = 0) -> None:
    """Grow a plain file until the filesystem has no more than ``leave`` bytes free (0: until ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for size in (MB, 64 * 1024, 4096, 512, 1):
            while dbmod.free_bytes(path.parent) - size >= leave:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


def patch(client, body: bytes, start: int):
    headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": f"{start}-{start + len(body)}"}
    return client.patch("/api/v4/jobs/11/trace", data=io.BytesIO(body), headers=headers)


def upload(client, content: bytes, job_id: int = 11):
    import aiohttp

    data = aiohttp.FormData()
    data.add_field("file", io.BytesIO(content), filename="artifacts.zip", content_type="application/octet-stream")
    return client.post(
        f"/api/v4/jobs/{job_id}/artifacts?artifact_type=archive&artifact_format=zip",
        data=data,
        headers={"JOB-TOKEN": RUNNING_JOB_TOKEN},
    )


# Every route that writes to the database, as (name, call); each must answer 507 or succeed on a full disk.
ROUTES = [
    ("POST /runners", lambda c: c.post("/api/v4/runners", json={"token": REG, "description": "r"})),
    ("POST /jobs/request", lambda c: c.post("/api/v4/jobs/request", json={"token": RUNNER})),
    ("PUT /jobs/11 running", lambda c: c.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "running"})),
    ("POST cancel 21", lambda c: c.post("/api/v4/projects/1/jobs/21/cancel", headers=auth("root"))),
    ("POST retry 6", lambda c: c.post("/api/v4/projects/1/jobs/6/retry", headers=auth("root"))),
    ("POST keep 8", lambda c: c.post("/api/v4/projects/1/jobs/8/artifacts/keep", headers=auth("root"))),
    ("POST play 10", lambda c: c.post("/api/v4/projects/1/jobs/10/play", headers=auth("root"))),
    ("DELETE project artifacts", lambda c: c.delete("/api/v4/projects/1/artifacts", headers=auth("root"))),
    ("DELETE artifacts 8", lambda c: c.delete("/api/v4/projects/1/jobs/8/artifacts", headers=auth("root"))),
    ("POST erase 12", lambda c: c.post("/api/v4/projects/1/jobs/12/erase", headers=auth("root"))),
]
READS = ["/api/v4/projects/1/jobs", "/api/v4/projects/1/jobs/8", "/api/v4/projects/1/jobs/7/trace"]


def snapshot(data_dir: Path, job_ids: tuple[int, ...]) -> tuple[list, dict[str, str]]:
    """The artifact rows of some jobs and the SHA-256 of their files."""
    conn = sqlite3.connect(data_dir / "jobsvc.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        marks = ",".join("?" * len(job_ids))
        rows = conn.execute(f"SELECT * FROM job_artifacts WHERE job_id IN ({marks}) ORDER BY id", job_ids).fetchall()
    finally:
        conn.close()
    files = {row["store_key"]: hashlib.sha256((data_dir / row["store_key"]).read_bytes()).hexdigest() for row in rows}
    return [tuple(row) for row in rows], files


async def db_rows(data_dir: Path, sql: str) -> int:
    conn = sqlite3.connect(data_dir / "jobsvc.sqlite3")
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def integrity(data_dir: Path) -> str:
    conn = sqlite3.connect(data_dir / "jobsvc.sqlite3")
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.slow
async def test_a_full_disk_answers_507_frees_space_and_recovers(small_disk, aiohttp_client, world_file):
    data_dir = small_disk / "var"
    config = Config(data_dir=data_dir, fixtures=[str(world_file)], min_free_space=2, registration_token=REG)
    client = await aiohttp_client(create_app(config))
    app = client.server.app
    filler = small_disk / "filler"
    log = data_dir / "traces" / "11.log"
    untouched = snapshot(data_dir, (7, 28, 31, 33, 35))

    # an artifact worth deleting later
    big = os.urandom(6 * MB)
    assert (await upload(client, big)).status == 201

    # the reserve: with 3 MB free and 2 MB kept, a 1.5 MB upload or append is refused and writes nothing
    fill(filler, leave=3 * MB)
    resp = await patch(client, b"x" * (3 * MB // 2), 8)
    assert resp.status == 507 and await resp.json() == FULL
    assert log.read_bytes() == b"started\n"
    resp = await upload(client, b"y" * (3 * MB // 2), job_id=11)
    assert resp.status == 507 and await resp.json() == FULL
    assert list((data_dir / "tmp").iterdir()) == []
    assert (await patch(client, b"small\n", 8)).status == 202  # what fits above the reserve goes in
    put = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "running"})
    assert put.status == 200  # and state changes still commit

    # the disk really full (a plain file took the reserve too): the first write gets through by
    # giving up the database's ballast file; once that is gone too, writes answer 507
    ballast = app[DB].ballast
    assert ballast.exists()
    fill(filler)
    assert dbmod.free_bytes(small_disk) < 4096
    put = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "running"})
    assert put.status == 200 and not ballast.exists()
    fill(filler)
    table = {}
    for name, call in ROUTES:
        resp = await call(client)
        table[name] = resp.status
        if resp.status == 507:
            assert await resp.json() == FULL
    table["PATCH trace"] = (await patch(client, b"more\n", 14)).status
    table["POST artifacts"] = (await upload(client, b"z" * 1000, job_id=11)).status
    print("full disk:", table)
    assert 500 not in table.values(), table
    assert table["PATCH trace"] == 507 and table["POST artifacts"] == 507
    # a delete whose rows cannot commit has removed its files first: the space it can free is freed
    assert table["DELETE artifacts 8"] in (204, 507) and not list((data_dir / "artifacts" / "8").glob("*"))
    assert table["POST erase 12"] in (201, 507) and not (data_dir / "traces" / "12.log").exists()
    for url in READS:
        assert (await client.get(url, headers=auth("root"))).status == 200
    assert log.read_bytes() == b"started\nsmall\n"

    # deleting the big artifact works on the full disk and frees its space; so does the sweeper
    resp = await client.delete("/api/v4/projects/1/jobs/11/artifacts", headers=auth("root"))
    assert resp.status == 204
    assert dbmod.free_bytes(small_disk) > 5 * MB
    assert not list((data_dir / "artifacts" / "11").glob("*"))
    assert (data_dir / "artifacts" / "9").exists()
    fill(filler)
    try:
        swept = await artifacts.sweep(app[REPO], app[STORE])  # job 9's artifacts expired in 2016
    except dbmod.DatabaseFull:  # the rows could not go, but their files did
        swept = 0
    assert not list((data_dir / "artifacts" / "9").glob("*"))

    # room again: every write works without a restart, and the earlier data is intact
    filler.unlink()
    assert swept + await artifacts.sweep(app[REPO], app[STORE]) > 0
    assert await db_rows(data_dir, "SELECT count(*) FROM job_artifacts WHERE job_id = 9") == 0
    again = {name: (await call(client)).status for name, call in ROUTES}
    print("with room:", again)
    assert all(status < 400 or status == 403 for status in again.values()), again
    assert (await patch(client, b"more\n", 14)).status == 202
    assert (await upload(client, b"z" * 1000, job_id=11)).status == 201
    assert integrity(data_dir) == "ok"
    assert snapshot(data_dir, (7, 28, 31, 33, 35)) == untouched
    assert ballast.exists()  # made again once there was room


def _full_error() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = sqlite3.SQLITE_FULL
    return exc


@pytest.mark.sqlite_only
async def test_injected_sqlite_full_answers_507_on_every_write(aiohttp_client, config, monkeypatch):
    """Every write statement fails as SQLite fails on a full disk: no route answers 500, nothing changes."""
    config.registration_token = REG
    client = await aiohttp_client(create_app(config))
    before = snapshot(config.data_dir, (7, 28, 31, 33, 35))
    real = dbmod.Tx.execute

    async def execute(self, sql, params=()):
        if sql.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            raise _full_error()
        return await real(self, sql, params)

    ballast = client.server.app[DB].ballast
    assert ballast.exists()
    monkeypatch.setattr(dbmod.Tx, "execute", execute)
    monkeypatch.setattr(dbmod.Tx, "insert", execute)
    for name, call in ROUTES:
        resp = await call(client)
        assert resp.status in (201, 507), (name, resp.status)  # 201: cancel/keep found nothing to change
        if resp.status == 507:
            assert await resp.json() == FULL
    assert not ballast.exists()  # given up by the first write, which failed all the same
    monkeypatch.undo()
    assert snapshot(config.data_dir, (7, 28, 31, 33, 35)) == before
    assert (await client.get("/api/v4/projects/1/jobs", headers=auth("root"))).status == 200
    resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "running"})
    assert resp.status == 200 and ballast.exists()


class TestIsDiskFull:
    def test_a_real_sqlite_full(self, tmp_path):
        conn = sqlite3.connect(tmp_path / "x.db")
        conn.execute("CREATE TABLE t (v BLOB)")
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
        with pytest.raises(sqlite3.OperationalError) as caught:
            conn.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
        conn.close()
        assert dbmod.is_disk_full(caught.value, tmp_path)

    @pytest.mark.parametrize(
        "exc,full",
        [
            (_full_error(), True),
            (sqlite3.OperationalError("database or disk is full"), True),  # no error code: the message
            (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
            (ValueError("database or disk is full"), False),
        ],
    )
    def test_table(self, tmp_path, exc, full):
        assert dbmod.is_disk_full(exc, tmp_path) is full

    def test_io_error_counts_only_on_a_nearly_full_disk(self, tmp_path, monkeypatch):
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorcode = sqlite3.SQLITE_IOERR | (3 << 8)  # SQLITE_IOERR_WRITE
        monkeypatch.setattr(dbmod, "free_bytes", lambda path: 10 * MB * 1024)
        assert not dbmod.is_disk_full(exc, tmp_path)
        monkeypatch.setattr(dbmod, "free_bytes", lambda path: 1024)
        assert dbmod.is_disk_full(exc, tmp_path)


async def test_a_job_that_finished_on_a_full_disk_says_so(client, monkeypatch):
    """The state change committed but the log's artifact row did not fit: 200, not a 507 to retry."""
    from jobsvc.services import jobstate

    async def archive(db, store, job_id):
        raise dbmod.DatabaseFull("database or disk is full")

    monkeypatch.setattr(jobstate, "archive_trace", archive)
    resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
    assert resp.status == 200 and resp.headers["Job-Status"] == "success"
    trace = await client.get("/api/v4/projects/1/jobs/11/trace", headers=auth("root"))
    assert await trace.read() == b"started\n"


@pytest.mark.directory_store
async def test_enospc_part_way_through_a_log_append_leaves_the_log_as_it_was(client, config, monkeypatch):
    """The disk fills while a 1 MiB body is being written (no reserve to stop it first): 507, exact prefix."""
    from jobsvc.storage import store as storemod

    real_write, written = os.write, []

    def write(fd, data):
        if written and sum(written) >= 300_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(data))
        return real_write(fd, data)

    client.server.app[STORE].min_free = 0
    monkeypatch.setattr(storemod.os, "write", write)
    resp = await patch(client, b"x" * MB, 8)
    monkeypatch.undo()
    assert resp.status == 507 and await resp.json() == FULL
    assert sum(written) >= 300_000  # bytes did reach the file before the failure
    log = config.data_dir / "traces" / "11.log"
    assert log.read_bytes() == b"started\n"
    assert (await patch(client, b"after\n", 8)).status == 202 and log.read_bytes() == b"started\nafter\n"

"""The API over HTTP on SQLite + a real SeaweedFS bucket (--store-url): artifacts uploaded by the runner API
the way gitlab-runner sends them, downloads whole, by Range and If-Range, one file out of an archive, presigned
redirects, live logs as database chunks archived to the bucket when the job ends, erase and delete, orphans."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import io
import random
import zipfile
from datetime import timedelta

import aiohttp
import pytest

from jobsvc.http.app import create_app
from jobsvc.http.keys import DB, REPO, STORE
from jobsvc.services import artifacts
from jobsvc.settings import Config
from jobsvc.storage.s3 import MIB
from tests.conftest import RUNNING_JOB_TOKEN, auth, s3_store_url

pytestmark = pytest.mark.slow

BIG = random.Random(7).randbytes(9 * MIB + 321)  # past one 8 MiB part: a multipart upload of two parts
HELLO = b"hello from the bucket\n" * 1000


def an_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("big.bin"), BIG)  # stored
        archive.writestr("docs/hello.txt", HELLO, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


ARCHIVE = an_archive()


def store_url(s3_server, bucket: str, extra: str = "") -> str:
    return s3_store_url(s3_server, bucket, "ci", extra)


@pytest.fixture
def s3_config(request, tmp_path, world_file, s3_server, s3_bucket, s3_env, backend) -> Config:
    """The world loaded on start into a fresh bucket, and SQLite in the data directory or a PostgreSQL database."""
    database_url = request.getfixturevalue("postgres_server").new_database() if backend == "postgres" else ""
    return Config(
        data_dir=tmp_path / "var",
        fixtures=[str(world_file)],
        store_url=store_url(s3_server, s3_bucket),
        database_url=database_url,
    )


@pytest.fixture
async def s3_client(aiohttp_client, s3_config):
    return await aiohttp_client(create_app(s3_config))


def objects(s3_server, bucket: str, under: str = "ci/") -> dict[str, str]:
    """Every object's key and the sha256 of its bytes (digests keep a failing comparison readable)."""
    client = s3_server.client()
    listing = client.list_objects_v2(Bucket=bucket, Prefix=under).get("Contents", [])
    return {item["Key"]: sha(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()) for item in listing}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pending_uploads(s3_server, bucket: str) -> list[str]:
    return [u["Key"] for u in s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def upload_form(content: bytes, filename: str = "artifacts.zip") -> aiohttp.FormData:
    """What gitlab-runner sends: the file as multipart/form-data, type and format in the query."""
    data = aiohttp.FormData()
    data.add_field("file", io.BytesIO(content), filename=filename, content_type="application/octet-stream")
    return data


async def upload(client, content: bytes, job_id: int = 11, query: str = "artifact_type=archive&artifact_format=zip"):
    return await client.post(
        f"/api/v4/jobs/{job_id}/artifacts?{query}&expire_in=1+week",
        data=upload_form(content),
        headers={"JOB-TOKEN": RUNNING_JOB_TOKEN},
    )


def patch(client, body: bytes, start: int, job_id: int = 11):
    headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": f"{start}-{start + max(len(body), 1) - 1}"}
    return client.patch(f"/api/v4/jobs/{job_id}/trace", data=io.BytesIO(body), headers=headers)


async def chunk_rows(client, job_id: int = 11) -> list[tuple[int, int]]:
    rows = await client.app[DB].fetchall(
        "SELECT start, length(data) AS n FROM trace_chunks WHERE job_id = ? ORDER BY start", (job_id,)
    )
    return [(row["start"], row["n"]) for row in rows]


ARCHIVE_URL = "/api/v4/projects/1/jobs/11/artifacts"


async def test_the_fixture_loads_into_the_bucket_and_the_database(s3_client, s3_server, s3_bucket, s3_config):
    client = s3_client
    stored = objects(s3_server, s3_bucket)
    assert stored and all(key.startswith("ci/artifacts/") for key in stored)
    assert not (s3_config.data_dir / "artifacts").exists() and not (s3_config.data_dir / "traces").exists()
    resp = await client.get("/api/v4/projects/1/jobs/8/artifacts", headers=auth("root"))
    assert resp.status == 200
    assert zipfile.ZipFile(io.BytesIO(await resp.read())).read("out/hello.txt") == b"hello\n"
    # a finished job's log is an object; a running job's log is chunks in the database
    resp = await client.get("/api/v4/projects/1/jobs/8/trace", headers=auth("root"))
    assert await resp.read() == b"Running rubocop\nok\n"
    assert await chunk_rows(client) == [(0, 8)]
    resp = await client.get("/api/v4/projects/1/jobs/11/trace", headers=auth("root"))
    assert resp.status == 200 and await resp.read() == b"started\n"
    assert resp.headers["Content-Type"] == "text/plain" and resp.headers["Content-Disposition"] == (
        'infile; filename="11.log"'
    )


async def test_jobsvc_load_fills_a_postgres_database_and_a_bucket(
    aiohttp_client, tmp_path, world_file, postgres_server, s3_server, s3_bucket, s3_env
):
    from jobsvc import cli

    dsn, url = postgres_server.new_database(), store_url(s3_server, s3_bucket)
    command = ["load", str(world_file), "--data-dir", str(tmp_path / "cli"), "--database-url", dsn, "--store-url", url]
    assert await asyncio.to_thread(cli.main, command) == 0
    assert objects(s3_server, s3_bucket)
    # a process that shares neither the data directory nor anything else serves what was loaded
    client = await aiohttp_client(create_app(Config(data_dir=tmp_path / "other", database_url=dsn, store_url=url)))
    resp = await client.get("/api/v4/projects/1/jobs/8/artifacts", headers=auth("root"))
    assert resp.status == 200
    assert zipfile.ZipFile(io.BytesIO(await resp.read())).read("out/hello.txt") == b"hello\n"
    resp = await client.get("/api/v4/projects/1/jobs/8/trace", headers=auth("root"))
    assert await resp.read() == b"Running rubocop\nok\n"
    assert not (tmp_path / "cli" / "jobsvc.sqlite3").exists()


async def test_upload_streams_into_the_bucket_and_downloads_honour_range_and_if_range(s3_client, s3_server, s3_bucket):
    client = s3_client
    before = set(objects(s3_server, s3_bucket))
    resp = await upload(client, ARCHIVE)
    assert resp.status == 201
    added = {key: body for key, body in objects(s3_server, s3_bucket).items() if key not in before}
    assert list(added.values()) == [sha(ARCHIVE)] and next(iter(added)).startswith("ci/artifacts/11/")
    assert pending_uploads(s3_server, s3_bucket) == []
    job = await (await client.get("/api/v4/projects/1/jobs/11", headers=auth("root"))).json()
    assert job["artifacts_file"] == {"filename": "artifacts.zip", "size": len(ARCHIVE)}

    whole = await client.get(ARCHIVE_URL, headers=auth("root"))
    assert whole.status == 200 and sha(await whole.read()) == sha(ARCHIVE)
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["Content-Length"] == str(len(ARCHIVE))
    assert whole.headers["Content-Disposition"].startswith('attachment; filename="artifacts.zip"')
    etag, last_modified = whole.headers["ETag"], whole.headers["Last-Modified"]
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=next(iter(added)))
    assert etag == head["ETag"]  # the object's own validator: stable, since the key is never rewritten

    async def get(**headers):
        return await client.get(ARCHIVE_URL, headers={**auth("root"), **headers})

    part = await get(Range="bytes=10-19")
    assert part.status == 206 and await part.read() == ARCHIVE[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(ARCHIVE)}"
    tail = await get(Range="bytes=-100")
    assert tail.status == 206 and await tail.read() == ARCHIVE[-100:]
    assert (await get(Range=f"bytes={len(ARCHIVE)}-")).status == 416
    assert (await get(Range="bytes=0-1,5-6")).status == 200  # no multipart/byteranges
    # If-Range: a matching ETag or date applies the range; a stale one gets the whole archive
    assert (await get(Range="bytes=0-9", **{"If-Range": etag})).status == 206
    stale = await get(Range="bytes=0-9", **{"If-Range": '"not-it"'})
    assert stale.status == 200 and sha(await stale.read()) == sha(ARCHIVE)
    assert (await get(Range="bytes=0-9", **{"If-Range": last_modified})).status == 206
    earlier = email.utils.formatdate(email.utils.parsedate_to_datetime(last_modified).timestamp() - 3600, usegmt=True)
    assert (await get(Range="bytes=0-9", **{"If-Range": earlier})).status == 200
    head = await client.head(ARCHIVE_URL, headers=auth("root"))
    assert head.status == 200 and head.headers["Content-Length"] == str(len(ARCHIVE)) and await head.read() == b""

    # one file out of the archive, by ranged reads of the object
    entry = await client.get(ARCHIVE_URL + "/big.bin", headers=auth("root"))
    assert entry.status == 200 and sha(await entry.read()) == sha(BIG)
    entry = await client.get(ARCHIVE_URL + "/docs/hello.txt", headers=auth("root"))
    assert entry.status == 200 and sha(await entry.read()) == sha(HELLO)
    assert entry.headers["Content-Type"] == "text/plain; charset=utf-8"
    missing = await client.get(ARCHIVE_URL + "/no/such", headers=auth("root"))
    assert missing.status == 404 and await missing.text() == "404 page not found\n"


async def test_refused_and_too_large_uploads_leave_no_object(aiohttp_client, s3_config, s3_server, s3_bucket):
    s3_config.max_artifacts_size = 1  # MB
    client = await aiohttp_client(create_app(s3_config))
    before = objects(s3_server, s3_bucket)
    resp = await upload(client, random.randbytes(2 * MIB))
    assert resp.status == 413
    first = b"PK\x05\x06" + bytes(18)
    assert (await upload(client, first)).status == 201
    again = await upload(client, first)  # the same file again: idempotent, and nothing new stays
    assert again.status == 201
    other = await upload(client, b"PK\x05\x06" + bytes(17) + b"\x01")
    assert other.status == 400 and (await other.json())["message"].startswith("400 Bad request - another artifact")
    await client.app[STORE].s3.settled()
    after = objects(s3_server, s3_bucket)
    assert len(after) == len(before) + 1 and sha(first) in after.values()
    assert pending_uploads(s3_server, s3_bucket) == []


async def test_an_upload_whose_job_ended_meanwhile_is_deleted(s3_client, s3_server, s3_bucket):
    client = s3_client
    before = objects(s3_server, s3_bucket)
    gate = asyncio.Event()

    async def slow_body():
        head = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="artifacts.zip"\r\n'
            b"Content-Type: application/zip\r\n\r\n"
        )
        yield head + b"a" * 300_000
        await gate.wait()
        yield b"b" * 1000 + b"\r\n--b--\r\n"

    task = asyncio.ensure_future(
        client.post(
            "/api/v4/jobs/11/artifacts",
            data=slow_body(),
            headers={"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Type": "multipart/form-data; boundary=b"},
        )
    )
    await asyncio.sleep(0.3)
    resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
    assert resp.status == 200
    gate.set()
    resp = await task
    assert resp.status == 403 and await resp.json() == {"message": "403 Forbidden - Job is not running"}
    await client.app[STORE].s3.settled()
    after = objects(s3_server, s3_bucket)
    assert [key for key in after if key not in before and after[key] != sha(b"started\n")] == []


async def test_presigned_redirects(aiohttp_client, s3_config, s3_server, s3_bucket):
    s3_config.store_url += "&presign=1"
    client = await aiohttp_client(create_app(s3_config))
    assert (await upload(client, ARCHIVE)).status == 201
    resp = await client.get(ARCHIVE_URL, headers=auth("root"), allow_redirects=False)
    assert resp.status == 302
    location = resp.headers["Location"]
    assert location.startswith(f"{s3_server.endpoint_url}/{s3_bucket}/ci/artifacts/11/")
    assert "X-Amz-Signature" in location
    async with aiohttp.ClientSession() as session, session.get(location) as presigned:
        assert presigned.status == 200 and sha(await presigned.read()) == sha(ARCHIVE)
        assert presigned.headers["Content-Type"] == "application/octet-stream"
        assert presigned.headers["Content-Disposition"].startswith('attachment; filename="artifacts.zip"')
    # a Range (If-Range is ours to decide) and HEAD stay proxied
    part = await client.get(ARCHIVE_URL, headers={**auth("root"), "Range": "bytes=0-3"}, allow_redirects=False)
    assert part.status == 206 and await part.read() == ARCHIVE[:4]
    assert (await client.head(ARCHIVE_URL, headers=auth("root"), allow_redirects=False)).status == 200
    # the runner's download redirects only when it asks for direct_download
    runner = "/api/v4/jobs/11/artifacts"
    asked = await client.get(runner + "?direct_download=true", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN},
                             allow_redirects=False)  # fmt: skip
    assert asked.status == 302
    plain = await client.get(runner, headers={"JOB-TOKEN": RUNNING_JOB_TOKEN}, allow_redirects=False)
    assert plain.status == 200 and sha(await plain.read()) == sha(ARCHIVE)
    # a missing object is a 404, not a redirect to one
    await client.app[STORE].remove(location.split(f"/{s3_bucket}/ci/", 1)[1].split("?", 1)[0])
    assert (await client.get(ARCHIVE_URL, headers=auth("root"), allow_redirects=False)).status == 404


async def test_live_log_chunks_then_archived_to_the_bucket(s3_client, s3_server, s3_bucket):
    client = s3_client
    expected = b"started\n"
    resp = await patch(client, b"more\n", 8)
    assert resp.status == 202 and resp.headers["Range"] == "0-13" and resp.headers["Job-Status"] == "running"
    expected += b"more\n"
    again = await patch(client, b"more\n", 8)  # a lost answer, sent again: nothing duplicated
    assert again.status == 416 and again.headers["Range"] == "0-13"
    assert (await patch(client, b"later\n", 20)).status == 416
    big = random.Random(3).randbytes(300_000)  # fills chunk 0 and spans two more
    resp = await patch(client, big, len(expected))
    assert resp.status == 202
    expected += big
    assert resp.headers["Range"] == f"0-{len(expected)}"
    assert await chunk_rows(client) == [(0, 131072), (131072, 131072), (262144, len(expected) - 262144)]

    trace = "/api/v4/projects/1/jobs/11/trace"
    whole = await client.get(trace, headers=auth("root"))
    assert whole.status == 200 and sha(await whole.read()) == sha(expected) and "Accept-Ranges" not in whole.headers
    live_etag = whole.headers["ETag"]
    tail = await client.get(trace, headers={**auth("root"), "Range": "bytes=-100"})
    assert tail.status == 206 and await tail.read() == expected[-100:]
    span = await client.get(trace, headers={**auth("root"), "Range": "bytes=131000-131200"})
    assert await span.read() == expected[131000:131201]
    assert (await client.get(trace, headers={**auth("root"), "Range": f"bytes={len(expected)}-"})).status == 416

    # concurrent appends at one offset: exactly one goes in
    answers = await asyncio.gather(*(patch(client, f"chunk {i}\n".encode(), len(expected)) for i in range(6)))
    assert sorted(r.status for r in answers) == [202] + [416] * 5
    log = await (await client.get(trace, headers=auth("root"))).read()
    assert log.startswith(expected) and log.count(b"chunk ") == 1
    expected = log

    # the job ends: the chunks become one object, listed as job.log, and are deleted
    before = set(objects(s3_server, s3_bucket))
    resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
    assert resp.status == 200
    assert await chunk_rows(client) == []
    added = {key: body for key, body in objects(s3_server, s3_bucket).items() if key not in before}
    assert list(added.values()) == [sha(expected)] and next(iter(added)).startswith("ci/artifacts/11/")
    job = await (await client.get("/api/v4/projects/1/jobs/11", headers=auth("root"))).json()
    assert {"file_type": "trace", "size": len(expected), "filename": "job.log", "file_format": None} in job["artifacts"]
    archived = await client.get(trace, headers=auth("root"))
    assert sha(await archived.read()) == sha(expected) and archived.headers["ETag"] != live_etag
    tail = await client.get(trace, headers={**auth("root"), "Range": "bytes=-7"})
    assert tail.status == 206 and await tail.read() == expected[-7:]
    assert (await patch(client, b"late\n", len(expected))).status == 403

    # erase: every object of the job goes, and its log with it
    resp = await client.post("/api/v4/projects/1/jobs/11/erase", headers=auth("maintainer"))
    assert resp.status == 201
    assert [key for key in objects(s3_server, s3_bucket) if key.startswith("ci/artifacts/11/")] == []
    assert await (await client.get(trace, headers=auth("root"))).read() == b""


async def test_erasing_a_running_jobs_log_drops_its_chunks(s3_client):
    client = s3_client
    assert await chunk_rows(client) == [(0, 8)]
    # a running job is not erasable; a finished one whose log is still in chunks (canceled) is
    resp = await client.post("/api/v4/projects/1/jobs/11/cancel", headers=auth("maintainer"))
    assert resp.status == 201 and (await resp.json())["status"] == "canceled"
    assert await chunk_rows(client) == [(0, 8)]  # nothing archives a job canceled while it ran
    assert await (await client.get("/api/v4/projects/1/jobs/11/trace", headers=auth("root"))).read() == b"started\n"
    assert (await client.post("/api/v4/projects/1/jobs/11/erase", headers=auth("maintainer"))).status == 201
    assert await chunk_rows(client) == []


async def test_trace_size_limit_fails_the_job(aiohttp_client, s3_config):
    s3_config.trace_size_limit = 1  # MB
    client = await aiohttp_client(create_app(s3_config))
    resp = await patch(client, b"x" * MIB, 8)
    assert resp.status == 403 and await resp.json() == {"error": "403 Forbidden"}
    job = await (await client.get("/api/v4/projects/1/jobs/11", headers=auth("root"))).json()
    assert job["status"] == "failed" and job["failure_reason"] == "trace_size_exceeded"
    assert await chunk_rows(client) == []  # archived: job.log is the 8 bytes that went in
    assert any(a["file_type"] == "trace" and a["size"] == 8 for a in job["artifacts"])


async def test_appends_of_two_instances_on_one_database_are_serialized(aiohttp_client, s3_config):
    """Two apps, each with its own connections and locks, on one database and bucket (as two processes would be):
    concurrent appends at one offset still put in exactly one."""
    first = await aiohttp_client(create_app(s3_config))
    second = await aiohttp_client(create_app(s3_config))
    size = 8
    for round_ in range(5):
        bodies = [f"{round_}:{i}\n".encode() for i in range(4)]
        answers = await asyncio.gather(*(patch(c, b, size) for c, b in zip([first, second] * 2, bodies, strict=True)))
        assert sorted(r.status for r in answers) == [202, 416, 416, 416]
        size = int(next(r for r in answers if r.status == 202).headers["Range"].split("-")[1])
    log = await (await second.get("/api/v4/projects/1/jobs/11/trace", headers=auth("root"))).read()
    assert len(log) == size and log.count(b"\n") == 6


async def test_delete_artifacts_and_orphans_are_swept(s3_client, s3_server, s3_bucket):
    client = s3_client
    known = await client.app[REPO].artifacts.all_keys()
    archive_of_8 = (await client.app[REPO].archive(8))["store_key"]
    assert (await client.delete("/api/v4/projects/1/jobs/8/artifacts", headers=auth("maintainer"))).status == 204
    assert "ci/" + archive_of_8 not in objects(s3_server, s3_bucket)

    orphan = "artifacts/77/" + "ab" * 16
    s3_server.client().put_object(Bucket=s3_bucket, Key="ci/" + orphan, Body=b"left by a crash")
    upload_id = s3_server.client().create_multipart_upload(Bucket=s3_bucket, Key="ci/artifacts/78/" + "cd" * 16)[
        "UploadId"
    ]
    store, repo = client.app[STORE], client.app[REPO]
    await artifacts.sweep_orphans(repo, store, store.orphan_grace)  # too young to be taken for an orphan
    assert "ci/" + orphan in objects(s3_server, s3_bucket)
    await artifacts.sweep_orphans(repo, store, timedelta(0))
    left = objects(s3_server, s3_bucket)
    assert "ci/" + orphan not in left
    assert {"ci/" + key for key in known if key != archive_of_8} <= set(left)
    store.orphan_grace = timedelta(0)
    await store.sweep_stale_uploads()
    assert upload_id not in [
        u["UploadId"] for u in s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    ]


def test_a_bad_store_is_refused_before_anything_starts(tmp_path, world_file, s3_server, s3_env, monkeypatch, capsys):
    from jobsvc import cli

    code = cli.main(["serve", "--data-dir", str(tmp_path / "d"), "--store-url", "s3://no_such_bucket/x"])
    assert code == 2 and not (tmp_path / "d").exists()
    assert "error: --store-url: 'no_such_bucket' is not a valid bucket name" in capsys.readouterr().err
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    url = store_url(s3_server, "some-bucket")
    assert cli.main(["load", str(world_file), "--data-dir", str(tmp_path / "d"), "--store-url", url]) == 2
    assert "set AWS_SECRET_ACCESS_KEY" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_python_gitlab_downloads_from_the_bucket(tmp_path, world_file, s3_server, s3_bucket, s3_env):
    import gitlab

    from tests.conftest import TOKENS, RunningServer

    for extra in ("", "&presign=1"):
        server = RunningServer(
            ["--data-dir", str(tmp_path / f"var{extra}"), "--fixtures", str(world_file),
             "--store-url", store_url(s3_server, s3_bucket, extra)],
        )  # fmt: skip
        try:
            with gitlab.Gitlab(server.url, private_token=TOKENS["root"]) as gl:
                job = gl.projects.get(1).jobs.get(8)
                archive = zipfile.ZipFile(io.BytesIO(job.artifacts()))
                assert archive.read("out/hello.txt") == b"hello\n"
                assert job.artifact("out/hello.txt") == b"hello\n"
                assert job.trace() == b"Running rubocop\nok\n"
                assert job.artifacts_file["size"] == len(job.artifacts())
        finally:
            assert server.stop() == 0


async def test_an_upload_whose_row_does_not_commit_is_deleted(s3_client, s3_server, s3_bucket, monkeypatch):
    from jobsvc.storage.queries.artifacts import Artifacts

    async def broken(self, values):
        raise RuntimeError("the commit failed")

    client = s3_client
    before = objects(s3_server, s3_bucket)
    monkeypatch.setattr(Artifacts, "add", broken)
    assert (await upload(client, ARCHIVE)).status == 500
    await client.app[STORE].s3.settled()
    assert objects(s3_server, s3_bucket) == before and pending_uploads(s3_server, s3_bucket) == []


async def test_a_log_append_whose_job_ended_meanwhile_leaves_no_bytes(s3_client):
    client = s3_client
    gate = asyncio.Event()

    async def slow_body():
        yield b"late "
        await gate.wait()
        yield b"bytes\n"

    task = asyncio.ensure_future(
        client.patch(
            "/api/v4/jobs/11/trace", data=slow_body(), headers={"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "8-19"}
        )
    )
    await asyncio.sleep(0.2)
    assert (await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})).status == 200
    gate.set()
    resp = await task
    assert resp.status == 403 and resp.headers["Job-Status"] == "success"
    assert await (await client.get("/api/v4/projects/1/jobs/11/trace", headers=auth("root"))).read() == b"started\n"
    assert await chunk_rows(client) == []


async def test_the_sweeper_removes_orphans(aiohttp_client, s3_config, s3_server, s3_bucket, monkeypatch):
    from jobsvc.storage.s3blobs import S3Blobs

    monkeypatch.setattr(artifacts, "ORPHAN_SWEEP_EVERY", 0.0)
    monkeypatch.setattr(S3Blobs, "orphan_grace", timedelta(0))
    s3_config.sweep_interval = 0.05
    client = await aiohttp_client(create_app(s3_config))
    orphan = "ci/artifacts/77/" + "ef" * 16
    s3_server.client().put_object(Bucket=s3_bucket, Key=orphan, Body=b"left by a crash")
    for _ in range(100):
        if orphan not in objects(s3_server, s3_bucket):
            break
        await asyncio.sleep(0.05)
    assert orphan not in objects(s3_server, s3_bucket)
    resp = await client.get("/api/v4/projects/1/jobs/8/artifacts", headers=auth("root"))
    assert resp.status == 200  # what rows point at stays


async def test_a_live_log_archived_in_the_middle_of_a_read_goes_on_from_the_object(s3_client):
    from jobsvc.http.keys import TRACES

    client = s3_client
    body = random.Random(5).randbytes(MIB + MIB // 2)  # 12 chunks: more than one batch of reads
    assert (await patch(client, body, 8)).status == 202
    expected = b"started\n" + body
    live = await client.app[TRACES].download(11)
    assert live.size == len(expected) and live.etag == f'"trace-11-{len(expected):x}"'
    pieces = live.read_range(100, len(expected))
    first = b"".join([await anext(pieces) for _ in range(8)])  # the first batch, from the database
    assert (await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})).status == 200
    assert await chunk_rows(client) == []
    rest = b"".join([piece async for piece in pieces])  # the chunks are gone: from the archived object
    assert len(first) < len(expected) - 100 and sha(first + rest) == sha(expected[100:])


async def test_readiness_heads_the_bucket(s3_client, s3_server, s3_bucket):
    resp = await s3_client.get("/-/readiness")
    assert resp.status == 200 and (await resp.json())["store_check"] == [{"status": "ok"}]
    client = s3_server.client()
    for item in client.list_objects_v2(Bucket=s3_bucket).get("Contents", []):
        client.delete_object(Bucket=s3_bucket, Key=item["Key"])
    client.delete_bucket(Bucket=s3_bucket)
    resp = await s3_client.get("/-/readiness")
    assert resp.status == 503
    body = await resp.json()
    assert body["db_check"] == [{"status": "ok"}]
    assert body["store_check"][0]["status"] == "failed"
    assert body["store_check"][0]["message"].startswith("unexpected Store check result: cannot use s3://")


def test_check_a_data_directory_with_its_bucket(tmp_path, world_file, s3_server, s3_bucket, s3_env, capsys):
    from jobsvc.cli import main

    url = store_url(s3_server, s3_bucket)
    data_dir = str(tmp_path / "var")
    assert main(["load", str(world_file), "--data-dir", data_dir, "--store-url", url]) == 0
    assert main(["check", "--data-dir", data_dir, "--store-url", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("no problems")
    client = s3_server.client()
    [first, *_] = sorted(item["Key"] for item in client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    client.delete_object(Bucket=s3_bucket, Key=first)
    client.put_object(Bucket=s3_bucket, Key="ci/artifacts/999/" + 32 * "0", Body=b"orphan")
    assert main(["check", "--data-dir", data_dir, "--store-url", url]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"missing: {first.removeprefix('ci/')}: the file of job ")
    assert out[1] == f"orphan: artifacts/999/{32 * '0'}: no row points at it"
    assert out[2].endswith("2 problem(s)")


async def test_the_pages_read_logs_and_archives_from_the_bucket(s3_client):
    """The job page, its raw log and the artifact browser on a bucket: live chunks, then the archived object."""
    from tests.test_pages import page, sign_in

    await sign_in(s3_client, "developer")
    assert (await patch(s3_client, b"\x1b[31mred\x1b[0m\nhal", 8)).status == 202
    live = await page(s3_client, "/gitlab-org/gitlab-test/-/jobs/11")
    assert '<span class="fg-1">red</span>' in live and 'data-offset="21"' in live and "hal<" not in live
    tail = await s3_client.get("/gitlab-org/gitlab-test/-/jobs/11/raw", headers={"Range": "bytes=8-"})
    assert tail.status == 206 and await tail.read() == b"\x1b[31mred\x1b[0m\nhal"
    finished = await s3_client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
    assert finished.status == 200
    archived = await page(s3_client, "/gitlab-org/gitlab-test/-/jobs/11")
    assert '<span class="fg-1">red</span>' in archived and '<span class="lt">hal</span>' in archived
    listing = await page(s3_client, "/group/sub/public-proj/-/jobs/31/artifacts/browse/dist")
    assert 'href="/group/sub/public-proj/-/jobs/31/artifacts/raw/dist/app.txt"' in listing
    file = await s3_client.get("/group/sub/public-proj/-/jobs/31/artifacts/raw/dist/app.txt")
    assert file.status == 200 and await file.read() == b"app\n"

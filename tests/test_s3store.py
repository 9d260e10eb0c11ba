"""The S3 blob store against a real SeaweedFS (tests/realservers.py): uploads, reads, presigned URLs, listing,
and artifact zips indexed and read out of the bucket by ranged GETs."""

import asyncio
import contextlib
import hashlib
import io
import random
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from jobsvc.http import zipstream
from jobsvc.storage import zipindex
from jobsvc.storage.s3 import MIB, MIN_PART, ObjectChanged, ObjectNotFound, S3Store, part_size_for
from jobsvc.storage.s3blobs import S3Blobs
from jobsvc.storage.s3url import Credentials, parse_store_url
from jobsvc.storage.s3zip import S3Archive
from jobsvc.storage.store import TooLarge
from jobsvc.storage.zipindex import ArchiveError, IndexCache

pytestmark = pytest.mark.slow

BODY = random.Random(1234).randbytes(12 * MIB + 12345)  # three 5 MiB parts: 5, 5 and the rest


@pytest.fixture
async def store(s3_server, s3_bucket) -> AsyncIterator[S3Store]:
    location = parse_store_url(f"s3://{s3_bucket}/ci?endpoint_url={s3_server.endpoint_url}&region={s3_server.region}")
    async with S3Store(location, Credentials(s3_server.access_key, s3_server.secret_key), part_size=MIN_PART) as store:
        yield store


def pending_uploads(s3_server, store: S3Store) -> list[str]:
    answer = s3_server.client().list_multipart_uploads(Bucket=store.location.bucket)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def bucket_keys(s3_server, store: S3Store) -> list[str]:
    answer = s3_server.client().list_objects_v2(Bucket=store.location.bucket)
    return [item["Key"] for item in answer.get("Contents", [])]


async def chunks_of(data: bytes, seed: int = 0, largest: int = 100_000) -> AsyncIterator[bytes]:
    """``data`` in small chunks of random sizes, the way a request body arrives."""
    rng, pos = random.Random(seed), 0
    while pos < len(data):
        size = rng.randint(1, largest)
        yield data[pos : pos + size]
        pos += size
        await asyncio.sleep(0)


async def collect(pieces: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in pieces])


def test_part_sizes_fit_the_limit_in_ten_thousand_parts():
    assert part_size_for(100 * MIB) == 8 * MIB
    assert part_size_for(100 * MIB, MIN_PART) == MIN_PART
    assert part_size_for(200 * 1024 * MIB) == 21 * MIB  # 200 GiB / 10,000 = 20.48 MiB
    assert part_size_for(200 * 1024 * MIB) * 10_000 >= 200 * 1024 * MIB


async def test_a_multipart_upload_streams_and_reads_back_byte_for_byte(store, s3_server):
    uploaded = await store.upload("artifacts/1/archive.zip", chunks_of(BODY), limit=len(BODY))
    assert (uploaded.size, uploaded.sha256) == (len(BODY), hashlib.sha256(BODY).hexdigest())
    assert uploaded.etag.endswith('-3"')  # three parts
    assert pending_uploads(s3_server, store) == []
    assert bucket_keys(s3_server, store) == ["ci/artifacts/1/archive.zip"]  # under the location's prefix

    head = await store.head("artifacts/1/archive.zip")
    assert (head.key, head.size, head.etag) == ("artifacts/1/archive.zip", len(BODY), uploaded.etag)
    assert head.last_modified.tzinfo is not None
    assert await store.read("artifacts/1/archive.zip") == BODY
    for start, end in [(0, 1), (0, len(BODY)), (MIN_PART - 7, MIN_PART + 9), (2 * MIN_PART - 1, len(BODY)), (12, 13)]:
        assert await collect(store.read_range("artifacts/1/archive.zip", start, end)) == BODY[start:end]
    pieces = [p async for p in store.read_range("artifacts/1/archive.zip", 0, 3 * MIB, chunk_size=MIB)]
    assert max(map(len, pieces)) <= MIB and b"".join(pieces) == BODY[: 3 * MIB]


async def test_ranges_read_like_pread(store):
    await store.put_bytes("traces/1.log", b"0123456789")
    assert await collect(store.read_range("traces/1.log", 7, 20)) == b"789"  # short at the end
    assert await collect(store.read_range("traces/1.log", 10, 20)) == b""  # past it: nothing
    assert await collect(store.read_range("traces/1.log", 4, 4)) == b""
    with pytest.raises(ValueError):
        await collect(store.read_range("traces/1.log", 5, 4))
    await store.put_bytes("traces/2.log", b"")
    assert await collect(store.read_range("traces/2.log", 0, 1)) == b""
    assert await store.read("traces/2.log") == b""


async def test_a_small_body_is_one_put_and_an_empty_one_an_empty_object(store, s3_server):
    log = b"job log\n" * 1000
    small = await store.upload("traces/7.log", chunks_of(log, largest=100), limit=MIB)
    assert small.etag == f'"{hashlib.md5(log).hexdigest()}"'  # a single PutObject's ETag
    empty = await store.upload("traces/8.log", chunks_of(b""), limit=MIB)
    assert (empty.size, empty.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert (await store.head("traces/8.log")).size == 0
    assert await store.read("traces/7.log") == log
    assert pending_uploads(s3_server, store) == []


async def test_too_large_aborts_the_multipart_upload_and_leaves_nothing(store, s3_server):
    seen_pending: list[list[str]] = []

    async def body() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(BODY):
            yield chunk
            if not seen_pending and len(pending_uploads(s3_server, store)) == 1:
                seen_pending.append(pending_uploads(s3_server, store))  # a part went: it is a multipart upload

    with pytest.raises(TooLarge):
        await store.upload("artifacts/2/archive.zip", body(), limit=8 * MIB)
    assert seen_pending == [["ci/artifacts/2/archive.zip"]]
    assert pending_uploads(s3_server, store) == []
    assert bucket_keys(s3_server, store) == []
    with pytest.raises(ObjectNotFound):
        await store.head("artifacts/2/archive.zip")


async def test_a_failing_body_aborts_too(store, s3_server):
    async def body() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(BODY[: 7 * MIB]):
            yield chunk
        raise ConnectionResetError("the runner went away")

    with pytest.raises(ConnectionResetError):
        await store.upload("artifacts/3/archive.zip", body(), limit=len(BODY))
    assert pending_uploads(s3_server, store) == []
    assert bucket_keys(s3_server, store) == []


@pytest.mark.parametrize("size", [100, 11 * MIB], ids=["put", "multipart"])
async def test_a_cancelled_upload_leaves_nothing_wherever_it_was(store, s3_server, size):
    """Cancelled at many points: before any request, with a request in flight, between parts."""
    data = BODY[:size]
    for step in range(0, 60, 3):
        task = asyncio.create_task(store.upload(f"artifacts/4/{step}.zip", chunks_of(data, seed=step), limit=size))
        for _ in range(step * (20 if size > MIB else 1)):
            await asyncio.sleep(0)
            if task.done():
                break
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await store.settled()  # what a cancelled request did is undone once it settles
        assert pending_uploads(s3_server, store) == [], step
        assert bucket_keys(s3_server, store) == ([f"ci/artifacts/4/{step}.zip"] if not task.cancelled() else [])
        if not task.cancelled():
            await store.delete(f"artifacts/4/{step}.zip")


async def test_presigned_urls_give_the_bytes_with_the_type_and_disposition_asked_for(store):
    await store.put_bytes("artifacts/5/archive.zip", BODY[:1000])
    disposition = "attachment; filename=\"art fact.zip\"; filename*=UTF-8''art%20fact.zip"
    url = await store.presigned_url(
        "artifacts/5/archive.zip", content_type="application/zip", content_disposition=disposition
    )
    assert "X-Amz-Expires=300" in url  # the location's default
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Disposition"] == disposition
            assert resp.headers["Content-Type"] == "application/zip"
            assert await resp.read() == BODY[:1000]
        async with http.get(url, headers={"Range": "bytes=10-19"}) as resp:
            assert (resp.status, await resp.read()) == (206, BODY[10:20])
        plain = await store.presigned_url("artifacts/5/archive.zip", expires=60)
        assert "X-Amz-Expires=60" in plain
        async with http.get(plain) as resp:
            assert resp.status == 200 and "Content-Disposition" not in resp.headers
            assert resp.headers["Content-Type"] == "application/octet-stream"
        # SeaweedFS serves an object stored as application/octet-stream with a type guessed from its key:
        # the override the URL always carries keeps an uploaded page from being served as HTML.
        await store.put_bytes("artifacts/5/page.html", b"<script>alert(1)</script>")
        async with http.get(await store.presigned_url("artifacts/5/page.html")) as resp:
            assert resp.headers["Content-Type"] == "application/octet-stream"
        async with http.get(url.replace("filename", "filenamx", 1)) as resp:
            assert resp.status == 403  # the overrides are signed


async def test_delete_and_missing_objects(store):
    await store.put_bytes("traces/9.log", b"x")
    await store.delete("traces/9.log")
    await store.delete("traces/9.log")  # idempotent
    with pytest.raises(ObjectNotFound):
        await store.head("traces/9.log")
    with pytest.raises(FileNotFoundError):  # ObjectNotFound is one, like the local store's
        await store.read("traces/9.log")
    with pytest.raises(ObjectNotFound):
        await collect(store.read_range("traces/9.log", 0, 1))


async def test_reads_pinned_to_a_version_refuse_another(store):
    first = await store.put_bytes("traces/10.log", b"first")
    await store.put_bytes("traces/10.log", b"second")
    with pytest.raises(ObjectChanged):
        await collect(store.read_range("traces/10.log", 0, 3, if_match=first.etag))
    with pytest.raises(ObjectChanged):
        await store.read("traces/10.log", if_match=first.etag)
    current = await store.head("traces/10.log")
    assert await store.read("traces/10.log", if_match=current.etag) == b"second"


async def test_listing_is_under_the_prefix_and_pages_through(store, s3_server):
    keys = [f"artifacts/{job}/{n:02d}.zip" for job in (11, 12) for n in range(4)] + ["traces/11.log"]
    for key in keys:
        await store.put_bytes(key, key.encode())
    s3_server.client().put_object(Bucket=store.location.bucket, Key="elsewhere/artifacts/x", Body=b"")
    listed = [item async for item in store.list_objects("artifacts/", page_size=3)]
    assert [item.key for item in listed] == sorted(k for k in keys if k.startswith("artifacts/"))
    assert all(item.size == len(item.key) and item.etag for item in listed)
    assert [item.key async for item in store.list_objects()] == sorted(keys)
    assert [item.key async for item in store.list_objects("artifacts/12/")] == keys[4:8]


async def test_a_closed_store_says_so_and_keys_are_checked(store, s3_server):
    with pytest.raises(ValueError):
        store.object_key("/etc/passwd")
    await store.check()
    location = parse_store_url(f"s3://no-such-bucket?endpoint_url={s3_server.endpoint_url}")
    async with S3Store(location, Credentials(s3_server.access_key, s3_server.secret_key)) as other:
        with pytest.raises(RuntimeError, match="cannot use s3://no-such-bucket/"):
            await other.check()
    with pytest.raises(RuntimeError, match="not open"):
        await other.head("traces/1.log")


async def test_open_without_credentials_names_the_variables(s3_server, s3_bucket, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    store = S3Store(parse_store_url(f"s3://{s3_bucket}?endpoint_url={s3_server.endpoint_url}"))
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        await store.open()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    async with store:
        await store.put_bytes("traces/1.log", b"from the environment")
        assert await store.read("traces/1.log") == b"from the environment"


# --- artifact zips in the store ------------------------------------------------------------------


def build_zip(members: dict[str, tuple[bytes, int]]) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as zf:
        for name, (data, method) in members.items():
            zf.writestr(name, data, compress_type=method)
    return sink.getvalue()


LOG = b"".join(b"%08d the quick brown fox jumps over the lazy dog\n" % i for i in range(40_000))
ZIP = build_zip(
    {
        "stored.bin": (BODY[: 6 * MIB], zipfile.ZIP_STORED),  # the archive is a multipart object
        "logs/build.log": (LOG, zipfile.ZIP_DEFLATED),
        **{f"many/{n:05d}.txt": (b"%d\n" % n, zipfile.ZIP_DEFLATED) for n in range(3000)},  # a long directory
    }
)


@pytest.fixture
def ranged_gets(store, monkeypatch) -> list[tuple[int, int]]:
    """Every ranged GET the store makes, as [start, end)."""
    seen: list[tuple[int, int]] = []
    real = store.read_range

    def counting(key, start, end, **kwargs):
        seen.append((start, end))
        return real(key, start, end, **kwargs)

    monkeypatch.setattr(store, "read_range", counting)
    return seen


async def member_bytes(store: S3Store, key: str, name: str, cache: IndexCache) -> bytes:
    archive = S3Archive(store, key)
    entry = await zipindex.find_entry_in(archive, name, cache=cache)
    pieces = await zipindex.open_remote_member(archive, entry)
    async with contextlib.aclosing(pieces):
        return b"".join([piece async for piece in pieces])


async def test_a_zip_member_is_found_and_read_with_three_ranged_gets(store, ranged_gets):
    uploaded = await store.upload("artifacts/20/archive.zip", chunks_of(ZIP), limit=len(ZIP))
    assert uploaded.etag.endswith('-2"')
    cache = IndexCache()
    assert await member_bytes(store, "artifacts/20/archive.zip", "logs/build.log", cache) == LOG  # deflated
    size = len(ZIP)
    cd_size, cd_offset = struct.unpack_from("<LL", ZIP, size - 22 + 12)
    entry = await zipindex.find_entry_in(S3Archive(store, "artifacts/20/archive.zip"), "logs/build.log", cache=cache)
    tail = 22 + 0xFFFF + 20 + 56
    assert ranged_gets == [
        (size - tail, size),
        (cd_offset, cd_offset + cd_size),
        (entry.header_offset, entry.data_limit),
    ]
    ranged_gets.clear()
    assert await member_bytes(store, "artifacts/20/archive.zip", "stored.bin", cache) == BODY[: 6 * MIB]
    assert await member_bytes(store, "artifacts/20/archive.zip", "many/02999.txt", cache) == b"2999\n"
    assert len(ranged_gets) == 2  # the index came from the cache: one GET per member
    assert await zipindex.find_entry_in(S3Archive(store, "artifacts/20/archive.zip"), "nope", cache=cache) is None


async def test_a_zip_that_lies_fails_its_crc_at_the_end(store):
    data = bytearray(build_zip({"a.log": (LOG, zipfile.ZIP_DEFLATED)}))
    pos = data.rfind(b"PK\x01\x02")
    struct.pack_into("<L", data, pos + 16, zlib.crc32(LOG) ^ 1)
    await store.put_bytes("artifacts/21/archive.zip", bytes(data))
    with pytest.raises(ArchiveError, match="CRC-32 mismatch"):
        await member_bytes(store, "artifacts/21/archive.zip", "a.log", IndexCache())


async def test_a_replaced_zip_is_not_read_with_a_stale_index(store):
    await store.put_bytes("artifacts/22/archive.zip", build_zip({"a.txt": (b"first", zipfile.ZIP_STORED)}))
    cache = IndexCache()
    pinned = S3Archive(store, "artifacts/22/archive.zip")
    entry = await zipindex.find_entry_in(pinned, "a.txt", cache=cache)
    await store.put_bytes("artifacts/22/archive.zip", build_zip({"b": (b"x", 0), "a.txt": (b"second", 0)}))
    with pytest.raises(ArchiveError, match="changed"):  # the reader's If-Match no longer holds
        await zipindex.open_remote_member(pinned, entry)
    with pytest.raises(ArchiveError, match="changed"):  # a fresh reader sees another version
        await zipindex.open_remote_member(S3Archive(store, "artifacts/22/archive.zip"), entry)
    assert await member_bytes(store, "artifacts/22/archive.zip", "a.txt", cache) == b"second"
    with pytest.raises(FileNotFoundError):
        await zipindex.find_entry_in(S3Archive(store, "artifacts/22/missing.zip"), "a.txt", cache=cache)


async def test_a_zip_member_over_http_comes_with_the_local_paths_headers(store, aiohttp_client, tmp_path):
    await store.upload("artifacts/23/archive.zip", chunks_of(ZIP), limit=len(ZIP))
    local = tmp_path / "archive.zip"
    local.write_bytes(ZIP)
    cache = IndexCache()

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info["path"]
        if request.query.get("from") == "disk":
            entry = await zipindex.find_entry(local, name, cache=cache)
            return await zipstream.stream_entry(request, local, entry)
        archive = S3Archive(store, "artifacts/23/archive.zip")
        entry = await zipindex.find_entry_in(archive, name, cache=cache)
        return await zipstream.stream_remote_entry(request, archive, entry)

    app = web.Application()
    app.router.add_get(r"/f/{path:[\s\S]*}", handler)
    client = await aiohttp_client(app)
    for name in ("logs/build.log", "stored.bin", "many/00007.txt"):
        from_s3, from_disk = await client.get(f"/f/{name}"), await client.get(f"/f/{name}?from=disk")
        assert from_s3.status == from_disk.status == 200
        assert await from_s3.read() == await from_disk.read()
        shown = ("Content-Type", "Content-Length", "Content-Disposition", "Content-Security-Policy")
        assert [from_s3.headers[h] for h in shown] == [from_disk.headers[h] for h in shown]
    head = await client.head("/f/stored.bin")
    assert head.status == 200 and head.headers["Content-Length"] == str(6 * MIB)
    partly = await client.get("/f/stored.bin")  # a client that goes away mid-member
    assert len(await partly.content.readexactly(100_000)) == 100_000
    partly.close()
    assert await (await client.get("/f/many/00008.txt")).read() == b"8\n"  # the server carries on


async def test_uploads_a_crash_left_pending_are_aborted_on_request(store, s3_server):
    raw = s3_server.client()
    bucket = store.location.bucket
    left = raw.create_multipart_upload(Bucket=bucket, Key="ci/artifacts/30/archive.zip")
    raw.upload_part(
        Bucket=bucket, Key="ci/artifacts/30/archive.zip", UploadId=left["UploadId"], PartNumber=1, Body=b"x"
    )
    other = raw.create_multipart_upload(Bucket=bucket, Key="not-ours/archive.zip")  # outside the prefix
    assert await store.abort_stale_uploads(timedelta(hours=1)) == []  # too recent
    assert await store.abort_stale_uploads(timedelta(0)) == ["artifacts/30/archive.zip"]
    assert pending_uploads(s3_server, store) == ["not-ours/archive.zip"]
    raw.abort_multipart_upload(Bucket=bucket, Key="not-ours/archive.zip", UploadId=other["UploadId"])


@pytest.fixture
def heads(store, monkeypatch) -> list[str]:
    """Every HEAD the store makes, by key."""
    seen: list[str] = []
    real = store.head

    async def counting(key):
        seen.append(key)
        return await real(key)

    monkeypatch.setattr(store, "head", counting)
    return seen


async def test_the_blob_store_heads_a_key_once_and_forgets_it_when_it_goes(store, heads):
    blobs = S3Blobs(store)
    key = (await blobs.put_bytes(31, LOG, None)).key
    first = await blobs.download(key)
    again = await blobs.download(key)  # a second tail of the same log: no HEAD, one ranged GET
    assert heads == [key]
    assert (again.size, again.etag, again.last_modified) == (first.size, first.etag, first.last_modified)
    assert await collect(again.read_range(len(LOG) - 10, len(LOG))) == LOG[-10:]

    await S3Blobs(store).remove(key)  # another process removes it (an erase)
    stale = await blobs.download(key)  # this one's cache still has it
    with pytest.raises(FileNotFoundError):  # the GET fails as the HEAD would have: before anything is sent
        await collect(stale.read_range(0, 10))
    with pytest.raises(FileNotFoundError):
        await blobs.download(key)  # forgotten: asked again, and missing
    assert heads == [key, key]


async def test_the_blob_stores_versions_are_bounded_and_removed_keys_forgotten(store, heads):
    blobs = S3Blobs(store, version_cache=2)
    keys = [(await blobs.put_bytes(32, b"blob %d" % n, None)).key for n in range(3)]
    for key in keys:
        await blobs.download(key)
    await blobs.download(keys[2])
    assert heads == keys  # the newest two are kept
    await blobs.download(keys[0])  # the oldest was dropped: a HEAD again
    assert heads == [*keys, keys[0]]
    await blobs.remove(keys[2])
    with pytest.raises(FileNotFoundError):
        await blobs.download(keys[2])
    assert heads == [*keys, keys[0], keys[2]]

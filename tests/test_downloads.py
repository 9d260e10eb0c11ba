"""Downloads: the archive, by ref, one file out of it, the log, and the runner's dependency download."""

import io
import zipfile

import pytest
from yarl import URL

from jobsvc.http.keys import DB
from tests.conftest import FINISHED_JOB_TOKEN, PUBLIC_FILES, RUNNING_JOB_TOKEN, auth

CSP = "default-src 'none'; sandbox"


async def archive_bytes(client, job_id=31):
    resp = await client.get(f"/api/v4/projects/2/jobs/{job_id}/artifacts")
    assert resp.status == 200
    return await resp.read()


class TestArchive:
    async def test_download(self, client):
        resp = await client.get("/api/v4/projects/2/jobs/31/artifacts")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["Content-Transfer-Encoding"] == "binary"
        assert resp.headers["Content-Disposition"] == (
            "attachment; filename=\"artifacts.zip\"; filename*=UTF-8''artifacts.zip"
        )
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        names = zipfile.ZipFile(io.BytesIO(await resp.read())).namelist()
        assert names == list(PUBLIC_FILES)

    async def test_ranges(self, client):
        whole = await archive_bytes(client)
        resp = await client.get("/api/v4/projects/2/jobs/31/artifacts", headers={"Range": "bytes=0-0"})
        assert resp.status == 206 and await resp.read() == whole[:1]
        assert resp.headers["Content-Range"] == f"bytes 0-0/{len(whole)}"
        resp = await client.get("/api/v4/projects/2/jobs/31/artifacts", headers={"Range": "bytes=-10"})
        assert resp.status == 206 and await resp.read() == whole[-10:]
        resp = await client.get("/api/v4/projects/2/jobs/31/artifacts", headers={"Range": "bytes=-0"})
        assert resp.status == 416 and resp.headers["Content-Range"] == f"bytes */{len(whole)}"
        resp = await client.get("/api/v4/projects/2/jobs/31/artifacts", headers={"Range": "bytes=0-1,5-6"})
        assert resp.status == 200 and await resp.read() == whole
        resp = await client.get(
            "/api/v4/projects/2/jobs/31/artifacts", headers={"Range": "bytes=0-1", "If-Range": '"stale"'}
        )
        assert resp.status == 200
        etag = resp.headers["ETag"]
        resp = await client.get(
            "/api/v4/projects/2/jobs/31/artifacts", headers={"Range": "bytes=0-1", "If-Range": etag}
        )
        assert resp.status == 206

    async def test_head(self, client):
        resp = await client.head("/api/v4/projects/2/jobs/31/artifacts")
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(await archive_bytes(client))

    async def test_visibility_and_missing(self, client):
        assert (await client.get("/api/v4/projects/3/jobs/41/artifacts")).status == 403
        resp = await client.get("/api/v4/projects/1/jobs/8/artifacts")
        assert resp.status == 404 and await resp.json() == {"message": "404 Project Not Found"}
        resp = await client.get("/api/v4/projects/1/jobs/6/artifacts", headers=auth("reporter"))
        assert resp.status == 404 and await resp.json() == {"message": "404 Not Found"}
        assert (await client.get("/api/v4/projects/1/jobs/8/artifacts", headers=auth("guest"))).status == 403

    async def test_job_token(self, client):
        resp = await client.get("/api/v4/projects/1/jobs/8/artifacts", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})
        assert resp.status == 200

    @pytest.mark.directory_store
    async def test_missing_file_is_404_and_logged(self, client, config, caplog):
        next((config.data_dir / "artifacts" / "31").iterdir()).unlink()
        resp = await client.get("/api/v4/projects/2/jobs/31/artifacts")
        assert resp.status == 404 and await resp.json() == {"message": "404 Not Found"}
        assert "is missing" in caplog.text


class TestByRef:
    async def test_download_by_ref(self, client):
        resp = await client.get("/api/v4/projects/2/jobs/artifacts/main/download?job=build")
        assert resp.status == 200 and await resp.read() == await archive_bytes(client)
        assert resp.headers["Content-Disposition"].startswith('attachment; filename="artifacts.zip"')

    @pytest.mark.parametrize("ref", ["feature/x.y", "feature%2Fx.y", "feature%2Fx%2Ey"])
    async def test_refs_with_slashes_and_dots(self, client, ref):
        resp = await client.get(f"/api/v4/projects/2/jobs/artifacts/{ref}/download?job=build")
        assert resp.status == 200 and await resp.read() == await archive_bytes(client, 33)

    async def test_child_pipelines_count_and_older_pipelines_do_not(self, client):
        assert (await client.get("/api/v4/projects/2/jobs/artifacts/main/download?job=child-build")).status == 200
        resp = await client.get("/api/v4/projects/2/jobs/artifacts/main/download?job=lint")
        assert resp.status == 404 and await resp.json() == {"message": "404 Not found"}
        assert (await client.get("/api/v4/projects/2/jobs/artifacts/nope/download?job=build")).status == 404

    async def test_job_is_required(self, client):
        resp = await client.get("/api/v4/projects/2/jobs/artifacts/main/download")
        assert resp.status == 400 and await resp.json() == {"error": "job is missing"}

    @pytest.mark.parametrize("path", ["dist/app.txt", "dist%2Fapp.txt"])
    async def test_raw(self, client, path):
        resp = await client.get(f"/api/v4/projects/2/jobs/artifacts/main/raw/{path}?job=build")
        assert resp.status == 200 and await resp.read() == b"app\n"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="app.txt"'
        assert resp.headers["Content-Security-Policy"] == CSP

    async def test_raw_with_a_ref_holding_a_slash(self, client):
        resp = await client.get("/api/v4/projects/2/jobs/artifacts/feature/x.y/raw/f.txt?job=build")
        assert resp.status == 200 and await resp.read() == b"feature\n"

    async def test_anonymous_visibility(self, client):
        assert (await client.get("/api/v4/projects/3/jobs/artifacts/main/download?job=build")).status == 403
        resp = await client.get("/api/v4/projects/1/jobs/artifacts/master/raw/a.txt?job=teaspoon")
        assert resp.status == 404 and await resp.json() == {"message": "404 Project Not Found"}


class TestSingleFile:
    @pytest.mark.parametrize("path,body", [
        ("dist/app.txt", b"app\n"), ("dist%2Fapp.txt", b"app\n"), ("my%20dir/my%20file.txt", b"spaces\n"),
        ("data.bin", b"\x00\x01binary"),
    ])  # fmt: skip
    async def test_entries(self, client, path, body):
        resp = await client.get(f"/api/v4/projects/2/jobs/31/artifacts/{path}")
        assert resp.status == 200 and await resp.read() == body
        assert int(resp.headers["Content-Length"]) == len(body)
        assert resp.headers["Content-Disposition"].startswith("attachment; filename=")
        assert resp.headers["Content-Security-Policy"] == CSP

    async def test_html_is_an_attachment_in_a_sandbox(self, client):
        resp = await client.get("/api/v4/projects/2/jobs/31/artifacts/docs/index.html")
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="index.html"'
        assert resp.headers["Content-Security-Policy"] == CSP

    async def test_directories_need_the_trailing_slash(self, client):
        resp = await client.get("/api/v4/projects/2/jobs/31/artifacts/my%20dir/")
        assert resp.status == 200 and await resp.read() == b""
        assert (await client.get("/api/v4/projects/2/jobs/31/artifacts/my%20dir")).status == 404

    @pytest.mark.parametrize("path", [
        "nope.txt", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/etc/passwd", "..%5c..%5cetc%5cpasswd",
        "/etc/passwd", "%2Fetc%2Fpasswd", "./dist/app.txt", "dist/../dist/app.txt",
    ])  # fmt: skip
    async def test_missing_and_hostile_paths_are_plain_404s(self, client, path):
        # sent as written: the client must not normalise "./" or "../" away before the server sees them
        url = URL(f"http://{client.host}:{client.port}/api/v4/projects/2/jobs/31/artifacts/{path}", encoded=True)
        resp = await client.session.get(url)
        assert resp.status == 404
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert await resp.text() == "404 page not found\n"

    @pytest.mark.parametrize("path", ["a%00b", "%ff.txt", "dist/%c3%28"])
    async def test_nul_and_invalid_utf8(self, client, path):
        resp = await client.get(f"/api/v4/projects/2/jobs/31/artifacts/{path}")
        assert resp.status == 400 and await resp.json() == {"message": "400 Bad request"}

    async def test_head_and_ranges_ignored(self, client):
        resp = await client.head("/api/v4/projects/2/jobs/31/artifacts/dist/app.txt")
        assert resp.status == 200 and resp.headers["Content-Length"] == "4"
        resp = await client.get("/api/v4/projects/2/jobs/31/artifacts/dist/app.txt", headers={"Range": "bytes=0-0"})
        assert resp.status == 200 and await resp.read() == b"app\n"

    async def test_expired_archive_unless_the_pipeline_is_locked(self, client):
        resp = await client.get("/api/v4/projects/1/jobs/9/artifacts/a.txt", headers=auth("root"))
        assert resp.status == 404 and await resp.json() == {"message": "404 Not Found"}

        async def lock(tx):
            await tx.execute("UPDATE pipelines SET artifacts_locked = 1 WHERE id = 6")

        await client.app[DB].write(lock)
        resp = await client.get("/api/v4/projects/1/jobs/9/artifacts/a.txt", headers=auth("root"))
        assert resp.status == 200 and await resp.read() == b"a"


class TestTrace:
    async def test_plain_gitlab_answer(self, client):
        resp = await client.get("/api/v4/projects/1/jobs/8/trace", headers=auth("reporter"))
        assert resp.status == 200 and await resp.read() == b"Running rubocop\nok\n"
        assert resp.headers["Content-Type"] == "text/plain"
        assert resp.headers["Content-Disposition"] == 'infile; filename="8.log"'
        assert "Accept-Ranges" not in resp.headers and "Content-Range" not in resp.headers

    async def test_range_for_who_asks(self, client):
        resp = await client.get("/api/v4/projects/1/jobs/8/trace", headers={**auth("reporter"), "Range": "bytes=-3"})
        assert resp.status == 206 and await resp.read() == b"ok\n"
        assert resp.headers["Content-Range"] == "bytes 16-18/19"
        resp = await client.get("/api/v4/projects/1/jobs/8/trace", headers={**auth("reporter"), "Range": "bytes=19-"})
        assert resp.status == 416

    async def test_no_log_is_an_empty_200(self, client):
        resp = await client.get("/api/v4/projects/1/jobs/6/trace", headers=auth("root"))
        assert resp.status == 200 and await resp.read() == b""
        assert resp.headers["Content-Disposition"] == 'infile; filename="6.log"'

    async def test_permissions(self, client):
        assert (await client.get("/api/v4/projects/1/jobs/8/trace")).status == 401
        assert (await client.get("/api/v4/projects/1/jobs/8/trace", headers=auth("guest"))).status == 403
        headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN}
        assert (await client.get("/api/v4/projects/1/jobs/8/trace", headers=headers)).status == 401
        assert (await client.get("/api/v4/projects/1/jobs/999/trace", headers=auth("root"))).status == 404

    async def test_debug_trace_needs_a_developer(self, client):
        assert (await client.get("/api/v4/projects/1/jobs/12/trace", headers=auth("reporter"))).status == 403
        resp = await client.get("/api/v4/projects/1/jobs/12/trace", headers=auth("developer"))
        assert resp.status == 200 and await resp.read() == b"debug output\n"


class TestRunnerDependencyDownload:
    async def test_own_and_earlier_stage(self, client):
        resp = await client.get("/api/v4/jobs/8/artifacts", params={"token": RUNNING_JOB_TOKEN})
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/octet-stream"
        resp = await client.get("/api/v4/jobs/8/artifacts", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})
        assert resp.status == 200

    @pytest.mark.parametrize("job_id,token,status", [
        (8, None, 401), (8, FINISHED_JOB_TOKEN, 401), (8, "glrt-test-runner-00000", 401),
        (31, RUNNING_JOB_TOKEN, 403), (10, RUNNING_JOB_TOKEN, 403), (99999, RUNNING_JOB_TOKEN, 403),
        (6, RUNNING_JOB_TOKEN, 404),
    ])  # fmt: skip
    async def test_refusals(self, client, job_id, token, status):
        params = {"token": token} if token else {}
        assert (await client.get(f"/api/v4/jobs/{job_id}/artifacts", params=params)).status == status


@pytest.mark.parametrize(
    "content",
    [
        b"plain text, not a zip\n",  # runners may upload any file as the archive
        b"PK\x05\x06" + b"\xff" * 18,  # an end record that points nowhere
        b"",
    ],
    ids=["not-a-zip", "corrupt", "empty"],
)
async def test_an_entry_of_an_unreadable_archive_is_not_found(client, content):
    """Workhorse answers 500 there; the archive is a client's upload, so jobsvc answers the missing entry's 404."""
    import aiohttp

    data = aiohttp.FormData()
    data.add_field("file", content, filename="artifacts.zip", content_type="application/octet-stream")
    resp = await client.post("/api/v4/jobs/11/artifacts", data=data, headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})
    assert resp.status == 201, await resp.text()
    resp = await client.get("/api/v4/projects/1/jobs/11/artifacts/x.txt", headers=auth("root"))
    assert resp.status == 404 and await resp.text() == "404 page not found\n"
    resp = await client.get("/api/v4/projects/1/jobs/11/artifacts", headers=auth("root"))
    assert resp.status == 200 and await resp.read() == content

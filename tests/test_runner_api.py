"""The runner protocol: registration, job requests, state updates and the trace append."""

import asyncio
import json

import pytest

from jobsvc.http.app import create_app
from jobsvc.http.keys import DB
from tests.conftest import FINISHED_JOB_TOKEN, RUNNING_JOB_TOKEN, auth, job_blobs, job_log, temp_files

RUNNER = "glrt-test-runner-00000"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def reg_client(aiohttp_client, config):
    config.registration_token = "reg-token-123"
    return await aiohttp_client(create_app(config))


class TestRegistration:
    async def test_register_verify_delete(self, reg_client):
        resp = await reg_client.post(
            "/api/v4/runners",
            json={"token": "reg-token-123", "description": "r", "tag_list": "docker, linux", "run_untagged": False},
        )
        assert resp.status == 201
        body = await resp.json()
        assert set(body) == {"id", "token", "token_expires_at"} and body["token"].startswith("glrt-")
        assert (await reg_client.post("/api/v4/runners/verify", json={"token": body["token"]})).status == 200
        assert (await reg_client.delete("/api/v4/runners", json={"token": body["token"]})).status == 204
        assert (await reg_client.post("/api/v4/runners/verify", json={"token": body["token"]})).status == 403

    async def test_form_encoded_registration(self, reg_client):
        resp = await reg_client.post("/api/v4/runners", data={"token": "reg-token-123", "tag_list[]": "a"})
        assert resp.status == 201

    async def test_form_encoded_nested_info_is_kept(self, reg_client):
        form = "token=reg-token-123&info[name]=r1&info[config][gpus]=all&info[features][shared]=true"
        resp = await reg_client.post("/api/v4/runners", data=form, headers=FORM)
        assert resp.status == 201
        runner_id = (await resp.json())["id"]
        row = await reg_client.app[DB].fetchone("SELECT name, info FROM runners WHERE id = ?", (runner_id,))
        assert row["name"] == "r1"
        assert json.loads(row["info"]) == {"name": "r1", "config": {"gpus": "all"}, "features": {"shared": "true"}}

    @pytest.mark.parametrize("form,error", [
        ("info=x&info[name]=r", "info is invalid"),
        ("info[config]=x&info[config][gpus]=all", "info[config] is invalid"),
        ("info[config][gpus][]=all", "info[config][gpus] is invalid"),  # a list where a String is declared
        ("info" + "[a]" * 40 + "=x", "info is invalid"),
        ("info" + "[a" * 50_000 + "=x", "info is invalid"),
    ])  # fmt: skip
    async def test_form_encoded_bad_shapes(self, reg_client, form, error):
        count = "SELECT count(*) AS n FROM runners"
        before = (await reg_client.app[DB].fetchone(count))["n"]
        resp = await reg_client.post("/api/v4/runners", data=f"token=reg-token-123&{form}", headers=FORM)
        assert resp.status == 400 and await resp.json() == {"error": error}
        assert (await reg_client.app[DB].fetchone(count))["n"] == before

    async def test_missing_and_wrong_token(self, reg_client):
        resp = await reg_client.post("/api/v4/runners", json={})
        assert resp.status == 400 and await resp.json() == {"error": "token is missing"}
        resp = await reg_client.post("/api/v4/runners", json={"token": "nope"})
        assert resp.status == 403 and await resp.json() == {"message": "403 Forbidden"}

    async def test_registration_is_off_without_a_token(self, client):
        assert (await client.post("/api/v4/runners", json={"token": ""})).status == 400
        assert (await client.post("/api/v4/runners", json={"token": "anything"})).status == 403

    async def test_too_many_tags(self, reg_client):
        resp = await reg_client.post(
            "/api/v4/runners", json={"token": "reg-token-123", "tag_list": [f"t{i}" for i in range(51)]}
        )
        assert resp.status == 400
        assert await resp.json() == {
            "message": {"tags_list": ["Too many tags specified. Please limit the number of tags to 50"]}
        }


class TestRequestJob:
    async def test_takes_the_oldest_pending_job(self, client):
        resp = await client.post("/api/v4/jobs/request", json={"token": RUNNER, "info": {"name": "gitlab-runner"}})
        assert resp.status == 201
        job = await resp.json()
        assert job["id"] == 21 and job["token"].startswith("glcbt-")
        assert job["job_info"]["name"] == "child" and job["job_info"]["project_id"] == 1
        assert job["git_info"]["ref"] == "feature/x" and job["git_info"]["ref_type"] == "branch"
        names = {v["key"]: v for v in job["variables"]}
        assert names["CI_JOB_ID"]["value"] == "21" and names["CI_JOB_TOKEN"]["masked"] is True
        assert names["CI_COMMIT_REF_SLUG"]["value"] == "feature-x"
        assert job["steps"][0]["name"] == "script"
        state = await (await client.get("/api/v4/projects/1/jobs/21", headers=auth("root"))).json()
        assert state["status"] == "running" and state["runner"]["id"] == 1 and state["started_at"]
        # the job token now works where GitLab accepts job tokens
        assert (await client.get("/api/v4/job", headers={"JOB-TOKEN": job["token"]})).status == 200

    async def test_nothing_left(self, client):
        assert (await client.post("/api/v4/jobs/request", json={"token": RUNNER})).status == 201
        resp = await client.post("/api/v4/jobs/request", json={"token": RUNNER})
        assert resp.status == 204
        version = resp.headers["X-GitLab-Last-Update"]
        resp = await client.post("/api/v4/jobs/request", json={"token": RUNNER, "last_update": version})
        assert resp.status == 204 and resp.headers["X-GitLab-Last-Update"] == version

    async def test_bad_tokens(self, client):
        resp = await client.post("/api/v4/jobs/request", json={})
        assert resp.status == 400 and await resp.json() == {"error": "token is missing"}
        assert (await client.post("/api/v4/jobs/request", json={"token": "nope"})).status == 403

    async def test_concurrent_requests_never_share_a_job(self, client):
        answers = await asyncio.gather(
            *(client.post("/api/v4/jobs/request", json={"token": RUNNER}) for _ in range(10))
        )
        assert sorted(r.status for r in answers) == [201] + [204] * 9


class TestUpdateJob:
    async def test_finish_then_not_running(self, client):
        resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
        assert resp.status == 200 and resp.headers["Job-Status"] == "success"
        job = await (await client.get("/api/v4/projects/1/jobs/11", headers=auth("root"))).json()
        assert job["status"] == "success" and job["finished_at"]
        assert {"file_type": "trace", "size": 8, "filename": "job.log", "file_format": None} in job["artifacts"]
        resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
        assert resp.status == 403 and resp.headers["Job-Status"] == "success"
        assert await resp.json() == {"message": "403 Forbidden - Job is not running"}

    async def test_failed_with_reason(self, client):
        resp = await client.put(
            "/api/v4/jobs/11",
            headers={"JOB-TOKEN": RUNNING_JOB_TOKEN},
            json={"state": "failed", "failure_reason": "script_failure"},
        )
        assert resp.status == 200
        job = await (await client.get("/api/v4/projects/1/jobs/11", headers=auth("root"))).json()
        assert job["status"] == "failed" and job["failure_reason"] == "script_failure"

    async def test_unknown_failure_reason(self, client):
        await client.put(
            "/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "failed", "failure_reason": "cosmic_rays"}
        )
        job = await (await client.get("/api/v4/projects/1/jobs/11", headers=auth("root"))).json()
        assert job["failure_reason"] == "unknown_failure"

    async def test_keep_alive_and_bad_state(self, client):
        resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "running"})
        assert resp.status == 200 and resp.headers["Job-Status"] == "running"
        resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "exploded"})
        assert resp.status == 400

    @pytest.mark.parametrize("job_id,token", [(11, "wrong-token"), (999, RUNNING_JOB_TOKEN), (12, RUNNING_JOB_TOKEN)])
    async def test_forbidden(self, client, job_id, token):
        resp = await client.put(f"/api/v4/jobs/{job_id}", json={"token": token, "state": "success"})
        assert resp.status == 403 and await resp.json() == {"message": "403 Forbidden"}

    async def test_finished_job_own_token(self, client):
        resp = await client.put("/api/v4/jobs/12", json={"token": FINISHED_JOB_TOKEN, "state": "success"})
        assert resp.status == 403 and resp.headers["Job-Status"] == "success"


def patch(client, body, content_range, token=RUNNING_JOB_TOKEN, job_id=11):
    headers = {"JOB-TOKEN": token, "Content-Type": "text/plain"}
    if content_range is not None:
        headers["Content-Range"] = content_range
    return client.patch(f"/api/v4/jobs/{job_id}/trace", data=body, headers=headers)


async def trace_of(client, job_id=11):
    resp = await client.get(f"/api/v4/projects/1/jobs/{job_id}", headers=auth("root"))
    return resp


class TestTraceAppend:
    async def test_append_protocol(self, client):
        assert await job_log(client, 11) == b"started\n"
        resp = await patch(client, b"more\n", "8-12")
        assert resp.status == 202
        assert resp.headers["Range"] == "0-13" and resp.headers["Job-Status"] == "running"
        assert resp.headers["X-GitLab-Trace-Update-Interval"] == "60"
        # the response was lost and the runner sends the same chunk again: nothing is duplicated
        resp = await patch(client, b"more\n", "8-12")
        assert resp.status == 416 and resp.headers["Range"] == "0-13"
        assert await resp.json() == {"error": "416 Range Not Satisfiable"}
        # a gap: the runner is ahead of the server
        resp = await patch(client, b"later\n", "20-25")
        assert resp.status == 416 and resp.headers["Range"] == "0-13"
        # older runners send an inclusive end, newer ones exclusive; only the start counts
        assert (await patch(client, b"x", "13-14/14")).status == 202
        assert await job_log(client, 11) == b"started\nmore\nx"

    async def test_force_patch_with_empty_body(self, client):
        resp = await patch(client, b"", "8-8")
        assert resp.status == 202 and resp.headers["Range"] == "0-8"

    async def test_content_range_required_and_parsed(self, client):
        resp = await patch(client, b"x", None)
        assert resp.status == 400 and await resp.json() == {"error": "400 Missing header Content-Range"}
        resp = await patch(client, b"x", "abc")
        assert resp.status == 400 and await resp.json() == {"message": "400 Bad request - Invalid Content-Range"}

    async def test_concurrent_patches_at_one_offset(self, client):
        answers = await asyncio.gather(*(patch(client, f"chunk {i}\n".encode(), "8-15") for i in range(8)))
        assert sorted(r.status for r in answers) == [202] + [416] * 7
        text = await job_log(client, 11)
        assert text.startswith(b"started\nchunk ") and text.count(b"chunk") == 1

    async def test_not_running_and_bad_token(self, client):
        resp = await patch(client, b"x", "0-0", token=FINISHED_JOB_TOKEN, job_id=12)
        assert resp.status == 403 and resp.headers["Job-Status"] == "success"
        assert (await patch(client, b"x", "8-8", token="bad-token-xx")).status == 403

    async def test_compressed_bodies_are_refused(self, client):
        resp = await client.patch(
            "/api/v4/jobs/11/trace",
            data=b"x",
            headers={"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "8-8", "Content-Encoding": "gzip"},
        )
        assert resp.status == 415

    async def test_size_limit_fails_the_job(self, aiohttp_client, config):
        config.trace_size_limit = 1  # MB
        client = await aiohttp_client(create_app(config))
        resp = await patch(client, b"x" * (1024 * 1024), "8-1048583")
        assert resp.status == 403 and await resp.json() == {"error": "403 Forbidden"}
        job = await (await trace_of(client)).json()
        assert job["status"] == "failed" and job["failure_reason"] == "trace_size_exceeded"


def form(
    content: bytes, *, token_first: str | None = None, token_last: str | None = None, filename="artifacts.zip", **fields
):
    import aiohttp

    data = aiohttp.FormData()
    if token_first:
        data.add_field("token", token_first)
    for key, value in fields.items():
        data.add_field(key, value)
    data.add_field("file", content, filename=filename, content_type="application/octet-stream")
    if token_last:
        data.add_field("token", token_last)
    return data


def a_zip(name="out/hello.txt", text="hello\n") -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


class TestUpload:
    url = "/api/v4/jobs/11/artifacts"
    headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN}

    async def test_upload_archive(self, client, config):
        content = a_zip()
        resp = await client.post(
            self.url + "?artifact_type=archive&artifact_format=zip&expire_in=1+week",
            data=form(content),
            headers=self.headers,
        )
        assert resp.status == 201 and await resp.text() == "201"
        job = await (await client.get("/api/v4/projects/1/jobs/11", headers=auth("root"))).json()
        assert job["artifacts_file"] == {"filename": "artifacts.zip", "size": len(content)}
        from datetime import UTC, datetime, timedelta

        expires = datetime.fromisoformat(job["artifacts_expire_at"])
        assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
        # the same bytes again (a runner retry) are accepted; different bytes are not
        resp = await client.post(self.url, data=form(content), headers=self.headers)
        assert resp.status == 201
        resp = await client.post(self.url, data=form(a_zip(text="other")), headers=self.headers)
        assert resp.status == 400
        assert await resp.json() == {"message": "400 Bad request - another artifact of the same type already exists"}
        assert temp_files(config) == []
        assert len(await job_blobs(client, 11)) == 1

    async def test_token_as_a_form_field(self, client):
        resp = await client.post(self.url, data=form(a_zip(), token_first=RUNNING_JOB_TOKEN))
        assert resp.status == 201
        resp = await client.post(
            "/api/v4/jobs/11/artifacts?artifact_type=junit&artifact_format=gzip",
            data=form(b"\x1f\x8b", token_last=RUNNING_JOB_TOKEN),
        )
        assert resp.status == 403

    @pytest.mark.parametrize("query,body", [
        ("artifact_type=archive&artifact_format=gzip",
         {"message": "400 Bad request - archive artifacts must be in zip format"}),
        ("artifact_type=junit&artifact_format=raw",
         {"message": "400 Bad request - junit artifacts must be in gzip format"}),
        ("artifact_type=bogus", {"error": "artifact_type does not have a valid value"}),
        ("artifact_format=tar", {"error": "artifact_format does not have a valid value"}),
        ("expire_in=someday", {"error": "expire_in is invalid"}),
    ])  # fmt: skip
    async def test_rejected(self, client, query, body):
        resp = await client.post(f"{self.url}?{query}", data=form(a_zip()), headers=self.headers)
        assert resp.status == 400 and await resp.json() == body

    async def test_missing_file_and_bad_token(self, client):
        import aiohttp

        data = aiohttp.FormData()
        data.add_field("expire_in", "1 day")
        data.add_field("other", b"x", filename="x")
        resp = await client.post(self.url, data=data, headers=self.headers)
        assert resp.status == 400 and await resp.json() == {"error": "file is missing"}
        resp = await client.post(self.url, data=form(a_zip()), headers={"JOB-TOKEN": "wrong-token-here"})
        assert resp.status == 403
        resp = await client.post(
            "/api/v4/jobs/12/artifacts", data=form(a_zip()), headers={"JOB-TOKEN": FINISHED_JOB_TOKEN}
        )
        assert resp.status == 403 and resp.headers["Job-Status"] == "success"

    async def test_too_large_leaves_nothing(self, aiohttp_client, config):
        config.max_artifacts_size = 1  # MB
        client = await aiohttp_client(create_app(config))

        async def body():
            for _ in range(3):
                yield b"x" * (1024 * 1024)

        import aiohttp

        data = aiohttp.FormData()
        data.add_field("file", body(), filename="big.zip")
        resp = await client.post(self.url, data=data, headers=self.headers)
        assert resp.status == 413
        assert await resp.json() == {"message": "file size has reached maximum size limit"}
        assert temp_files(config) == [] and await job_blobs(client, 11) == []
        job = await (await client.get("/api/v4/projects/1/jobs/11", headers=auth("root"))).json()
        assert job["artifacts"] == []

    @pytest.mark.directory_store
    async def test_full_disk_is_507_and_leaves_nothing(self, client, config, monkeypatch):
        import errno

        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr("jobsvc.storage.store.os.fsync", full)
        resp = await client.post(self.url, data=form(a_zip()), headers=self.headers)
        assert resp.status == 507 and await resp.json() == {"message": "507 Insufficient Storage"}
        assert list((config.data_dir / "tmp").iterdir()) == []
        monkeypatch.undo()
        assert (await client.post(self.url, data=form(a_zip()), headers=self.headers)).status == 201

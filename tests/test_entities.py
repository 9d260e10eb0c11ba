"""The job entity (lib/api/entities/ci/job.rb and job_basic.rb): fields, formats and rules for optional keys."""

import re
from datetime import UTC, datetime

from jobsvc.http import entities
from tests.conftest import SHA, auth

TS = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
JOB_KEYS = [
    "id",
    "status",
    "stage",
    "name",
    "ref",
    "tag",
    "coverage",
    "allow_failure",
    "created_at",
    "started_at",
    "finished_at",
    "erased_at",
    "duration",
    "queued_duration",
    "user",
    "commit",
    "pipeline",
    "failure_reason",
    "web_url",
    "project",
    "source",
    "artifacts_file",
    "artifacts",
    "runner",
    "runner_manager",
    "artifacts_expire_at",
    "archived",
    "tag_list",
]


async def get(client, job_id, who="root", project=1):
    resp = await client.get(f"/api/v4/projects/{project}/jobs/{job_id}", headers=auth(who))
    assert resp.status == 200
    return await resp.json()


async def test_failed_job_shape(client):
    job = await get(client, 6)
    assert list(job) == [k for k in JOB_KEYS if k != "artifacts_file"]
    base = f"http://{client.host}:{client.port}"
    assert job["status"] == "failed" and job["failure_reason"] == "script_failure"
    assert job["created_at"] == "2015-12-24T15:51:21.727Z"
    assert job["started_at"] == "2015-12-24T17:54:24.729Z"
    assert job["finished_at"] == "2015-12-24T17:54:24.921Z"
    assert job["duration"] == 0.192
    assert job["queued_duration"] == round(
        (datetime(2015, 12, 24, 17, 54, 24, 729000) - datetime(2015, 12, 24, 15, 51, 21, 800000)).total_seconds(), 3
    )
    assert job["coverage"] == 97.0
    assert job["tag_list"] == ["docker", "linux"]
    assert job["web_url"] == f"{base}/gitlab-org/gitlab-test/-/jobs/6"
    assert job["project"] == {"ci_job_token_scope_enabled": False}
    assert job["commit"]["id"] == SHA and job["commit"]["short_id"] == SHA[:8]
    assert job["commit"]["created_at"] == "2015-12-24T16:51:14.000+01:00"
    assert job["commit"]["title"] == "Test the CI integration."
    assert job["pipeline"] == {
        "id": 6,
        "iid": 1,
        "project_id": 1,
        "sha": SHA,
        "ref": "master",
        "status": job["pipeline"]["status"],
        "source": "push",
        "created_at": "2015-12-24T15:50:16.123Z",
        "updated_at": job["pipeline"]["updated_at"],
        "web_url": f"{base}/gitlab-org/gitlab-test/-/pipelines/6",
    }
    assert job["user"]["username"] == "root" and job["user"]["web_url"] == f"{base}/root"
    assert job["runner"]["id"] == 1 and job["runner"]["is_shared"] is True
    assert job["runner"]["runner_type"] == "instance_type"
    assert job["runner_manager"] is None
    assert job["ref"] == "master" and job["tag"] is False


RUNNER_KEYS = [
    "id", "description", "ip_address", "active", "paused", "is_shared", "runner_type", "name", "online",
    "created_at", "status", "job_execution_status",
]  # fmt: skip


async def test_nested_runner_is_gitlabs_runner_entity(client):
    """lib/api/entities/ci/runner.rb: created_at, and job_execution_status (active while it runs a job)."""
    runner = (await get(client, 6))["runner"]
    assert list(runner) == RUNNER_KEYS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", runner["created_at"])
    assert runner["job_execution_status"] == "idle"
    resp = await client.post("/api/v4/jobs/request", json={"token": "glrt-test-runner-00000"})
    assert resp.status == 201
    assert (await get(client, 6))["runner"]["job_execution_status"] == "active"


async def test_success_job_with_archive_and_log(client):
    job = await get(client, 8)
    assert "failure_reason" not in job
    assert job["artifacts_file"]["filename"] == "artifacts.zip" and job["artifacts_file"]["size"] > 0
    types = {a["file_type"]: a for a in job["artifacts"]}
    assert set(types) == {"archive", "trace"}
    assert types["archive"]["file_format"] == "zip"
    assert types["trace"] == {
        "file_type": "trace",
        "size": len("Running rubocop\nok\n"),
        "filename": "job.log",
        "file_format": None,
    }


async def test_expired_archive_is_listed_but_has_no_artifacts_file(client):
    job = await get(client, 9)
    assert "artifacts_file" not in job
    assert [a["file_type"] for a in job["artifacts"]] == ["archive"]
    assert job["artifacts_expire_at"] == "2016-01-19T09:05:50.355Z"


async def test_timestamps_and_pending_job(client):
    job = await get(client, 21)
    assert job["status"] == "pending"
    assert job["started_at"] is None and job["duration"] is None
    assert isinstance(job["queued_duration"], float) and job["queued_duration"] > 0
    assert TS.match(job["created_at"])
    assert job["ref"] == "feature/x"


async def test_running_job_duration_grows(client):
    job = await get(client, 11)
    assert job["finished_at"] is None and job["duration"] > 0
    assert job["user"]["username"] == "developer"


async def test_web_url_uses_external_url(aiohttp_client, config):
    from jobsvc.http.app import create_app

    config.external_url = "https://gitlab.example.com"
    client = await aiohttp_client(create_app(config))
    job = await get(client, 8)
    assert job["web_url"] == "https://gitlab.example.com/gitlab-org/gitlab-test/-/jobs/8"
    resp = await client.get("/api/v4/projects/1/jobs?per_page=1", headers=auth("root"))
    assert resp.headers["Link"].startswith("<https://gitlab.example.com/api/v4/projects/1/jobs?")


def test_duration_is_computed_at_read_time():
    row = {"started_at": "2020-01-01T00:00:00.000Z", "finished_at": None}
    later = datetime(2020, 1, 1, 0, 0, 10, tzinfo=UTC)
    from jobsvc.domain.timefmt import seconds_between

    assert seconds_between(row["started_at"], row["finished_at"], later) == 10.0
    assert entities.ONLINE_WINDOW.total_seconds() == 7200

"""Job actions over a real socket: python-gitlab's calls, and races that must end consistently."""

import asyncio

import aiohttp
import gitlab
import pytest

from tests.conftest import serve_fixture

pytestmark = pytest.mark.slow  # every test talks to a `jobsvc serve` child process

TOKEN = "glpat-race-maintainer-00"
RACERS = 20
CI = "stages: [build, test]\nbuild: {stage: build, script: [make]}\ntest: {stage: test, script: [make test]}\n"
FIXTURE = {
    "users": [{"username": "maint", "tokens": [{"token": TOKEN}]}],
    "runners": [{"token": "glrt-race-runner-0000", "is_shared": True}],
    "projects": [{
        "path": "race/app", "id": 1, "default_branch": "master", "ci_config": CI,
        "members": [{"user": "maint", "role": "maintainer"}],
        "pipelines": [
            {"id": 1, "ref": "master", "user": "maint", "jobs": [
                {"id": 1, "name": "flaky", "status": "failed", "trace": "boom\n",
                 "artifacts": {"files": {"a.txt": "a"}}},
                {"id": 2, "name": "ship", "stage": "deploy", "status": "manual", "when": "manual"},
                {"id": 3, "name": "built", "status": "success", "artifacts": {"files": {"b.txt": "b"},
                                                                            "expire_at": "2099-01-01T00:00:00Z"}},
                {"id": 4, "name": "waiting", "status": "pending"},
            ]},
            {"id": 2, "ref": "master", "user": "maint", "jobs": [
                {"id": 100 + i, "name": f"racer-{i}", "status": "running", "token": f"glcbt-racer-{i:04d}-000"}
                for i in range(RACERS)
            ]},
            {"id": 3, "ref": "master", "user": "maint", "jobs": [{"id": 200, "name": "again", "status": "failed"}]},
        ],
    }],
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = serve_fixture(tmp_path_factory.mktemp("race"), FIXTURE)
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def project(server):
    with gitlab.Gitlab(server.url, private_token=TOKEN) as gl:
        yield gl.projects.get(1)


def test_python_gitlab_actions(project):
    flaky = project.jobs.get(1)
    retried = flaky.retry()
    assert retried["status"] == "pending" and retried["id"] != 1
    flaky.erase()
    assert project.jobs.get(1).erased_at is not None
    ship = project.jobs.get(2)
    ship.play()
    assert project.jobs.get(2).status == "pending"
    built = project.jobs.get(3)
    built.keep_artifacts()
    assert project.jobs.get(3).artifacts_expire_at is None
    waiting = project.jobs.get(4)
    waiting.cancel()
    assert project.jobs.get(4).status == "canceled"
    pipeline = project.pipelines.create({"ref": "master"})
    assert pipeline.status == "pending"
    assert {j.name: j.status for j in pipeline.jobs.list(get_all=True)} == {"build": "pending", "test": "created"}


async def test_fifty_concurrent_retries_over_a_socket(server):
    headers = {"PRIVATE-TOKEN": TOKEN}
    async with aiohttp.ClientSession() as http:

        async def retry():
            async with http.post(f"{server.url}/api/v4/projects/1/jobs/200/retry", headers=headers) as resp:
                return resp.status

        statuses = await asyncio.gather(*(retry() for _ in range(50)))
    assert sorted(statuses) == [201] + [403] * 49


async def test_cancel_racing_the_runner_ends_consistently(server):
    api = f"{server.url}/api/v4"
    async with aiohttp.ClientSession() as http:

        async def cancel(job_id):
            async with http.post(f"{api}/projects/1/jobs/{job_id}/cancel", headers={"PRIVATE-TOKEN": TOKEN}) as resp:
                return resp.status

        async def succeed(job_id, token):
            async with http.put(f"{api}/jobs/{job_id}", json={"token": token, "state": "success"}) as resp:
                return resp.status

        calls = []
        for i in range(RACERS):
            calls += [cancel(100 + i), succeed(100 + i, f"glcbt-racer-{i:04d}-000")]
        statuses = await asyncio.gather(*calls)
        assert all(status < 500 for status in statuses)
        assert set(statuses) <= {200, 201, 403}
        async with http.get(
            f"{api}/projects/1/pipelines/2/jobs?per_page=100", headers={"PRIVATE-TOKEN": TOKEN}
        ) as resp:
            jobs = await resp.json()
        async with http.get(f"{api}/projects/1/pipelines/2", headers={"PRIVATE-TOKEN": TOKEN}) as resp:
            pipeline = await resp.json()
    finals = {job["status"] for job in jobs}
    assert finals <= {"canceled", "success"} and all(job["finished_at"] for job in jobs)
    assert pipeline["status"] == ("success" if finals == {"success"} else "canceled")

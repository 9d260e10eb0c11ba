"""A job's whole life over real HTTP: a script speaking the runner protocol runs it, python-gitlab reads it."""

import io
import zipfile

import gitlab
import pytest
import requests

from tests.conftest import serve_fixture

pytestmark = pytest.mark.slow  # every test talks to a `jobsvc serve` child process

RUNNER_TOKEN = "glrt-e2e-runner-000000"
TOKEN = "glpat-e2e-maintainer-0000"
FIXTURE = {
    "users": [{"username": "alice", "tokens": [{"token": TOKEN}]}],
    "runners": [{"description": "e2e", "token": RUNNER_TOKEN, "tags": ["docker"], "is_shared": True}],
    "projects": [{
        "path": "e2e/app", "visibility": "private", "default_branch": "main",
        "members": [{"user": "alice", "role": "maintainer"}],
        "pipelines": [{"ref": "main", "user": "alice", "jobs": [
            {"name": "build", "stage": "build", "status": "pending", "tags": ["docker"], "script": ["make"]},
        ]}],
    }],
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = serve_fixture(tmp_path_factory.mktemp("e2e"), FIXTURE)
    yield running
    assert running.stop() == 0


def run_job(url: str) -> int:
    """What gitlab-runner does: request, send the log in pieces, upload artifacts, report success."""
    api = f"{url}/api/v4"
    with requests.Session() as http:
        resp = http.post(f"{api}/jobs/request", json={"token": RUNNER_TOKEN, "info": {"name": "gitlab-runner"}})
        assert resp.status_code == 201, resp.text
        job = resp.json()
        job_id, token = job["id"], job["token"]
        assert job["steps"][0]["script"] == ["make"]
        sent = 0
        for piece in (b"$ make\n", b"compiling...\n", b"done\n"):
            resp = http.patch(
                f"{api}/jobs/{job_id}/trace",
                data=piece,
                headers={"JOB-TOKEN": token, "Content-Range": f"{sent}-{sent + len(piece) - 1}"},
            )
            assert resp.status_code == 202, resp.text
            sent += len(piece)
            assert resp.headers["Range"] == f"0-{sent}"
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("out/app.txt", "the app\n")
            zf.writestr("out/report.html", "<h1>ok</h1>")
        resp = http.post(
            f"{api}/jobs/{job_id}/artifacts?artifact_format=zip&artifact_type=archive&expire_in=1+day",
            headers={"JOB-TOKEN": token},
            files={"file": ("artifacts.zip", archive.getvalue())},
        )
        assert resp.status_code == 201, resp.text
        resp = http.put(f"{api}/jobs/{job_id}", json={"token": token, "state": "success"})
        assert resp.status_code == 200 and resp.headers["Job-Status"] == "success"
        resp = http.post(f"{api}/jobs/request", json={"token": RUNNER_TOKEN})
        assert resp.status_code == 204
    return job_id


def test_a_job_end_to_end(server):
    job_id = run_job(server.url)
    with gitlab.Gitlab(server.url, private_token=TOKEN) as gl:
        project = gl.projects.get("e2e/app")
        job = project.jobs.get(job_id)
        assert job.status == "success" and job.artifacts_file["filename"] == "artifacts.zip"
        assert job.trace() == b"$ make\ncompiling...\ndone\n"
        names = zipfile.ZipFile(io.BytesIO(job.artifacts())).namelist()
        assert names == ["out/app.txt", "out/report.html"]
        assert job.artifact("out/app.txt") == b"the app\n"
        by_ref = project.artifacts.download(ref_name="main", job="build")
        assert zipfile.ZipFile(io.BytesIO(by_ref)).read("out/report.html") == b"<h1>ok</h1>"
        assert project.artifacts.raw("main", "out/app.txt", "build") == b"the app\n"
        assert project.pipelines.list(get_all=True)[0].status == "success"

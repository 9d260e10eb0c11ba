"""python-gitlab, unmodified, against `jobsvc serve` on a real socket."""

import gitlab
import pytest

from tests.conftest import BIG_PROJECT_JOBS, TOKENS

pytestmark = pytest.mark.slow  # every test talks to a `jobsvc serve` child process


@pytest.fixture(scope="module")
def gl(world_server):
    with gitlab.Gitlab(world_server.url, private_token=TOKENS["root"]) as client:
        yield client


def test_auth_and_version(gl):
    gl.auth()
    assert gl.user.username == "root"
    version, revision = gl.version()
    assert version != "unknown" and revision != "unknown"


def test_project_by_id_and_by_path(gl):
    by_id = gl.projects.get(1)
    by_path = gl.projects.get("gitlab-org/gitlab-test")
    assert by_id.id == by_path.id == 1
    assert by_path.path_with_namespace == "gitlab-org/gitlab-test"


def test_jobs_list_get_all(gl):
    jobs = gl.projects.get(1, lazy=True).jobs.list(get_all=True)
    assert [job.id for job in jobs] == [21, 12, 11, 10, 9, 8, 7, 6]


def test_jobs_list_iterator_across_pages(gl):
    listing = gl.projects.get(5, lazy=True).jobs.list(iterator=True, per_page=10)
    ids = [job.id for job in listing]
    assert len(ids) == BIG_PROJECT_JOBS and ids == sorted(ids, reverse=True)
    assert listing.total_pages is None  # GitLab never sends X-Total here


def test_keyset_pagination(gl):
    listing = gl.projects.get(5, lazy=True).jobs.list(
        iterator=True, pagination="keyset", order_by="id", sort="desc", per_page=7
    )
    ids = [job.id for job in listing]
    assert ids == sorted(range(1001, 1001 + BIG_PROJECT_JOBS), reverse=True)


def test_scope_filter(gl):
    jobs = gl.projects.get(1, lazy=True).jobs.list(scope=["success", "manual"], get_all=True)
    assert [job.id for job in jobs] == [12, 10, 9, 8]


def test_pipeline_jobs_include_retried(gl):
    pipeline = gl.projects.get(1, lazy=True).pipelines.get(6)
    assert pipeline.ref == "master"
    latest = pipeline.jobs.list(get_all=True)
    everything = pipeline.jobs.list(include_retried=True, get_all=True)
    assert len(everything) == len(latest) + 1
    assert 7 in {job.id for job in everything} - {job.id for job in latest}


def test_get_job(gl):
    job = gl.projects.get(1, lazy=True).jobs.get(8)
    assert (job.id, job.name, job.pipeline["id"], job.status) == (8, "rubocop", 6, "success")
    assert job.artifacts_file["filename"] == "artifacts.zip"


def test_missing_job_raises_get_error(gl):
    with pytest.raises(gitlab.exceptions.GitlabGetError) as info:
        gl.projects.get(1, lazy=True).jobs.get(999)
    assert info.value.response_code == 404


def test_bad_token(world_server):
    with gitlab.Gitlab(world_server.url, private_token="glpat-wrong-wrong-wrong") as bad:
        with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
            bad.projects.get(1)
        with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
            bad.auth()


def test_job_token_client(world_server):
    from tests.conftest import RUNNING_JOB_TOKEN

    with gitlab.Gitlab(world_server.url, job_token=RUNNING_JOB_TOKEN) as client:
        jobs = client.projects.get(1, lazy=True).jobs.list(get_all=True, scope="running")
        assert [job.id for job in jobs] == [11]


def test_gitlab_cli(world_server):
    """The `gitlab` CLI logs in with GET /user, then lists and gets jobs."""
    import json
    import subprocess
    import sys

    base = [
        sys.executable,
        "-m",
        "gitlab",
        "--server-url",
        world_server.url,
        "--private-token",
        TOKENS["developer"],
        "-o",
        "json",
    ]
    listed = subprocess.run(
        [*base, "project-job", "list", "--project-id", "gitlab-org/gitlab-test", "--get-all"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [job["id"] for job in json.loads(listed.stdout)] == [21, 12, 11, 10, 9, 8, 7, 6]
    got = subprocess.run(
        [*base, "project-job", "get", "--project-id", "1", "--id", "8"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(got.stdout)["name"] == "rubocop"


def test_get_all_on_a_project_addressed_by_path(gl):
    """python-gitlab follows Link: the encoded path (%2F; %2E too) must survive in it."""
    jobs = gl.projects.get("acme/big.app", lazy=True).jobs.list(get_all=True, per_page=10)
    assert len(jobs) == BIG_PROJECT_JOBS
    keyset = gl.projects.get("acme/big.app", lazy=True).jobs.list(
        get_all=True, pagination="keyset", order_by="id", sort="desc", per_page=10
    )
    assert len(keyset) == BIG_PROJECT_JOBS
    raw = gl.http_list("/projects/acme%2Fbig%2Eapp/pipelines/60/jobs", get_all=True, per_page=10)
    assert len(raw) == BIG_PROJECT_JOBS

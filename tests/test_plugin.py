"""The pytest plugin (jobsvc.testing): jobsvc_server and its factory, from every kind of source, in both modes."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import threading
import urllib.request

import aiohttp
import gitlab
import pytest
import yaml

from jobsvc.settings import Config
from jobsvc.storage.fixture_format import FixtureError
from jobsvc.testing import DEMO, JobsvcServer, ServerError, start_server
from jobsvc.testing.plugin import MARKER
from jobsvc.testing.processes import serve_arguments
from jobsvc.testing.servers import fixture_files

SMALL = {
    "users": [
        {"username": "alice", "tokens": [{"token": "glpat-alice-000000"}, {"token": "glpat-alice-second"}]},
        {"username": "bob", "tokens": [{"token": "glpat-bob-00000000"}]},
        {"username": "nobody"},
    ],
    "runners": [{"id": 5, "description": "small-runner", "token": "glrt-small-000000", "is_shared": True}],
    "projects": [{
        "path": "small/app", "id": 1, "visibility": "private",
        "members": [{"user": "alice", "role": "maintainer"}],
        "pipelines": [{"id": 1, "ref": "main", "user": "alice", "jobs": [
            {"id": 1, "name": "build", "status": "success"},
        ]}],
    }],
}  # fmt: skip


def version(server: JobsvcServer) -> dict:
    request = urllib.request.Request(f"{server.api_url}/version", headers={"PRIVATE-TOKEN": server.token()})
    with urllib.request.urlopen(request) as resp:
        return json.loads(resp.read())


# --- without a server ---


def test_the_marker_is_registered(pytestconfig):
    assert MARKER in pytestconfig.getini("markers")


def test_pip_install_brings_the_plugin():
    (entry,) = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "jobsvc"]
    assert entry.value == "jobsvc.testing.plugin"


@pytest.mark.slow
def test_loading_the_plugin_imports_no_server_code():
    """pytest loads it in every project that has jobsvc: that must cost nothing."""
    heavy = ("aiohttp", "marshmallow", "yaml")
    probe = f"import sys, jobsvc.testing.plugin; print([m for m in {heavy!r} if m in sys.modules])"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_sources_become_fixture_files(tmp_path):
    given = tmp_path / "mine.yaml"
    files = fixture_files(tmp_path, (SMALL, given, str(given)))
    assert files == [tmp_path / "fixture-1.yaml", given, given]
    assert yaml.safe_load(files[0].read_text()) == SMALL
    assert fixture_files(tmp_path, ()) == [DEMO]
    with pytest.raises(TypeError, match="not list"):
        fixture_files(tmp_path, ([SMALL],))


def test_serve_arguments_carry_every_changed_setting(tmp_path):
    config = Config(
        data_dir=tmp_path / "d",
        fixtures=["a.yaml", "b.yaml"],
        host="127.0.0.1",
        port=0,
        access_log=True,
        external_url="http://gitlab.example.com",
        jobs_rate_limit=0,
    )
    args = serve_arguments(config)
    assert args == [
        "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / "d"), "--fixtures", "a.yaml",
        "--fixtures", "b.yaml", "--external-url", "http://gitlab.example.com", "--jobs-rate-limit", "0",
        "--access-log",
    ]  # fmt: skip


def test_a_bad_source_fails_before_anything_starts(tmp_path):
    bad = {"projects": [{"path": "x/y", "pipelines": [{"jobs": [{"name": "j", "status": "nope"}]}]}]}
    with pytest.raises(FixtureError, match="status: Must be one of"):
        start_server(tmp_path, bad)
    with pytest.raises(TypeError, match="not a jobsvc setting: colour"):
        start_server(tmp_path, SMALL, colour="blue")
    with pytest.raises(TypeError, match="not a jobsvc setting: fixtures"):
        start_server(tmp_path, SMALL, fixtures=["x.yaml"])
    assert not (tmp_path / "data").exists()


# --- servers ---


@pytest.mark.slow
def test_demo_by_default(jobsvc_server):
    assert jobsvc_server.url.startswith("http://127.0.0.1:") and not jobsvc_server.subprocess
    assert jobsvc_server.tokens["root"] == "glpat-demo-root-000000000000"
    assert jobsvc_server.tokens["readonly"] == "glpat-demo-readonly-000000000000"
    assert jobsvc_server.runner_tokens["shared-runner-1"] == jobsvc_server.runner_tokens["1"]
    assert version(jobsvc_server)["version"].endswith("-jobsvc")
    gl = jobsvc_server.gitlab
    assert isinstance(gl, gitlab.Gitlab) and gl is jobsvc_server.gitlab
    gl.auth()
    assert gl.user.username == "root"  # the demo's admin
    assert gl.projects.get("gitlab-org/gitlab-test").jobs.get(8).name == "rubocop"


@pytest.mark.slow
def test_data_lives_under_tmp_path(jobsvc_server, tmp_path):
    assert jobsvc_server.data_dir == tmp_path / "jobsvc-1" / "data"
    assert (jobsvc_server.data_dir / "jobsvc.sqlite3").is_file()


@pytest.mark.slow
@pytest.mark.jobsvc(SMALL, external_url="http://gitlab.example.com")
def test_the_marker_gives_the_sources_and_settings(jobsvc_server):
    assert jobsvc_server.tokens == {"alice": "glpat-alice-000000", "bob": "glpat-bob-00000000"}
    assert jobsvc_server.runner_tokens == {"small-runner": "glrt-small-000000", "5": "glrt-small-000000"}
    gl = jobsvc_server.gitlab  # no admin: the first user's
    gl.auth()
    assert gl.user.username == "alice"
    job = gl.projects.get("small/app").jobs.get(1)
    assert job.web_url == "http://gitlab.example.com/small/app/-/jobs/1"


@pytest.mark.slow
@pytest.mark.jobsvc(SMALL)
def test_gitlab_as_another_user(jobsvc_server):
    with pytest.raises(gitlab.GitlabGetError) as refused:
        jobsvc_server.gitlab_as("bob").projects.get("small/app")
    assert refused.value.response_code == 404
    with pytest.raises(LookupError, match="no token for 'nobody'; users with tokens: alice, bob"):
        jobsvc_server.gitlab_as("nobody")


@pytest.mark.slow
def test_factory_two_servers_from_a_file_and_a_dict(jobsvc_server_factory, tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL))
    first = jobsvc_server_factory(path)
    second = jobsvc_server_factory(
        {**SMALL, "users": [{"username": "carol", "tokens": [{"token": "glpat-carol-0000"}]}], "projects": []}
    )
    assert first.url != second.url and first.data_dir != second.data_dir
    assert [p.path_with_namespace for p in first.gitlab.projects.list(get_all=True)] == ["small/app"]
    assert second.gitlab.projects.list(get_all=True) == []
    assert second.tokens == {"carol": "glpat-carol-0000"}
    first.gitlab_as("bob")
    with pytest.raises(LookupError):
        second.gitlab_as("bob")


@pytest.mark.slow
def test_several_sources_in_one_server(jobsvc_server_factory):
    extra = {"users": [{"username": "carol", "tokens": [{"token": "glpat-carol-0000"}]}]}
    server = jobsvc_server_factory(DEMO, extra)
    assert server.tokens["carol"] == "glpat-carol-0000" and "root" in server.tokens
    server.gitlab_as("carol").auth()


@pytest.mark.slow
def test_subprocess_mode(jobsvc_server_factory):
    server = jobsvc_server_factory(SMALL, subprocess=True, external_url="http://ci.example.com")
    assert server.subprocess and "subprocess" in repr(server)
    assert server.process.proc.pid and server.process.proc.poll() is None
    job = server.gitlab.projects.get(1).jobs.get(1)
    assert job.web_url == "http://ci.example.com/small/app/-/jobs/1"
    assert " listening on " in server.process.output()
    proc = server.process.proc
    server.stop()
    assert proc.returncode == 0


@pytest.mark.slow
@pytest.mark.jobsvc(subprocess=True)
def test_the_marker_asks_for_a_subprocess(jobsvc_server):
    assert jobsvc_server.subprocess and jobsvc_server.tokens["root"] == "glpat-demo-root-000000000000"
    assert version(jobsvc_server)["version"].endswith("-jobsvc")


@pytest.mark.slow
def test_a_stopped_server_is_gone(tmp_path):
    server = start_server(tmp_path, SMALL)
    url = server.api_url
    server.gitlab.auth()  # a client with an open connection: closed by stop()
    server.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("jobsvc http")]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/version", timeout=5)


@pytest.mark.slow
def test_a_server_that_dies_is_reported(tmp_path):
    server = start_server(tmp_path, SMALL, subprocess=True)
    server.process.proc.kill()
    server.process.proc.wait()
    with pytest.raises(ServerError, match="exited with -9"):
        server.stop()


@pytest.mark.slow
def test_a_taken_port_fails_in_the_test(jobsvc_server_factory):
    first = jobsvc_server_factory(SMALL)
    port = int(first.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        jobsvc_server_factory(SMALL, port=port)
    with pytest.raises(ServerError, match="exited with 2"):
        jobsvc_server_factory(SMALL, port=port, subprocess=True)


@pytest.mark.slow
async def test_an_async_test_uses_it_too(jobsvc_server):
    """pytest-aiohttp's loop runs this test; the server's loop is its own, so both go on."""
    async with aiohttp.ClientSession() as session:
        headers = {"PRIVATE-TOKEN": jobsvc_server.tokens["root"]}
        async with session.get(f"{jobsvc_server.api_url}/projects/1/jobs/8", headers=headers) as resp:
            assert resp.status == 200 and (await resp.json())["name"] == "rubocop"


@pytest.mark.slow
@pytest.mark.parametrize("as_child", [False, True], ids=["in-process", "subprocess"])
def test_a_server_that_cannot_start_says_why(jobsvc_server_factory, as_child):
    """Each source is valid alone, but the second names a project id the first took: loading it fails."""
    clash = {**SMALL, "users": [{"username": "other"}], "runners": []}
    with pytest.raises(ServerError, match="projects\\[0\\].id: 1 already exists"):
        jobsvc_server_factory(SMALL, clash, subprocess=as_child)


@pytest.mark.slow
def test_settings_reach_the_database_too(jobsvc_server_factory, postgres_server):
    server = jobsvc_server_factory(SMALL, database_url=postgres_server.new_database())
    assert not (server.data_dir / "jobsvc.sqlite3").exists()
    assert server.gitlab.projects.get("small/app").jobs.get(1).status == "success"

"""The runner helpers of jobsvc.testing: a job claimed, logged, given artifacts and finished over the real runner API,
then read back with python-gitlab."""

from __future__ import annotations

import email.parser
import email.policy
import io
import threading
import zipfile

import pytest

from jobsvc.testing import Runner, RunnerError
from jobsvc.testing.runner import multipart, zip_of

CI_CONFIG = """
stages: [build, test]
build: {stage: build, tags: [docker], script: ["make"]}
test: {stage: test, tags: [docker], script: ["make test"]}
"""
WORLD = {
    "users": [{"username": "alice", "tokens": [{"token": "glpat-alice-000000"}]}],
    "runners": [{"description": "docker-runner", "token": "glrt-docker-000000", "tags": ["docker"], "is_shared": True}],
    "projects": [{
        "path": "acme/app", "visibility": "private", "default_branch": "main", "ci_config": CI_CONFIG,
        "members": [{"user": "alice", "role": "maintainer"}],
        "pipelines": [{"ref": "main", "user": "alice", "jobs": [
            {"name": "build", "stage": "build", "status": "pending", "tags": ["docker"], "script": ["make"]},
            {"name": "test", "stage": "test", "status": "created", "tags": ["docker"], "script": ["make test"]},
        ]}],
    }],
}  # fmt: skip

slow = pytest.mark.slow


def test_zip_of_files():
    archive = zipfile.ZipFile(io.BytesIO(zip_of({"out/a.txt": "a\n", "out/b.bin": b"\x00\x01", "empty/": ""})))
    assert archive.namelist() == ["out/a.txt", "out/b.bin", "empty/"]
    assert archive.read("out/a.txt") == b"a\n" and archive.read("out/b.bin") == b"\x00\x01"


def test_multipart_body_parses_back():
    body, headers = multipart("file", 'we"ird\nname.zip', b"\r\n--not-a-boundary\r\n")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
    )
    (part,) = message.iter_parts()
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == 'we"irdname.zip'
    assert part.get_content() == b"\r\n--not-a-boundary\r\n"


@slow
@pytest.mark.jobsvc(WORLD)
def test_a_job_run_by_the_helpers_is_what_python_gitlab_sees(jobsvc_server):
    job = jobsvc_server.runner("docker-runner").claim()
    assert job is not None and (job.name, job.stage, job.script) == ("build", "build", ["make"])
    assert job.variables["CI_JOB_ID"] == str(job.id) and job.variables["CI_PROJECT_PATH"] == "acme/app"
    assert job.append_log("$ make\n") == 7
    assert job.append_log(b"compiling...\n") == 20 and job.log == b"$ make\ncompiling...\n"
    job.upload_artifacts({"out/app.txt": "the app\n", "out/logo.png": b"\x89PNG"}, expire_in="1 day")
    assert job.succeed() == "success"

    project = jobsvc_server.gitlab.projects.get("acme/app")
    seen = project.jobs.get(job.id)
    assert seen.status == "success" and seen.artifacts_file["filename"] == "artifacts.zip"
    assert seen.trace() == b"$ make\ncompiling...\n"
    assert zipfile.ZipFile(io.BytesIO(seen.artifacts())).namelist() == ["out/app.txt", "out/logo.png"]
    assert seen.artifact("out/app.txt") == b"the app\n"
    # the next stage's job is pending now, and the runner takes it
    following = jobsvc_server.runner().claim()
    assert following is not None and following.name == "test"
    assert following.fail() == "failed"
    assert project.jobs.get(following.id).failure_reason == "script_failure"
    assert project.pipelines.list(get_all=True)[0].status == "failed"
    assert jobsvc_server.runner().claim() is None


@slow
@pytest.mark.jobsvc(WORLD)
def test_run_does_it_all_in_one_call(jobsvc_server):
    runner = jobsvc_server.runner()
    build = runner.run(log="built\n", artifacts={"a.txt": "a"})
    test = runner.run(log="tested\n")
    project = jobsvc_server.gitlab.projects.get("acme/app")
    assert [project.jobs.get(j.id).status for j in (build, test)] == ["success", "success"]
    assert project.jobs.get(test.id).trace() == b"tested\n"
    assert project.pipelines.list(get_all=True)[0].status == "success"
    with pytest.raises(LookupError, match="no job for this runner within 0s"):
        runner.run()


@slow
@pytest.mark.jobsvc(WORLD)
def test_claim_waits_for_a_pipeline_made_meanwhile(jobsvc_server):
    runner = jobsvc_server.runner()
    runner.run()
    runner.run()  # the fixture's pipeline is done
    project = jobsvc_server.gitlab.projects.get("acme/app")
    maker = threading.Timer(0.3, lambda: project.pipelines.create({"ref": "main"}))
    maker.start()
    try:
        job = runner.claim(timeout=20)
    finally:
        maker.join()
    assert job is not None and job.name == "build"
    assert job.variables["CI_PIPELINE_ID"] == str(project.pipelines.list(get_all=True)[0].id)


@slow
@pytest.mark.jobsvc(WORLD)
def test_a_registered_runner(jobsvc_server):
    untagged = jobsvc_server.register_runner(description="untagged", run_untagged=True)
    assert untagged.verify() and untagged.claim() is None  # the jobs are tagged docker
    tagged = jobsvc_server.register_runner(description="tagged", tag_list=["docker"])
    assert tagged.claim().name == "build"
    tagged.unregister()
    assert not tagged.verify()


@slow
@pytest.mark.jobsvc(WORLD, registration_token="")
def test_registration_off(jobsvc_server):
    with pytest.raises(LookupError, match="registration is off"):
        jobsvc_server.register_runner()
    with pytest.raises(RunnerError, match="403"):
        Runner.register(jobsvc_server.url, "glrtr-guess")


@slow
@pytest.mark.jobsvc(WORLD)
def test_what_the_server_refuses_is_raised(jobsvc_server):
    with pytest.raises(RunnerError) as refused:
        Runner(jobsvc_server.url, "glrt-unknown-0000").claim()
    assert refused.value.status == 403
    job = jobsvc_server.runner().claim()
    job.append_log("one\n")
    job.log_size = 0  # out of step with the server: its 416
    with pytest.raises(RunnerError, match="416"):
        job.append_log("again\n")
    with pytest.raises(TypeError, match="not both"):
        job.upload_artifacts()
    job.succeed()
    with pytest.raises(RunnerError, match="403"):
        job.append_log("late\n")  # the job has ended

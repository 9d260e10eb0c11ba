"""Cancel, retry, erase and play: GitLab's answers per role, and the pipeline kept consistent."""

import asyncio

import pytest
import yaml

from jobsvc.http.app import create_app
from jobsvc.http.keys import DB
from jobsvc.settings import Config
from tests.conftest import RUNNING_JOB_TOKEN, auth, job_blobs

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def job(client, job_id, project=1):
    return await (await client.get(f"/api/v4/projects/{project}/jobs/{job_id}", headers=auth("root"))).json()


async def sql(client, statement, params=()):
    async def work(tx):
        await tx.execute(statement, params)

    await client.app[DB].write(work)


def post(client, job_id, action, who="maintainer", project=1, **kwargs):
    headers = {**(auth(who) if who else {}), **kwargs.pop("headers", {})}
    return client.post(f"/api/v4/projects/{project}/jobs/{job_id}/{action}", headers=headers, **kwargs)


class TestCancel:
    async def test_cancel_pending(self, client):
        resp = await post(client, 21, "cancel", "developer")
        assert resp.status == 201
        body = await resp.json()
        assert body["status"] == "canceled" and body["finished_at"]

    async def test_not_cancelable_is_unchanged_201(self, client):
        resp = await post(client, 8, "cancel")
        assert resp.status == 201 and (await resp.json())["status"] == "success"

    @pytest.mark.parametrize("who,job_id,status", [
        ("reporter", 11, 403), ("developer", 11, 403), (None, 11, 401), ("outsider", 11, 404), ("maintainer", 999, 404),
    ])  # fmt: skip
    async def test_refusals(self, client, who, job_id, status):
        assert (await post(client, job_id, "cancel", who)).status == status

    async def test_read_api_token(self, client):
        resp = await post(client, 21, "cancel", "readonly")
        assert resp.status == 403 and (await resp.json())["error"] == "insufficient_scope"

    async def test_runner_learns_of_the_cancel(self, client):
        assert (await post(client, 11, "cancel", json={})).status == 201
        resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
        assert resp.status == 403 and resp.headers["Job-Status"] == "canceled"
        resp = await client.patch(
            "/api/v4/jobs/11/trace", data=b"x", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "8-8"}
        )
        assert resp.status == 403 and resp.headers["Job-Status"] == "canceled"

    async def test_graceful_cancel_goes_through_canceling(self, client):
        await sql(client, """UPDATE runners SET info = '{"features": {"cancel_gracefully": true}}' WHERE id = 1""")
        await sql(client, "UPDATE jobs SET runner_id = 1 WHERE id = 11")
        body = await (await post(client, 11, "cancel")).json()
        assert body["status"] == "canceling" and body["finished_at"] is None
        resp = await client.patch(
            "/api/v4/jobs/11/trace", data=b"bye\n", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "8-11"}
        )
        assert resp.status == 202 and resp.headers["Job-Status"] == "canceling"
        resp = await client.put("/api/v4/jobs/11", json={"token": RUNNING_JOB_TOKEN, "state": "success"})
        assert resp.status == 200 and resp.headers["Job-Status"] == "canceled"

    async def test_force(self, client):
        await sql(client, "UPDATE jobs SET status = 'canceling' WHERE id = 11")
        assert (await post(client, 11, "cancel", "maintainer", params={"force": "yes"})).status == 201
        assert (await job(client, 11))["status"] == "canceled"
        await sql(client, "UPDATE jobs SET status = 'canceling' WHERE id = 21")
        assert (await post(client, 21, "cancel", "developer", json={"force": True})).status == 403
        resp = await post(client, 21, "cancel", "maintainer", json={"force": "maybe"})
        assert resp.status == 400 and await resp.json() == {"error": "force is invalid"}


class TestRetry:
    async def test_retry(self, client):
        resp = await post(client, 6, "retry")
        assert resp.status == 201
        new = await resp.json()
        assert new["id"] > 21 and new["status"] == "pending" and new["name"] == "spinach:other"
        assert new["user"]["username"] == "maintainer" and new["pipeline"]["id"] == 6
        assert new["tag_list"] == ["docker", "linux"]
        listed = await (await client.get("/api/v4/projects/1/pipelines/6/jobs", headers=auth("root"))).json()
        assert new["id"] in [j["id"] for j in listed] and 6 not in [j["id"] for j in listed]
        old = await job(client, 6)
        assert old["status"] == "failed"

    @pytest.mark.parametrize("job_id", [7, 21, 11])
    async def test_not_retryable(self, client, job_id):
        resp = await post(client, job_id, "retry")
        assert resp.status == 403 and await resp.json() == {"message": "403 Forbidden - Job is not retryable"}

    async def test_roles(self, client):
        assert (await post(client, 6, "retry", "reporter")).status == 403
        assert (await post(client, 6, "retry", "developer")).status == 403  # master is protected

    async def test_fifty_concurrent_retries_make_one_job(self, client):
        answers = await asyncio.gather(*(post(client, 6, "retry") for _ in range(50)))
        assert sorted(r.status for r in answers) == [201] + [403] * 49
        listed = await (
            await client.get("/api/v4/projects/1/pipelines/6/jobs?include_retried=true", headers=auth("root"))
        ).json()
        assert [j["name"] for j in listed].count("spinach:other") == 2


class TestErase:
    async def test_erase(self, client, config):
        resp = await post(client, 8, "erase")
        assert resp.status == 201
        body = await resp.json()
        assert body["erased_at"] and body["artifacts"] == [] and "artifacts_file" not in body
        assert not (config.data_dir / "traces" / "8.log").exists()
        assert await job_blobs(client, 8) == []
        trace = await client.get("/api/v4/projects/1/jobs/8/trace", headers=auth("root"))
        assert trace.status == 200 and await trace.read() == b""

    @pytest.mark.parametrize("job_id", [11, 6])
    async def test_not_erasable(self, client, job_id):
        resp = await post(client, job_id, "erase")
        assert resp.status == 403 and await resp.json() == {"message": "403 Forbidden - Job is not erasable!"}

    async def test_own_job_on_an_unprotected_ref(self, client):
        assert (await post(client, 31, "erase", "developer", project=2)).status == 403
        await sql(client, "UPDATE jobs SET user_id = 3 WHERE id = 31")
        assert (await post(client, 31, "erase", "developer", project=2)).status == 201
        assert (await post(client, 8, "erase", "developer")).status == 403


class TestPlay:
    async def test_play_manual(self, client):
        resp = await post(client, 10, "play")
        assert resp.status == 200
        body = await resp.json()
        assert body["id"] == 10 and body["status"] == "pending" and body["user"]["username"] == "maintainer"

    async def test_unplayable(self, client):
        resp = await post(client, 8, "play")
        assert resp.status == 400 and await resp.json() == {"message": "400 Bad request - Unplayable Job"}

    async def test_roles(self, client):
        assert (await post(client, 10, "play", "developer")).status == 403
        assert (await post(client, 10, "play", "reporter")).status == 403
        assert (await post(client, 10, "play", "guest")).status == 403

    async def test_variables_reach_the_runner(self, client):
        resp = await post(client, 10, "play", json={"job_variables_attributes": [{"key": "TARGET", "value": "eu"}]})
        assert resp.status == 200
        await sql(client, "UPDATE jobs SET status = 'success' WHERE id = 21")
        given = await (await client.post("/api/v4/jobs/request", json={"token": "glrt-test-runner-00000"})).json()
        assert given["id"] == 10
        assert {"key": "TARGET", "value": "eu", "public": False, "masked": False} in given["variables"]

    async def test_form_encoded_variables_reach_the_runner(self, client):
        # what the Ruby gem sends: job_variables_attributes[0][key]=..., a hash of hashes
        form = "job_variables_attributes[0][key]=TARGET&job_variables_attributes[0][value]=eu"
        form += "&job_variables_attributes[1][key]=SIZE&job_variables_attributes[1][value]=xl"
        resp = await post(client, 10, "play", data=form, headers=FORM)
        assert resp.status == 200
        await sql(client, "UPDATE jobs SET status = 'success' WHERE id = 21")
        given = await (await client.post("/api/v4/jobs/request", json={"token": "glrt-test-runner-00000"})).json()
        assert given["id"] == 10
        assert {"key": "TARGET", "value": "eu", "public": False, "masked": False} in given["variables"]
        assert {"key": "SIZE", "value": "xl", "public": False, "masked": False} in given["variables"]

    async def test_form_encoded_array_of_hashes(self, client):
        form = "job_variables_attributes[][key]=A&job_variables_attributes[][value]=1"
        form += "&job_variables_attributes[][key]=B&job_variables_attributes[][value]=2"
        resp = await post(client, 10, "play", data=form, headers=FORM)
        assert resp.status == 200
        await sql(client, "UPDATE jobs SET status = 'success' WHERE id = 21")
        given = await (await client.post("/api/v4/jobs/request", json={"token": "glrt-test-runner-00000"})).json()
        keys = {(v["key"], v["value"]) for v in given["variables"]}
        assert {("A", "1"), ("B", "2")} <= keys

    @pytest.mark.parametrize("form,error", [
        ("job_variables_attributes[0][key]=A", "job_variables_attributes[0][value] is missing"),
        ("job_variables_attributes[0]=A&job_variables_attributes[0][key]=B", "job_variables_attributes[0] is invalid"),
        ("job_variables_attributes[]=A&job_variables_attributes[0][key]=B", "job_variables_attributes is invalid"),
        ("job_variables_attributes[0]=A", "job_variables_attributes is invalid"),
        ("job_variables_attributes" + "[0]" * 33 + "=A", "job_variables_attributes is invalid"),
    ])  # fmt: skip
    async def test_bad_form_encoded_variables(self, client, form, error):
        resp = await post(client, 10, "play", data=form, headers=FORM)
        assert resp.status == 400 and await resp.json() == {"error": error}
        assert (await job(client, 10))["status"] == "manual"

    @pytest.mark.parametrize("variables,error", [
        ([{"value": "x"}], "job_variables_attributes[0][key] is missing"),
        ([{"key": "A", "value": "1"}, {"key": "B"}], "job_variables_attributes[1][value] is missing"),
    ])  # fmt: skip
    async def test_bad_variables(self, client, variables, error):
        resp = await post(client, 10, "play", json={"job_variables_attributes": variables})
        assert resp.status == 400 and await resp.json() == {"error": error}
        assert (await job(client, 10))["status"] == "manual"

    async def test_finished_manual_job_is_retried(self, client):
        # the test stage has to have passed for the deploy stage to run again (job 6 failed in the world)
        await sql(client, "UPDATE jobs SET status = 'success' WHERE id IN (6, 10)")
        resp = await post(client, 10, "play")
        assert resp.status == 200 and (await resp.json())["id"] == 10
        listed = await (await client.get("/api/v4/projects/1/pipelines/6/jobs", headers=auth("root"))).json()
        deploys = [j for j in listed if j["name"] == "deploy"]
        assert len(deploys) == 1 and deploys[0]["id"] != 10 and deploys[0]["status"] == "pending"


FLOW = {
    "users": [{"username": "root", "admin": True, "tokens": [{"token": "glpat-flow-root-0000"}]}],
    "runners": [{"token": "glrt-flow-runner-0000", "is_shared": True}],
    "projects": [{"path": "flow/app", "id": 1, "pipelines": [{"id": 1, "ref": "main", "user": "root", "jobs": [
        {"id": 1, "name": "build", "stage": "build", "status": "pending"},
        {"id": 2, "name": "test", "stage": "test", "status": "created"},
        {"id": 3, "name": "deploy", "stage": "deploy", "status": "created", "when": "manual", "allow_failure": False},
        {"id": 4, "name": "cleanup", "stage": "deploy", "status": "created", "when": "always"},
        {"id": 5, "name": "notify", "stage": "deploy", "status": "created", "when": "on_failure"},
    ]}]}],
}  # fmt: skip


@pytest.fixture
async def flow(aiohttp_client, tmp_path):
    (tmp_path / "flow.yaml").write_text(yaml.safe_dump(FLOW, sort_keys=False))
    return await aiohttp_client(create_app(Config(data_dir=tmp_path / "var", fixtures=[str(tmp_path / "flow.yaml")])))


async def statuses(client):
    root = {"PRIVATE-TOKEN": "glpat-flow-root-0000"}
    jobs = await (await client.get("/api/v4/projects/1/pipelines/1/jobs", headers=root)).json()
    pipeline = await (await client.get("/api/v4/projects/1/pipelines/1", headers=root)).json()
    return {j["name"]: j["status"] for j in jobs}, pipeline["status"]


async def run_next(client, state):
    given = await (await client.post("/api/v4/jobs/request", json={"token": "glrt-flow-runner-0000"})).json()
    resp = await client.put(f"/api/v4/jobs/{given['id']}", json={"token": given["token"], "state": state})
    assert resp.status == 200
    return given["job_info"]["name"]


async def test_stage_by_stage(flow):
    assert await statuses(flow) == (
        {"build": "pending", "test": "created", "deploy": "created", "cleanup": "created", "notify": "created"},
        "pending",
    )
    assert await run_next(flow, "success") == "build"
    assert await statuses(flow) == (
        {"build": "success", "test": "pending", "deploy": "created", "cleanup": "created", "notify": "created"},
        "running",
    )
    assert await run_next(flow, "failed") == "test"
    jobs, pipeline = await statuses(flow)
    assert jobs == {
        "build": "success",
        "test": "failed",
        "deploy": "skipped",
        "cleanup": "pending",
        "notify": "pending",
    }
    assert pipeline == "running"
    # retrying the failed job puts the skipped ones back until it is done
    root = {"PRIVATE-TOKEN": "glpat-flow-root-0000"}
    assert (await flow.post("/api/v4/projects/1/jobs/2/retry", headers=root)).status == 201
    jobs, _ = await statuses(flow)
    assert jobs["test"] == "pending" and jobs["deploy"] == "created"
    # the pending always/on_failure jobs of the first attempt and the new test run
    for _ in range(3):
        await run_next(flow, "success")
    jobs, pipeline = await statuses(flow)
    assert jobs["test"] == "success" and jobs["deploy"] == "manual"
    assert pipeline == "manual"


async def test_retry_in_a_failed_pipeline_is_processed_like_gitlab(client):
    """The new attempt starts created and is processed: after a failed earlier stage it is skipped."""
    await sql(client, "UPDATE jobs SET status = 'failed' WHERE id = 12")
    new = await (await post(client, 12, "retry")).json()
    assert new["status"] == "skipped"


async def test_a_finished_pipeline_runs_again_after_a_retry(flow):
    root = {"PRIVATE-TOKEN": "glpat-flow-root-0000"}
    for state in ("success", "failed", "success", "success"):
        await run_next(flow, state)
    jobs, pipeline = await statuses(flow)
    assert pipeline == "failed"
    assert (await flow.post("/api/v4/projects/1/jobs/2/retry", headers=root)).status == 201
    _, pipeline = await statuses(flow)
    assert pipeline == "running"

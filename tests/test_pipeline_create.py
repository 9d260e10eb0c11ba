"""POST /projects/:id/pipeline from the project's stored .gitlab-ci.yml, run stage by stage by a runner."""

import asyncio

import pytest
import yaml

from jobsvc.http.app import create_app
from jobsvc.settings import Config

CI = """
stages: [build, test, deploy]
variables: {GLOBAL: "yes"}
default:
  before_script: ["echo setup"]
.template: &make
  script: ["make"]
build:
  <<: *make
  stage: build
  tags: [docker]
  artifacts: {paths: [out/], expire_in: 1 week}
test:
  stage: test
  script: ["make test"]
  variables: {LEVEL: "full"}
deploy:
  stage: deploy
  script: ["make deploy"]
  when: manual
"""
TOKENS = {"dev": "glpat-create-dev-0000", "rep": "glpat-create-rep-0000"}
FIXTURE = {
    "users": [{"username": u, "tokens": [{"token": t}]} for u, t in TOKENS.items()],
    "runners": [{"token": "glrt-create-runner-00", "is_shared": True, "tags": ["docker"]}],
    "projects": [
        {"path": "g/app", "id": 1, "default_branch": "main", "ci_config": CI,
         "members": [{"user": "dev", "role": "developer"}, {"user": "rep", "role": "reporter"}]},
        {"path": "g/rules", "id": 2, "default_branch": "main", "members": [{"user": "dev", "role": "developer"}],
         "ci_config": "build:\n  script: [make]\n  rules: [{if: '$CI'}]\n"},
        {"path": "g/none", "id": 3, "default_branch": "main", "members": [{"user": "dev", "role": "developer"}]},
    ],
}  # fmt: skip


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(FIXTURE, sort_keys=False))
    return await aiohttp_client(create_app(Config(data_dir=tmp_path / "var", fixtures=[str(tmp_path / "f.yaml")])))


def dev(who="dev"):
    return {"PRIVATE-TOKEN": TOKENS[who]}


async def test_create_and_run(client):
    resp = await client.post(
        "/api/v4/projects/1/pipeline?ref=main", headers=dev(), json={"variables": [{"key": "FROM_API", "value": "1"}]}
    )
    assert resp.status == 201
    pipeline = await resp.json()
    assert pipeline["ref"] == "main" and pipeline["status"] == "pending" and pipeline["source"] == "api"
    assert pipeline["user"]["username"] == "dev"
    jobs = await (await client.get(f"/api/v4/projects/1/pipelines/{pipeline['id']}/jobs", headers=dev())).json()
    assert {j["name"]: j["status"] for j in jobs} == {"build": "pending", "test": "created", "deploy": "created"}
    given = await (await client.post("/api/v4/jobs/request", json={"token": "glrt-create-runner-00"})).json()
    assert given["job_info"]["name"] == "build"
    assert given["steps"][0]["script"] == ["echo setup", "make"]
    assert given["artifacts"][0]["paths"] == ["out/"] and given["artifacts"][0]["expire_in"] == "1 week"
    variables = {v["key"]: v["value"] for v in given["variables"]}
    assert variables["GLOBAL"] == "yes" and variables["FROM_API"] == "1"
    await client.put(f"/api/v4/jobs/{given['id']}", json={"token": given["token"], "state": "success"})
    jobs = await (await client.get(f"/api/v4/projects/1/pipelines/{pipeline['id']}/jobs", headers=dev())).json()
    assert {j["name"]: j["status"] for j in jobs}["test"] == "pending"


@pytest.mark.parametrize("project,query,status,body", [
    (2, "ref=main", 400, {"message": {"base": ["jobs:build config contains unknown keys: rules"]}}),
    (3, "ref=main", 400, {"message": {"base": ["Missing CI config file"]}}),
    (1, "ref=nowhere", 400, {"message": {"base": ["Reference not found"]}}),
    (1, "", 400, {"error": "ref is missing"}),
])  # fmt: skip
async def test_refused(client, project, query, status, body):
    resp = await client.post(f"/api/v4/projects/{project}/pipeline?{query}", headers=dev())
    assert resp.status == status and await resp.json() == body
    listed = await (await client.get(f"/api/v4/projects/{project}/pipelines", headers=dev())).json()
    assert listed == []


async def test_reporter_cannot_create(client):
    assert (await client.post("/api/v4/projects/1/pipeline?ref=main", headers=dev("rep"))).status == 403


async def test_delayed_jobs_start_on_their_own(aiohttp_client, tmp_path):
    ci = "later:\n  script: [make]\n  when: delayed\n  start_in: 1 second\n"
    data = {**FIXTURE, "projects": [{**FIXTURE["projects"][0], "ci_config": ci}]}
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    client = await aiohttp_client(create_app(Config(data_dir=tmp_path / "var", fixtures=[str(tmp_path / "f.yaml")])))
    pipeline = await (await client.post("/api/v4/projects/1/pipeline?ref=main", headers=dev())).json()
    url = f"/api/v4/projects/1/pipelines/{pipeline['id']}/jobs"
    assert [j["status"] for j in await (await client.get(url, headers=dev())).json()] == ["scheduled"]
    for _ in range(60):
        statuses = [j["status"] for j in await (await client.get(url, headers=dev())).json()]
        if statuses == ["pending"]:
            break
        await asyncio.sleep(0.1)
    assert statuses == ["pending"]


async def test_needs_run_ahead_of_stages(aiohttp_client, tmp_path):
    ci = (
        "stages: [build, test]\n"
        "slow: {stage: build, script: [make]}\n"
        "lint: {stage: test, script: [lint], needs: []}\n"
        "unit: {stage: test, script: [test]}\n"
    )
    data = {**FIXTURE, "projects": [{**FIXTURE["projects"][0], "ci_config": ci}]}
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    client = await aiohttp_client(create_app(Config(data_dir=tmp_path / "var", fixtures=[str(tmp_path / "f.yaml")])))
    pipeline = await (await client.post("/api/v4/projects/1/pipeline?ref=main", headers=dev())).json()
    jobs = await (await client.get(f"/api/v4/projects/1/pipelines/{pipeline['id']}/jobs", headers=dev())).json()
    assert {j["name"]: j["status"] for j in jobs} == {"slow": "pending", "lint": "pending", "unit": "created"}

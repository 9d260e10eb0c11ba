"""Authentication: every credential form GitLab accepts, and its exact failure bodies."""

import pytest

from tests.conftest import FINISHED_JOB_TOKEN, RUNNING_JOB_TOKEN, TOKENS, auth

JOB8 = "/api/v4/projects/1/jobs/8"


@pytest.mark.parametrize("header", ["PRIVATE-TOKEN", "Private-Token", "private-token"])
async def test_private_token_header_any_case(client, header):
    resp = await client.get(JOB8, headers={header: TOKENS["root"]})
    assert resp.status == 200
    assert (await resp.json())["id"] == 8


async def test_private_token_query_parameter(client):
    resp = await client.get(JOB8, params={"private_token": TOKENS["developer"]})
    assert resp.status == 200


async def test_bearer_personal_access_token(client):
    resp = await client.get(JOB8, headers={"Authorization": f"Bearer {TOKENS['developer']}"})
    assert resp.status == 200


async def test_no_credentials_is_401_before_project_lookup(client):
    for path in (JOB8, "/api/v4/projects/999/jobs", "/api/v4/projects/1/jobs"):
        resp = await client.get(path)
        assert resp.status == 401
        assert await resp.json() == {"message": "401 Unauthorized"}


async def test_wrong_token_is_401(client):
    resp = await client.get(JOB8, headers={"PRIVATE-TOKEN": "glpat-nope-nope-nope"})
    assert resp.status == 401
    assert await resp.json() == {"message": "401 Unauthorized"}


async def test_wrong_token_is_401_even_where_anonymous_is_allowed(client):
    resp = await client.get("/api/v4/projects/2/pipelines", headers={"PRIVATE-TOKEN": "glpat-nope-nope-nope"})
    assert resp.status == 401


async def test_expired_token(client):
    resp = await client.get(JOB8, headers=auth("expired"))
    assert resp.status == 401
    assert await resp.json() == {
        "error": "invalid_token",
        "error_description": "Token is expired. You can either do re-authorization or token refresh.",
    }
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_revoked_token(client):
    resp = await client.get(JOB8, headers=auth("revoked"))
    assert resp.status == 401
    assert await resp.json() == {
        "error": "invalid_token",
        "error_description": "Token was revoked. You have to re-authorize from the user.",
    }


async def test_blocked_user(client):
    resp = await client.get(JOB8, headers=auth("blocked"))
    assert resp.status == 403
    assert await resp.json() == {"message": "403 Forbidden - Your account has been blocked."}


async def test_read_api_token_reads(client):
    resp = await client.get(JOB8, headers=auth("readonly"))
    assert resp.status == 200
    resp = await client.head(JOB8, headers=auth("readonly"))
    assert resp.status == 200


async def test_admin_sees_private_project_without_membership(client):
    resp = await client.get("/api/v4/projects/5/jobs", headers=auth("root"))
    assert resp.status == 200


async def test_job_token_header_on_job_token_routes(client):
    resp = await client.get("/api/v4/projects/1/jobs", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})
    assert resp.status == 200
    resp = await client.get("/api/v4/projects/1/pipelines/6/jobs", params={"job_token": RUNNING_JOB_TOKEN})
    assert resp.status == 200


async def test_job_token_is_not_accepted_on_get_job(client):
    resp = await client.get(JOB8, headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})
    assert resp.status == 401


async def test_job_token_of_finished_job_is_401(client):
    resp = await client.get("/api/v4/projects/1/jobs", headers={"JOB-TOKEN": FINISHED_JOB_TOKEN})
    assert resp.status == 401
    assert await resp.json() == {"message": "401 Unauthorized"}


async def test_job_token_does_not_reach_other_projects(client):
    resp = await client.get("/api/v4/projects/2/pipelines/30/jobs", headers={"JOB-TOKEN": RUNNING_JOB_TOKEN})
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Project Not Found"}


class TestCurrentJob:
    async def test_running_job_token(self, client):
        for headers in ({"JOB-TOKEN": RUNNING_JOB_TOKEN}, {"Authorization": f"Bearer {RUNNING_JOB_TOKEN}"}):
            resp = await client.get("/api/v4/job", headers=headers)
            assert resp.status == 200
            body = await resp.json()
            assert body["id"] == 11 and body["status"] == "running"
        resp = await client.get("/api/v4/job", params={"job_token": RUNNING_JOB_TOKEN})
        assert resp.status == 200

    async def test_finished_job_token(self, client):
        resp = await client.get("/api/v4/job", headers={"JOB-TOKEN": FINISHED_JOB_TOKEN})
        assert resp.status == 401

    async def test_no_credentials_and_bad_token(self, client):
        assert (await client.get("/api/v4/job")).status == 401
        assert (await client.get("/api/v4/job", headers={"JOB-TOKEN": "nope-nope-nope"})).status == 401

    async def test_personal_access_token_is_404_job(self, client):
        resp = await client.get("/api/v4/job", headers=auth("root"))
        assert resp.status == 404
        assert await resp.json() == {"message": "404 Job Not Found"}

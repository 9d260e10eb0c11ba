"""What clients call on their way to jobs: version, user, projects, pipelines, the API root."""

import pytest

from jobsvc import GITLAB_VERSION
from tests.conftest import auth


async def test_version(client):
    resp = await client.get("/api/v4/version", headers=auth("developer"))
    assert resp.status == 200
    body = await resp.json()
    assert body["version"].startswith(GITLAB_VERSION) and "revision" in body
    assert (await client.get("/api/v4/version")).status == 401


async def test_current_user(client):
    resp = await client.get("/api/v4/user", headers=auth("developer"))
    body = await resp.json()
    assert body["id"] == 3 and body["username"] == "developer" and body["email"] == "developer@example.com"
    assert "is_admin" not in body
    body = await (await client.get("/api/v4/user", headers=auth("root"))).json()
    assert body["is_admin"] is True
    assert (await client.get("/api/v4/user")).status == 401


async def test_api_root_is_gitlabs_catch_all(client):
    for path in ("/api/v4/", "/api/v4"):
        resp = await client.get(path)
        assert resp.status == 404
        assert await resp.json() == {"error": "404 Not Found"}
        assert "RateLimit-Limit" not in resp.headers


class TestProjects:
    async def test_anonymous_sees_public_only(self, client):
        resp = await client.get("/api/v4/projects")
        assert resp.status == 200
        assert sorted(p["id"] for p in await resp.json()) == [2, 3]
        assert resp.headers["X-Total"] == "2"

    async def test_member_sees_public_internal_and_own(self, client):
        body = await (await client.get("/api/v4/projects", headers=auth("developer"))).json()
        assert [p["id"] for p in body] == [5, 4, 3, 2, 1]
        body = await (await client.get("/api/v4/projects?membership=true", headers=auth("developer"))).json()
        assert [p["id"] for p in body] == [5, 2, 1]

    async def test_admin_sees_all_paginated(self, client):
        resp = await client.get("/api/v4/projects?per_page=2&page=2", headers=auth("root"))
        assert [p["id"] for p in await resp.json()] == [3, 2]
        assert (resp.headers["X-Total"], resp.headers["X-Total-Pages"], resp.headers["X-Next-Page"]) == ("5", "3", "3")

    async def test_search_and_bad_order(self, client):
        body = await (await client.get("/api/v4/projects?search=public-proj", headers=auth("root"))).json()
        assert [p["path_with_namespace"] for p in body] == ["group/sub/public-proj"]
        resp = await client.get("/api/v4/projects?order_by=stars", headers=auth("root"))
        assert resp.status == 400
        assert await resp.json() == {"error": "order_by does not have a valid value"}

    @pytest.mark.parametrize("ident", ["1", "gitlab-org%2Fgitlab-test", "GITLAB-ORG%2FGITLAB-TEST"])
    async def test_get_project(self, client, ident):
        resp = await client.get(f"/api/v4/projects/{ident}", headers=auth("developer"))
        assert resp.status == 200
        body = await resp.json()
        assert body["id"] == 1 and body["path_with_namespace"] == "gitlab-org/gitlab-test"
        assert body["namespace"]["full_path"] == "gitlab-org"
        assert body["permissions"]["project_access"]["access_level"] == 30
        assert body["web_url"] == f"http://{client.host}:{client.port}/gitlab-org/gitlab-test"

    async def test_get_project_visibility(self, client):
        assert (await client.get("/api/v4/projects/2")).status == 200
        resp = await client.get("/api/v4/projects/1")
        assert resp.status == 404 and await resp.json() == {"message": "404 Project Not Found"}
        assert (await client.get("/api/v4/projects/1", headers=auth("outsider"))).status == 404
        assert (await client.get("/api/v4/projects/4", headers=auth("outsider"))).status == 200
        assert (await client.get("/api/v4/projects/4")).status == 404
        body = await (await client.get("/api/v4/projects/group%2Fsub%2Fpublic-proj")).json()
        assert body["namespace"]["full_path"] == "group/sub" and body["namespace"]["parent_id"] is not None


class TestPipelines:
    async def test_list_excludes_child_pipelines(self, client):
        resp = await client.get("/api/v4/projects/1/pipelines", headers=auth("reporter"))
        assert resp.status == 200
        body = await resp.json()
        assert [p["id"] for p in body] == [6]
        assert list(body[0]) == [
            "id",
            "iid",
            "project_id",
            "sha",
            "ref",
            "status",
            "source",
            "created_at",
            "updated_at",
            "web_url",
            "name",
        ]
        body = await (
            await client.get("/api/v4/projects/1/pipelines?source=parent_pipeline", headers=auth("root"))
        ).json()
        assert [p["id"] for p in body] == [20]

    async def test_filters(self, client):
        body = await (
            await client.get("/api/v4/projects/1/pipelines?ref=master&status=running", headers=auth("root"))
        ).json()
        assert [p["id"] for p in body] == [6]
        body = await (await client.get("/api/v4/projects/1/pipelines?scope=finished", headers=auth("root"))).json()
        assert body == []
        resp = await client.get("/api/v4/projects/1/pipelines?scope=everything", headers=auth("root"))
        assert resp.status == 400 and await resp.json() == {"error": "scope does not have a valid value"}

    async def test_get_pipeline(self, client):
        resp = await client.get("/api/v4/projects/1/pipelines/6", headers=auth("developer"))
        body = await resp.json()
        assert body["id"] == 6 and body["ref"] == "master" and body["user"]["username"] == "root"
        assert body["detailed_status"]["group"] == body["status"]
        resp = await client.get("/api/v4/projects/1/pipelines/30", headers=auth("root"))
        assert resp.status == 404 and await resp.json() == {"message": "404 Not found"}

    async def test_pipeline_permissions(self, client):
        assert (await client.get("/api/v4/projects/1/pipelines", headers=auth("guest"))).status == 403
        assert (await client.get("/api/v4/projects/2/pipelines")).status == 200
        assert (await client.get("/api/v4/projects/3/pipelines/40")).status == 403

"""Wire behaviour every endpoint shares: error shapes, headers, content negotiation."""

import pytest

from tests.conftest import auth


async def test_unknown_route(client):
    for method, path in [
        ("GET", "/api/v4/nothing"),
        ("GET", "/elsewhere"),
        ("POST", "/api/v4/projects/1/jobs"),
        ("DELETE", "/api/v4/projects/1/jobs/8"),
    ]:
        resp = await client.request(method, path, headers=auth("root"))
        assert resp.status == 404, (method, path)
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"error": "404 Not Found"}


@pytest.mark.parametrize("path", ["/api/v4/projects/1/jobs", "/api/v4/nothing", "/api/v4/projects/1/jobs/8"])
async def test_security_headers_everywhere(client, path):
    for headers in ({}, auth("root")):
        resp = await client.get(path, headers=headers)
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"


@pytest.mark.parametrize("accept", ["text/plain", "application/octet-stream", "application/xml", "*/*", None])
async def test_never_406(client, accept):
    headers = auth("root") | ({"Accept": accept} if accept else {})
    resp = await client.get("/api/v4/projects/1/jobs/8", headers=headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", None])
async def test_get_with_a_content_type_and_no_body(client, content_type):
    headers = auth("root") | ({"Content-Type": content_type} if content_type else {})
    resp = await client.get("/api/v4/projects/1/jobs", headers=headers)
    assert resp.status == 200


async def test_head(client):
    resp = await client.head("/api/v4/projects/1/jobs/8", headers=auth("root"))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"


async def test_read_api_token_cannot_write(aiohttp_client, config):
    """read_api is for GET/HEAD only; any other method gets GitLab's insufficient_scope answer."""
    from aiohttp import web

    from jobsvc.http.app import create_app
    from jobsvc.http.auth import require

    async def probe(request):
        await require(request)
        return web.json_response({})

    app = create_app(config)
    app.router.add_post("/api/v4/probe", probe)
    client = await aiohttp_client(app)
    resp = await client.post("/api/v4/probe", headers=auth("readonly"))
    assert resp.status == 403
    assert await resp.json() == {
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the access token.",
        "scope": "api",
    }
    assert (await client.post("/api/v4/probe", headers=auth("developer"))).status == 200


async def test_unexpected_error_is_a_gitlab_500(aiohttp_client, config, caplog):
    from jobsvc.http.app import create_app

    async def boom(request):
        raise RuntimeError("boom")

    app = create_app(config)
    app.router.add_get("/api/v4/boom", boom)
    client = await aiohttp_client(app)
    resp = await client.get("/api/v4/boom")
    assert resp.status == 500
    assert await resp.json() == {"message": "500 Internal Server Error"}
    assert "boom" in caplog.text

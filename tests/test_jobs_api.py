"""GET /projects/:id/jobs, /projects/:id/pipelines/:pipeline_id/jobs and /projects/:id/jobs/:job_id."""

from urllib.parse import parse_qsl, urlsplit

import pytest
from yarl import URL

from jobsvc.http.pagination import encode_cursor
from tests.conftest import BIG_PROJECT_JOBS, auth

ALL_PROJECT_1 = [21, 12, 11, 10, 9, 8, 7, 6]


def ids(body):
    return [job["id"] for job in body]


def relative(client, url):
    """The path and query of an absolute Link URL, after checking it points back at this server."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == f"http://{client.host}:{client.port}"
    return f"{parts.path}?{parts.query}"


def links(resp):
    """{rel: url} from a Link header, parsed with the regex gitbeaker and the Ruby gem use."""
    import re

    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="([^"]+)"', resp.headers.get("Link", ""))}


class TestLinksKeepTheRawPath:
    """GitLab builds Link from the raw request URL: a project addressed by an encoded path stays addressed so."""

    PROJECT = "acme%2Fbig%2Eapp"

    async def walk(self, client, url):
        seen, pages = [], 0
        while url:
            resp = await client.get(URL(url, encoded=True), headers=auth("developer"))  # sent as written
            assert resp.status == 200, await resp.text()
            seen += ids(await resp.json())
            pages += 1
            for link in links(resp).values():
                assert urlsplit(link).path == urlsplit(url).path  # still %2F and %2E, never decoded
            url = links(resp).get("next")
            url = relative(client, url) if url else None
        return seen, pages

    @pytest.mark.parametrize(
        "path,query",
        [
            ("jobs", "per_page=10"),
            ("jobs", "pagination=keyset&per_page=10"),
            ("pipelines/60/jobs", "per_page=10"),
        ],
    )
    async def test_following_links_on_a_project_addressed_by_path(self, client, path, query):
        seen, pages = await self.walk(client, f"/api/v4/projects/{self.PROJECT}/{path}?{query}")
        assert pages == 3
        assert sorted(seen) == list(range(1001, 1001 + BIG_PROJECT_JOBS))

    async def test_pipelines_list(self, client):
        url = URL(f"/api/v4/projects/{self.PROJECT}/pipelines?per_page=1", encoded=True)
        resp = await client.get(url, headers=auth("developer"))
        assert resp.status == 200
        assert all(urlsplit(url).path == f"/api/v4/projects/{self.PROJECT}/pipelines" for url in links(resp).values())


class TestProjectJobs:
    async def test_newest_first_with_retried_and_child_pipeline_jobs(self, client):
        resp = await client.get("/api/v4/projects/1/jobs", headers=auth("reporter"))
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert ids(await resp.json()) == ALL_PROJECT_1

    @pytest.mark.parametrize(
        "query,expected",
        [
            ("scope=success", [12, 9, 8]),
            ("scope[]=success&scope[]=failed", [12, 9, 8, 7, 6]),
            ("scope%5B%5D=manual&scope%5B%5D=running", [11, 10]),
            ("scope[x]=pending", [21]),
            ("scope[]=", ALL_PROJECT_1),
            ("scope[]=canceled", []),
        ],
    )
    async def test_scope_shapes(self, client, query, expected):
        resp = await client.get(f"/api/v4/projects/1/jobs?{query}", headers=auth("root"))
        assert resp.status == 200
        assert ids(await resp.json()) == expected

    @pytest.mark.parametrize("query", ["scope=bogus", "scope[]=success&scope[]=bogus", "scope[a]=nope"])
    async def test_invalid_scope(self, client, query):
        resp = await client.get(f"/api/v4/projects/1/jobs?{query}", headers=auth("root"))
        assert resp.status == 400
        assert await resp.json() == {"error": "scope does not have a valid value"}

    async def test_limited_pagination_headers_never_total(self, client):
        resp = await client.get("/api/v4/projects/1/jobs?per_page=3", headers=auth("root"))
        assert ids(await resp.json()) == ALL_PROJECT_1[:3]
        assert resp.headers["X-Per-Page"] == "3"
        assert resp.headers["X-Page"] == "1"
        assert resp.headers["X-Next-Page"] == "2"
        assert resp.headers["X-Prev-Page"] == ""
        assert "X-Total" not in resp.headers and "X-Total-Pages" not in resp.headers
        rels = links(resp)
        assert set(rels) == {"next", "first"}
        assert rels["next"].startswith(f"http://{client.host}:{client.port}/api/v4/projects/1/jobs?")

    async def test_following_next_links_walks_every_job_once(self, client):
        url, seen = "/api/v4/projects/1/jobs?per_page=3&scope[]=success&scope[]=failed&scope[]=manual", []
        while url:
            resp = await client.get(url, headers=auth("root"))
            assert resp.status == 200
            seen += ids(await resp.json())
            nxt = links(resp).get("next")
            assert (nxt is None) == (resp.headers["X-Next-Page"] == "")
            if nxt:
                assert "," not in nxt
                assert dict(parse_qsl(urlsplit(nxt).query))["page"] == resp.headers["X-Next-Page"]
                assert parse_qsl(urlsplit(nxt).query).count(("scope[]", "manual")) == 1
                nxt = relative(client, nxt)
            url = nxt
        assert seen == [12, 10, 9, 8, 7, 6]

    async def test_last_page_and_past_the_end(self, client):
        resp = await client.get("/api/v4/projects/1/jobs?per_page=4&page=2", headers=auth("root"))
        assert ids(await resp.json()) == ALL_PROJECT_1[4:]
        assert resp.headers["X-Next-Page"] == "" and resp.headers["X-Prev-Page"] == "1"
        assert set(links(resp)) == {"prev", "first"}
        resp = await client.get("/api/v4/projects/1/jobs?per_page=4&page=9", headers=auth("root"))
        assert resp.status == 200 and await resp.json() == []
        assert resp.headers["X-Page"] == "9" and resp.headers["X-Next-Page"] == "" and resp.headers["X-Prev-Page"] == ""

    @pytest.mark.parametrize(
        "query,per_page,page",
        [("per_page=1000", "100", "1"), ("page=0", "20", "1"), ("page=-3", "20", "1"), ("per_page=-5", "20", "1")],
    )
    async def test_kaminari_clamping(self, client, query, per_page, page):
        resp = await client.get(f"/api/v4/projects/1/jobs?{query}", headers=auth("root"))
        assert resp.status == 200
        assert (resp.headers["X-Per-Page"], resp.headers["X-Page"]) == (per_page, page)

    @pytest.mark.parametrize(
        "query,error",
        [
            ("page=abc", "page is invalid"),
            ("per_page=1.5", "per_page is invalid"),
            ("per_page=0", "per_page has a value not allowed"),
            ("page=x&per_page=y", "page is invalid, per_page is invalid"),
        ],
    )
    async def test_invalid_page_params(self, client, query, error):
        resp = await client.get(f"/api/v4/projects/1/jobs?{query}", headers=auth("root"))
        assert resp.status == 400
        assert await resp.json() == {"error": error}

    async def test_offset_past_50000(self, client):
        resp = await client.get("/api/v4/projects/1/jobs?page=501&per_page=100", headers=auth("root"))
        assert resp.status == 405
        assert (await resp.json())["error"].startswith("Offset pagination has a maximum allowed offset of 50000")
        resp = await client.get("/api/v4/projects/1/jobs?page=500&per_page=100", headers=auth("root"))
        assert resp.status == 200

    async def test_keyset_pagination(self, client):
        url, pages, seen = "/api/v4/projects/5/jobs?pagination=keyset&per_page=10", 0, []
        while url:
            resp = await client.get(url, headers=auth("developer"))
            assert resp.status == 200
            assert "X-Page" not in resp.headers and "X-Total" not in resp.headers
            seen += ids(await resp.json())
            pages += 1
            url = links(resp).get("next")
            if url:
                query = dict(parse_qsl(urlsplit(url).query))
                assert query["pagination"] == "keyset" and "cursor" in query
                url = relative(client, url)
        assert pages == 3
        assert seen == sorted(range(1001, 1001 + BIG_PROJECT_JOBS), reverse=True)

    async def test_keyset_last_page_has_no_link(self, client):
        resp = await client.get("/api/v4/projects/5/jobs?pagination=keyset&per_page=100", headers=auth("developer"))
        assert len(await resp.json()) == BIG_PROJECT_JOBS
        assert "Link" not in resp.headers

    async def test_keyset_with_scope_and_cursor(self, client):
        cursor = encode_cursor(1010)
        resp = await client.get(
            f"/api/v4/projects/5/jobs?pagination=keyset&scope=failed&cursor={cursor}", headers=auth("developer")
        )
        assert ids(await resp.json()) == [1009, 1006, 1003]

    async def test_keyset_unsupported_order(self, client):
        resp = await client.get("/api/v4/projects/5/jobs?pagination=keyset&sort=asc", headers=auth("developer"))
        assert resp.status == 405
        assert await resp.json() == {"error": "Keyset pagination is not yet available for this type of request"}

    async def test_keyset_bad_cursor(self, client):
        resp = await client.get("/api/v4/projects/5/jobs?pagination=keyset&cursor=%%%", headers=auth("developer"))
        assert resp.status == 400

    async def test_roles(self, client):
        assert (await client.get("/api/v4/projects/1/jobs", headers=auth("guest"))).status == 403
        assert await (await client.get("/api/v4/projects/1/jobs", headers=auth("guest"))).json() == {
            "message": "403 Forbidden"
        }
        resp = await client.get("/api/v4/projects/1/jobs", headers=auth("outsider"))
        assert resp.status == 404
        assert await resp.json() == {"message": "404 Project Not Found"}

    async def test_public_builds_lets_non_members_read(self, client):
        assert (await client.get("/api/v4/projects/2/jobs", headers=auth("outsider"))).status == 200
        assert (await client.get("/api/v4/projects/4/jobs", headers=auth("outsider"))).status == 200
        assert (await client.get("/api/v4/projects/3/jobs", headers=auth("outsider"))).status == 403

    @pytest.mark.parametrize("ident", ["gitlab-org%2Fgitlab-test", "GitLab-Org%2Fgitlab-TEST", "1"])
    async def test_project_by_id_or_encoded_path(self, client, ident):
        resp = await client.get(f"/api/v4/projects/{ident}/jobs", headers=auth("root"))
        assert resp.status == 200

    async def test_unencoded_path_misses_the_route(self, client):
        resp = await client.get("/api/v4/projects/gitlab-org/gitlab-test/jobs", headers=auth("root"))
        assert resp.status == 404
        assert await resp.json() == {"error": "404 Not Found"}

    @pytest.mark.parametrize("ident", ["999", "nopath", "no%2Fsuch"])
    async def test_unknown_project(self, client, ident):
        resp = await client.get(f"/api/v4/projects/{ident}/jobs", headers=auth("root"))
        assert resp.status == 404
        assert await resp.json() == {"message": "404 Project Not Found"}

    async def test_rate_limit(self, aiohttp_client, config):
        from jobsvc.http.app import create_app

        config.jobs_rate_limit = 2
        client = await aiohttp_client(create_app(config))
        for _ in range(2):
            assert (await client.get("/api/v4/projects/1/jobs", headers=auth("root"))).status == 200
        resp = await client.get("/api/v4/projects/1/jobs", headers=auth("root"))
        assert resp.status == 429
        assert await resp.json() == {
            "message": {"error": "This endpoint has been requested too many times. Try again later."}
        }
        assert int(resp.headers["Retry-After"]) >= 1
        assert (await client.get("/api/v4/projects/1/jobs", headers=auth("developer"))).status == 200


class TestPipelineJobs:
    async def test_latest_attempts_only_by_default(self, client):
        resp = await client.get("/api/v4/projects/1/pipelines/6/jobs", headers=auth("reporter"))
        assert resp.status == 200
        assert ids(await resp.json()) == [12, 11, 10, 9, 8, 6]
        assert resp.headers["X-Total"] == "6" and resp.headers["X-Total-Pages"] == "1"

    @pytest.mark.parametrize("value", ["true", "True", "TRUE", "1"])
    async def test_include_retried(self, client, value):
        resp = await client.get(f"/api/v4/projects/1/pipelines/6/jobs?include_retried={value}", headers=auth("root"))
        assert ids(await resp.json()) == [12, 11, 10, 9, 8, 7, 6]

    async def test_include_retried_invalid(self, client):
        resp = await client.get("/api/v4/projects/1/pipelines/6/jobs?include_retried=maybe", headers=auth("root"))
        assert resp.status == 400
        assert await resp.json() == {"error": "include_retried is invalid"}

    async def test_scope_string_and_array_but_not_hash(self, client):
        resp = await client.get("/api/v4/projects/1/pipelines/6/jobs?scope=success", headers=auth("root"))
        assert ids(await resp.json()) == [12, 9, 8]
        resp = await client.get(
            "/api/v4/projects/1/pipelines/6/jobs?scope[]=manual&scope[]=failed", headers=auth("root")
        )
        assert ids(await resp.json()) == [10, 6]
        resp = await client.get("/api/v4/projects/1/pipelines/6/jobs?scope[a]=success", headers=auth("root"))
        assert resp.status == 400
        assert await resp.json() == {"error": "scope does not have a valid value"}

    async def test_full_pagination_headers(self, client):
        resp = await client.get("/api/v4/projects/5/pipelines/60/jobs?per_page=10&page=2", headers=auth("developer"))
        assert len(await resp.json()) == 10
        h = resp.headers
        assert (h["X-Total"], h["X-Total-Pages"], h["X-Page"], h["X-Next-Page"], h["X-Prev-Page"]) == (
            str(BIG_PROJECT_JOBS),
            "3",
            "2",
            "3",
            "1",
        )
        assert set(links(resp)) == {"prev", "next", "first", "last"}
        assert dict(parse_qsl(urlsplit(links(resp)["last"]).query))["page"] == "3"

    async def test_past_the_end_keeps_total(self, client):
        resp = await client.get("/api/v4/projects/5/pipelines/60/jobs?per_page=10&page=7", headers=auth("developer"))
        assert await resp.json() == []
        assert resp.headers["X-Total"] == str(BIG_PROJECT_JOBS) and resp.headers["X-Prev-Page"] == ""

    async def test_trailing_question_mark(self, client):
        resp = await client.get("/api/v4/projects/1/pipelines/6/jobs?", headers=auth("root"))
        assert resp.status == 200

    async def test_child_pipeline_is_addressable(self, client):
        resp = await client.get("/api/v4/projects/1/pipelines/20/jobs", headers=auth("root"))
        assert ids(await resp.json()) == [21]

    @pytest.mark.parametrize("path", ["/api/v4/projects/1/pipelines/30/jobs", "/api/v4/projects/1/pipelines/9999/jobs"])
    async def test_pipeline_not_in_project(self, client, path):
        resp = await client.get(path, headers=auth("root"))
        assert resp.status == 404
        assert await resp.json() == {"message": "404 Not found"}

    async def test_invalid_pipeline_id(self, client):
        resp = await client.get("/api/v4/projects/1/pipelines/abc/jobs", headers=auth("root"))
        assert resp.status == 400
        assert await resp.json() == {"error": "pipeline_id is invalid"}

    async def test_anonymous(self, client):
        resp = await client.get("/api/v4/projects/2/pipelines/30/jobs")
        assert resp.status == 200 and ids(await resp.json()) == [31]
        resp = await client.get("/api/v4/projects/3/pipelines/40/jobs")
        assert resp.status == 403
        resp = await client.get("/api/v4/projects/1/pipelines/6/jobs")
        assert resp.status == 404
        assert await resp.json() == {"message": "404 Project Not Found"}
        resp = await client.get("/api/v4/projects/4/pipelines/50/jobs")
        assert resp.status == 404

    async def test_guest_without_public_builds(self, client):
        resp = await client.get("/api/v4/projects/1/pipelines/6/jobs", headers=auth("guest"))
        assert resp.status == 403
        assert await resp.json() == {"message": "403 Forbidden"}


class TestGetJob:
    async def test_job(self, client):
        resp = await client.get("/api/v4/projects/1/jobs/8", headers=auth("reporter"))
        assert resp.status == 200
        body = await resp.json()
        assert body["id"] == 8 and body["name"] == "rubocop" and body["pipeline"]["id"] == 6

    async def test_invalid_id(self, client):
        resp = await client.get("/api/v4/projects/1/jobs/eight", headers=auth("root"))
        assert resp.status == 400
        assert await resp.json() == {"error": "job_id is invalid"}

    @pytest.mark.parametrize("job_id", [31, 99999])
    async def test_missing_or_other_projects_job(self, client, job_id):
        resp = await client.get(f"/api/v4/projects/1/jobs/{job_id}", headers=auth("root"))
        assert resp.status == 404
        assert await resp.json() == {"message": "404 Not found"}

    async def test_guest_and_outsider(self, client):
        assert (await client.get("/api/v4/projects/1/jobs/8", headers=auth("guest"))).status == 403
        assert (await client.get("/api/v4/projects/1/jobs/8", headers=auth("outsider"))).status == 404

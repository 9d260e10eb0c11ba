"""The pages for people (jobsvc/http/pages), in process: every page, the API's access rules, the session.

Runs on both backends (the ``client`` fixture). The world is tests/conftest.py's: project 1 private
(public_builds off), 2 public with public pipelines, 3 public without them, 4 internal, 5 private.
"""

from __future__ import annotations

import html
import io
import re
import zipfile
from dataclasses import replace

import aiohttp
import pytest

from jobsvc.http.app import create_app
from jobsvc.http.pages import respond, session
from tests.conftest import RUNNING_JOB_TOKEN, TOKENS, auth

PRIVATE, PUBLIC, NO_PUBLIC_BUILDS, INTERNAL = (
    "gitlab-org/gitlab-test",
    "group/sub/public-proj",
    "acme/no-public-builds",
    "acme/internal",
)


def csrf_of(text: str) -> str:
    found = re.search(r'name="authenticity_token" value="([^"]+)"', text)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)


async def sign_in(client, name: str, redirect_to: str = "/") -> None:
    form = await client.get("/users/sign_in")
    answer = await client.post(
        "/users/sign_in",
        data={"authenticity_token": csrf_of(await form.text()), "token": TOKENS[name], "redirect_to": redirect_to},
        allow_redirects=False,
    )
    assert answer.status == 303, await answer.text()


async def page(client, path: str, status: int = 200) -> str:
    response = await client.get(path, allow_redirects=False)
    text = await response.text()
    assert response.status == status, text[:2000]
    return text


async def append(client, text: bytes) -> None:
    """The runner appends to the running job 11's log (it starts as "started\\n")."""
    job = await client.get("/api/v4/projects/1/jobs/11/trace", headers=auth("root"))
    size = len(await job.read())
    headers = {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": f"{size}-{size + len(text) - 1}"}
    answer = await client.patch("/api/v4/jobs/11/trace", data=text, headers=headers)
    assert answer.status == 202


# --- the projects list -----------------------------------------------------------------------------


def listed_projects(text: str) -> list[str]:
    return re.findall(r'<td><a href="/([^"]+)/-/pipelines">', text)


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (None, [NO_PUBLIC_BUILDS, PUBLIC]),
        ("outsider", [INTERNAL, NO_PUBLIC_BUILDS, PUBLIC]),
        ("developer", ["acme/big.app", INTERNAL, NO_PUBLIC_BUILDS, PRIVATE, PUBLIC]),
        ("root", ["acme/big.app", INTERNAL, NO_PUBLIC_BUILDS, PRIVATE, PUBLIC]),
    ],
)
async def test_the_projects_a_viewer_may_see(client, who, expected):
    if who:
        await sign_in(client, who)
    assert listed_projects(await page(client, "/explore/projects")) == expected


async def test_the_root_and_a_project_lead_to_their_lists(client):
    assert (await client.get("/", allow_redirects=False)).headers["Location"] == "/explore/projects"
    answer = await client.get(f"/{PUBLIC}", allow_redirects=False)
    assert answer.status == 302 and answer.headers["Location"] == f"/{PUBLIC}/-/pipelines"
    await page(client, f"/{PRIVATE}", 404)


async def test_projects_are_paged(client):
    text = await page(client, "/explore/projects?page=2")
    assert listed_projects(text) == [] and 'rel="prev"' in text
    assert listed_projects(await page(client, "/explore/projects?page=x")) == [NO_PUBLIC_BUILDS, PUBLIC]


# --- who sees what: the API's rules, 404 for the rest --------------------------------------------

PAGES = {
    "pipelines": "/{p}/-/pipelines",
    "pipeline": "/{p}/-/pipelines/{pipeline}",
    "job": "/{p}/-/jobs/{job}",
    "raw": "/{p}/-/jobs/{job}/raw",
}
PROJECTS = {
    PRIVATE: {"pipeline": 6, "job": 8},
    PUBLIC: {"pipeline": 30, "job": 31},
    NO_PUBLIC_BUILDS: {"pipeline": 40, "job": 41},
    INTERNAL: {"pipeline": 50, "job": 51},
}


@pytest.mark.parametrize(
    ("who", "project", "visible"),
    [
        (None, PUBLIC, True),
        (None, PRIVATE, False),
        (None, INTERNAL, False),
        (None, NO_PUBLIC_BUILDS, False),  # read_project, but not read_pipeline / read_build
        ("outsider", INTERNAL, True),  # any signed-in user reads an internal project; public_builds on
        ("outsider", PRIVATE, False),
        ("outsider", NO_PUBLIC_BUILDS, False),
        ("guest", PRIVATE, False),  # a guest needs public_builds
        ("reporter", PRIVATE, True),
        ("developer", NO_PUBLIC_BUILDS, False),
        ("root", NO_PUBLIC_BUILDS, True),
        ("root", PRIVATE, True),
    ],
)
async def test_access_to_pipelines_jobs_and_logs(client, who, project, visible):
    if who:
        await sign_in(client, who)
    for name, template in PAGES.items():
        path = template.format(p=project, **PROJECTS[project])
        response = await client.get(path)
        assert response.status == (200 if visible else 404), f"{who} {name} {path}"


@pytest.mark.parametrize(
    "path",
    [
        f"/{PRIVATE}/-/pipelines/30",  # another project's pipeline
        f"/{PUBLIC}/-/pipelines/6",
        f"/{PUBLIC}/-/jobs/8",  # another project's job
        f"/{PUBLIC}/-/jobs/999",
        f"/{PUBLIC}/-/jobs/abc",
        f"/{PUBLIC}/-/jobs/%D9%A1%D9%A2",  # Arabic-Indic digits are no number
        f"/{PUBLIC}/-/jobs/99999999999999999999999",
        f"/{PUBLIC}/-/pipelines/0",
        "/no/such-project/-/pipelines",
        "/no/such-project/-/jobs/1",
    ],
)
async def test_what_does_not_exist_is_the_404_page(client, path):
    await sign_in(client, "root")
    text = await page(client, path, 404)
    assert "<h1>404</h1>" in text


async def test_the_404_page_offers_to_sign_in_and_come_back(client):
    text = await page(client, f"/{PRIVATE}/-/jobs/8", 404)
    assert f'href="/users/sign_in?redirect_to=/{PRIVATE}/-/jobs/8"' in text
    await sign_in(client, "reporter", redirect_to=f"/{PRIVATE}/-/jobs/8")
    assert "rubocop" in await page(client, f"/{PRIVATE}/-/jobs/8")


# --- the pages ---------------------------------------------------------------------------------------


async def test_pipelines_list_with_status_and_stages(client):
    await sign_in(client, "reporter")
    text = await page(client, f"/{PRIVATE}/-/pipelines")
    row = text.split('<tr id="pipeline-6">')[1].split("</tr>")[0]
    assert 'class="ci-status ci-running"' in row and f'href="/{PRIVATE}/-/pipelines/6"' in row
    assert 'title="test: failed"' in row and 'title="deploy: running"' in row  # stage statuses, in stage order
    assert row.index('title="test:') < row.index('title="deploy:')
    assert "pipeline-20" not in text  # a child pipeline is listed under its parent only


async def test_pipeline_stages_and_jobs(client):
    await sign_in(client, "reporter")
    text = await page(client, f"/{PRIVATE}/-/pipelines/6")
    assert re.findall(r'data-stage="([^"]+)"', text) == ["test", "deploy"]
    jobs = re.findall(
        r'<a href="/gitlab-org/gitlab-test/-/jobs/(\d+)" id="job-\d+"><span class="ci-mini ci-(\w+)"', text
    )
    # the latest jobs only (7 was retried), with GitLab's status groups
    assert jobs == [("6", "failed"), ("8", "success"), ("9", "success"), ("10", "manual"), ("11", "running"),
                    ("12", "success")]  # fmt: skip
    child = await page(client, f"/{PRIVATE}/-/pipelines/20")
    assert f'<a href="/{PRIVATE}/-/pipelines/6">pipeline #6</a>' in child


async def test_a_job_page(client):
    await sign_in(client, "reporter")
    text = await page(client, f"/{PRIVATE}/-/jobs/8")
    assert 'class="ci-status ci-success"' in text and "rubocop" in text and "shared-runner-1" in text
    assert '<span class="lt">Running rubocop</span>' in text and 'id="L2"' in text
    assert f'href="/{PRIVATE}/-/jobs/8/artifacts/browse"' in text
    assert f'href="/{PRIVATE}/-/jobs/8/artifacts/download"' in text
    assert 'class="log"' in text and "log.js" in text  # finished: no live tail
    failed = await page(client, f"/{PRIVATE}/-/jobs/6")
    assert "script_failure" in failed and 'id="log-empty"' in failed


async def test_a_running_jobs_page_tails_its_log(client):
    complete = b"\x1b[32mgreen\x1b[0m\n"
    await append(client, complete + b"half a li")
    await sign_in(client, "developer")
    text = await page(client, f"/{PRIVATE}/-/jobs/11")
    assert 'class="log live"' in text and f'data-raw="/{PRIVATE}/-/jobs/11/raw"' in text
    # rendered up to the last line break; the script goes on from there
    offset = len(b"started\n" + complete)
    assert f'data-offset="{offset}"' in text and 'data-next-line="3"' in text and "half a li" not in text
    assert '<span class="fg-2">green</span>' in text
    pending = await page(client, f"/{PRIVATE}/-/jobs/21")  # no log yet: it may come
    assert 'class="log live"' in pending and 'id="log-empty"' not in pending


async def test_the_raw_log_answers_ranges_and_the_jobs_status(client):
    await sign_in(client, "developer")
    whole = await client.get(f"/{PRIVATE}/-/jobs/11/raw")
    assert whole.status == 200 and await whole.read() == b"started\n"
    assert whole.headers["Content-Type"] == "text/plain; charset=utf-8" and whole.headers["Job-Status"] == "running"
    assert whole.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    part = await client.get(f"/{PRIVATE}/-/jobs/11/raw", headers={"Range": "bytes=3-"})
    assert part.status == 206 and await part.read() == b"rted\n" and part.headers["Content-Range"] == "bytes 3-7/8"
    end = await client.get(f"/{PRIVATE}/-/jobs/11/raw", headers={"Range": "bytes=8-"})
    assert end.status == 416 and end.headers["Job-Status"] == "running"
    await append(client, b"more\n")
    grown = await client.get(f"/{PRIVATE}/-/jobs/11/raw", headers={"Range": "bytes=8-"})
    assert grown.status == 206 and await grown.read() == b"more\n"
    no_log = await client.get(f"/{PRIVATE}/-/jobs/10/raw")
    assert no_log.status == 200 and await no_log.read() == b""


async def test_a_debug_log_is_for_developers(client):
    await sign_in(client, "reporter")
    text = await page(client, f"/{PRIVATE}/-/jobs/12")
    assert 'id="log-hidden"' in text and "debug output" not in text and "/-/jobs/12/raw" not in text
    await page(client, f"/{PRIVATE}/-/jobs/12/raw", 404)
    await sign_in(client, "developer")
    assert "debug output" in await page(client, f"/{PRIVATE}/-/jobs/12")
    assert await page(client, f"/{PRIVATE}/-/jobs/12/raw") == "debug output\n"


async def test_a_hostile_log_is_escaped_on_the_page(client):
    await append(
        client,
        b"<script>alert(1)</script>\n"
        b'"><img src=x onerror=alert(1)>\n'
        b"\x1b]8;;javascript:alert(1)\x1b\\click\x1b]8;;\x1b\\\n"
        b'section_start:1:x"><script>alert(2)</script>\r\x1b[0Kh\n'
        b'\x1b[38;2;1;2;3;"onmouseover=alert(3)mtext\n',
    )
    await sign_in(client, "developer")
    text = await page(client, f"/{PRIVATE}/-/jobs/11")
    log = text.split('id="log"')[1].split("</section>")[0]
    assert (
        "<script" not in log
        and "<img" not in log
        and "javascript:" not in log
        and "onmouseover" not in log.split("</div>")[-1]
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in log and "&#34;&gt;&lt;img" in log.replace("&quot;", "&#34;")
    assert ">click<" in log
    assert re.search(r"<(?!/?(div|span|a|details|summary)[ >])", log.split(">", 1)[1]) is None


# --- artifacts -------------------------------------------------------------------------------------


def entries(text: str) -> list[str]:
    names = re.findall(r'<tr class="(?:folder|file)"><td>(?:<a [^>]+>|<span [^>]+>)([^<]+)<', text)
    return [html.unescape(name) for name in names]


async def test_browsing_a_public_jobs_artifacts(client):
    base = f"/{PUBLIC}/-/jobs/31/artifacts"
    top = await page(client, f"{base}/browse")
    assert entries(top) == ["dist/", "docs/", "my dir/", "data.bin"]
    assert f'<a href="{base}/browse/my%20dir/">my dir/</a>' in top and f'href="{base}/raw/data.bin"' in top
    inner = await page(client, f"{base}/browse/my%20dir")
    assert entries(inner) == ["my file.txt"] and f'href="{base}/raw/my%20dir/my%20file.txt"' in inner
    assert f'<a href="{base}/browse/" class="up">' in inner
    assert entries(await page(client, f"{base}/browse/dist/")) == ["app.txt"]
    await page(client, f"{base}/browse/nothing-here", 404)


async def test_an_artifact_file_is_an_attachment_never_a_page(client):
    base = f"/{PUBLIC}/-/jobs/31/artifacts"
    answer = await client.get(f"{base}/raw/docs/index.html")
    assert answer.status == 200 and await answer.read() == b"<html><script>alert(1)</script></html>"
    assert answer.headers["Content-Disposition"].startswith("attachment")
    assert answer.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    missing = await client.get(f"{base}/raw/no/such/file")
    assert missing.status == 404 and await missing.text() == "404 page not found\n"


async def test_downloading_the_archive(client):
    answer = await client.get(f"/{PUBLIC}/-/jobs/31/artifacts/download")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/octet-stream"
    with zipfile.ZipFile(io.BytesIO(await answer.read())) as archive:
        assert "dist/app.txt" in archive.namelist()
    ranged = await client.get(f"/{PUBLIC}/-/jobs/31/artifacts/download", headers={"Range": "bytes=0-1"})
    assert ranged.status == 206 and await ranged.read() == b"PK"


@pytest.mark.parametrize(
    ("who", "path", "status"),
    [
        (None, f"/{PRIVATE}/-/jobs/8/artifacts/browse", 404),
        (None, f"/{PRIVATE}/-/jobs/8/artifacts/download", 404),
        (None, f"/{PRIVATE}/-/jobs/8/artifacts/raw/out/hello.txt", 404),
        ("guest", f"/{PRIVATE}/-/jobs/8/artifacts/download", 404),
        ("reporter", f"/{PRIVATE}/-/jobs/8/artifacts/browse", 200),
        ("reporter", f"/{PRIVATE}/-/jobs/8/artifacts/raw/out/hello.txt", 200),
        ("reporter", f"/{PRIVATE}/-/jobs/9/artifacts/browse", 404),  # expired
        ("reporter", f"/{PRIVATE}/-/jobs/6/artifacts/browse", 404),  # none
        (None, f"/{NO_PUBLIC_BUILDS}/-/jobs/41/artifacts/browse", 404),
    ],
)
async def test_artifacts_follow_the_apis_rules(client, who, path, status):
    if who:
        await sign_in(client, who)
    assert (await client.get(path)).status == status


def test_hostile_artifact_names_are_listed_without_links():
    from jobsvc.http.pages.browse import folder

    listing = folder(
        [
            (b"../escape.txt", 1),
            (b"/abs.txt", 2),
            (b"a//b.txt", 3),
            (b'"><img src=x onerror=alert(1)>.txt', 4),
            (b"\xff\xfe-not-utf8", 5),
            (b"ok/./x", 6),
            (b"fine.txt", 7),
        ],
        "",
    )
    assert listing.folders == [("", None), ("..", None), ("a", "a/"), ("ok", "ok/")]
    quoted = "%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt"
    assert listing.files == [('"><img src=x onerror=alert(1)>.txt', 4, quoted), ("fine.txt", 7, "fine.txt")]
    assert folder([(b"ok/./x", 6)], "ok/").folders == [(".", None)]
    assert folder([(b"a//b.txt", 3)], "a/").folders == [("", None)]


async def test_hostile_artifact_names_are_escaped_on_the_page(client):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in [
            '"><img src=x onerror=alert(1)>.txt',
            "../escape.txt",
            "<script>alert(2)</script>/x.txt",
            "ok.txt",
        ]:
            archive.writestr(name, b"x")
    form = aiohttp.FormData()
    form.add_field("file", buffer.getvalue(), filename="artifacts.zip", content_type="application/octet-stream")
    uploaded = await client.post(
        "/api/v4/jobs/11/artifacts?artifact_type=archive&artifact_format=zip",
        data=form,
        headers={"JOB-TOKEN": RUNNING_JOB_TOKEN},
    )
    assert uploaded.status == 201, await uploaded.text()
    await sign_in(client, "developer")
    text = await page(client, f"/{PRIVATE}/-/jobs/11/artifacts/browse")
    # folders first ("</script>" holds a slash: the folder is "<script>alert(2)<"), then files
    assert entries(text) == ["../", "<script>alert(2)</", '"><img src=x onerror=alert(1)>.txt', "ok.txt"]
    assert "<img" not in text and "<script>" not in text
    assert '<span class="unlinked">../</span>' in text  # a browser would resolve it: no link
    assert f'href="/{PRIVATE}/-/jobs/11/artifacts/raw/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt"' in text


# --- web_url opens the page -----------------------------------------------------------------------


async def test_the_apis_web_urls_open_real_pages(client):
    await sign_in(client, "root")
    job = await (await client.get("/api/v4/projects/1/jobs/8", headers=auth("root"))).json()
    for url, needle in [
        (job["web_url"], "rubocop"),
        (job["pipeline"]["web_url"], "Pipeline #6"),
    ]:
        path = "/" + url.split("/", 3)[3]
        assert needle in await page(client, path)
    project = await (await client.get("/api/v4/projects/1", headers=auth("root"))).json()
    answer = await client.get("/" + project["web_url"].split("/", 3)[3], allow_redirects=False)
    assert answer.status == 302 and answer.headers["Location"] == f"/{PRIVATE}/-/pipelines"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v4/projects/1/-/jobs/8", {"error": "404 Not Found"}),  # not a page: the API's catch-all
        ("/api/v4/-/pipelines", {"error": "404 Not Found"}),
        ("/-/jobs/8", {"error": "404 Not Found"}),  # /-/ at the root belongs to the operators' routes
        ("/users/x/-/jobs/8", {"error": "404 Not Found"}),
        ("/gitlab-org/-/gitlab-test/-/jobs/8", {"error": "404 Not Found"}),  # "-" is no path segment
    ],
)
async def test_the_pages_leave_the_apis_paths_alone(client, path, body):
    answer = await client.get(path, headers=auth("root"))
    assert answer.status == 404 and await answer.json() == body


async def test_the_session_is_no_api_credential(client):
    await sign_in(client, "root")
    answer = await client.get("/api/v4/projects/1")
    assert answer.status == 404 and await answer.json() == {"message": "404 Project Not Found"}


# --- the session -------------------------------------------------------------------------------------


def cookie_header(response, name: str) -> str:
    found = [value for value in response.headers.getall("Set-Cookie", []) if value.startswith(name + "=")]
    assert len(found) == 1, response.headers.getall("Set-Cookie", [])
    return found[0]


async def test_signing_in_sets_an_http_only_same_site_cookie(client):
    form = await client.get("/users/sign_in?redirect_to=/acme/internal/-/pipelines")
    csrf_cookie = cookie_header(form, session.CSRF_COOKIE)
    assert "HttpOnly" in csrf_cookie and "SameSite=Strict" in csrf_cookie and "Path=/" in csrf_cookie
    text = await form.text()
    assert 'name="redirect_to" value="/acme/internal/-/pipelines"' in text
    answer = await client.post(
        "/users/sign_in",
        data={
            "authenticity_token": csrf_of(text),
            "token": TOKENS["outsider"],
            "redirect_to": "/acme/internal/-/pipelines",
        },
        allow_redirects=False,
    )
    assert answer.status == 303 and answer.headers["Location"] == "/acme/internal/-/pipelines"
    cookie = cookie_header(answer, session.SESSION_COOKIE)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert TOKENS["outsider"] not in cookie  # encoded, though it is the token
    text = await page(client, "/acme/internal/-/pipelines")
    assert '<span class="who" id="signed-in-as">outsider</span>' in text


async def test_over_https_the_cookies_are_secure(aiohttp_client, config):
    client = await aiohttp_client(create_app(replace(config, external_url="https://ci.example.com")))
    form = await client.get("/users/sign_in")
    assert "Secure" in cookie_header(form, session.CSRF_COOKIE)
    csrf = csrf_of(await form.text())
    answer = await client.post(  # the client keeps Secure cookies for https: send it by hand
        "/users/sign_in",
        data={"authenticity_token": csrf, "token": TOKENS["root"]},
        headers={"Origin": "https://ci.example.com"},
        cookies={session.CSRF_COOKIE: csrf},
        allow_redirects=False,
    )
    assert answer.status == 303 and "Secure" in cookie_header(answer, session.SESSION_COOKIE)


async def test_a_read_api_token_may_sign_in(client):
    await sign_in(client, "readonly")
    assert "<h1>Pipelines</h1>" in await page(client, f"/{PRIVATE}/-/pipelines")


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("glpat-nobody-0000000000", "Invalid token."),
        ("", "Invalid token."),
        (TOKENS["expired"], "Token is expired. You can either do re-authorization or token refresh."),
        (TOKENS["revoked"], "Token was revoked. You have to re-authorize from the user."),
        (TOKENS["blocked"], "Your account has been blocked."),
    ],
)
async def test_bad_tokens_are_refused(client, token, message):
    form = await client.get("/users/sign_in")
    answer = await client.post(
        "/users/sign_in", data={"authenticity_token": csrf_of(await form.text()), "token": token}, allow_redirects=False
    )
    text = await answer.text()
    assert answer.status == 401 and f'<p class="form-error" id="sign-in-error">{message}</p>' in text
    assert session.SESSION_COOKIE not in answer.cookies


@pytest.mark.parametrize("case", ["no form token", "wrong form token", "no cookie", "other origin", "null origin"])
async def test_signing_in_needs_the_csrf_token(client, case):
    form = await client.get("/users/sign_in")
    data = {"authenticity_token": csrf_of(await form.text()), "token": TOKENS["root"]}
    headers = {}
    if case == "no form token":
        del data["authenticity_token"]
    elif case == "wrong form token":
        data["authenticity_token"] = "x" * 43
    elif case == "no cookie":
        client.session.cookie_jar.clear()
    elif case == "other origin":
        headers["Origin"] = "https://evil.example"
    else:
        headers["Origin"] = "null"
    answer = await client.post("/users/sign_in", data=data, headers=headers, allow_redirects=False)
    assert answer.status == 422 and "The form has expired" in await answer.text()
    assert not any(value.startswith(session.SESSION_COOKIE) for value in answer.headers.getall("Set-Cookie", []))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/acme/internal/-/pipelines?page=2", "/acme/internal/-/pipelines?page=2"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
    ],
)
async def test_after_signing_in_only_local_paths(client, target, expected):
    form = await client.get("/users/sign_in")
    answer = await client.post(
        "/users/sign_in",
        data={"authenticity_token": csrf_of(await form.text()), "token": TOKENS["root"], "redirect_to": target},
        allow_redirects=False,
    )
    assert answer.status == 303 and answer.headers["Location"] == expected


async def test_a_token_revoked_after_signing_in_signs_out(client, config):
    await sign_in(client, "developer")
    assert listed_projects(await page(client, "/explore/projects"))[0] == "acme/big.app"
    # the session now holds a token that was revoked meanwhile (the world's revoked user's)
    jar, here = client.session.cookie_jar, client.make_url("/")
    jar.update_cookies({session.SESSION_COOKIE: session.encode_token(TOKENS["revoked"])}, response_url=here)
    response = await client.get("/explore/projects")
    text = await response.text()
    assert 'id="session-refused"' in text and "Token was revoked" in text and 'id="sign-in"' in text
    assert listed_projects(text) == [NO_PUBLIC_BUILDS, PUBLIC]
    assert "Max-Age=0" in cookie_header(response, session.SESSION_COOKIE)
    jar.update_cookies({session.SESSION_COOKIE: "%%% not base64"}, response_url=here)
    assert 'id="session-refused"' in await page(client, "/explore/projects")


async def test_signing_out(client):
    await sign_in(client, "developer")
    text = await page(client, "/explore/projects")
    # without the form's token, nothing happens
    refused = await client.post("/users/sign_out", data={"authenticity_token": "y" * 43}, allow_redirects=False)
    assert refused.status == 422 and 'id="signed-in-as"' in await page(client, "/explore/projects")
    answer = await client.post("/users/sign_out", data={"authenticity_token": csrf_of(text)}, allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/"
    assert "Max-Age=0" in cookie_header(answer, session.SESSION_COOKIE)
    assert 'id="sign-in"' in await page(client, "/explore/projects")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"token": "x"}'),
        ("multipart/form-data; boundary=zz", b'--zz\r\nContent-Disposition: form-data; name="token"\r\n\r\nx'),
        ("multipart/form-data", b"no boundary"),
        ("application/x-www-form-urlencoded", b"\xff\xfe=%ff&token"),
        ("multipart/form-data; boundary=zz", b"--zz\r\nC\r\n\r\nx\r\n--zz--\r\n"),  # a part's header is broken
        ("application/x-www-form-urlencoded; charset=no-such-charset", b"token=x"),
    ],
)
async def test_a_broken_form_is_refused_without_a_5xx(client, content_type, body):
    answer = await client.post("/users/sign_in", data=body, headers={"Content-Type": content_type})
    assert answer.status == 422


# --- headers -----------------------------------------------------------------------------------------

EVERY_PAGE = [
    "/explore/projects",
    "/users/sign_in",
    f"/{PRIVATE}/-/pipelines",
    f"/{PRIVATE}/-/pipelines/6",
    f"/{PRIVATE}/-/jobs/8",
    f"/{PRIVATE}/-/jobs/11",
    f"/{PRIVATE}/-/jobs/8/artifacts/browse",
    f"/{PRIVATE}/-/jobs/8/artifacts/browse/out",
    f"/{PRIVATE}/-/jobs/404404",
]


async def test_every_page_has_a_strict_csp_and_nothing_inline(client):
    await sign_in(client, "root")
    for path in EVERY_PAGE:
        response = await client.get(path)
        text = await response.text()
        assert response.headers["Content-Security-Policy"] == respond.CSP, path
        assert "'unsafe-inline'" not in respond.CSP and "default-src 'self'" in respond.CSP
        assert (
            response.headers["Cache-Control"] == "no-store" and response.headers["X-Content-Type-Options"] == "nosniff"
        )
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert re.search(r"<script(?![^>]*\ssrc=)", text) is None, path  # no inline script
        assert re.search(r"\sstyle=", text) is None, path  # no inline style attribute
        assert re.search(r"<style", text) is None, path
        assert re.search(r"\son[a-z]+=", text) is None, path  # no event handler attribute


async def test_the_stylesheets_and_script_are_served(client):
    scripts = ("text/javascript", "application/javascript")
    for path, kinds in [
        ("/assets/pages.css", ("text/css",)),
        ("/assets/log.js", scripts),
        ("/assets/ansi.css", ("text/css",)),
    ]:
        response = await client.get(path)
        assert response.status == 200 and response.headers["Content-Type"].startswith(kinds), path
    palette = await (await client.get("/assets/ansi.css")).text()
    assert ".log .fg-196 { color: #ff0000; }" in palette
    assert (await client.get("/assets/../setup.cfg")).status == 404
    assert (await client.get("/assets/__init__.py")).status == 404  # only the pages' own files
    assert (await client.get("/assets/templates%2Fbase.html")).status == 404


@pytest.mark.parametrize(
    ("status", "allow_failure", "shown"),
    [
        ("success", False, {"group": "success", "label": "passed"}),
        ("failed", False, {"group": "failed", "label": "failed"}),
        ("failed", True, {"group": "warning", "label": "failed (allowed to fail)"}),
        ("manual", True, {"group": "manual", "label": "manual"}),
        ("waiting_for_resource", False, {"group": "waiting_for_resource", "label": "waiting"}),
    ],
)
def test_how_a_status_is_shown(status, allow_failure, shown):
    assert respond.status_of(status, allow_failure) == shown


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, ""), (0, "0s"), (59.9, "59s"), (61, "1m 1s"), (3600, "1h 0m 0s"), (-3, "0s")]
)
def test_durations_as_people_read_them(seconds, text):
    assert respond.took(seconds) == text
    assert respond.when("2015-12-24T15:51:21.802Z") == "2015-12-24 15:51 UTC" and respond.when(None) == ""

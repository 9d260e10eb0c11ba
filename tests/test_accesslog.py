"""No token reaches a log: the access log and jobsvc's own lines redact query values and never print token headers."""

import logging

import aiohttp
import pytest
from aiohttp import web

from jobsvc.http import server
from jobsvc.http.accesslog import FILTERED, redact
from jobsvc.http.middleware import error_middleware

from .conftest import RUNNING_JOB_TOKEN, TOKENS


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/api/v4/projects/1/jobs", "/api/v4/projects/1/jobs"),
        ("/a?private_token=glpat-x&page=2", "/a?private_token=[FILTERED]&page=2"),
        ("/a?page=2&access_token=x", "/a?page=2&access_token=[FILTERED]"),
        ("/a?job_token=glcbt-x", "/a?job_token=[FILTERED]"),
        ("/a?token=glrt-x", "/a?token=[FILTERED]"),
        ("/a?registration_token=x&runner_token=y", "/a?registration_token=[FILTERED]&runner_token=[FILTERED]"),
        ("/a?PRIVATE_TOKEN=x", "/a?PRIVATE_TOKEN=[FILTERED]"),  # names match without regard to case
        ("/a?private%5Ftoken=x", "/a?private%5Ftoken=[FILTERED]"),  # and after percent-decoding
        ("/a?password=x&client_secret=y", "/a?password=[FILTERED]&client_secret=[FILTERED]"),
        ("/a?ssh_key=z&ok=1", "/a?ssh_key=[FILTERED]&ok=1"),
        ("/a?variables[][value]=x&variables[][key]=K", "/a?variables[][value]=[FILTERED]&variables[][key]=[FILTERED]"),
        ("/a?a=1;private_token=x", "/a?a=1;private_token=[FILTERED]"),
        ("/a?scope[]=failed&ref=main&job=build", "/a?scope[]=failed&ref=main&job=build"),
        ("/a?private_token", "/a?private_token"),  # a name with no value has nothing to hide
        ("/a?tokenizer=1&keys=2", "/a?tokenizer=1&keys=2"),  # "ends with token/key", as in GitLab
        (
            "http://u:pw@h/x?private_token=t#access_token=f",
            "http://h/x?private_token=[FILTERED]#access_token=[FILTERED]",
        ),
    ],
)
def test_redact(target, expected):
    assert redact(target) == expected


SECRETS = {
    "private_token": TOKENS["root"],
    "access_token": TOKENS["reporter"],
    "job_token": RUNNING_JOB_TOKEN,
    "token": "glrt-query-runner-token-0001",
}
HEADER_SECRETS = {
    "PRIVATE-TOKEN": TOKENS["maintainer"],
    "JOB-TOKEN": "glcbt-header-job-token-0002",
    "Authorization": "Bearer oauth-header-token-0003",
    "Cookie": "_gitlab_session=cookie-session-secret-0004",
}


@pytest.mark.slow
async def test_access_log_filters_tokens_in_queries_and_never_logs_token_headers(config, caplog):
    config.access_log = True
    caplog.set_level(logging.DEBUG)
    sockets = server.bind("127.0.0.1", 0)
    try:
        async with server.running(config, sockets):
            base = server.url_of(sockets[0])
            async with aiohttp.ClientSession() as session:
                for name, secret in SECRETS.items():
                    async with session.get(f"{base}/api/v4/projects/1/jobs?{name}={secret}&per_page=1") as resp:
                        assert resp.status in (200, 401, 403)
                for header, secret in HEADER_SECRETS.items():
                    async with session.get(f"{base}/api/v4/projects/1/jobs", headers={header: secret}) as resp:
                        assert resp.status in (200, 401, 403)
                referer = f"http://user:pw-in-referer-0005@example.com/?private_token={TOKENS['developer']}"
                async with session.get(f"{base}/api/v4/version", headers={"Referer": referer}) as resp:
                    await resp.read()
    finally:
        for sock in sockets:
            sock.close()
    access = [r.getMessage() for r in caplog.records if r.name == "jobsvc.access"]
    assert len(access) == len(SECRETS) + len(HEADER_SECRETS) + 1
    for name in SECRETS:
        assert any(f"?{name}={FILTERED}&per_page=1 HTTP/1.1" in line for line in access), name
    assert '"http://example.com/?private_token=[FILTERED]"' in access[-1]
    everything = caplog.text + "".join(access)
    for secret in [*SECRETS.values(), *HEADER_SECRETS.values(), TOKENS["developer"], "pw-in-referer-0005"]:
        assert secret not in everything
    for token_kind in ("cookie-session-secret", "oauth-header-token"):
        assert token_kind not in everything


async def test_unhandled_error_line_is_redacted(aiohttp_client, caplog):
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    resp = await client.get(f"/boom?page=1&private_token={TOKENS['root']}")
    assert resp.status == 500
    assert f"unhandled error on GET /boom?page=1&private_token={FILTERED}" in caplog.text
    assert TOKENS["root"] not in caplog.text


@pytest.mark.slow
async def test_a_malformed_request_is_logged_without_its_bytes(config, caplog):
    """aiohttp logs the bytes around a parse error (a header line with its token) and a traceback; jobsvc does not."""
    import asyncio

    config.access_log = True
    caplog.set_level(logging.DEBUG)
    malformed = [
        f"GET /x HTTP/1.1\r\nHost: t\r\nPRIVATE-TOKEN: {TOKENS['root']}\x01\r\n\r\n",
        f"GET /x?private_token={TOKENS['developer']}\x7f HTTP/1.1\r\nHost: t\r\n\r\n",
        f"GET /x?job_token={RUNNING_JOB_TOKEN} HTTP/1.1\r\nHost: t\r\nContent-Length: zz\r\n\r\n",
    ]
    sockets = server.bind("127.0.0.1", 0)
    try:
        async with server.running(config, sockets):
            for raw in malformed:
                reader, writer = await asyncio.open_connection("127.0.0.1", sockets[0].getsockname()[1])
                writer.write(raw.encode("latin-1"))
                assert (await reader.read()).startswith(b"HTTP/1.0 400 Bad Request")
                writer.close()
    finally:
        for sock in sockets:
            sock.close()
    assert "Invalid header value char" in caplog.text and "Invalid char in url query" in caplog.text
    for secret in (TOKENS["root"], TOKENS["developer"], RUNNING_JOB_TOKEN):
        assert secret not in caplog.text
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.slow
async def test_json_access_log_is_one_object_per_line_with_gitlabs_names(config, capsys):
    import re

    import orjson

    config.access_log = True
    config.access_log_format = "json"
    sockets = server.bind("127.0.0.1", 0)
    try:
        async with server.running(config, sockets):
            base = server.url_of(sockets[0])
            async with aiohttp.ClientSession() as session:
                headers = {"PRIVATE-TOKEN": TOKENS["root"], "User-Agent": "probe/1.0"}
                async with session.get(f"{base}/api/v4/projects/1/jobs/8", headers=headers) as resp:
                    job = await resp.read()
                query = f"per_page=1&private_token={TOKENS['developer']}"
                referer = f"http://example.com/?job_token={RUNNING_JOB_TOKEN}"
                async with session.get(f"{base}/api/v4/projects/1/jobs?{query}", headers={"Referer": referer}) as resp:
                    assert resp.status == 200
                async with session.get(f"{base}/nowhere") as resp:
                    assert resp.status == 404
    finally:
        for sock in sockets:
            sock.close()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("{")]
    assert len(lines) == 3
    first, second, third = (orjson.loads(line) for line in lines)
    assert set(first) == {"time", "severity", "method", "path", "status", "duration_s", "written_bytes",
                          "remote_ip", "route", "ua"}  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert first["severity"] == "INFO" and first["method"] == "GET" and first["status"] == 200
    assert first["path"] == "/api/v4/projects/1/jobs/8" and first["route"] == "/api/v4/projects/{id}/jobs/{job_id}"
    assert len(job) < first["written_bytes"] < len(job) + 1000  # the head too, as the text log's size
    assert first["remote_ip"] == "127.0.0.1" and first["ua"] == "probe/1.0"
    assert isinstance(first["duration_s"], float) and 0 <= first["duration_s"] < 10
    assert second["path"] == "/api/v4/projects/1/jobs" and second["query"] == f"per_page=1&private_token={FILTERED}"
    assert second["referrer"] == f"http://example.com/?job_token={FILTERED}"
    assert third["status"] == 404 and third["route"] == "(unmatched)"
    for secret in (TOKENS["root"], TOKENS["developer"], RUNNING_JOB_TOKEN):
        assert secret not in err


def test_the_access_log_format_is_text_or_json():
    from jobsvc.cli import build_parser, resolve

    def resolved(args: list[str], env: dict[str, str]) -> str:
        return resolve(build_parser().parse_args(["serve", *args]), env)["access_log_format"]

    assert resolved(["--access-log-format", "JSON"], {}) == "json"
    assert resolved([], {"JOBSVC_ACCESS_LOG_FORMAT": "json"}) == "json" and resolved([], {}) == "text"
    with pytest.raises(ValueError, match="--access-log-format: not an access log format: 'xml'"):
        resolved(["--access-log-format", "xml"], {})

"""Hostile input, case by case: what each answers (each of these answered 500 once).

The rules the answers follow:

* an integer past 2**63-1 in an id names no record: the lookup's usual 404 (403 on the runner's job
  routes, which answer 403 for every unknown job so that the runner stops);
* only ASCII 0-9 make a number: "²" or "١٢" as an id is Grape's 400 ``<param> is invalid``;
* a page past 2**63-1 is clamped to it: an empty page, or the project jobs list's 405 offset limit;
* a token that is not UTF-8 is nobody's token (401, or 403 on the runner routes);
* a broken multipart body is 400, a runner parameter of the wrong JSON type is Grape's 400.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from jobsvc.http.app import create_app
from tests import rawhttp
from tests.conftest import RUNNING_JOB_TOKEN, TOKENS

HUGE = "99999999999999999999999"
REGISTRATION = "reg-token-hardening"
RUNNER = "glrt-test-runner-00000"
ROOT = [(b"PRIVATE-TOKEN", TOKENS["root"].encode())]
JOB = [(b"JOB-TOKEN", RUNNING_JOB_TOKEN.encode())]
JSON = [(b"Content-Type", b"application/json")]

NOT_FOUND = {"message": "404 Not found"}
PROJECT_NOT_FOUND = {"message": "404 Project Not Found"}
FORBIDDEN = {"message": "403 Forbidden"}
UNAUTHORIZED = {"message": "401 Unauthorized"}
OFFSET_LIMIT = {
    "error": "Offset pagination has a maximum allowed offset of 50000 for requests that return objects of type "
    "Ci::Build. Remaining records can be retrieved using keyset pagination."
}
BAD_CURSOR = {"message": "400 Bad request - Invalid cursor"}
BROKEN_MULTIPART = {"message": "400 Bad request - invalid multipart body"}
EMPTY = []


def invalid(name: str) -> dict[str, str]:
    return {"error": f"{name} is invalid"}


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": value, "_kd": "n"}).encode()).decode()


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def update(**fields: Any) -> bytes:
    return body({"token": RUNNING_JOB_TOKEN, "state": "failed", **fields})


def multipart(*parts: tuple[str, bytes], boundary: bytes = b"b0undary", close: bool = True) -> bytes:
    out = b""
    for name, value in parts:
        filename = b'; filename="a.zip"' if name == "file" else b""
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"' + filename
        out += b"\r\n\r\n" + value + b"\r\n"
    return out + (b"--" + boundary + b"--\r\n" if close else b"")


MULTIPART = [(b"Content-Type", b"multipart/form-data; boundary=b0undary")]
ZIP = b"PK\x05\x06" + b"\0" * 18

# (name, method, target, headers, body, status, answer body: None when not checked)
CASES = [
    # -- integers past 64 bits --------------------------------------------------------------------
    ("job id", "GET", f"/api/v4/projects/1/jobs/{HUGE}", ROOT, b"", 404, NOT_FOUND),
    ("job id, trace", "GET", f"/api/v4/projects/1/jobs/{HUGE}/trace", ROOT, b"", 404, NOT_FOUND),
    ("job id, cancel", "POST", f"/api/v4/projects/1/jobs/{HUGE}/cancel", ROOT, b"", 404, NOT_FOUND),
    ("job id, -huge", "GET", f"/api/v4/projects/1/jobs/-{HUGE}", ROOT, b"", 404, NOT_FOUND),
    ("project id", "GET", f"/api/v4/projects/{HUGE}", ROOT, b"", 404, PROJECT_NOT_FOUND),
    ("project id, jobs", "GET", f"/api/v4/projects/{HUGE}/jobs", ROOT, b"", 404, PROJECT_NOT_FOUND),
    ("project id, job", "GET", f"/api/v4/projects/{HUGE}/jobs/8", ROOT, b"", 404, PROJECT_NOT_FOUND),
    ("pipeline id", "GET", f"/api/v4/projects/1/pipelines/{HUGE}", ROOT, b"", 404, NOT_FOUND),
    ("pipeline id, jobs", "GET", f"/api/v4/projects/1/pipelines/{HUGE}/jobs", ROOT, b"", 404, NOT_FOUND),
    ("page, project jobs", "GET", f"/api/v4/projects/1/jobs?page={HUGE}", ROOT, b"", 405, OFFSET_LIMIT),
    ("per_page, project jobs", "GET", f"/api/v4/projects/1/jobs?per_page={HUGE}", ROOT, b"", 405, OFFSET_LIMIT),
    ("page, pipeline jobs", "GET", f"/api/v4/projects/1/pipelines/6/jobs?page={HUGE}", ROOT, b"", 200, EMPTY),
    ("page, pipelines", "GET", f"/api/v4/projects/1/pipelines?page={HUGE}", ROOT, b"", 200, EMPTY),
    ("page, projects", "GET", f"/api/v4/projects?page={HUGE}", ROOT, b"", 200, EMPTY),
    ("per_page, projects", "GET", f"/api/v4/projects?per_page={HUGE}", ROOT, b"", 200, None),
    ("per_page, -huge", "GET", f"/api/v4/projects?per_page=-{HUGE}", ROOT, b"", 200, None),
    ("page, 400 digits", "GET", "/api/v4/projects?page=" + "9" * 400, ROOT, b"", 200, EMPTY),
    ("cursor", "GET", f"/api/v4/projects/1/jobs?pagination=keyset&cursor={cursor(HUGE)}", ROOT, b"", 400, BAD_CURSOR),
    ("cursor, int", "GET", f"/api/v4/projects/1/jobs?pagination=keyset&cursor={cursor(2**70)}", ROOT, b"", 400, None),
    ("runner update", "PUT", f"/api/v4/jobs/{HUGE}", [], b"", 403, FORBIDDEN),
    ("runner update, token", "PUT", f"/api/v4/jobs/{HUGE}", JOB, update(), 403, FORBIDDEN),
    ("runner trace", "PATCH", f"/api/v4/jobs/{HUGE}/trace", [*JOB, (b"Content-Range", b"0-1")], b"x", 403, FORBIDDEN),
    ("runner upload", "POST", f"/api/v4/jobs/{HUGE}/artifacts", [*JOB, *MULTIPART], multipart(), 403, FORBIDDEN),
    ("runner download", "GET", f"/api/v4/jobs/{HUGE}/artifacts", JOB, b"", 403, FORBIDDEN),
    # -- digits that are not ASCII ------------------------------------------------------------------
    ("superscript two", "GET", "/api/v4/projects/1/jobs/%C2%B2/trace", ROOT, b"", 400, invalid("job_id")),
    ("arabic-indic 12", "GET", "/api/v4/projects/1/jobs/%D9%A1%D9%A2", ROOT, b"", 400, invalid("job_id")),
    ("arabic-indic pipeline", "GET", "/api/v4/projects/1/pipelines/%D9%A6", ROOT, b"", 400, invalid("pipeline_id")),
    ("arabic-indic project", "GET", "/api/v4/projects/%D9%A1", ROOT, b"", 404, PROJECT_NOT_FOUND),
    ("arabic-indic page", "GET", "/api/v4/projects/1/jobs?page=%D9%A2", ROOT, b"", 400, invalid("page")),
    ("arabic-indic per_page", "GET", "/api/v4/projects?per_page=%D9%A2", ROOT, b"", 400, invalid("per_page")),
    (
        "arabic-indic cursor",
        "GET",
        f"/api/v4/projects/1/jobs?pagination=keyset&cursor={cursor('١٢')}",
        ROOT,
        b"",
        400,
        BAD_CURSOR,
    ),  # fmt: skip
    ("runner job id", "PUT", "/api/v4/jobs/%D9%A1%D9%A1", JOB, update(), 400, invalid("id")),
    ("runner trace id", "PATCH", "/api/v4/jobs/%C2%B2/trace", JOB, b"", 400, invalid("id")),
    (
        "Content-Range",
        "PATCH",
        "/api/v4/jobs/11/trace",
        [*JOB, (b"Content-Range", "٥-9".encode())],
        b"x",
        400,
        {"message": "400 Bad request - Invalid Content-Range"},
    ),  # fmt: skip
    # -- strings that are lists ---------------------------------------------------------------------
    ("cursor list", "GET", "/api/v4/projects/1/jobs?pagination=keyset&cursor[]=x", ROOT, b"", 400, invalid("cursor")),
    ("ref hash", "GET", "/api/v4/projects/1/pipelines?ref[a]=x", ROOT, b"", 400, invalid("ref")),
    # -- multipart ------------------------------------------------------------------------------
    (
        "no boundary",
        "POST",
        "/api/v4/jobs/11/artifacts",
        [*JOB, (b"Content-Type", b"multipart/form-data")],
        multipart(("file", ZIP)),
        400,
        BROKEN_MULTIPART,
    ),  # fmt: skip
    (
        "cut in the file",
        "POST",
        "/api/v4/jobs/11/artifacts",
        [*JOB, *MULTIPART],
        multipart(("file", ZIP))[:-30],
        400,
        BROKEN_MULTIPART,
    ),  # fmt: skip
    (
        "cut before the end",
        "POST",
        "/api/v4/jobs/11/artifacts",
        [*JOB, *MULTIPART],
        multipart(("file", ZIP), close=False),
        400,
        BROKEN_MULTIPART,
    ),  # fmt: skip
    (
        "cut in a part's headers",
        "POST",
        "/api/v4/jobs/11/artifacts",
        [*JOB, *MULTIPART],
        multipart(("file", ZIP))[:30],
        400,
        BROKEN_MULTIPART,
    ),
    ("no part at all", "POST", "/api/v4/jobs/11/artifacts", [*JOB, *MULTIPART], b"garbage", 400, BROKEN_MULTIPART),
    # -- expire_in ------------------------------------------------------------------------------
    (
        "300000 years",
        "POST",
        "/api/v4/jobs/11/artifacts",
        [*JOB, *MULTIPART],
        multipart(("expire_in", b"300000 years"), ("file", ZIP)),
        400,
        invalid("expire_in"),
    ),  # fmt: skip
    (
        "400 digits",
        "POST",
        "/api/v4/jobs/11/artifacts",
        [*JOB, *MULTIPART],
        multipart(("expire_in", b"9" * 400), ("file", ZIP)),
        400,
        invalid("expire_in"),
    ),  # fmt: skip
    (
        "400 digits in seconds",
        "POST",
        "/api/v4/jobs/11/artifacts?expire_in=" + "9" * 400 + "+s",
        [*JOB, *MULTIPART],
        multipart(("file", ZIP)),
        400,
        invalid("expire_in"),
    ),  # fmt: skip
    (
        "expire_in ²",
        "POST",
        "/api/v4/jobs/11/artifacts",
        [*JOB, *MULTIPART],
        multipart(("expire_in", "² days".encode()), ("file", ZIP)),
        400,
        invalid("expire_in"),
    ),  # fmt: skip
    # -- tokens that are not UTF-8 ----------------------------------------------------------------
    ("PRIVATE-TOKEN", "GET", "/api/v4/projects/1/jobs", [(b"PRIVATE-TOKEN", b"\xff\xfe")], b"", 401, UNAUTHORIZED),
    ("PRIVATE-TOKEN, user", "GET", "/api/v4/user", [(b"PRIVATE-TOKEN", b"\xff\xfe")], b"", 401, UNAUTHORIZED),
    ("JOB-TOKEN", "GET", "/api/v4/projects/1/jobs", [(b"JOB-TOKEN", b"\xff\xfe")], b"", 401, UNAUTHORIZED),
    ("Bearer", "GET", "/api/v4/projects/1/jobs", [(b"Authorization", b"Bearer \xff\xfe")], b"", 401, UNAUTHORIZED),
    ("Bearer, job", "GET", "/api/v4/job", [(b"Authorization", b"Bearer \xc3\x28")], b"", 401, UNAUTHORIZED),
    ("private_token query", "GET", "/api/v4/projects/1/jobs?private_token=%FF%FE", [], b"", 401, UNAUTHORIZED),
    ("job_token query", "GET", "/api/v4/projects/1/jobs?job_token=%FF%FE", [], b"", 401, UNAUTHORIZED),
    (
        "runner JOB-TOKEN",
        "PUT",
        "/api/v4/jobs/11",
        [(b"JOB-TOKEN", b"\xff\xfe"), *JSON],
        body({"state": "running"}),
        403,
        FORBIDDEN,
    ),  # fmt: skip
    (
        "runner trace JOB-TOKEN",
        "PATCH",
        "/api/v4/jobs/11/trace",
        [(b"JOB-TOKEN", b"\xff\xfe"), (b"Content-Range", b"0-1")],
        b"x",
        403,
        FORBIDDEN,
    ),  # fmt: skip
    (
        "runner download JOB-TOKEN",
        "GET",
        "/api/v4/jobs/8/artifacts",
        [(b"JOB-TOKEN", b"\xed\xa0\x80")],
        b"",
        401,
        UNAUTHORIZED,
    ),  # fmt: skip
    (
        "registration token",
        "POST",
        "/api/v4/runners",
        [(b"Content-Type", b"application/x-www-form-urlencoded")],
        b"token=%FF%FE",
        403,
        FORBIDDEN,
    ),  # fmt: skip
    # -- runner bodies of the wrong JSON types ------------------------------------------------------
    (
        "failure_reason list",
        "PUT",
        "/api/v4/jobs/11",
        JSON,
        update(failure_reason=["x"]),
        400,
        invalid("failure_reason"),
    ),  # fmt: skip
    (
        "failure_reason object",
        "PUT",
        "/api/v4/jobs/11",
        JSON,
        update(failure_reason={"a": 1}),
        400,
        invalid("failure_reason"),
    ),  # fmt: skip
    ("state list", "PUT", "/api/v4/jobs/11", JSON, update(state=["success"]), 400, invalid("state")),
    ("token list, update", "PUT", "/api/v4/jobs/11", JSON, body({"token": [RUNNING_JOB_TOKEN]}), 400, invalid("token")),
    ("exit_code huge", "PUT", "/api/v4/jobs/11", JSON, update(exit_code=2**64 - 1), 400, invalid("exit_code")),
    ("output not a hash", "PUT", "/api/v4/jobs/11", JSON, update(output="x"), 400, invalid("output")),
    (
        "output bytesize",
        "PUT",
        "/api/v4/jobs/11",
        JSON,
        update(output={"bytesize": "²"}),
        400,
        invalid("output[bytesize]"),
    ),  # fmt: skip
    ("token list, verify", "POST", "/api/v4/runners/verify", JSON, body({"token": [RUNNER]}), 400, invalid("token")),
    (
        "token object, request",
        "POST",
        "/api/v4/jobs/request",
        JSON,
        body({"token": {"a": RUNNER}}),
        400,
        invalid("token"),
    ),  # fmt: skip
    (
        "token null, request",
        "POST",
        "/api/v4/jobs/request",
        JSON,
        body({"token": None}),
        400,
        {"error": "token is missing"},
    ),  # fmt: skip
    ("token list, delete", "DELETE", "/api/v4/runners", JSON, body({"token": [RUNNER]}), 400, invalid("token")),
    (
        "info not a hash, request",
        "POST",
        "/api/v4/jobs/request",
        JSON,
        body({"token": RUNNER, "info": "x"}),
        400,
        invalid("info"),
    ),  # fmt: skip
    (
        "info name list",
        "POST",
        "/api/v4/jobs/request",
        JSON,
        body({"token": RUNNER, "info": {"name": []}}),
        400,
        invalid("info[name]"),
    ),  # fmt: skip
    ("job_age", "POST", "/api/v4/jobs/request", JSON, body({"token": RUNNER, "job_age": "١"}), 400, invalid("job_age")),
    (
        "maximum_timeout 10**30",
        "POST",
        "/api/v4/runners",
        JSON,
        body({"token": REGISTRATION, "maximum_timeout": 10**30}),
        400,
        invalid("maximum_timeout"),
    ),  # fmt: skip
    (
        "maximum_timeout form",
        "POST",
        "/api/v4/runners",
        [(b"Content-Type", b"application/x-www-form-urlencoded")],
        f"token={REGISTRATION}&maximum_timeout=1{'0' * 30}".encode(),
        400,
        invalid("maximum_timeout"),
    ),  # fmt: skip
    (
        "access_level list",
        "POST",
        "/api/v4/runners",
        JSON,
        body({"token": REGISTRATION, "access_level": ["x"]}),
        400,
        invalid("access_level"),
    ),  # fmt: skip
    (
        "access_level unknown",
        "POST",
        "/api/v4/runners",
        JSON,
        body({"token": REGISTRATION, "access_level": "all"}),
        400,
        {"error": "access_level does not have a valid value"},
    ),  # fmt: skip
    (
        "info not a hash",
        "POST",
        "/api/v4/runners",
        JSON,
        body({"token": REGISTRATION, "info": [1]}),
        400,
        invalid("info"),
    ),  # fmt: skip
    (
        "tag_list of objects",
        "POST",
        "/api/v4/runners",
        JSON,
        body({"token": REGISTRATION, "tag_list": [{"a": 1}]}),
        400,
        invalid("tag_list"),
    ),  # fmt: skip
    (
        "paused list",
        "POST",
        "/api/v4/runners",
        JSON,
        body({"token": REGISTRATION, "paused": []}),
        400,
        invalid("paused"),
    ),  # fmt: skip
    (
        "active and paused",
        "POST",
        "/api/v4/runners",
        JSON,
        body({"token": REGISTRATION, "active": True, "paused": False}),
        400,
        {"error": "active, paused are mutually exclusive"},
    ),  # fmt: skip
    ("token list, register", "POST", "/api/v4/runners", JSON, body({"token": [REGISTRATION]}), 400, invalid("token")),
    (
        "upload token list",
        "POST",
        "/api/v4/jobs/11/artifacts?token[]=x",
        MULTIPART,
        multipart(("file", ZIP)),
        400,
        invalid("token"),
    ),  # fmt: skip
    (
        "upload artifact_type",
        "POST",
        "/api/v4/jobs/11/artifacts?artifact_type[]=x",
        [*JOB, *MULTIPART],
        multipart(("file", ZIP)),
        400,
        invalid("artifact_type"),
    ),  # fmt: skip
    (
        "trace token list",
        "PATCH",
        "/api/v4/jobs/11/trace?token[]=x",
        [(b"Content-Range", b"0-1")],
        b"x",
        400,
        invalid("token"),
    ),  # fmt: skip
    ("download token object", "GET", "/api/v4/jobs/8/artifacts?token[a]=x", [], b"", 400, invalid("token")),
    # Rack's nested names (jobsvc.http.params.parse_query): too deep and clashing shapes are 400, odd names are dropped
    ("scope too deep", "GET", "/api/v4/projects/1/jobs?scope" + "[a]" * 40 + "=x", ROOT, b"", 400, invalid("scope")),
    (
        "scope unclosed deep",
        "GET",
        "/api/v4/projects/1/jobs?scope" + "[a" * 2000 + "=x",
        ROOT,
        b"",
        400,
        invalid("scope"),
    ),
    (
        "scope hash of hashes",
        "GET",
        "/api/v4/projects/1/jobs?scope[a][b]=success",
        ROOT,
        b"",
        400,
        {"error": "scope does not have a valid value"},
    ),
    ("page value then hash", "GET", "/api/v4/projects/1/jobs?page=1&page[a]=2", ROOT, b"", 400, invalid("page")),
    (
        "odd names dropped",
        "GET",
        "/api/v4/projects/1/jobs?=1&[]=2&[[]]=3&]]=4&x[=5&x]=6&per_page]=1",
        ROOT,
        b"",
        200,
        None,
    ),
    (
        "form too deep",
        "POST",
        "/api/v4/jobs/request",
        [(b"Content-Type", b"application/x-www-form-urlencoded")],
        f"token={RUNNER}&info{'[a]' * 40}=x".encode(),
        400,
        invalid("info"),
    ),
    (
        "form clash",
        "POST",
        "/api/v4/jobs/request",
        [(b"Content-Type", b"application/x-www-form-urlencoded")],
        f"token={RUNNER}&session[url][a]=x&session[url][]=y".encode(),
        400,
        invalid("session[url]"),
    ),
]


@pytest.fixture
async def server(aiohttp_client, config):
    config.registration_token = REGISTRATION
    return (await aiohttp_client(create_app(config))).server


@pytest.mark.parametrize(("method", "target", "headers", "data", "status", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
async def test_hostile_input(server, config, method, target, headers, data, status, expected) -> None:
    answer = await rawhttp.send(server.port, method, target.encode("utf-8"), headers, data)
    assert answer.status == status, answer.body
    if expected is not None:
        assert answer.json() == expected
    if "/artifacts" in target and method == "POST":
        assert _files(config.data_dir / "artifacts" / "11") == [], "a refused upload left a file behind"
        assert _files(config.data_dir / "tmp") == []


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def test_huge_page_echoes_the_clamped_page(server) -> None:
    """The choice for a page past 64 bits: the last page number SQLite can hold, an empty page, no next."""
    answer = await rawhttp.send(server.port, "GET", f"/api/v4/projects/1/pipelines?page={HUGE}".encode(), ROOT)
    assert answer.status == 200 and answer.json() == []
    assert answer.headers["x-page"] == str(2**63 - 1) and answer.headers["x-next-page"] == ""


async def test_non_ascii_digits_do_not_address_a_job(server) -> None:
    """``/jobs/١٢`` once read as job 12; ``Content-Range: ٥-9`` as 5-9."""
    answer = await rawhttp.send(server.port, "GET", b"/api/v4/projects/1/jobs/%D9%A1%D9%A2", ROOT)
    assert answer.status == 400
    answer = await rawhttp.send(server.port, "GET", b"/api/v4/projects/1/jobs/12", ROOT)
    assert answer.status == 200 and answer.json()["id"] == 12


@pytest.mark.directory_store
async def test_a_refused_upload_after_the_file_leaves_nothing(server, config) -> None:
    """The file part came, then the expiry was refused: neither the file nor a row stays."""
    data = multipart(("file", ZIP), ("expire_in", b"300000 years"))
    answer = await rawhttp.send(server.port, "POST", b"/api/v4/jobs/11/artifacts", [*JOB, *MULTIPART], data)
    assert answer.status == 400 and answer.json() == invalid("expire_in")
    assert _files(config.data_dir / "artifacts" / "11") == [] and _files(config.data_dir / "tmp") == []
    job = await rawhttp.send(server.port, "GET", b"/api/v4/projects/1/jobs/11", ROOT)
    assert job.json()["artifacts"] == [] and job.json().get("artifacts_file") is None
    good = multipart(("file", ZIP), ("expire_in", b"1 week"))
    answer = await rawhttp.send(server.port, "POST", b"/api/v4/jobs/11/artifacts", [*JOB, *MULTIPART], good)
    assert answer.status == 201
    assert len(_files(config.data_dir / "artifacts" / "11")) == 1

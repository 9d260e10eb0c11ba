"""No input gets a 5xx: every route in the router, fed hostile path segments, queries, headers and bodies.

The routes come from ``app.router.routes()``, so a route added later is fuzzed without touching this file.
Requests are written byte for byte on a socket, so that headers can carry bytes that are not UTF-8 and
paths can carry any percent-escape. Values start from ones that reach deep into a handler (a running
job and its token, a runner token, real ids), and Hypothesis swaps any part for a hostile one: huge and
non-ASCII numbers, wrong JSON types, broken multipart. When a request used up what later examples
need (job 11 running, runner 1 registered), the world starts again on fresh data.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
import yaml
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobsvc.http.app import create_app
from jobsvc.http.keys import DB
from jobsvc.http.runner_params import RUNNER_SCHEMAS
from jobsvc.settings import Config
from jobsvc.storage.db import Tx
from tests import rawhttp
from tests.conftest import FINISHED_JOB_TOKEN, RUNNING_JOB_TOKEN, TOKENS
from tests.conftest import world as world_data

pytestmark = pytest.mark.slow  # the app on a real socket in a loop of its own, restarted on fresh data

REGISTRATION_TOKEN = "reg-token-fuzz"
RUNNER_TOKEN = "glrt-test-runner-00000"
# Reads take a few parameters; the routes with bodies (most of them the runner's) get more examples.
EXAMPLES = {"GET": 40, "HEAD": 5}
BODY_EXAMPLES = 40
RUNNER_EXAMPLES = 100  # the runner's routes: every declared parameter, in JSON, form and multipart bodies


def _routes() -> list[tuple[str, str]]:
    app = create_app(Config(data_dir=Path("unused")))
    return sorted({(route.method, route.resource.canonical) for route in app.router.routes()})


ROUTES = _routes()
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")

# -- values -------------------------------------------------------------------------------------

NON_ASCII_DIGITS = st.text(st.characters(categories=["Nd"], exclude_characters="0123456789"), min_size=1, max_size=4)
HUGE = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=-(2**63) + 2),
    st.just(10**30),
    st.just(int("9" * 400)),
)
NUMBERISH = st.one_of(
    HUGE.map(str),
    NON_ASCII_DIGITS,
    st.builds(lambda a, b: f"{a}{b}", NON_ASCII_DIGITS, st.integers(0, 99)),
    st.sampled_from(["-1", "0", "+5", " 5", "5 ", "1e3", "0x10", "1_000", "²", "١٢", "٥", "00000000000000000000012"]),
    st.builds(lambda n, unit: f"{n} {unit}", HUGE | NON_ASCII_DIGITS, st.sampled_from(["years", "days", "s", "w"])),
)
TEXT = st.text(max_size=12)
HOSTILE_TEXT = st.one_of(NUMBERISH, TEXT)


TEN = st.sampled_from(range(10))


@st.composite
def mostly(draw: st.DrawFn, good: st.SearchStrategy, hostile: st.SearchStrategy, share: int = 7) -> Any:
    """``good`` in ``share`` of ten draws: a bug deep in a handler needs every other part to be right.

    (``one_of(good, good, hostile)`` would not do: Hypothesis folds identical branches into one.)
    """
    return draw(good) if draw(TEN) < share else draw(hostile)


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": value, "_kd": "n"}).encode()).decode()


CURSORS = st.one_of(HUGE | NUMBERISH | st.none() | st.lists(st.integers(), max_size=2), TEXT).map(_cursor)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | HUGE | st.floats(allow_nan=False, allow_infinity=False) | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)

CONTAINERS = st.lists(JSON, max_size=2) | st.dictionaries(TEXT, JSON, max_size=2)

SEGMENTS = {
    "id": ["1", "2", "5", "gitlab-org%2Fgitlab-test", "group%2Fsub%2Fpublic-proj"],
    "job_id": ["11"] * 6 + ["8", "12", "6", "31"],  # 11 is the running job
    "pipeline_id": ["6", "30", "60"],
    "ref_name": ["master", "main", "feature%2Fx.y"],
    "artifact_path": ["out/hello.txt", "dist/app.txt", "my%20dir/my%20file.txt"],
    "project": ["gitlab-org/gitlab-test", "group/sub/public-proj"],  # the pages' project paths
    "path": ["dist", "my%20dir/", ""],
}
PERCENT_BYTES = st.binary(min_size=1, max_size=6).map(lambda raw: quote_from_bytes(raw, safe=""))


def segment(name: str) -> st.SearchStrategy[str]:
    hostile = st.one_of(
        HUGE.map(str),
        NON_ASCII_DIGITS.map(lambda text: quote(text, safe="")),
        NUMBERISH.map(lambda text: quote(text, safe="")),
        PERCENT_BYTES,
        TEXT.map(quote),
    )
    return mostly(st.sampled_from(SEGMENTS.get(name, ["1"])), hostile)


QUERY_VALUES = {
    "page": ["1", "2"],
    "per_page": ["2", "100"],
    "pagination": ["keyset", "offset"],
    "scope": ["success", "failed"],
    "scope[]": ["success", "failed"],
    "job": ["build", "rubocop"],
    "include_retried": ["true"],
    "private_token": [TOKENS["root"]],
    "job_token": [RUNNING_JOB_TOKEN],
    "token": [RUNNING_JOB_TOKEN, RUNNER_TOKEN],
    "access_token": [TOKENS["developer"]],
    "order_by": ["id"],
    "sort": ["desc", "asc"],
    "force": ["true"],
    "ref": ["master"],
}


# the keys the lists read come more often (a repeated choice is a likelier one)
QUERY_KEYS = [*QUERY_VALUES, "pipeline_id", "direct_download", *["page", "per_page", "cursor"] * 3]
QUERY_HOSTILE = st.one_of(HUGE.map(str), NON_ASCII_DIGITS, HOSTILE_TEXT).map(str.encode) | st.binary(max_size=6)


@st.composite
def queries(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    pairs = []
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        if draw(TEN) == 0:
            pairs.append((draw(st.binary(min_size=1, max_size=6)), draw(st.binary(max_size=6))))
            continue
        key = draw(st.sampled_from(QUERY_KEYS))
        good = st.sampled_from(QUERY_VALUES.get(key, ["1"])).map(str.encode)
        hostile = QUERY_HOSTILE | CURSORS.map(str.encode) if key == "cursor" else QUERY_HOSTILE
        pairs.append((key.encode(), draw(mostly(good, hostile, share=4))))
    return pairs


HOSTILE_HEADER = st.one_of(
    st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\xbc", b"\x80"]),
    # no control bytes: aiohttp's parser answers those itself, before any handler sees the request
    st.binary(max_size=8).map(lambda raw: bytes(byte for byte in raw if byte >= 0x20 and byte != 0x7F)),
    HOSTILE_TEXT.map(lambda text: text.encode("utf-8")),
)
ADMIN = [(b"PRIVATE-TOKEN", TOKENS["root"].encode())]
RUNNING_JOB = [(b"JOB-TOKEN", RUNNING_JOB_TOKEN.encode())]
NOT_UTF8 = st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\xbc", b"\x80"]) | HOSTILE_HEADER
HOSTILE_AUTH = st.one_of(
    st.tuples(st.sampled_from([b"PRIVATE-TOKEN", b"JOB-TOKEN"]), NOT_UTF8).map(lambda pair: [pair]),
    NOT_UTF8.map(lambda value: [(b"Authorization", b"Bearer " + value)]),
)
AUTH = mostly(  # the credentials that reach furthest, most of the time; bytes that are not UTF-8 next
    st.sampled_from([ADMIN, RUNNING_JOB]),
    mostly(
        HOSTILE_AUTH,
        st.one_of(
            st.just([]),
            st.sampled_from([TOKENS["developer"], TOKENS["expired"]]).map(
                lambda token: [(b"PRIVATE-TOKEN", token.encode())]
            ),
            st.just([(b"JOB-TOKEN", FINISHED_JOB_TOKEN.encode())]),
            st.sampled_from([RUNNING_JOB_TOKEN, TOKENS["root"]]).map(
                lambda token: [(b"Authorization", b"Bearer " + token.encode())]
            ),
        ),
        share=6,
    ),
    share=5,
)
RANGE_VALUES = {
    b"Content-Range": [b"0-5", b"8-15", b"0-0"],
    b"Range": [b"bytes=0-3", b"bytes=-2", b"bytes=5-"],
    b"If-Range": [b'"x"', b"Thu, 01 Jan 2015 00:00:00 GMT"],
}
NUMBER_HEADERS = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}".encode(), NUMBERISH, NUMBERISH | st.integers(0, 9).map(str)),
    st.builds(lambda a, b: f"bytes={a}-{b}".encode(), NUMBERISH, NUMBERISH | st.just("")),
)


@st.composite
def extra_headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    names = draw(st.lists(st.sampled_from(list(RANGE_VALUES)), max_size=2, unique=True))
    hostile = NUMBER_HEADERS | HOSTILE_HEADER
    return [(name, draw(mostly(st.sampled_from(RANGE_VALUES[name]), hostile, share=4))) for name in names]


FIELD_VALUES: dict[str, list[Any]] = {
    "token": [RUNNING_JOB_TOKEN, RUNNER_TOKEN, REGISTRATION_TOKEN],
    "state": ["failed", "success", "running"],
    "failure_reason": ["script_failure"],
    "info": [{"name": "fuzz", "version": "17.0.0", "features": {"trace_checksum": True}}],
    "tag_list": ["docker,linux", ["docker"]],
    "maximum_timeout": [3600],
    "access_level": ["not_protected", "ref_protected"],
    "run_untagged": [True],
    "paused": [False],
    "locked": [False],
    "description": ["fuzz"],
    "last_update": ["x"],
    "expire_in": ["1 week", "never", "300000 years", "9" * 400],
    "artifact_type": ["archive", "junit"],
    "artifact_format": ["zip", "gzip"],
    "ref": ["master"],
    "variables": [[{"key": "A", "value": "b"}]],
    "force": [True],
    "job_variables_attributes": [[{"key": "A", "value": "b"}]],
    "exit_code": [1],
    "checksum": ["crc32:0"],
    "output": [{"checksum": "crc32:0", "bytesize": 3}],
    "job_age": [10],
    "session": [{"url": "https://x"}],
}


def declared(method: str, path: str) -> list[str] | None:
    """The parameters a route declares (the runner's schemas), if it has a schema."""
    schema = RUNNER_SCHEMAS.get(f"{method} {path.removeprefix('/api/v4')}")
    return list(schema().fields) if schema is not None else None


@st.composite
def field_values(draw: st.DrawFn, names: list[str] | None) -> dict[str, Any]:
    """``token`` and some of the route's declared parameters (of any names, when it declares none)."""
    if names is None:
        chosen = draw(st.lists(st.sampled_from(list(FIELD_VALUES)), max_size=3))
    else:
        chosen = [name for name in names if draw(st.booleans())]
    return {
        name: draw(mostly(st.sampled_from(FIELD_VALUES.get(name, [1])), CONTAINERS | JSON, share=5))
        for name in dict.fromkeys(["token", *chosen])
    }


TOKENS_FOR = {"/api/v4/runners": [REGISTRATION_TOKEN, RUNNER_TOKEN], "/api/v4/jobs": [RUNNING_JOB_TOKEN]}
RUNNER_PATHS = {"/api/v4" + key.split(" ", 1)[1] for key in RUNNER_SCHEMAS}
ZIP = b"PK\x05\x06" + b"\0" * 18


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _form(fields: dict[str, Any]) -> bytes:
    pairs = []
    for name, value in fields.items():
        if isinstance(value, list):
            pairs += [(f"{name}[]", _scalar(item)) for item in value]
        elif isinstance(value, dict):
            pairs += [(f"{name}[{key}]", _scalar(item)) for key, item in value.items()]
        else:
            pairs.append((name, _scalar(value)))
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs).encode()


def _multipart(fields: dict[str, Any], file: bytes | None, boundary: bytes) -> bytes:
    parts = [
        b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + _scalar(value).encode()
        for name, value in fields.items()
    ]
    if file is not None:
        parts.append(b'Content-Disposition: form-data; name="file"; filename="a.zip"\r\n\r\n' + file)
    return b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts) + b"--" + boundary + b"--\r\n"


@st.composite
def bodies(draw: st.DrawFn, method: str, path: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    kind = draw(st.sampled_from(["none", "json", "form", "multipart", "no-boundary", "cut", "raw"]))
    if kind == "none":
        return [], b""
    fields = draw(field_values(declared(method, path)))
    if "token" in fields and fields["token"] in FIELD_VALUES["token"]:  # the kind of token the route takes
        fields["token"] = draw(st.sampled_from(TOKENS_FOR["/api/v4/runners" if "/runners" in path else "/api/v4/jobs"]))
    if kind == "json":
        value = draw(st.one_of(st.just(fields), st.just(fields), JSON))
        return [(b"Content-Type", b"application/json")], json.dumps(value).encode()
    if kind == "form":
        return [(b"Content-Type", b"application/x-www-form-urlencoded")], _form(fields)
    if kind == "raw":
        content_type = draw(st.sampled_from([b"", b"text/plain", b"application/json", b"application/octet-stream"]))
        return [(b"Content-Type", content_type)] if content_type else [], draw(st.binary(max_size=64))
    file = draw(st.one_of(st.just(ZIP), st.binary(max_size=32), st.none()))
    body = _multipart(fields, file, b"fuzzboundary")
    if kind == "no-boundary":
        return [(b"Content-Type", b"multipart/form-data")], body
    if kind == "cut":
        body = body[: draw(st.integers(0, max(0, len(body) - 3)))]
    return [(b"Content-Type", b"multipart/form-data; boundary=fuzzboundary")], body


@st.composite
def requests(draw: st.DrawFn, method: str, path: str) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    target = _PARAM.sub(lambda match: draw(segment(match.group(1))), path)
    query = draw(queries())
    if query:
        target += "?" + "&".join(quote_from_bytes(k, safe="[]") + "=" + quote_from_bytes(v, safe="") for k, v in query)
    content_headers, body = draw(bodies(method, path))
    headers = [*draw(AUTH), *draw(extra_headers()), *content_headers]
    return target.encode("ascii"), headers, body


# -- the world ----------------------------------------------------------------------------------


async def _running_again(tx: Tx) -> None:
    """Job 11 back to running (cheaper than starting the world again; its token stays the same)."""
    await tx.execute("UPDATE jobs SET status = 'running', finished_at = NULL, failure_reason = NULL WHERE id = 11")


class World:
    """The app on a real socket in a loop of its own; ``reset`` starts it again on fresh data."""

    def __init__(self, tmp_path: Path, world_file: Path):
        self.tmp_path, self.world_file, self.count = tmp_path, world_file, 0
        self.loop = asyncio.new_event_loop()
        self.server: TestServer | None = None

    def start(self) -> None:
        self.count += 1
        config = Config(
            data_dir=self.tmp_path / f"var{self.count}",
            fixtures=[str(self.world_file)],
            registration_token=REGISTRATION_TOKEN,
            sweep_interval=3600,
        )
        self.server = TestServer(create_app(config), host="127.0.0.1")
        self.loop.run_until_complete(self.server.start_server())

    def stop(self) -> None:
        if self.server is not None:
            self.loop.run_until_complete(self.server.close())
            self.server = None

    def close(self) -> None:
        self.stop()
        self.loop.close()

    def reset(self) -> None:
        self.stop()
        self.start()

    def keep_alive(self) -> None:
        """Start again if a request used up what the examples need: running job 11, runner 1."""
        assert self.server is not None
        db = self.server.app[DB]
        job = self.loop.run_until_complete(
            db.fetchone("SELECT status, erased_at, token_digest FROM jobs WHERE id = 11")
        )
        runner = self.loop.run_until_complete(db.fetchone("SELECT id FROM runners WHERE id = 1"))
        if runner is None or job is None or job["erased_at"] is not None or job["token_digest"] is None:
            self.reset()
        elif job["status"] != "running":
            self.loop.run_until_complete(db.write(_running_again))

    def send(self, method: str, target: bytes, headers: rawhttp.Headers, body: bytes) -> int:
        assert self.server is not None
        answer = rawhttp.send(self.server.port, method, target, headers, body)
        return self.loop.run_until_complete(asyncio.wait_for(answer, 20)).status


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world for all the routes (starting one costs more than a route's examples)."""
    folder = tmp_path_factory.mktemp("fuzz")
    world_file = folder / "world.yaml"
    world_file.write_text(yaml.safe_dump(world_data(), sort_keys=False))
    shared = World(folder, world_file)
    shared.start()
    yield shared
    shared.close()


# aiohttp warns about a malformed Content-Disposition in a multipart body and carries on; so do we
@pytest.mark.filterwarnings("ignore::aiohttp.multipart.BadContentDispositionHeader")
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_route_answers_5xx(method: str, path: str, fuzz_world: World) -> None:
    world = fuzz_world
    world.keep_alive()

    @settings(
        max_examples=RUNNER_EXAMPLES if path in RUNNER_PATHS else EXAMPLES.get(method, BODY_EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests(method, path))
    def check(request: tuple[bytes, list[tuple[bytes, bytes]], bytes]) -> None:
        target, headers, body = request
        status = world.send(method, target, headers, body)
        if 200 <= status < 300 and method not in ("GET", "HEAD"):
            world.keep_alive()
        assert status < 500, f"{method} {target!r} answered {status}"

    check()

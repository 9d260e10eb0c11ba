"""Pure parts: query parsing, scope, pagination headers and links, cursors, composite status."""

import pytest

from jobsvc.domain.errors import ParamError
from jobsvc.domain.statuses import composite
from jobsvc.http import pagination, params


def _nested(levels: int, value: str) -> object:
    return value if levels == 0 else {"b": _nested(levels - 1, value)}


@pytest.mark.parametrize(
    "pairs,expected",
    [
        ([("scope", "a")], {"scope": "a"}),
        ([("scope[]", "a"), ("scope[]", "b")], {"scope": ["a", "b"]}),
        ([("scope[x]", "a"), ("scope[y]", "b")], {"scope": {"x": "a", "y": "b"}}),
        ([("page", "2"), ("scope[]", "")], {"page": "2", "scope": [""]}),
        ([("a", "1"), ("a", "2")], {"a": "2"}),
        # any depth (Rack's spec/spec_utils.rb cases)
        ([("a[b][c]", "1")], {"a": {"b": {"c": "1"}}}),
        ([("x[y][z]", "1"), ("x[y][w]", "2")], {"x": {"y": {"z": "1", "w": "2"}}}),
        ([("x[y][z][]", "1"), ("x[y][z][]", "2")], {"x": {"y": {"z": ["1", "2"]}}}),
        ([("info[config][gpus]", "all"), ("info[name]", "r")], {"info": {"config": {"gpus": "all"}, "name": "r"}}),
        ([("a[0][key]", "K"), ("a[0][value]", "V")], {"a": {"0": {"key": "K", "value": "V"}}}),
        # arrays of hashes: a value joins the last hash unless that hash has its key already
        ([("a[][k]", "v"), ("a[][j]", "w")], {"a": [{"k": "v", "j": "w"}]}),
        ([("a[][k]", "1"), ("a[][k]", "2")], {"a": [{"k": "1"}, {"k": "2"}]}),
        ([("x[][y][z]", "1"), ("x[][y][w]", "2")], {"x": [{"y": {"z": "1", "w": "2"}}]}),
        ([("x[][y][z]", "1"), ("x[][y][z]", "2")], {"x": [{"y": {"z": "1"}}, {"y": {"z": "2"}}]}),
        ([("x[][y][]", "1"), ("x[][y][]", "2")], {"x": [{"y": ["1", "2"]}]}),  # a list in the hash grows
        ([("x[][y]", "1"), ("x[][z]", "2"), ("x[][y]", "3")], {"x": [{"y": "1", "z": "2"}, {"y": "3"}]}),
        ([("a[][]", "x")], {"a": [["x"]]}),
        # odd names, as Rack reads them
        ([("[a]", "x")], {"a": "x"}),
        ([("]a", "x")], {"a": "x"}),
        ([("a]", "x")], {"a": "x"}),
        ([("a]b", "x")], {"a": {"b": "x"}}),
        ([("a[", "x")], {"a[": "x"}),
        ([("a[b", "x")], {"a": {"b": "x"}}),
        ([("", "x"), ("[]", "x"), ("[[]]", "x"), ("]]", "x"), ("b", "1")], {"b": "1"}),
        # where Rack would store nil, nothing is stored
        ([("a[[]]", "x")], {"a": {}}),
        ([("a[]]", "x")], {"a": []}),
        ([("a[][][]", "x")], {"a": []}),
        ([("a" + "[b]" * 31, "x")], {"a": _nested(31, "x")}),
        ([("a" + "[]" * 100_000, "x")], {"a": []}),
    ],
)
def test_parse_query(pairs, expected):
    assert params.parse_query(pairs) == expected


@pytest.mark.parametrize(
    "pairs",
    [[("scope", "a"), ("scope[]", "b")], [("scope[]", "a"), ("scope[x]", "b")], [("scope[]", "a"), ("scope", "b")]],
)
def test_parse_query_mixed_shapes(pairs):
    with pytest.raises(ParamError) as info:
        params.query(pairs)
    assert info.value.body == {"error": "scope is invalid"}


@pytest.mark.parametrize(
    "pairs,name",
    [
        ([("a", "1"), ("a[b]", "2")], "a"),
        ([("a[b]", "1"), ("a", "2")], "a"),
        ([("a[]", "1"), ("a[b]", "2")], "a"),
        ([("a[b]", "1"), ("a[]", "2")], "a"),
        ([("a[b]", "1"), ("a[b][c]", "2")], "a[b]"),
        ([("a[b][c]", "1"), ("a[b][]", "2")], "a[b]"),
        ([("a[b][]", "1"), ("a[b][c]", "2")], "a[b]"),
        ([("a[][b]", "1"), ("a[][b][c]", "2")], "a[][b]"),
        ([("a[x]", "1"), ("a[][k]", "2")], "a"),
        # too deep: named by the first part
        ([("a" + "[b]" * 32, "x")], "a"),
        ([("a" + "[b]" * 100_000, "x")], "a"),
        ([("a" + "[b" * 100_000, "x")], "a"),
        ([("a" + "[][b]" * 40, "x")], "a"),
    ],
)
def test_parse_query_clashes_and_depth(pairs, name):
    with pytest.raises(ParamError) as info:
        params.query(pairs)
    assert info.value.body == {"error": f"{name} is invalid"}


@pytest.mark.parametrize(
    "value,allow_hash,expected",
    [
        ("success", True, ["success"]),
        (["success", "failed", "success"], True, ["success", "failed"]),
        ({"a": "pending"}, True, ["pending"]),
        ([""], False, []),
        ([], False, []),
    ],
)
def test_scope(value, allow_hash, expected):
    schema = params.ProjectJobsSchema if allow_hash else params.PipelineJobsSchema
    data = {"scope": value, "pipeline_id": "1"}
    assert params.load(schema, data)["scope"] == expected


@pytest.mark.parametrize("value", [{"a": "pending"}, ["success", "nope"], "nope", 5])
def test_scope_invalid_on_pipeline_jobs(value):
    with pytest.raises(ParamError) as info:
        params.load(params.PipelineJobsSchema, {"scope": value, "pipeline_id": "1"})
    assert info.value.body == {"error": "scope does not have a valid value"}


@pytest.mark.parametrize(
    "text,expected",
    [("true", True), ("TRUE", True), ("True", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_grape_boolean(text, expected):
    assert (
        params.load(params.PipelineJobsSchema, {"include_retried": text, "pipeline_id": "1"})["include_retried"]
        is expected
    )


@pytest.mark.parametrize(
    "page,per_page,expected",
    [(1, 20, (1, 20)), (0, 20, (1, 20)), (-1, 5, (1, 5)), (3, 500, (3, 100)), (2, -1, (2, 20))],
)
def test_page_of(page, per_page, expected):
    result = pagination.page_of(page, per_page)
    assert (result.page, result.per_page) == expected


def test_offset_limit():
    assert not pagination.offset_limit_exceeded(500, 100)
    assert pagination.offset_limit_exceeded(501, 100)
    assert pagination.offset_limit_exceeded(51, 1000)  # the requested per_page counts, before the cap


def test_page_url_sorts_keys_keeps_arrays_and_encodes_commas():
    url = pagination.page_url(
        "http://h:1",
        "/api/v4/projects/1/jobs",
        [("scope[]", "success"), ("per_page", "2"), ("scope[]", "failed"), ("x", "a,b c")],
        {"page": "3", "per_page": "2"},
    )
    assert url == (
        "http://h:1/api/v4/projects/1/jobs?page=3&per_page=2&scope%5B%5D=success&scope%5B%5D=failed&x=a%2Cb%20c"
    )


def test_offset_headers_middle_page_with_total():
    page = pagination.PageRequest(2, 10)
    headers = pagination.offset_headers("http://h", "/p", [], page, has_next=True, out_of_range=False, total=25)
    assert headers["X-Total"] == "25" and headers["X-Total-Pages"] == "3"
    assert headers["X-Next-Page"] == "3" and headers["X-Prev-Page"] == "1"
    assert headers["Link"] == (
        '<http://h/p?page=1&per_page=10>; rel="prev", '
        '<http://h/p?page=3&per_page=10>; rel="next", '
        '<http://h/p?page=1&per_page=10>; rel="first", '
        '<http://h/p?page=3&per_page=10>; rel="last"'
    )


def test_offset_headers_without_count_and_out_of_range():
    headers = pagination.offset_headers(
        "http://h", "/p", [], pagination.PageRequest(7, 10), has_next=False, out_of_range=True, total=None
    )
    assert "X-Total" not in headers and "last" not in headers["Link"]
    assert headers["X-Next-Page"] == "" and headers["X-Prev-Page"] == ""
    assert headers["Link"] == '<http://h/p?page=1&per_page=10>; rel="first"'


def test_total_pages():
    assert pagination.total_pages_of(0, 20) == 1
    assert pagination.total_pages_of(20, 20) == 1
    assert pagination.total_pages_of(21, 20) == 2


@pytest.mark.parametrize("last_id", [1, 42, 10**12])
def test_cursor_round_trip(last_id):
    cursor = pagination.encode_cursor(last_id)
    assert pagination.decode_cursor(cursor) == last_id
    assert pagination.decode_cursor(cursor.rstrip("=")) == last_id


@pytest.mark.parametrize("cursor", ["", "%%%", "bm9wZQ", "eyJpZCI6Ii0xIn0=", "eyJ4IjoxfQ=="])
def test_bad_cursors(cursor):
    assert pagination.decode_cursor(cursor) is None


def test_keyset_headers():
    assert pagination.keyset_headers("http://h", "/p", [("pagination", "keyset")], 20, None) == {"X-Per-Page": "20"}
    link = pagination.keyset_headers("http://h", "/p", [("pagination", "keyset")], 20, 5)["Link"]
    assert link.startswith("<http://h/p?cursor=") and link.endswith('&pagination=keyset&per_page=20>; rel="next"')


@pytest.mark.parametrize(
    "jobs,expected",
    [
        ([], None),
        ([("success", False), ("success", False)], "success"),
        ([("success", False), ("failed", True)], "success"),
        ([("success", False), ("failed", False)], "failed"),
        ([("skipped", False)], "skipped"),
        ([("manual", True), ("skipped", False)], "skipped"),
        ([("success", False), ("manual", True)], "success"),
        ([("success", False), ("manual", False)], "manual"),
        ([("created", False)], "created"),
        ([("pending", False), ("created", False)], "pending"),
        ([("pending", False), ("success", False)], "running"),
        ([("running", False), ("failed", False)], "running"),
        ([("success", False), ("created", False)], "running"),
        ([("canceled", False), ("success", False)], "canceled"),
        ([("canceled", True), ("success", False)], "success"),
        ([("scheduled", False), ("success", False)], "scheduled"),
        ([("failed", False), ("canceled", False)], "failed"),
        ([("preparing", False)], "preparing"),
        ([("waiting_for_resource", False), ("success", False)], "waiting_for_resource"),
    ],
)
def test_composite_status(jobs, expected):
    assert composite(jobs) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("/api/v4/projects/1/jobs", "/api/v4/projects/1/jobs"),
        # the client's escapes stay: a project addressed by path must stay one path segment
        ("/api/v4/projects/acme%2Fbig%2Eapp/jobs", "/api/v4/projects/acme%2Fbig%2Eapp/jobs"),
        ("/api/v4/projects/acme%2fbig.app/jobs", "/api/v4/projects/acme%2fbig.app/jobs"),
        # what may not stand raw inside <...> of a Link header is encoded
        ("/p/a,b", "/p/a%2Cb"),
        ("/p/a b<c>", "/p/a%20b%3Cc%3E"),
        ("/p/100%", "/p/100%25"),
        ("/p/%zz", "/p/%25zz"),
        ("/p/\u2713", "/p/%E2%9C%93"),
        ("/p/~user;x=1:@!$&'()*+", "/p/~user;x=1:@!$&'()*+"),
    ],
)
def test_link_path_keeps_the_clients_escapes(raw, expected):
    assert pagination.link_path(raw) == expected

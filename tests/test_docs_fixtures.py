"""docs/fixtures.md is the fixture format's reference: its examples must load with the real loader, and its
key tables must list exactly the keys, defaults and allowed values of the schemas in jobsvc/fixtures.py."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from marshmallow import Schema, fields, validate

from jobsvc.storage import fixture_format, fixtures
from jobsvc.storage.repo import Repository

DOC = (Path(__file__).resolve().parent.parent / "docs" / "fixtures.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TOP_HEADING = "The file"


def _blocks() -> list[tuple[int, str, str]]:
    return [(m.start(), m.group(1), m.group(2)) for m in BLOCK.finditer(DOC)]


def _examples() -> list[tuple[str, list[str] | None]]:
    """Every YAML block, with the problems the doc says it is refused with (None: it must load).

    A block is a refused one when the prose just before it says "is refused"; its problems are the lines
    of the next block."""
    blocks, examples, previous_end = _blocks(), [], 0
    for index, (start, lang, text) in enumerate(blocks):
        if lang == "yaml":
            prose = DOC[previous_end:start]
            expected = None
            if "is refused" in prose:
                expected = blocks[index + 1][2].splitlines()
            examples.append((text, expected))
        previous_end = DOC.index("```\n", start + 3) + 4
    return examples


EXAMPLES = _examples()


def test_the_doc_has_examples_of_both_kinds():
    assert len(EXAMPLES) >= 3
    assert any(expected is None for _, expected in EXAMPLES)
    assert any(expected for _, expected in EXAMPLES)


def _jobs(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        job
        for project in document.get("projects") or []
        for pipeline in project.get("pipelines") or []
        for job in pipeline.get("jobs") or []
    ]


def _make_referenced_files(document: dict[str, Any], folder: Path) -> None:
    """The files an example says sit next to it: a log, a zip archive, a folder with a file in it."""
    for job in _jobs(document):
        if job.get("trace_file"):
            path = folder / job["trace_file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("a log from a file\n")
        artifacts = job.get("artifacts") or {}
        if artifacts.get("archive"):
            path = folder / artifacts["archive"]
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("index.html", "<html/>")
        if artifacts.get("dir"):
            (folder / artifacts["dir"] / "css").mkdir(parents=True, exist_ok=True)
            (folder / artifacts["dir"] / "css" / "site.css").write_text("body {}\n")


@pytest.mark.parametrize("text,expected", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
async def test_doc_example_loads_as_described(text, expected, storage, tmp_path):
    db, store = storage
    folder = tmp_path / "fixture"
    folder.mkdir()
    document = yaml.safe_load(text)
    _make_referenced_files(document, folder)
    path = folder / "example.yaml"
    path.write_text(text, encoding="utf-8")
    if expected is not None:
        with pytest.raises(fixture_format.FixtureError) as info:
            await fixtures.load_fixture(Repository(db), store, fixture_format.read_fixture(path))
        assert info.value.problems == expected
        assert (await db.fetchone("SELECT count(*) AS n FROM projects"))["n"] == 0
        return
    summary = await fixtures.load_fixture(Repository(db), store, fixture_format.read_fixture(path))
    assert not summary.skipped
    assert summary.jobs == len(_jobs(document)) > 0
    assert summary.projects == len(document.get("projects") or [])
    assert summary.users == len(document.get("users") or [])
    assert summary.runners == len(document.get("runners") or [])
    assert (await fixtures.load_fixture(Repository(db), store, fixture_format.read_fixture(path))).skipped


def test_the_error_examples_are_real():
    """The problems listed under "Errors" are what the loader says (the YAML one is tested above too)."""
    section = _section("Errors")
    shown = BLOCK.search(section).group(2).splitlines()
    third_job_bad = {"jobs": [{"name": "a"}, {"name": "b"}, {"name": "c", "status": "done"}]}
    problems = []
    for data in (
        {"projects": [{"path": "g/p", "pipelines": [{}, third_job_bad]}]},
        {"users": [{"username": "root", "tokens": [{"token": "short"}]}]},
        {"projects": [{"path": "gitlab-test"}]},
        {"projects": [{"path": "g/p", "pipelines": [{"jobs": [{"name": "a", "artifacts": {}}]}]}]},
    ):
        with pytest.raises(fixture_format.FixtureError) as info:
            fixture_format.parse_fixture(yaml.safe_dump(data), Path("."))
        problems += info.value.problems
    with pytest.raises(fixture_format.FixtureError) as info:
        fixture_format.parse_fixture("users:\n  - username: a\n   id: 1\n", Path("."))
    problems += info.value.problems
    assert problems == shown


# --- the key tables against the schemas ---------------------------------------------------------------


def _schemas() -> list[tuple[str, Schema]]:
    """(path, schema) for every object the loader reads, from the top of the file down."""
    found: list[tuple[str, Schema]] = []

    def walk(schema: Schema, path: str) -> None:
        found.append((path, schema))
        for name, field in schema.fields.items():
            inner = field.inner if isinstance(field, fields.List) else field
            if isinstance(inner, fields.Nested):
                sub = f"{path}.{name}" if path else name
                walk(inner.schema, sub + ("[]" if isinstance(field, fields.List) else ""))

    walk(fixture_format.FixtureSchema(), "")
    return found


def _headings() -> list[tuple[int, int, str]]:
    """(level, start, title) of every heading outside code blocks."""
    spans = [(m.start(), m.end()) for m in BLOCK.finditer(DOC)]
    return [
        (len(m.group(1)), m.start(), m.group(2).strip())
        for m in re.finditer(r"^(#{2,3}) (.+)$", DOC, re.MULTILINE)
        if not any(a <= m.start() < b for a, b in spans)
    ]


def _section(title: str) -> str:
    headings = _headings()
    for index, (level, start, text) in enumerate(headings):
        if text == title:
            ends = [s for lvl, s, _ in headings[index + 1 :] if lvl <= level]
            return DOC[start : ends[0] if ends else len(DOC)]
    raise AssertionError(f"docs/fixtures.md has no section {title!r}")


def _slug(title: str) -> str:
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _object_title(path: str) -> str:
    if not path:
        return TOP_HEADING
    titles = [title for _, _, title in _headings() if title.endswith(f"`{path}`")]
    assert len(titles) == 1, f"docs/fixtures.md needs one section whose heading ends with `{path}`"
    return titles[0]


def _rows(title: str) -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in _section(title).splitlines():
        if not line.startswith("| `"):
            continue
        keys, kind, default, meaning = (cell.strip() for cell in line.strip().strip("|").split("|"))
        for key in re.findall(r"`([^`]+)`", keys):
            assert key not in rows, f"{key} is listed twice under {title!r}"
            rows[key] = (kind, default, meaning)
    return rows


def _choices(field: fields.Field) -> list[str]:
    for candidate in (field, getattr(field, "inner", None)):
        for validator in getattr(candidate, "validators", []) or []:
            if isinstance(validator, validate.OneOf):
                return [str(choice) for choice in validator.choices]
    return []


def _rendered_default(field: fields.Field) -> str | None:
    default = field.load_default
    if callable(default):
        default = default()
    if default is None or default is fields.missing_:
        return None  # "assigned", "derived", "the username", ...: written out in words
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, str):
        return f"`{default}`" if default else '`""`'
    if isinstance(default, list):
        return "`[" + ", ".join(map(str, default)) + "]`"
    if isinstance(default, dict) and not default:
        return "`{}`"
    raise AssertionError(f"no rendering for the default {default!r}")


def _linked_sections(text: str) -> str:
    anchors = re.findall(r"\]\(#([\w-]+)\)", text)
    titles = {_slug(title): title for _, _, title in _headings()}
    return "".join(_section(titles[a]) for a in anchors if a in titles)


@pytest.mark.parametrize("path,schema", _schemas(), ids=[p or "(top)" for p, _ in _schemas()])
def test_every_key_of_the_loader_is_documented(path, schema):
    title = _object_title(path)
    rows = _rows(title)
    assert set(rows) == set(schema.fields), f"the table under {title!r} and {type(schema).__name__} differ"
    for name, field in schema.fields.items():
        kind, default, meaning = rows[name]
        rendered = _rendered_default(field)
        if rendered is not None:
            assert rendered in default, f"{path}.{name}: the default is {rendered}, the doc says {default!r}"
        if field.required:
            assert "required" in kind, f"{path}.{name} is required"
        row = " ".join(rows[name])
        where = row + _linked_sections(row)
        for choice in _choices(field):
            assert f"`{choice}`" in where, f"{path}.{name}: the allowed value {choice!r} is not in the doc"


def test_every_object_section_is_a_schema():
    paths = {path for path, _ in _schemas()}
    headed = {m.group(1) for _, _, title in _headings() if (m := re.search(r"`([\w.\[\]]+)`$", title))}
    assert headed == paths - {""}


def test_the_doc_stands_on_its_own():
    for outside in ("shared" + "/", "/" + "work", "spec" + "/fixtures.md", "reference" + "/"):
        assert outside not in DOC

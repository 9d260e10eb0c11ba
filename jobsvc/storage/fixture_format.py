"""The fixture file format (docs/fixtures.md): its schema, and reading and validating a file whole.

``read_fixture`` parses and validates a file and returns a ``Fixture``, or raises
``FixtureError`` naming the place: ``projects[0].pipelines[1].jobs[2].status: Must be one
of: ...``. Nothing here touches the database or the store; :mod:`jobsvc.storage.fixtures`
loads a validated fixture.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from jobsvc.domain.policy import ROLES
from jobsvc.domain.statuses import STATUSES


class FixtureError(Exception):
    """A fixture that cannot be loaded; ``str()`` names each place and problem.

    ``problems`` name the place inside the fixture; ``lines`` put the file
    (``source``) in front of each, for messages to a person.
    """

    def __init__(self, problems: list[str], source: str | None = None):
        super().__init__()
        self.problems = problems
        self.source = source

    @property
    def lines(self) -> list[str]:
        return [f"{self.source}: {problem}" if self.source else problem for problem in self.problems]

    def __str__(self) -> str:
        return "\n".join(self.lines)


# --- schema --------------------------------------------------------------------


class Timestamp(fields.Field):
    """ISO-8601 with ``Z`` or an offset; YAML may already have made it a datetime."""

    default_error_messages = {"invalid": "Not a valid ISO-8601 timestamp with a time zone."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                raise self.make_error("invalid") from None
        else:
            raise self.make_error("invalid")
        if moment.tzinfo is None:
            if isinstance(value, datetime):  # PyYAML hands back UTC as naive
                return moment.replace(tzinfo=UTC)
            raise self.make_error("invalid")
        return moment


class DateOrTimestamp(fields.Field):
    default_error_messages = {"invalid": "Not a valid date (YYYY-MM-DD)."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()[:10])
            except ValueError:
                pass
        raise self.make_error("invalid")


class IdOrName(fields.Field):
    """A reference by id (integer) or by name (string)."""

    default_error_messages = {"invalid": "Not a valid id or name."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | str:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
            raise self.make_error("invalid")
        return value


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


def _id() -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1), load_default=None)


def _text() -> fields.String:
    return fields.String(load_default=None, allow_none=True)


_TOKEN = validate.Regexp(r"\A[\x21-\x7e]{8,}\Z", error="Must be 8 or more printable characters without spaces.")


class TokenSchema(StrictSchema):
    token = fields.String(required=True, validate=_TOKEN)
    name = fields.String(load_default="default")
    scopes = fields.List(
        fields.String(validate=validate.OneOf(["api", "read_api"])),
        load_default=lambda: ["api"],
        validate=validate.Length(min=1),
    )
    expires_at = DateOrTimestamp(load_default=None, allow_none=True)
    revoked = fields.Boolean(load_default=False)


class UserSchema(StrictSchema):
    username = fields.String(required=True, validate=validate.Regexp(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]*\Z"))
    id = _id()
    name = _text()
    email = _text()
    admin = fields.Boolean(load_default=False)
    state = fields.String(load_default="active", validate=validate.OneOf(["active", "blocked", "deactivated"]))
    created_at = Timestamp(load_default=None, allow_none=True)
    avatar_url = _text()
    bio = _text()
    location = _text()
    public_email = _text()
    linkedin = _text()
    twitter = _text()
    website_url = _text()
    organization = _text()
    job_title = _text()
    tokens = fields.List(fields.Nested(TokenSchema), load_default=list)


class RunnerSchema(StrictSchema):
    id = _id()
    description = fields.String(load_default="")
    token = fields.String(load_default=None, allow_none=True, validate=_TOKEN)
    tags = fields.List(fields.String(), load_default=list)
    run_untagged = fields.Boolean(load_default=True)
    paused = fields.Boolean(load_default=False)
    is_shared = fields.Boolean(load_default=False)
    projects = fields.List(IdOrName(), load_default=list)


class ArtifactsSchema(StrictSchema):
    files = fields.Dict(keys=fields.String(validate=validate.Length(min=1)), values=fields.String(), load_default=None)
    archive = fields.String(load_default=None)
    dir = fields.String(load_default=None)
    filename = fields.String(load_default="artifacts.zip", validate=validate.Length(min=1, max=255))
    expire_at = Timestamp(load_default=None, allow_none=True)
    locked = fields.Boolean(load_default=False)

    @validates_schema
    def _one_source(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        given = [key for key in ("files", "archive", "dir") if data.get(key) is not None]
        if len(given) != 1:
            raise ValidationError("Give exactly one of files, archive or dir.", "_schema")


class JobSchema(StrictSchema):
    id = _id()
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    stage = fields.String(load_default="test")
    status = fields.String(load_default="success", validate=validate.OneOf(STATUSES))
    when = fields.String(
        load_default="on_success", validate=validate.OneOf(["on_success", "on_failure", "always", "manual", "delayed"])
    )
    allow_failure = fields.Boolean(load_default=None, allow_none=True)
    failure_reason = _text()
    coverage = fields.Float(load_default=None, allow_none=True)
    user = _text()
    runner = IdOrName(load_default=None, allow_none=True)
    tags = fields.List(fields.String(), load_default=list)
    retried = fields.Boolean(load_default=False)
    created_at = Timestamp(load_default=None, allow_none=True)
    queued_at = Timestamp(load_default=None, allow_none=True)
    started_at = Timestamp(load_default=None, allow_none=True)
    finished_at = Timestamp(load_default=None, allow_none=True)
    erased_at = Timestamp(load_default=None, allow_none=True)
    script = fields.List(fields.String(), load_default=list)
    variables = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict)
    trace = _text()
    trace_file = _text()
    artifacts = fields.Nested(ArtifactsSchema, load_default=None, allow_none=True)
    token = fields.String(load_default=None, allow_none=True, validate=_TOKEN)  # jobsvc: a running job's CI_JOB_TOKEN

    @validates_schema
    def _one_trace(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if data.get("trace") is not None and data.get("trace_file") is not None:
            raise ValidationError("Give trace or trace_file, not both.", "trace_file")


class CommitSchema(StrictSchema):
    title = _text()
    message = _text()
    author_name = _text()
    author_email = _text()
    created_at = Timestamp(load_default=None, allow_none=True)
    authored_date = Timestamp(load_default=None, allow_none=True)
    committer_name = _text()
    committer_email = _text()
    committed_date = Timestamp(load_default=None, allow_none=True)
    parent_ids = fields.List(fields.String(), load_default=list)


class PipelineSchema(StrictSchema):
    id = _id()
    iid = _id()
    ref = _text()
    sha = fields.String(load_default=None, validate=validate.Regexp(r"\A[0-9a-f]{40}\Z"))
    before_sha = fields.String(load_default=None, validate=validate.Regexp(r"\A[0-9a-f]{40}\Z"))
    tag = fields.Boolean(load_default=False)
    source = fields.String(load_default="push")
    user = _text()
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))
    created_at = Timestamp(load_default=None, allow_none=True)
    artifacts_locked = fields.Boolean(load_default=False)
    parent = fields.Integer(load_default=None, allow_none=True)
    commit = fields.Nested(CommitSchema, load_default=dict)
    jobs = fields.List(fields.Nested(JobSchema), load_default=list)


class MemberSchema(StrictSchema):
    user = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(list(ROLES)))


class ProjectSchema(StrictSchema):
    path = fields.String(
        required=True,
        validate=validate.Regexp(
            r"\A[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+\Z",
            error="Must be a full path such as group/project.",
        ),
    )
    id = _id()
    name = _text()
    description = _text()
    visibility = fields.String(load_default="private", validate=validate.OneOf(["private", "internal", "public"]))
    public_builds = fields.Boolean(load_default=True)
    ci_job_token_scope_enabled = fields.Boolean(load_default=False)
    protected_branches = fields.List(fields.String(), load_default=list)
    default_branch = fields.String(load_default="main")
    ci_config = _text()
    members = fields.List(fields.Nested(MemberSchema), load_default=list)
    pipelines = fields.List(fields.Nested(PipelineSchema), load_default=list)


class FixtureSchema(StrictSchema):
    external_url = fields.Url(load_default=None, allow_none=True, require_tld=False, schemes={"http", "https"})
    users = fields.List(fields.Nested(UserSchema), load_default=list)
    runners = fields.List(fields.Nested(RunnerSchema), load_default=list)
    projects = fields.List(fields.Nested(ProjectSchema), load_default=list)


# --- reading and validating ----------------------------------------------------------


def _strip_extensions(value: Any) -> Any:
    """Drop ``x-`` keys (comments, anchors) at every level."""
    if isinstance(value, dict):
        return {k: _strip_extensions(v) for k, v in value.items() if not (isinstance(k, str) and k.startswith("x-"))}
    if isinstance(value, list):
        return [_strip_extensions(v) for v in value]
    return value


def _flatten(messages: Any, path: str = "") -> list[str]:
    if isinstance(messages, dict):
        problems = []
        for key, value in messages.items():
            if key == "_schema":
                sub = path
            elif isinstance(key, int):
                sub = f"{path}[{key}]"
            else:
                sub = f"{path}.{key}" if path else str(key)
            problems.extend(_flatten(value, sub))
        return problems
    if isinstance(messages, list):
        return [f"{path or '(top)'}: {text}" for text in messages if isinstance(text, str)] + [
            problem for item in messages if not isinstance(item, str) for problem in _flatten(item, path)
        ]
    return [f"{path or '(top)'}: {messages}"]


@dataclass
class Fixture:
    data: dict[str, Any]
    folder: Path
    sha256: str
    name: str

    @property
    def source(self) -> str | None:
        """The file it came from, for error messages; None when parsed from text."""
        return None if self.name == "<fixture>" else self.name


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise FixtureError([f"(file): not valid JSON: {exc.reason}"]) from None
    except json.JSONDecodeError as exc:
        raise FixtureError([f"line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"]) from None


def _parse_yaml(raw: bytes) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise FixtureError([f"{where}: not valid YAML or JSON: {getattr(exc, 'problem', exc)}"]) from None


def parse_fixture(text: str | bytes, folder: Path, name: str = "<fixture>", *, strict_json: bool = False) -> Fixture:
    """Parse and validate; YAML (which JSON mostly is), or with ``strict_json`` JSON and nothing else."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    document = _parse_json(raw) if strict_json else _parse_yaml(raw)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise FixtureError(["(top): Must be a mapping with users, runners and projects."])
    try:
        data = FixtureSchema().load(_strip_extensions(document))
    except ValidationError as exc:
        raise FixtureError(_flatten(exc.messages)) from None
    fixture = Fixture(data, folder.resolve(), hashlib.sha256(raw).hexdigest(), name)
    _check_internal(fixture)
    return fixture


def read_fixture(path: str | Path) -> Fixture:
    """A fixture file: ``.json`` is read as JSON, anything else as YAML; problems name the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FixtureError([exc.strerror or str(exc)], str(path)) from None
    try:
        return parse_fixture(raw, path.parent, str(path), strict_json=path.suffix.lower() == ".json")
    except FixtureError as exc:
        exc.source = str(path)
        raise


def inside(folder: Path, relative: str) -> Path | None:
    candidate = (folder / relative).resolve()
    return candidate if candidate.is_relative_to(folder) else None


def _check_internal(fixture: Fixture) -> None:
    """Uniqueness and file paths, which the schema cannot see."""
    data, problems = fixture.data, []

    def unique(items: list[dict[str, Any]], key: str, where: str, fold: bool = False) -> None:
        seen: dict[Any, int] = {}
        for index, item in enumerate(items):
            value = item.get(key)
            if value is None:
                continue
            value = value.lower() if fold and isinstance(value, str) else value
            if value in seen:
                problems.append(
                    f"{where}[{index}].{key}: {item.get(key)!r} is given twice (also {where}[{seen[value]}])"
                )
            seen[value] = index

    unique(data["users"], "username", "users", fold=True)
    unique(data["users"], "id", "users")
    unique(data["runners"], "id", "runners")
    unique(data["projects"], "path", "projects", fold=True)
    unique(data["projects"], "id", "projects")
    tokens = [dict(token=t["token"]) for u in data["users"] for t in u["tokens"]] + [
        dict(token=r["token"]) for r in data["runners"] if r["token"]
    ]
    unique(tokens, "token", "tokens")
    pipeline_ids: dict[int, str] = {}
    job_ids: dict[int, str] = {}
    for p_index, project in enumerate(data["projects"]):
        for l_index, pipeline in enumerate(project["pipelines"]):
            where = f"projects[{p_index}].pipelines[{l_index}]"
            if pipeline["id"] is not None:
                if pipeline["id"] in pipeline_ids:
                    problems.append(
                        f"{where}.id: {pipeline['id']} is given twice (also {pipeline_ids[pipeline['id']]})"
                    )
                pipeline_ids[pipeline["id"]] = where
            for j_index, job in enumerate(pipeline["jobs"]):
                jwhere = f"{where}.jobs[{j_index}]"
                if job["id"] is not None:
                    if job["id"] in job_ids:
                        problems.append(f"{jwhere}.id: {job['id']} is given twice (also {job_ids[job['id']]})")
                    job_ids[job["id"]] = jwhere
                for key, is_dir in (("trace_file", False),):
                    if job[key] is not None:
                        _check_path(fixture.folder, job[key], is_dir, f"{jwhere}.{key}", problems)
                artifacts = job["artifacts"]
                if artifacts:
                    for key, is_dir in (("archive", False), ("dir", True)):
                        if artifacts[key] is not None:
                            _check_path(fixture.folder, artifacts[key], is_dir, f"{jwhere}.artifacts.{key}", problems)
    if problems:
        raise FixtureError(problems)


def _check_path(folder: Path, relative: str, is_dir: bool, where: str, problems: list[str]) -> None:
    target = inside(folder, relative)
    if target is None:
        problems.append(f"{where}: {relative!r} is outside the fixture's folder")
    elif is_dir and not target.is_dir():
        problems.append(f"{where}: {relative!r} is not a folder")
    elif not is_dir and not target.is_file():
        problems.append(f"{where}: {relative!r} is not a file")

"""Request parameters: Rack-style parsing, then marshmallow validation with Grape's messages.

GitLab clients send ``scope=a``, ``scope[]=a&scope[]=b`` or ``scope[x]=a``;
Rack turns those into a string, a list and a hash. ``parse_query`` does the
same, and the schemas below validate the result, reporting failures the way
Grape does: ``{"error": "<param> <problem>"}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from jobsvc.domain import numbers
from jobsvc.domain.errors import ParamError
from jobsvc.domain.statuses import STATUSES

_NAME = re.compile(r"[\[\]]*([^\[\]]+)\]*")  # Rack: leading brackets skipped, the key, its closing brackets
_HASH_IN_ARRAY = re.compile(r"\[\]\[([^\[\]]+)\]", re.S)  # "[][k]"
_IN_ARRAY = re.compile(r"\[\](.+)", re.S)  # "[]<anything>"
_KEY_PARTS = re.compile(r"[\[\]]+")

DEPTH_LIMIT = 32
"""Levels of nesting in one parameter name, counted as Rack counts ``param_depth_limit`` (100 there):
``a`` is one level, ``a[b]`` two; past the limit the parameter is "invalid"."""

INVALID = "is invalid"
NOT_VALID_VALUE = "does not have a valid value"
MISSING = "is missing"


class ParamShapeError(ValueError):
    """A parameter used in two shapes, or nested too deep; ``args[0]`` names it as the client wrote it."""


def parse_query(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Rack's nested parameters (``Rack::QueryParser#normalize_params``, Rack 2.2 as GitLab runs it).

    * ``a=x`` is ``{"a": "x"}``; a repeated plain name keeps the last value;
    * ``a[]=x&a[]=y`` is a list, ``a[b]=x`` a hash, to any depth: ``a[b][c]=x`` is
      ``{"a": {"b": {"c": "x"}}}`` and ``a[0][key]=x`` is ``{"a": {"0": {"key": "x"}}}`` (a hash: the
      schemas that want a list take its values);
    * ``a[][k]=v&a[][j]=w`` is a list of hashes, ``[{"k": "v", "j": "w"}]``: a value joins the list's last
      hash unless that hash already has its key (``a[][k]=1&a[][k]=2`` is two hashes); ``a[][]=x`` is
      ``[["x"]]``;
    * a list where a hash (or a value) is, or a hash where a list (or a value) is, is a
      ``ParamShapeError`` naming the parameter as far as it got (``a=1&a[b]=2``: "a"; ``a[b]=1&a[b][c]=2``:
      "a[b]"), which ``query`` answers with Grape's 400 "<name> is invalid";
    * a name nested more than ``DEPTH_LIMIT`` levels deep (``a`` plus 31 brackets) is a ``ParamShapeError``
      naming its first part (Rack raises past its ``param_depth_limit``).

    Odd names go as Rack takes them: brackets before the first key are skipped (``[a]=x`` and ``]a=x`` are
    ``a``), closing brackets after it too (``a]=x`` is ``a``), and a name with no key at all (``=x``, ``[]=x``,
    ``[[]]=x``) is dropped; ``a[=x`` keeps ``a[`` as a plain name; an unclosed ``a[b=x`` is ``a[b]``.

    Where jobsvc departs from Rack:

    * Rack lets a plain value replace a list or hash given before it (``a[]=1&a=2`` is ``a=2``); here that is
      a clash too, as its reverse is in Rack;
    * where Rack would store nil (a bracket with no key inside, ``a[[]]=x``, ``a[]]=x``), nothing is stored,
      but the list or hash on the way is still made (``{"a": {}}``, ``{"a": []}``), so that every value is a
      string, a list or a hash;
    * Rack's ``key_space_limit`` is left to the body size limit.
    """
    result: dict[str, Any] = {}
    for name, value in pairs:
        match = _NAME.match(name)
        if match is not None:
            _normalize(result, name, value, 1, "", match.group(1))
    return result


def _normalize(params: dict[str, Any], name: str, value: str, depth: int, path: str, top: str) -> Any:
    """One level of Rack's ``normalize_params``: store ``value`` under ``name`` in ``params`` and return
    ``params``, or return what belongs in a list (``[value]`` for a bare ``[]``); None stores nothing."""
    if depth > DEPTH_LIMIT:
        raise ParamShapeError(top)
    match = _NAME.match(name)
    if match is None:  # no key at all: "", "[]", "[[]]"
        return [value] if name == "[]" and depth > 1 else None
    key, after = match.group(1), name[match.end() :]
    where = f"{path}[{key}]" if path else key
    current = params.get(key)
    if after == "":
        if isinstance(current, (list, dict)):
            raise ParamShapeError(where)
        params[key] = value
    elif after == "[":  # "a[": the whole name is the key (it holds a bracket, so it is never a list or hash)
        params[name] = value
    elif after == "[]":
        if current is None:
            params[key] = current = []
        if not isinstance(current, list):
            raise ParamShapeError(where)
        current.append(value)
    elif after.startswith("[]") and (child := _HASH_IN_ARRAY.fullmatch(after) or _IN_ARRAY.fullmatch(after)):
        child_key = child.group(1)
        if current is None:
            params[key] = current = []
        if not isinstance(current, list):
            raise ParamShapeError(where)
        last = current[-1] if current else None
        if isinstance(last, dict) and not _has_key(last, child_key):
            _normalize(last, child_key, value, depth + 1, f"{where}[]", top)
        else:
            item = _normalize({}, child_key, value, depth + 1, f"{where}[]", top)
            if item is not None:
                current.append(item)
    else:
        if current is None:
            params[key] = current = {}
        if not isinstance(current, dict):
            raise ParamShapeError(where)
        _normalize(current, after, value, depth + 1, where, top)
    return params


def _has_key(params: dict[str, Any], name: str) -> bool:
    """Rack's ``params_hash_has_key?``: does the hash already hold the path ``name`` spells?"""
    if "[]" in name:
        return False
    node: Any = params
    for part in _KEY_PARTS.split(name):
        if part == "":
            continue
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


class GrapeInteger(fields.Integer):
    """Grape's Integer coercion (``jobsvc.domain.numbers.parse_int``): ASCII digits with an optional sign.

    A number past the database's signed 64-bit range is "invalid" unless ``clamp`` is set, when it
    becomes the nearest bound (a page number: what lies past 2**63 is past the end anyway).
    """

    default_error_messages = {"invalid": INVALID}

    def __init__(self, *, clamp: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.clamp = clamp

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        try:
            return numbers.parse_int(value, clamp=self.clamp)
        except (numbers.NotAnInteger, numbers.OutOfRange):
            raise self.make_error("invalid") from None


class GrapeId(fields.Field):
    """An Integer that names a record: None when it is past 64 bits, so that the lookup finds nothing
    (Rails' ``find`` answers RecordNotFound for an out-of-range id; Grape itself coerces any size)."""

    default_error_messages = {"invalid": INVALID}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | None:
        try:
            return numbers.parse_id(value)
        except numbers.NotAnInteger:
            raise self.make_error("invalid") from None


class GrapeString(fields.Field):
    """Grape's String: text, or a number or boolean as text; a list or a hash is "invalid"."""

    default_error_messages = {"invalid": INVALID, "required": MISSING}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise self.make_error("invalid")


class GrapeBoolean(fields.Field):
    """Grape's Boolean: true/false/1/0/yes/no/t/f in any letter case."""

    default_error_messages = {"invalid": INVALID}
    _TRUE = {"true", "1", "t", "yes", "y", "on"}
    _FALSE = {"false", "0", "f", "no", "n", "off"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in self._TRUE:
            return True
        if text in self._FALSE:
            return False
        raise self.make_error("invalid")


class Scope(fields.Field):
    """``scope``: a status or a list of statuses (and, on the project list, a hash of them).

    Empty strings are dropped: go-gitlab always sends ``scope[]=`` and means no filter.
    """

    default_error_messages = {"invalid": NOT_VALID_VALUE}

    def __init__(self, *, allow_hash: bool, **kwargs: Any):
        super().__init__(**kwargs)
        self.allow_hash = allow_hash

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if isinstance(value, str):
            values = [value]
        elif isinstance(value, list):
            values = value
        elif isinstance(value, dict) and self.allow_hash:
            values = list(value.values())
        else:
            raise self.make_error("invalid")
        values = [v for v in values if v != ""]
        if any(v not in STATUSES for v in values):
            raise self.make_error("invalid")
        return list(dict.fromkeys(values))


def one_of(*choices: str) -> validate.OneOf:
    return validate.OneOf(choices, error=NOT_VALID_VALUE)


class PageSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    # A page past 2**63 is clamped to it: an empty page (or, on the project jobs list, the 405 offset limit).
    page = GrapeInteger(load_default=1, clamp=True)
    # PaginationParams: ``except_values: [0]``; Kaminari caps the rest at 100
    per_page = GrapeInteger(load_default=20, clamp=True, validate=validate.NoneOf([0], error="has a value not allowed"))


class ProjectJobsSchema(PageSchema):
    scope = Scope(allow_hash=True, load_default=list)
    pagination = GrapeString(load_default="offset", validate=one_of("offset", "keyset"))
    cursor = GrapeString(load_default=None)
    order_by = GrapeString(load_default="id")
    sort = GrapeString(load_default="desc")


class PipelineJobsSchema(PageSchema):
    pipeline_id = GrapeId(required=True)
    scope = Scope(allow_hash=False, load_default=list)
    include_retried = GrapeBoolean(load_default=False)


class PipelinesSchema(PageSchema):
    scope = GrapeString(load_default=None, validate=one_of("running", "pending", "finished", "branches", "tags"))
    status = GrapeString(load_default=None, validate=validate.OneOf(STATUSES, error=NOT_VALID_VALUE))
    ref = GrapeString(load_default=None)
    sha = GrapeString(load_default=None)
    source = GrapeString(load_default=None)
    username = GrapeString(load_default=None)
    order_by = GrapeString(load_default="id", validate=one_of("id", "status", "ref", "updated_at", "user_id"))
    sort = GrapeString(load_default="desc", validate=one_of("asc", "desc"))


class ProjectsSchema(PageSchema):
    order_by = GrapeString(
        load_default="created_at", validate=one_of("id", "name", "path", "created_at", "updated_at", "last_activity_at")
    )
    sort = GrapeString(load_default="desc", validate=one_of("asc", "desc"))
    search = GrapeString(load_default=None)
    membership = GrapeBoolean(load_default=False)
    visibility = GrapeString(load_default=None, validate=one_of("private", "internal", "public"))
    simple = GrapeBoolean(load_default=False)


class CancelSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    force = GrapeBoolean(load_default=False)


class JobVariables(fields.Field):
    """``job_variables_attributes``: a list of ``{key, value}``, missing parts named as Grape names them."""

    default_error_messages = {"invalid": INVALID}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[dict[str, str]]:
        if isinstance(value, dict):  # form-encoded ``job_variables_attributes[0][key]`` arrives as a hash
            value = list(value.values())
        if not isinstance(value, list):
            raise self.make_error("invalid")
        result, problems = [], []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.make_error("invalid")
            for part in ("key", "value"):
                if item.get(part) in (None, ""):
                    problems.append(f"[{index}][{part}] is missing")
            result.append({"key": str(item.get("key", "")), "value": str(item.get("value", ""))})
        if problems:
            raise ValidationError(problems)
        return result


class PlaySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    job_variables_attributes = JobVariables(load_default=list)


class PipelineVariables(fields.Field):
    """``variables``: ``[{key, value, variable_type}]`` (or a plain ``{key: value}`` hash)."""

    default_error_messages = {"invalid": INVALID}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, str]:
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return {str(k): v for k, v in value.items()}
        if not isinstance(value, list) or not all(isinstance(item, dict) and item.get("key") for item in value):
            raise self.make_error("invalid")
        return {str(item["key"]): str(item.get("value", "")) for item in value}


class CreatePipelineSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    ref = GrapeString(required=True)
    variables = PipelineVariables(load_default=dict)


def _problems(messages: Mapping[str, Any], prefix: str = "") -> list[str]:
    problems = []
    for name, value in messages.items():
        if name == "_schema":  # a check of the whole set: "active, paused are mutually exclusive"
            problems.extend(value if isinstance(value, list) else [value])
        elif isinstance(value, Mapping):
            problems.extend(_problems(value, f"{prefix}{name}" if not prefix else f"{prefix}[{name}]"))
        else:
            for text in value if isinstance(value, list) else [value]:
                separator = "" if text.startswith("[") else " "  # "name[0][key] is missing"
                problems.append(f"{prefix}{name}{separator}{text}" if not prefix else f"{prefix}[{name}] {text}")
    return problems


_INSTANCES: dict[type[Schema], Schema] = {}


def load(kind: type[Schema] | Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate with a schema (an instance, or a class); failures become Grape's 400 ``{"error": ...}``.

    One instance per schema class, made at its first use (building one deep-copies its fields, about
    80 µs; ``load`` keeps no state in it)."""
    if isinstance(kind, Schema):
        schema = kind
    else:
        found = _INSTANCES.get(kind)
        schema = found if found is not None else _INSTANCES.setdefault(kind, kind())
    try:
        return schema.load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, Mapping) else {"params": exc.messages}
        raise ParamError(_problems(messages)) from None


def query(request_query: Iterable[tuple[str, str]]) -> dict[str, Any]:
    try:
        return parse_query(request_query)
    except ParamShapeError as exc:
        raise ParamError([f"{exc.args[0]} is invalid"]) from None

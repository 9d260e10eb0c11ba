"""The runner API's parameters (lib/api/ci/runner.rb), as marshmallow schemas with Grape's messages.

One schema per route, named after it, beside the user API's schemas in ``jobsvc.http.params``; both are
loaded with ``jobsvc.http.params.load``, which turns failures into Grape's 400 ``{"error": ...}``.

Grape's coercions, as the runner routes declare them:

* ``String``: a string; a number or a boolean becomes its text; a list or a hash is "invalid";
* ``Integer``: ``jobsvc.domain.numbers`` (ASCII digits, within 64 bits here, since every one of them
  ends up in an SQLite column: ``maximum_timeout`` of 10**30 is "invalid");
* ``Boolean``: ``jobsvc.http.params.GrapeBoolean``; ``Hash``: an object, with its declared keys checked;
* ``Array[String]`` with comma splitting (``tag_list``): "a,b" or ["a", "b"].

Where jobsvc is more lenient than the declarations, on purpose: ``token`` on ``PUT /jobs/:id``
may come as the ``JOB-TOKEN`` header instead (as on the other job routes), so it is optional
there; an empty ``token`` counts as missing; ``state`` is checked after authentication (an unknown
one is "does not have a valid value"), as the update service does it.
"""

from __future__ import annotations

from typing import Any

from marshmallow import (
    EXCLUDE,
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    validates_schema,
)

from jobsvc.http.params import (
    INVALID,
    MISSING,
    GrapeBoolean,
    GrapeInteger,
    GrapeString,
    one_of,
)
from jobsvc.services.artifacts import FORMATS, TYPE_AND_FORMAT
from jobsvc.services.payload import FAILURE_REASONS

ACCESS_LEVELS = ("not_protected", "ref_protected")
RUNNER_STATES = ("running", "success", "failed")

_RUNNER_TOKEN = {"description": "The runner's authentication token (glrt-...)."}
_JOB_TOKEN = {"description": "The job's token (or the JOB-TOKEN header)."}


class Token(GrapeString):
    """``token``: a String that, when required, must not be empty either."""

    def __init__(self, *, required: bool = False, **kwargs: Any):
        if not required:
            kwargs.setdefault("load_default", None)
        super().__init__(required=required, allow_none=not required, **kwargs)
        self.token_required = required
        self.error_messages["null"] = MISSING

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if self.token_required and not text:
            raise self.make_error("required")
        return text


class TagList(fields.Field):
    """``Array[String]`` coerced by CommaSeparatedToArray: "a, b" or ["a", "b"]."""

    default_error_messages = {"invalid": INVALID}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, (str, int, float)) for item in items):
            raise self.make_error("invalid")
        return [str(item).strip() for item in items if not isinstance(item, bool) and str(item).strip()]


class Int64(GrapeInteger):
    """An Integer stored as it is: past 64 bits it is "invalid"."""


class HashOf(fields.Field):
    """Grape's Hash with declared keys: not an object is "invalid", a bad key is "info[name] is invalid"."""

    default_error_messages = {"invalid": INVALID}

    def __init__(self, schema: type[Schema], **kwargs: Any):
        super().__init__(**kwargs)
        self.schema = schema

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        return self.schema().load(value)


class _Params(Schema):
    class Meta:
        unknown = EXCLUDE


class _Hash(Schema):
    """A Hash parameter: declared keys checked, the others kept (runners send more than GitLab declares)."""

    class Meta:
        unknown = INCLUDE


class RunnerConfigParams(_Hash):
    gpus = GrapeString()


class RunnerInfoParams(_Hash):
    """``info``: the runner's metadata."""

    name = GrapeString(allow_none=True)
    version = GrapeString(allow_none=True)
    revision = GrapeString(allow_none=True)
    platform = GrapeString(allow_none=True)
    architecture = GrapeString(allow_none=True)
    executor = GrapeString(allow_none=True)
    features = fields.Dict(allow_none=True, error_messages={"invalid": INVALID})
    config = HashOf(RunnerConfigParams, allow_none=True)


class RunnerSessionParams(_Hash):
    url = GrapeString(allow_none=True)
    certificate = GrapeString(allow_none=True)
    authorization = GrapeString(allow_none=True)


class RegisterRunnerParams(_Params):
    """``POST /runners``."""

    token = Token(required=True, metadata={"description": "The registration token."})
    description = GrapeString()
    maintainer_note = GrapeString(metadata={"deprecated": True, "description": "Deprecated: use maintenance_note."})
    maintenance_note = GrapeString()
    info = HashOf(RunnerInfoParams)
    active = GrapeBoolean(metadata={"deprecated": True, "description": "Deprecated: use paused."})
    paused = GrapeBoolean()
    locked = GrapeBoolean()
    access_level = GrapeString(validate=one_of(*ACCESS_LEVELS))
    run_untagged = GrapeBoolean()
    tag_list = TagList(metadata={"description": "The runner's tags (or one comma-separated string)."})
    maximum_timeout = Int64()

    # Grape's mutually_exclusive: at most one of each group (the OpenAPI document says it too)
    MUTUALLY_EXCLUSIVE = (("active", "paused"),)

    @validates_schema(skip_on_field_errors=True)
    def _mutually_exclusive(self, data: dict[str, Any], **kwargs: Any) -> None:
        for group in self.MUTUALLY_EXCLUSIVE:
            if all(name in data for name in group):
                raise ValidationError(f"{', '.join(group)} are mutually exclusive")


class RunnerTokenParams(_Params):
    """``DELETE /runners`` and ``POST /runners/verify``."""

    token = Token(required=True, metadata=_RUNNER_TOKEN)


class RequestJobParams(_Params):
    """``POST /jobs/request``."""

    token = Token(required=True, metadata=_RUNNER_TOKEN)
    last_update = GrapeString(metadata={"description": "The X-GitLab-Last-Update value of the last answer."})
    info = HashOf(RunnerInfoParams)
    session = HashOf(RunnerSessionParams)
    job_age = Int64()


class JobOutputParams(_Hash):
    checksum = GrapeString()
    bytesize = Int64()


class UpdateJobParams(_Params):
    """``PUT /jobs/:id``."""

    token = Token(metadata=_JOB_TOKEN)
    # checked by the handler after authentication; required there, so the document requires it
    state = GrapeString(metadata={"enum": list(RUNNER_STATES), "required_after_auth": True})
    checksum = GrapeString()
    failure_reason = GrapeString(
        metadata={"enum": FAILURE_REASONS, "description": "Any other reason is stored as unknown_failure."}
    )
    output = HashOf(JobOutputParams)
    exit_code = Int64()


class JobTokenParams(_Params):
    """``PATCH /jobs/:id/trace``: the query's token (the log itself is the body)."""

    token = Token(metadata=_JOB_TOKEN)


class UploadArtifactsParams(_Params):
    """``POST /jobs/:id/artifacts``: the form fields besides ``file`` and ``metadata``.

    ``expire_in`` is checked with ``jobsvc.domain.durations`` by the handler (the default comes from the settings).
    """

    token = Token(metadata={"description": "The job's token (or the JOB-TOKEN header); in the form, before the file."})
    expire_in = GrapeString(metadata={"description": "A duration such as '1 week', or 'never'."})
    artifact_type = GrapeString(load_default="archive", validate=one_of(*TYPE_AND_FORMAT))
    artifact_format = GrapeString(load_default="zip", validate=one_of(*FORMATS))


class DownloadArtifactsParams(_Params):
    """``GET /jobs/:id/artifacts``."""

    token = Token(metadata=_JOB_TOKEN)
    direct_download = GrapeBoolean(load_default=False)


RUNNER_SCHEMAS: dict[str, type[Schema]] = {
    "POST /runners": RegisterRunnerParams,
    "DELETE /runners": RunnerTokenParams,
    "POST /runners/verify": RunnerTokenParams,
    "POST /jobs/request": RequestJobParams,
    "PUT /jobs/{job_id}": UpdateJobParams,
    "PATCH /jobs/{job_id}/trace": JobTokenParams,
    "POST /jobs/{job_id}/artifacts": UploadArtifactsParams,
    "GET /jobs/{job_id}/artifacts": DownloadArtifactsParams,
}
"""Which schema validates which runner route (relative to ``/api/v4``): for the OpenAPI document."""

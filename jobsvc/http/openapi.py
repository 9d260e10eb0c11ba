"""The OpenAPI 3.1 document of every endpoint jobsvc serves, built with apispec from the marshmallow schemas.

Query parameters and request bodies come from the schemas the handlers validate with:
jobsvc.http.params for the Jobs API, jobsvc.http.runner_params (through its ``RUNNER_SCHEMAS``) for the
runner API; response shapes from jobsvc.http.apischemas. ``_field_property`` and ``_FIELD_TYPES``
teach apispec the custom fields of both. What no schema holds, this module says once: the operation
table (``OPERATIONS``), GitLab's error bodies per status, and the headers (pagination, ranges, the runner protocol's).

``GET`` routes also answer ``HEAD`` (aiohttp adds it); their HEAD operations are derived from
the GET ones, with the same statuses and headers and no body.

Examples come from the demo data (``jobsvc serve --demo``), so the document can be tried as is.
tests/test_openapi.py keeps ``OPERATIONS`` equal to the route table.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

import orjson
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

from jobsvc import GITLAB_VERSION, __version__
from jobsvc.http import apischemas, params, runner_params
from jobsvc.http.runner_params import RUNNER_SCHEMAS

API = "/api/v4"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

# The runner API's parameters, as components named after their schemas (the nested Hash ones join
# them when apispec resolves a HashOf). Grape ignores keys it does not declare: additionalProperties.
RUNNER_COMPONENTS: dict[str, type[Schema]] = {schema.__name__: schema for schema in RUNNER_SCHEMAS.values()}
# The upload's two files, which the handler streams to disk instead of loading with the schema.
UPLOAD_FILES: dict[str, dict[str, Any]] = {
    "file": {"type": "string", "format": "binary", "description": "The artifact (an archive, or a report)."},
    "metadata": {"type": "string", "format": "binary", "description": "The archive's metadata (gzip); ignored."},
}

RESPONSE_SCHEMAS: dict[str, type[Schema]] = {
    "Job": apischemas.JobSchema,
    "Pipeline": apischemas.PipelineSchema,
    "PipelineListItem": apischemas.PipelineListItemSchema,
    "Project": apischemas.ProjectSchema,
    "BasicProject": apischemas.BasicProjectSchema,
    "CurrentUser": apischemas.CurrentUserSchema,
    "Version": apischemas.VersionSchema,
    "RunnerRegistration": apischemas.RunnerRegistrationSchema,
    "JobPayload": apischemas.JobPayloadSchema,
}

# Demo data: project 1 gitlab-org/gitlab-test, its job 8 and pipeline 6, pipeline 4's `pdf` job with a
# file in its archive, running job 12 and its token, runner 1's token.
DEMO_RUNNER_TOKEN = "glrt-demo-runner-0000000000"
DEMO_JOB_TOKEN = "glcbt-demo-running-job-12-0000"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> dict[str, str]:
    return _ref("schemas", name)


# --- errors ----------------------------------------------------------------------------------------

ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "MessageError": {
        "description": 'render_api_error! and its helpers: `{"message": "404 Project Not Found"}`; the message '
        'is an object for validation errors (`{"message": {"base": [...]}}`) and the rate limit.',
        "type": "object",
        "required": ["message"],
        "properties": {"message": {"anyOf": [{"type": "string"}, {"type": "object"}]}},
        "additionalProperties": False,
    },
    "ParamError": {
        "description": 'Grape\'s parameter validation and error! with a string: `{"error": "job_id is invalid"}`.',
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
        "additionalProperties": False,
    },
    "OAuthError": {
        "description": "rack-oauth2's answer for an expired or revoked token (401) or a token without the api "
        "scope (403).",
        "type": "object",
        "required": ["error", "error_description"],
        "properties": {
            "error": {"type": "string", "enum": ["invalid_token", "insufficient_scope"]},
            "error_description": {"type": "string"},
            "scope": {"type": "string"},
        },
        "additionalProperties": False,
    },
}


def _header(description: str, schema: dict[str, Any] | None = None, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema or {"type": "string"}}


HEADERS: dict[str, dict[str, Any]] = {
    "X-Content-Type-Options": _header("Always `nosniff`.", {"type": "string", "const": "nosniff"}, True),
    "X-Frame-Options": _header("Always `SAMEORIGIN`.", {"type": "string", "const": "SAMEORIGIN"}, True),
    "WWW-Authenticate": _header("With an `invalid_token` or `insufficient_scope` answer."),
    "Retry-After": _header("Seconds until the rate limit lets the next request through.", {"type": "string"}, True),
    "Job-Status": _header("The job's status after the call.", {"type": "string", "enum": list(params.STATUSES)}),
    "X-Per-Page": _header("Items per page.", {"type": "string", "pattern": "^[0-9]+$"}, True),
    "X-Page": _header("This page's number (offset pagination).", {"type": "string", "pattern": "^[0-9]+$"}),
    "X-Next-Page": _header(
        "The next page's number, empty on the last page.", {"type": "string", "pattern": "^[0-9]*$"}
    ),
    "X-Prev-Page": _header(
        "The previous page's number, empty on the first.", {"type": "string", "pattern": "^[0-9]*$"}
    ),
    "X-Total": _header("The item count, only while it is at most 10,000.", {"type": "string", "pattern": "^[0-9]+$"}),
    "X-Total-Pages": _header("The page count, with X-Total.", {"type": "string", "pattern": "^[0-9]+$"}),
    "Link": _header('RFC 8288 links: rel="prev", "next", "first" and, with a count, "last".'),
    "ETag": _header("A strong validator of the stored file, for If-Range."),
    "Last-Modified": _header("The stored file's modification time."),
    "Accept-Ranges": _header("`bytes`: Range is honoured.", {"type": "string", "const": "bytes"}),
    "Content-Range": _header("`bytes start-end/size` on a 206, `bytes */size` on a 416."),
    "Content-Disposition": _header("The file name to save as."),
    "X-GitLab-Last-Update": _header("The runner queue's version; send it back as last_update.", required=True),
    "Range": _header("`0-N`: the log's size after the append.", {"type": "string", "pattern": "^0-[0-9]+$"}, True),
    "X-GitLab-Trace-Update-Interval": _header("Seconds between two log appends the runner should keep."),
    "Location": _header("A presigned URL of the object store that sends the archive itself.", required=True),
}

_SECURITY_HEADERS = ("X-Content-Type-Options", "X-Frame-Options")


def _headers(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """References to the named headers; ``required`` ones are required here even if not everywhere."""
    out: dict[str, Any] = {}
    for name in (*_SECURITY_HEADERS, *names, *required):
        if name in required and not HEADERS[name]["required"]:
            out[name] = {**HEADERS[name], "required": True}
        else:
            out[name] = _ref("headers", name)
    return out


def _one_of(*names: str) -> dict[str, Any]:
    return {"anyOf": [_schema(n) for n in names]} if len(names) > 1 else _schema(names[0])


ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    400: {
        "description": 'A parameter is missing or invalid (`{"error": ...}`), or the request is refused '
        '(`{"message": "400 Bad request - ..."}`).',
        "content": {JSON: {"schema": _one_of("MessageError", "ParamError")}},
    },
    401: {
        "description": "No valid credentials.",
        "headers": _headers("WWW-Authenticate"),
        "content": {JSON: {"schema": _one_of("MessageError", "OAuthError")}},
    },
    403: {
        "description": "Not allowed: the role, a blocked user, a read_api token on a write, a wrong runner or job "
        "token.",
        "headers": _headers("WWW-Authenticate", "Job-Status"),
        "content": {JSON: {"schema": _one_of("MessageError", "OAuthError", "ParamError")}},
    },
    404: {
        "description": 'Not found, or not visible to the caller (`{"message": "404 Project Not Found"}`); a '
        'path no route matches answers `{"error": "404 Not Found"}`.',
        "content": {JSON: {"schema": _one_of("MessageError", "ParamError")}},
    },
    405: {
        "description": "Keyset pagination with an order it does not support, or an offset past 50,000.",
        "content": {JSON: {"schema": _schema("ParamError")}},
    },
    409: {"description": "A conflict.", "content": {JSON: {"schema": _schema("MessageError")}}},
    413: {"description": "The body is too large.", "content": {JSON: {"schema": _schema("MessageError")}}},
    415: {"description": "A compressed log append.", "content": {JSON: {"schema": _schema("MessageError")}}},
    429: {
        "description": "The rate limit of the job list.",
        "headers": _headers("Retry-After"),
        "content": {JSON: {"schema": _schema("MessageError")}},
    },
    507: {"description": "The file store is full.", "content": {JSON: {"schema": _schema("MessageError")}}},
}
for _response in ERROR_RESPONSES.values():
    _response.setdefault("headers", _headers())


# --- success answers -------------------------------------------------------------------------------


def json_answer(description: str, schema: dict[str, Any], *headers: str, required: tuple[str, ...] = ()) -> dict:
    return {
        "description": description,
        "headers": _headers(*headers, required=required),
        "content": {JSON: {"schema": schema}},
    }


def array_of(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _schema(name)}


PAGINATED = ("X-Page", "X-Next-Page", "X-Prev-Page", "X-Total", "X-Total-Pages", "Link")
OFFSET_REQUIRED = ("X-Per-Page", "X-Page", "X-Next-Page", "X-Prev-Page", "Link")


def paginated(description: str, item: dict[str, Any] | str, offset_only: bool = True) -> dict[str, Any]:
    schema = {"type": "array", "items": _schema(item) if isinstance(item, str) else item}
    return json_answer(description, schema, *PAGINATED, "X-Per-Page", required=OFFSET_REQUIRED if offset_only else ())


def file_answers(content_type: str, *, ranges: bool = True, required_validators: bool = True) -> dict[int, Any]:
    """200 (and with ranges, 206 and 416) of a file download."""
    validators = ("ETag", "Last-Modified") if required_validators else ()
    body = {"schema": {"type": "string", "format": "binary"}}
    answers: dict[int, Any] = {
        200: {
            "description": "The file.",
            "headers": _headers("Content-Disposition", "ETag", "Last-Modified", "Accept-Ranges", required=validators),
            "content": {content_type: body},
        }
    }
    if ranges:
        answers[206] = {
            "description": "The requested byte range.",
            "headers": _headers("Content-Disposition", required=("ETag", "Last-Modified", "Content-Range")),
            "content": {content_type: body},
        }
        answers[416] = {
            "description": "The range starts past the end (Content-Range: bytes */size); an empty body.",
            "headers": _headers("Content-Disposition", "ETag", "Last-Modified", required=("Content-Range",)),
        }
    return answers


# the archive downloads of a deployment whose object store presigns (--store-url ...&presign=1)
PRESIGNED = {
    302: {
        "description": "With an object store that presigns URLs (`presign=1` in --store-url), a GET without "
        "Range: the archive is at Location.",
        "headers": _headers("Location"),
    }
}


def status_answer(description: str, number: int, *headers: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Grape's bare ``status N``: the number as the body."""
    return json_answer(description, {"type": "integer", "const": number}, *headers, required=required)


# --- parameters ------------------------------------------------------------------------------------


def path_param(name: str, schema: dict[str, Any], description: str, example: Any) -> dict[str, Any]:
    return {"in": "path", "name": name, "required": True, "description": description, "schema": schema,
            "example": example}  # fmt: skip


PROJECT_ID = path_param(
    "id",
    {"type": "string", "minLength": 1},
    "The project's id or its URL-encoded full path (`gitlab-org%2Fgitlab-test`).",
    "1",
)
JOB_ID = path_param("job_id", {"type": "integer"}, "The job's id.", 8)
PIPELINE_ID = path_param("pipeline_id", {"type": "integer"}, "The pipeline's id.", 6)
REF_NAME = path_param(
    "ref_name", {"type": "string", "minLength": 1}, "A branch or tag name (may hold slashes).", "master"
)
ARTIFACT_PATH = path_param(
    "artifact_path", {"type": "string", "minLength": 1}, "A file's path inside the archive.", "some/release/file.pdf"
)
RUNNER_JOB_ID = path_param("job_id", {"type": "integer"}, "The job's id.", 12)
RUNNER_DOWNLOAD_ID = path_param("job_id", {"type": "integer"}, "The id of the job whose archive to fetch.", 12)
JOB_NAME = {"in": "query", "name": "job", "required": True, "description": "The job's name.",
            "schema": {"type": "string", "minLength": 1}, "example": "pdf"}  # fmt: skip
RANGE = {"in": "header", "name": "Range", "required": False, "description": "`bytes=start-end`, one range.",
         "schema": {"type": "string"}}  # fmt: skip
IF_RANGE = {"in": "header", "name": "If-Range", "required": False,
            "description": "An ETag or a date: the range applies only while the file is unchanged.",
            "schema": {"type": "string"}}  # fmt: skip
CONTENT_RANGE = {"in": "header", "name": "Content-Range", "required": True,
                 "description": "`start-end`: where the appended bytes go (only start is read).",
                 "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"}, "example": "0-5"}  # fmt: skip


# --- the operation table ---------------------------------------------------------------------------

Security = list[dict[str, list[str]]]
USER_AUTH: Security = [{"privateToken": []}, {"privateTokenQuery": []}, {"accessTokenQuery": []}, {"bearer": []}]
JOB_TOKEN_AUTH: Security = [{"jobToken": []}, {"jobTokenQuery": []}]
OPTIONAL: Security = [{}]
# The runner's job routes: JOB-TOKEN, or the ``token`` parameter (query or body), which no security scheme covers.
RUNNER_JOB: Security = [{"jobToken": []}, {}]


@dataclass
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    responses: dict[int, Any]
    parameters: list[dict[str, Any]] = field(default_factory=list)
    query: type[Schema] | Schema | None = None
    body: dict[str, Any] | None = None
    security: list[dict[str, list[str]]] | None = None
    description: str | None = None


def _errors(*statuses: int) -> dict[int, Any]:
    return {status: _ref("responses", str(status)) for status in statuses}


def _body(name: str, *media: str, required: bool = False) -> dict[str, Any]:
    return {"required": required, "content": {m: {"schema": _schema(name)} for m in media}}


def _form_encoding(schema: type[Schema]) -> dict[str, Any]:
    """How a form carries the non-scalar parameters: ``tag_list=a,b`` (split on commas), ``info[name]=x``
    (Rack's brackets, which nest to any depth: ``info[config][gpus]=all``; a name used both as a hash and as
    a list, ``output[k][x]=1&output[k][]=2``, is a 400 as in Rack)."""
    encoding: dict[str, Any] = {}
    for name, field_obj in schema._declared_fields.items():
        if isinstance(field_obj, runner_params.TagList):
            encoding[name] = {"style": "form", "explode": False}
        elif isinstance(field_obj, runner_params.HashOf):
            encoding[name] = {"style": "deepObject", "explode": True}
    return encoding


def _runner_body(route: str, example: dict[str, Any], *media: str) -> dict[str, Any]:
    """The body of a runner route (``"POST /runners"``): its RUNNER_SCHEMAS schema, as JSON and as a form."""
    schema = RUNNER_SCHEMAS[route]
    body = _body(schema.__name__, *(media or (JSON, FORM)), required=True)
    for media_type, content in body["content"].items():
        content["example"] = example
        if media_type == FORM and (encoding := _form_encoding(schema)):
            content["encoding"] = encoding
    return body


JOB_ANSWER = {"Job": "The job."}
READ = USER_AUTH + OPTIONAL
READ_WITH_JOB_TOKEN = USER_AUTH + JOB_TOKEN_AUTH + OPTIONAL
REQUIRED = USER_AUTH
REQUIRED_WITH_JOB_TOKEN = USER_AUTH + JOB_TOKEN_AUTH

P = API + "/projects/{id}"
J = P + "/jobs/{job_id}"

OPERATIONS: list[Operation] = [
    Operation("get", API, "apiRoot", "No resource: GitLab's catch-all 404", "meta", _errors(404), security=OPTIONAL),
    Operation("get", API + "/", "apiRootSlash", "No resource: GitLab's catch-all 404", "meta", _errors(404),
              security=OPTIONAL),
    Operation("get", API + "/openapi.json", "openapi", "This document", "meta",
              {200: json_answer("The OpenAPI 3.1 document.", {"type": "object"})}, security=OPTIONAL),
    Operation("get", API + "/version", "getVersion", "The GitLab version jobsvc speaks", "meta",
              {200: json_answer("The version.", _schema("Version")), **_errors(401, 403)}, security=REQUIRED),
    Operation("get", API + "/user", "getCurrentUser", "The user a personal access token belongs to", "meta",
              {200: json_answer("The user.", _schema("CurrentUser")), **_errors(401, 403)}, security=REQUIRED),
    Operation("get", API + "/job", "getJobOfToken", "The running job a job token belongs to", "jobs",
              {200: json_answer("The job.", _schema("Job")), **_errors(401, 403, 404)},
              security=JOB_TOKEN_AUTH + USER_AUTH),
    Operation("get", API + "/projects", "listProjects", "Projects the caller can see", "projects",
              {200: paginated("Projects; with simple=true, the basic fields only.",
                              {"anyOf": [_schema("Project"), _schema("BasicProject")]}),
               **_errors(400, 401, 403)},
              query=params.ProjectsSchema, security=READ),
    Operation("get", P, "getProject", "One project", "projects",
              {200: json_answer("The project.", _schema("Project")), **_errors(400, 401, 403, 404)},
              [PROJECT_ID], security=READ),
    Operation("get", P + "/pipelines", "listPipelines", "A project's pipelines", "pipelines",
              {200: paginated("Pipelines.", "PipelineListItem"), **_errors(400, 401, 403, 404)},
              [PROJECT_ID], query=params.PipelinesSchema, security=READ),
    Operation("post", P + "/pipeline", "createPipeline", "Run a pipeline from the stored .gitlab-ci.yml", "pipelines",
              {201: json_answer("The new pipeline.", _schema("Pipeline")), **_errors(400, 401, 403, 404, 413)},
              [PROJECT_ID], body=_body("CreatePipeline", JSON), security=REQUIRED),
    Operation("get", P + "/pipelines/{pipeline_id}", "getPipeline", "One pipeline", "pipelines",
              {200: json_answer("The pipeline.", _schema("Pipeline")), **_errors(400, 401, 403, 404)},
              [PROJECT_ID, PIPELINE_ID], security=READ),
    Operation("get", P + "/pipelines/{pipeline_id}/jobs", "listPipelineJobs", "A pipeline's jobs", "jobs",
              {200: paginated("Jobs.", "Job"), **_errors(400, 401, 403, 404)},
              [PROJECT_ID, PIPELINE_ID], query=params.PipelineJobsSchema(exclude=["pipeline_id"]),
              security=READ_WITH_JOB_TOKEN),
    Operation("get", P + "/jobs", "listProjectJobs", "A project's jobs", "jobs",
              {200: paginated("Jobs. Keyset pages (pagination=keyset) send X-Per-Page and, while more follow, "
                              "a Link rel=\"next\".", "Job", offset_only=False),
               **_errors(400, 401, 403, 404, 405, 429)},
              [PROJECT_ID], query=params.ProjectJobsSchema, security=REQUIRED_WITH_JOB_TOKEN),
    Operation("get", P + "/jobs/artifacts/{ref_name}/download", "downloadArtifactsByRef",
              "The archive of the latest successful job of that name on a ref", "artifacts",
              {**file_answers("application/octet-stream"), **PRESIGNED, **_errors(400, 401, 403, 404)},
              [PROJECT_ID, REF_NAME, JOB_NAME, RANGE, IF_RANGE], security=READ_WITH_JOB_TOKEN),
    Operation("get", P + "/jobs/artifacts/{ref_name}/raw/{artifact_path}", "rawArtifactByRef",
              "One file out of that archive", "artifacts",
              {200: {"description": "The file, with the Content-Type of its extension.",
                     "headers": _headers("Content-Disposition"), "content": {"*/*": {"schema": {}}}},
               **_errors(400, 401, 403), 404: _ref("responses", "404WithEntry")},
              [PROJECT_ID, REF_NAME, ARTIFACT_PATH, JOB_NAME], security=READ_WITH_JOB_TOKEN),
    Operation("get", J, "getJob", "One job", "jobs",
              {200: json_answer("The job.", _schema("Job")), **_errors(400, 401, 403, 404)},
              [PROJECT_ID, JOB_ID], security=REQUIRED),
    Operation("get", J + "/trace", "getJobLog", "The job's log", "jobs",
              {**file_answers("text/plain", required_validators=False), **_errors(400, 401, 403, 404)},
              [PROJECT_ID, JOB_ID, RANGE, IF_RANGE], security=REQUIRED,
              description="Ranges are honoured only when the request has a Range header; a job with no log "
              "answers an empty 200."),
    Operation("get", J + "/artifacts", "downloadArtifacts", "The job's archive", "artifacts",
              {**file_answers("application/octet-stream"), **PRESIGNED, **_errors(400, 401, 403, 404)},
              [PROJECT_ID, JOB_ID, RANGE, IF_RANGE], security=READ_WITH_JOB_TOKEN),
    Operation("get", J + "/artifacts/{artifact_path}", "rawArtifact", "One file out of the job's archive",
              "artifacts",
              {200: {"description": "The file, with the Content-Type of its extension.",
                     "headers": _headers("Content-Disposition"), "content": {"*/*": {"schema": {}}}},
               **_errors(400, 401, 403), 404: _ref("responses", "404WithEntry")},
              [PROJECT_ID, JOB_ID, ARTIFACT_PATH], security=READ_WITH_JOB_TOKEN),
    Operation("post", J + "/cancel", "cancelJob", "Cancel a job", "jobs",
              {201: json_answer("The job.", _schema("Job")), **_errors(400, 401, 403, 404, 413)},
              [PROJECT_ID, JOB_ID], body=_body("Cancel", JSON, FORM), security=REQUIRED),
    Operation("post", J + "/retry", "retryJob", "Retry a job", "jobs",
              {201: json_answer("The new job.", _schema("Job")), **_errors(400, 401, 403, 404)},
              [PROJECT_ID, JOB_ID], security=REQUIRED),
    Operation("post", J + "/erase", "eraseJob", "Erase a job's log and artifacts", "jobs",
              {201: json_answer("The job.", _schema("Job")), **_errors(400, 401, 403, 404)},
              [PROJECT_ID, JOB_ID], security=REQUIRED),
    Operation("post", J + "/play", "playJob", "Run a manual job", "jobs",
              {200: json_answer("The job.", _schema("Job")), **_errors(400, 401, 403, 404, 413)},
              [PROJECT_ID, JOB_ID], body=_body("Play", JSON), security=REQUIRED),
    Operation("post", J + "/artifacts/keep", "keepArtifacts", "Keep the job's artifacts from expiring", "artifacts",
              {200: json_answer("The job.", _schema("Job")), **_errors(400, 401, 403, 404)},
              [PROJECT_ID, JOB_ID], security=REQUIRED),
    Operation("delete", J + "/artifacts", "deleteJobArtifacts", "Delete the job's artifacts", "artifacts",
              {204: {"description": "Deleted.", "headers": _headers()}, **_errors(400, 401, 403, 404)},
              [PROJECT_ID, JOB_ID], security=REQUIRED),
    Operation("delete", P + "/artifacts", "deleteProjectArtifacts", "Expire every deletable artifact of a project",
              "artifacts",
              {202: json_answer("Accepted: `{\"message\": \"202 Accepted\"}`.", _schema("MessageError")),
               **_errors(400, 401, 403, 404)},
              [PROJECT_ID], security=REQUIRED),
    # the runner API
    Operation("post", API + "/runners", "registerRunner", "Register a runner with the registration token", "runner",
              {201: json_answer("The new runner and its token.", _schema("RunnerRegistration")),
               **_errors(400, 403, 413)},
              body=_runner_body("POST /runners", {"token": "demo-registration-token", "description": "a runner",
                                                        "tag_list": ["docker"]}), security=OPTIONAL),
    Operation("delete", API + "/runners", "unregisterRunner", "Delete the runner a token belongs to", "runner",
              {204: {"description": "Deleted.", "headers": _headers()}, **_errors(400, 403, 413)},
              body=_runner_body("DELETE /runners", {"token": "glrt-demo-runner-0000000002"}), security=OPTIONAL),
    Operation("post", API + "/runners/verify", "verifyRunner", "Check a runner's token", "runner",
              {200: json_answer("The runner.", _schema("RunnerRegistration")), **_errors(400, 403, 413)},
              body=_runner_body("POST /runners/verify", {"token": DEMO_RUNNER_TOKEN}), security=OPTIONAL),
    Operation("post", API + "/jobs/request", "requestJob", "A runner asks for a job", "runner",
              {201: json_answer("A job to run.", _schema("JobPayload")),
               204: {"description": "Nothing to run now.", "headers": _headers(required=("X-GitLab-Last-Update",))},
               **_errors(400, 403, 409, 413)},
              body=_runner_body("POST /jobs/request", {"token": DEMO_RUNNER_TOKEN, "info": {"name": "gitlab-runner"}}),
              security=OPTIONAL),
    Operation("put", API + "/jobs/{job_id}", "updateJob", "A runner reports a job's state", "runner",
              {200: status_answer("Updated: the body is `200`.", 200, required=("Job-Status",)),
               **_errors(400, 403, 413)},
              [RUNNER_JOB_ID],
              body=_runner_body("PUT /jobs/{job_id}", {"token": DEMO_JOB_TOKEN, "state": "running"}),
              security=RUNNER_JOB),
    Operation("patch", API + "/jobs/{job_id}/trace", "appendJobLog", "A runner appends to a job's log", "runner",
              {202: {"description": "Appended.",
                     "headers": _headers("X-GitLab-Trace-Update-Interval", "Range", required=("Job-Status",))},
               416: {"description": "The append does not start at the log's end: `{\"error\": \"416 Range Not "
                                    "Satisfiable\"}`, and Range gives the size.",
                     "headers": _headers("Range", required=("Job-Status",)),
                     "content": {JSON: {"schema": _schema("ParamError")}}},
               **_errors(400, 403, 413, 415, 507)},
              [RUNNER_JOB_ID, CONTENT_RANGE], query=RUNNER_SCHEMAS["PATCH /jobs/{job_id}/trace"],
              body={"required": False, "content": {"text/plain": {"schema": {"type": "string"}},
                                                     "application/octet-stream": {"schema": {"type": "string",
                                                                                             "format": "binary"}}}},
              security=RUNNER_JOB),
    Operation("post", API + "/jobs/{job_id}/artifacts", "uploadArtifacts", "A runner uploads an artifact", "runner",
              {201: status_answer("Stored: the body is `201`.", 201), **_errors(400, 403, 413, 507)},
              [RUNNER_JOB_ID], query=RUNNER_SCHEMAS["POST /jobs/{job_id}/artifacts"],
              body=_runner_body("POST /jobs/{job_id}/artifacts", {"token": DEMO_JOB_TOKEN, "file": "a.txt"},
                                "multipart/form-data"),
              security=RUNNER_JOB),
    Operation("get", API + "/jobs/{job_id}/artifacts", "downloadDependencyArtifacts",
              "A running job fetches its own or a dependency's archive", "runner",
              {**file_answers("application/octet-stream"), **PRESIGNED, **_errors(400, 401, 403, 404)},
              [RUNNER_DOWNLOAD_ID, RANGE, IF_RANGE], query=RUNNER_SCHEMAS["GET /jobs/{job_id}/artifacts"],
              security=RUNNER_JOB),
]  # fmt: skip


# --- assembly --------------------------------------------------------------------------------------

SECURITY_SCHEMES = {
    "privateToken": {"type": "apiKey", "in": "header", "name": "PRIVATE-TOKEN",
                     "description": "A personal access token (glpat-...)."},
    "privateTokenQuery": {"type": "apiKey", "in": "query", "name": "private_token"},
    "accessTokenQuery": {"type": "apiKey", "in": "query", "name": "access_token"},
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "A personal access token, or (where a job token is accepted) a job token."},
    "jobToken": {"type": "apiKey", "in": "header", "name": "JOB-TOKEN", "description": "A running job's CI_JOB_TOKEN."},
    "jobTokenQuery": {"type": "apiKey", "in": "query", "name": "job_token"},
}  # fmt: skip


# Custom fields apispec types like a built-in one (subclasses included); the rest is _field_property's.
_FIELD_TYPES: dict[type, tuple[str, str | None]] = {
    params.GrapeString: ("string", None),  # a number or a boolean is accepted too, as its text
    params.GrapeBoolean: ("boolean", None),
}
INT64 = {"minimum": -(2**63), "maximum": 2**63 - 1}


def _field_property(converter: Any, field_obj: Any, **kwargs: Any) -> dict[str, Any]:
    """JSON Schema for the custom fields of jobsvc.http.params and jobsvc.http.runner_params, which apispec cannot read.

    It runs after apispec's own attribute functions (nullability among them), so it says ``null`` itself.
    """
    if isinstance(field_obj, runner_params.Token):
        return {"minLength": 1} if field_obj.token_required else {}
    if isinstance(field_obj, params.GrapeInteger):
        return {} if field_obj.clamp else dict(INT64)  # past 64 bits: "is invalid"
    if isinstance(field_obj, runner_params.TagList):
        return {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
    if isinstance(field_obj, runner_params.HashOf):
        ref = converter.resolve_nested_schema(field_obj.schema)
        return {"anyOf": [ref, {"type": "null"}]} if field_obj.allow_none else ref
    if isinstance(field_obj, params.Scope):
        return {"type": "string", "enum": list(params.STATUSES)}
    if isinstance(field_obj, params.JobVariables):
        text = {"type": "string", "minLength": 1}
        item = {"type": "object", "required": ["key", "value"], "properties": {"key": text, "value": text}}
        return {"type": "array", "items": item}
    if isinstance(field_obj, params.PipelineVariables):
        item = {"type": "object", "required": ["key"], "properties": {
            "key": {"type": "string", "minLength": 1}, "value": {"type": "string"},
            "variable_type": {"type": "string", "enum": ["env_var", "file"]}}}  # fmt: skip
        return {
            "anyOf": [{"type": "array", "items": item}, {"type": "object", "additionalProperties": {"type": "string"}}]
        }
    return {}


def _query_parameters(plugin: MarshmallowPlugin, query: type[Schema] | Schema) -> list[dict[str, Any]]:
    instance = query() if isinstance(query, type) else query
    out = []
    assert plugin.converter is not None  # set when the plugin is registered with the spec
    for parameter in plugin.converter.schema2parameters(instance, location="query"):
        schema = parameter["schema"]
        if isinstance(schema.get("type"), list):  # an absent parameter is not a null one
            schema["type"] = [t for t in schema["type"] if t != "null"][0]
        if schema.get("default", 0) is None:
            del schema["default"]
        if "enum" in schema:
            schema["enum"] = [value for value in schema["enum"] if value is not None]
        out.append(parameter)
        if isinstance(instance.fields[parameter["name"]], params.Scope):
            out.append({
                "in": "query", "name": parameter["name"] + "[]", "required": False,
                "description": "Several statuses (`scope[]=failed&scope[]=success`).",
                "schema": {"type": "array", "items": {"type": "string", "enum": list(params.STATUSES)}},
                "style": "form", "explode": True,
            })  # fmt: skip
    return out


def _operation(plugin: MarshmallowPlugin, op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    parameters = list(op.parameters)
    if op.query is not None:
        parameters += _query_parameters(plugin, op.query)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = op.body
    out["responses"] = {str(status): answer for status, answer in sorted(op.responses.items())}
    if op.security is not None:
        out["security"] = op.security
    return out


def _head(operation: dict[str, Any]) -> dict[str, Any]:
    """The HEAD twin of a GET: the same parameters, statuses and headers, no bodies."""
    head = copy.deepcopy(operation)
    head["operationId"] = operation["operationId"] + "Head"
    head["summary"] = operation["summary"] + " (headers only)"
    for status, answer in head["responses"].items():
        if "$ref" in answer:
            head["responses"][status] = _ref("responses", answer["$ref"].rsplit("/", 1)[1] + "Head")
        else:
            answer.pop("content", None)
    return head


def _finish_runner_components(components: dict[str, dict[str, Any]]) -> None:
    """What the runner schemas say outside their fields: unknown keys are ignored, mutually exclusive
    parameters, ``state`` is required (checked after authentication), and the upload's form carries the files."""
    names = {
        name for name, value in vars(runner_params).items() if isinstance(value, type) and issubclass(value, Schema)
    }
    for name in names & components.keys():
        components[name].setdefault("additionalProperties", True)
    for name, schema in RUNNER_COMPONENTS.items():
        exclusive = [{"not": {"required": list(group)}} for group in getattr(schema, "MUTUALLY_EXCLUSIVE", ())]
        if exclusive:
            components[name]["allOf"] = exclusive
        late = [
            key for key, field_obj in schema._declared_fields.items() if field_obj.metadata.get("required_after_auth")
        ]
        if late:
            components[name]["required"] = sorted({*components[name].get("required", []), *late})
    upload = components[RUNNER_SCHEMAS["POST /jobs/{job_id}/artifacts"].__name__]
    upload["properties"] = {**UPLOAD_FILES, **upload["properties"]}
    upload["required"] = sorted({*upload.get("required", []), "file"})


def build() -> dict[str, Any]:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="jobsvc: GitLab-compatible CI Jobs API (v4)",
        version=__version__,
        openapi_version="3.1.0",
        plugins=[plugin],
        info={"description": f"GitLab {GITLAB_VERSION}'s Jobs API, its projects and pipelines reads, and the "
              "runner API, as jobsvc serves them."},
    )  # fmt: skip
    for field_class, (json_type, json_format) in _FIELD_TYPES.items():
        plugin.map_to_openapi_type(field_class, json_type, json_format)
    assert plugin.converter is not None  # set by APISpec(plugins=[plugin])
    plugin.converter.add_attribute_function(_field_property)
    for name, schema in {**RESPONSE_SCHEMAS, **RUNNER_COMPONENTS}.items():
        spec.components.schema(name, schema=schema)
    _finish_runner_components(spec.components.schemas)
    for name, schema in {"Cancel": params.CancelSchema, "Play": params.PlaySchema,
                         "CreatePipeline": params.CreatePipelineSchema}.items():  # fmt: skip
        spec.components.schema(name, schema=schema)
    for name, component in ERROR_SCHEMAS.items():
        spec.components.schema(name, component)
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    responses = {str(status): answer for status, answer in ERROR_RESPONSES.items()}
    responses["404WithEntry"] = copy.deepcopy(ERROR_RESPONSES[404])
    responses["404WithEntry"]["description"] += " No such file in the archive: Workhorse's plain `404 page not found`."
    responses["404WithEntry"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    for name, answer in list(responses.items()):
        responses[name + "Head"] = {key: value for key, value in answer.items() if key != "content"}
    for name, answer in responses.items():
        spec.components.response(name, answer)

    by_path: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation = _operation(plugin, op)
        methods = by_path.setdefault(op.path, {})
        methods[op.method] = operation
        if op.method == "get":
            methods["head"] = _head(operation)
    for path, operations in by_path.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@functools.cache
def document_bytes() -> bytes:
    return orjson.dumps(build())

"""The OpenAPI document: in step with the route table, valid OpenAPI 3.1, and true to what the server answers."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from aiohttp import FormData, web
from marshmallow import ValidationError
from openapi_spec_validator import validate

from jobsvc.http import openapi
from jobsvc.http.app import create_app
from jobsvc.http.runner_params import RUNNER_SCHEMAS, RUNNER_STATES
from jobsvc.settings import Config
from tests.conftest import RUNNING_JOB_TOKEN, auth

DOCUMENT = openapi.build()
METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")


def documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item if method in METHODS}


def api_routes(app: web.Application) -> set[tuple[str, str]]:
    """The API's routes (the pages for people, at GitLab's web paths, are HTML and not part of the API)."""
    routes = {(route.method, route.resource.canonical) for route in app.router.routes()}
    return {(method, path) for method, path in routes if path.startswith("/api/v4")}


def served(tmp_path) -> set[tuple[str, str]]:
    return api_routes(create_app(Config(data_dir=tmp_path)))


def test_every_route_is_documented_and_nothing_else(tmp_path):
    assert documented() == served(tmp_path)


def test_the_route_comparison_can_fail(tmp_path):
    app = create_app(Config(data_dir=tmp_path))

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/v4/undocumented", handler)
    assert documented() != api_routes(app)


def test_the_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)


def test_an_invalid_document_is_refused():
    broken = copy.deepcopy(DOCUMENT)
    broken["paths"]["/api/v4/version"]["get"]["responses"] = {"200": {"content": {}}}  # no description
    with pytest.raises(Exception, match="description"):
        validate(broken)


def _answers(operation):
    responses = operation["responses"]
    return {
        status: DOCUMENT["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]] if "$ref" in answer else answer
        for status, answer in responses.items()
    }


@pytest.mark.parametrize("method,path", sorted(documented()))
def test_every_operation_lists_its_statuses(method, path):
    operation = DOCUMENT["paths"][path][method.lower()]
    answers = _answers(operation)
    assert answers, "no statuses"
    assert all(status.isdigit() for status in answers)
    if path not in ("/api/v4", "/api/v4/"):  # the catch-all's 404 is all those two answer
        assert any(status.startswith("2") for status in answers)
    for status, answer in answers.items():
        assert answer["description"]
        if method == "HEAD":
            assert "content" not in answer
        elif status.startswith(("4", "5")) and status != "416":
            assert "application/json" in answer["content"], (status, "errors are GitLab's JSON bodies")


def test_every_response_names_the_security_headers():
    for item in DOCUMENT["paths"].values():
        for method, operation in item.items():
            for status, answer in _answers(operation).items():
                assert {"X-Content-Type-Options", "X-Frame-Options"} <= set(answer["headers"]), (method, status)


def _validator(schema):
    return jsonschema.Draft202012Validator({**schema, "components": DOCUMENT["components"]})


def _documented_answer(method: str, template: str, status: int) -> dict:
    operation = DOCUMENT["paths"][template][method.lower()]
    answer = _answers(operation).get(str(status))
    assert answer is not None, f"{method} {template} answered an undocumented {status}"
    return answer


def _required_headers(answer: dict) -> set[str]:
    headers = {}
    for name, header in answer["headers"].items():
        headers[name] = (
            DOCUMENT["components"]["headers"][header["$ref"].rsplit("/", 1)[1]] if "$ref" in header else header
        )
    return {name for name, header in headers.items() if header.get("required")}


RUNNER = "glrt-test-runner-00000"

# (method, path, path template, request keyword arguments): answers of the test world, one of each shape
REQUESTS = [
    ("GET", "/api/v4/version", "/api/v4/version", {"headers": auth("developer")}),
    ("GET", "/api/v4/user", "/api/v4/user", {"headers": auth("root")}),
    ("GET", "/api/v4/user", "/api/v4/user", {"headers": auth("developer")}),
    ("GET", "/api/v4/user", "/api/v4/user", {"headers": {"PRIVATE-TOKEN": "nope"}}),
    ("GET", "/api/v4/user", "/api/v4/user", {"headers": auth("expired")}),
    ("GET", "/api/v4/job", "/api/v4/job", {"headers": {"JOB-TOKEN": RUNNING_JOB_TOKEN}}),
    ("GET", "/api/v4/projects", "/api/v4/projects", {"headers": auth("root")}),
    ("GET", "/api/v4/projects?simple=true", "/api/v4/projects", {"headers": auth("root")}),
    ("GET", "/api/v4/projects?per_page=0", "/api/v4/projects", {}),
    ("GET", "/api/v4/projects/1", "/api/v4/projects/{id}", {"headers": auth("developer")}),
    ("GET", "/api/v4/projects/404", "/api/v4/projects/{id}", {"headers": auth("developer")}),
    ("GET", "/api/v4/projects/1/pipelines", "/api/v4/projects/{id}/pipelines", {"headers": auth("developer")}),
    ("GET", "/api/v4/projects/1/pipelines/6", "/api/v4/projects/{id}/pipelines/{pipeline_id}",
     {"headers": auth("root")}),
    ("GET", "/api/v4/projects/1/pipelines/6/jobs", "/api/v4/projects/{id}/pipelines/{pipeline_id}/jobs",
     {"headers": auth("root")}),
    ("GET", "/api/v4/projects/1/jobs", "/api/v4/projects/{id}/jobs", {"headers": auth("root")}),
    ("GET", "/api/v4/projects/5/jobs?pagination=keyset&per_page=5", "/api/v4/projects/{id}/jobs",
     {"headers": auth("developer")}),
    ("GET", "/api/v4/projects/1/jobs?scope=nope", "/api/v4/projects/{id}/jobs", {"headers": auth("root")}),
    ("GET", "/api/v4/projects/1/jobs/8", "/api/v4/projects/{id}/jobs/{job_id}", {"headers": auth("root")}),
    ("GET", "/api/v4/projects/1/jobs/x", "/api/v4/projects/{id}/jobs/{job_id}", {"headers": auth("root")}),
    ("GET", "/api/v4/projects/1/jobs/8", "/api/v4/projects/{id}/jobs/{job_id}", {"headers": auth("guest")}),
    ("POST", "/api/v4/projects/1/jobs/8/cancel", "/api/v4/projects/{id}/jobs/{job_id}/cancel",
     {"headers": auth("readonly")}),
    ("POST", "/api/v4/projects/1/jobs/6/retry", "/api/v4/projects/{id}/jobs/{job_id}/retry", {"headers": auth("root")}),
    ("DELETE", "/api/v4/projects/1/artifacts", "/api/v4/projects/{id}/artifacts", {"headers": auth("root")}),
    ("POST", "/api/v4/runners/verify", "/api/v4/runners/verify", {"json": {"token": RUNNER}}),
    ("POST", "/api/v4/runners/verify", "/api/v4/runners/verify", {"json": {}}),
    ("POST", "/api/v4/jobs/request", "/api/v4/jobs/request", {"json": {"token": RUNNER}}),
    ("PUT", "/api/v4/jobs/11", "/api/v4/jobs/{job_id}", {"json": {"token": RUNNING_JOB_TOKEN, "state": "running"}}),
    ("PATCH", "/api/v4/jobs/11/trace", "/api/v4/jobs/{job_id}/trace",
     {"data": b"more\n", "headers": {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "8-12"}}),
    ("PATCH", "/api/v4/jobs/11/trace", "/api/v4/jobs/{job_id}/trace",
     {"data": b"more\n", "headers": {"JOB-TOKEN": RUNNING_JOB_TOKEN, "Content-Range": "99-103"}}),
    ("GET", "/api/v4/nothing/here", "/api/v4", {}),
    ("HEAD", "/api/v4/projects/1/jobs", "/api/v4/projects/{id}/jobs", {"headers": auth("root")}),
    ("GET", "/api/v4/projects/2/jobs/31/artifacts", "/api/v4/projects/{id}/jobs/{job_id}/artifacts", {}),
    ("GET", "/api/v4/projects/2/jobs/31/artifacts", "/api/v4/projects/{id}/jobs/{job_id}/artifacts",
     {"headers": {"Range": "bytes=0-3"}}),
    ("GET", "/api/v4/projects/2/jobs/31/artifacts", "/api/v4/projects/{id}/jobs/{job_id}/artifacts",
     {"headers": {"Range": "bytes=99999999-"}}),
    ("HEAD", "/api/v4/projects/2/jobs/31/artifacts", "/api/v4/projects/{id}/jobs/{job_id}/artifacts", {}),
    ("GET", "/api/v4/projects/2/jobs/31/artifacts/dist/app.txt",
     "/api/v4/projects/{id}/jobs/{job_id}/artifacts/{artifact_path}", {}),
    ("GET", "/api/v4/projects/2/jobs/31/artifacts/no/such/file",
     "/api/v4/projects/{id}/jobs/{job_id}/artifacts/{artifact_path}", {}),
    ("GET", "/api/v4/projects/2/jobs/artifacts/main/download?job=build",
     "/api/v4/projects/{id}/jobs/artifacts/{ref_name}/download", {}),
    ("GET", "/api/v4/projects/1/jobs/8/trace", "/api/v4/projects/{id}/jobs/{job_id}/trace", {"headers": auth("root")}),
    ("GET", "/api/v4/projects/1/jobs/8/trace", "/api/v4/projects/{id}/jobs/{job_id}/trace",
     {"headers": {**auth("root"), "Range": "bytes=0-3"}}),
]  # fmt: skip


async def _conforms(client, method, path, template, kwargs):
    response = await client.request(method, path, **kwargs)
    answer = _documented_answer(method, template, response.status)
    missing = {name.lower() for name in _required_headers(answer)} - {name.lower() for name in response.headers}
    assert not missing, (method, path, response.status, missing)
    content = answer.get("content")
    if method != "HEAD" and content is not None:
        media = response.content_type
        assert media in content or "*/*" in content, (method, path, response.status, media)
        schema = content.get(media, {}).get("schema")
        if media == "application/json" and schema is not None:
            errors = [e.message for e in _validator(schema).iter_errors(await response.json())]
            assert not errors, (method, path, response.status, errors[:3])
    return response


async def test_answers_conform_to_the_document(client):
    for method, path, template, kwargs in REQUESTS:
        await _conforms(client, method, path, template, kwargs)


async def test_runner_answers_conform_to_the_document(client):
    upload = FormData()
    upload.add_field("file", b"PK\x05\x06" + bytes(18), filename="artifacts.zip")
    response = await _conforms(client, "POST", "/api/v4/jobs/11/artifacts", "/api/v4/jobs/{job_id}/artifacts",
                               {"data": upload, "headers": {"JOB-TOKEN": RUNNING_JOB_TOKEN}})  # fmt: skip
    assert response.status == 201
    response = await _conforms(
        client, "POST", "/api/v4/jobs/request", "/api/v4/jobs/request", {"json": {"token": RUNNER}}
    )
    assert response.status == 201  # the pending job 21: the payload was checked against JobPayload


async def test_a_key_the_document_does_not_know_fails_it(client):
    job = await (await client.get("/api/v4/projects/1/jobs/8", headers=auth("root"))).json()
    validator = _validator(openapi._schema("Job"))
    assert validator.is_valid(job)
    assert not validator.is_valid({**job, "new_key": 1})
    assert not validator.is_valid({key: value for key, value in job.items() if key != "web_url"})


async def test_the_document_is_served(client):
    response = await client.get("/api/v4/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == DOCUMENT


def _runner_operations(document=DOCUMENT):
    for route, schema in sorted(RUNNER_SCHEMAS.items()):
        method, path = route.split(" ", 1)
        yield route, schema, document["paths"][openapi.API + path][method.lower()]


def _declared_keys(schema) -> set[str]:
    return {field.data_key or name for name, field in schema._declared_fields.items()}


def _runner_problems(document: dict) -> list[str]:
    """How the document's runner bodies and query parameters differ from the RUNNER_SCHEMAS schemas."""
    problems = []
    for route, schema, operation in _runner_operations(document):
        keys = _declared_keys(schema)
        content = operation.get("requestBody", {}).get("content", {})
        bodies = {media: body["schema"] for media, body in content.items() if "$ref" in body["schema"]}
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if not bodies and not query:
            problems.append(f"{route}: neither a body nor a query parameter from {schema.__name__}")
        if query and query != keys:
            problems.append(f"{route}: query {sorted(query)} != {sorted(keys)}")
        for media, reference in bodies.items():
            name = reference["$ref"].rsplit("/", 1)[1]
            if name != schema.__name__:
                problems.append(f"{route} {media}: {name}, not {schema.__name__}")
                continue
            component = document["components"]["schemas"][name]
            extra = set(openapi.UPLOAD_FILES) if media == "multipart/form-data" else set()
            if set(component["properties"]) != keys | extra:
                problems.append(f"{route} {media}: properties {sorted(component['properties'])} != {sorted(keys)}")
            if component.get("additionalProperties") is not True:
                problems.append(f"{route} {media}: Grape ignores undeclared keys")
            required = {key for key, field in schema._declared_fields.items() if field.required}
            if not required <= set(component.get("required", [])):
                problems.append(f"{route} {media}: {sorted(required)} are required")
    return problems


def test_runner_parameters_come_from_the_handlers_schemas():
    """Each runner route documents its RUNNER_SCHEMAS schema: as its body (every media type), or its query."""
    assert _runner_problems(DOCUMENT) == []


def test_a_runner_body_that_drifts_from_its_schema_is_noticed():
    drifted = copy.deepcopy(DOCUMENT)
    properties = drifted["components"]["schemas"]["RequestJobParams"]["properties"]
    del properties["job_age"]
    properties["system_id"] = {"type": "string"}
    assert any("POST /jobs/request" in problem for problem in _runner_problems(drifted))
    other = copy.deepcopy(DOCUMENT)
    body = other["paths"]["/api/v4/jobs/{job_id}"]["put"]["requestBody"]["content"]["application/json"]
    body["schema"] = openapi._schema("RunnerTokenParams")
    assert _runner_problems(other) == ["PUT /jobs/{job_id} application/json: RunnerTokenParams, not UpdateJobParams"]
    hand_written = copy.deepcopy(DOCUMENT)
    del hand_written["paths"]["/api/v4/jobs/{job_id}/trace"]["patch"]["parameters"][-1]  # the token
    assert _runner_problems(hand_written)


def test_the_runner_bodies_are_json_and_forms():
    for route, _, operation in _runner_operations():
        media = set(operation.get("requestBody", {}).get("content", {}))
        if route == "POST /jobs/{job_id}/artifacts":
            assert media == {"multipart/form-data"}
        elif route.startswith(("POST", "PUT", "DELETE")):
            assert media == {"application/json", "application/x-www-form-urlencoded"}, route


def test_the_runner_fields_are_typed():
    schemas = DOCUMENT["components"]["schemas"]
    register = schemas["RegisterRunnerParams"]["properties"]
    assert register["token"] == {**register["token"], "type": "string", "minLength": 1}
    assert register["access_level"]["enum"] == ["not_protected", "ref_protected"]
    assert register["paused"]["type"] == "boolean"
    assert register["maximum_timeout"] == {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
    assert register["tag_list"]["anyOf"] == [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]
    assert register["info"] == {"$ref": "#/components/schemas/RunnerInfoParams"}
    info = schemas["RunnerInfoParams"]
    assert info["properties"]["config"]["anyOf"] == [{"$ref": "#/components/schemas/RunnerConfigParams"},
                                                     {"type": "null"}]  # fmt: skip
    assert info["additionalProperties"] is True
    update = schemas["UpdateJobParams"]
    assert update["properties"]["state"]["enum"] == list(RUNNER_STATES) and "state" in update["required"]
    assert "script_failure" in update["properties"]["failure_reason"]["enum"]
    assert update["properties"]["output"] == {"$ref": "#/components/schemas/JobOutputParams"}
    upload = schemas["UploadArtifactsParams"]
    assert upload["properties"]["artifact_format"]["enum"] == ["raw", "zip", "gzip"]
    assert "file" in upload["required"]
    assert not _validator(schemas["RegisterRunnerParams"]).is_valid({"token": "t", "active": True, "paused": False})
    assert _validator(schemas["RegisterRunnerParams"]).is_valid({"token": "t", "paused": False})
    form = DOCUMENT["paths"]["/api/v4/runners"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert form["encoding"]["tag_list"] == {"style": "form", "explode": False}  # tag_list=a,b


@pytest.mark.parametrize("value,valid", [(2**63 - 1, True), (-(2**63), True), (2**63, False), ("x", False)])
def test_the_documented_int64_range_is_the_servers(value, valid):
    register = DOCUMENT["components"]["schemas"]["RegisterRunnerParams"]
    assert _validator(register).is_valid({"token": "t", "maximum_timeout": value}) is valid
    try:
        RUNNER_SCHEMAS["POST /runners"]().load({"token": "t", "maximum_timeout": value})
        loaded = True
    except ValidationError:
        loaded = False
    assert loaded is valid

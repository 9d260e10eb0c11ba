"""The JSON shapes jobsvc answers, as marshmallow schemas: the source of the OpenAPI document's components.

The entities themselves are built by hand from rows (jobsvc.http.entities, for speed); these schemas
describe them, key for key, and nothing loads or dumps through them at run time. They are kept
in step with the builders by tests/test_openapi.py, which validates real answers against the
document generated from them, and by schemathesis in CI. Every schema forbids unknown keys
(marshmallow's default ``unknown = RAISE`` becomes ``additionalProperties: false``), so a key
added to an entity but not here fails those checks.

Conventions: a field is required unless it is marked ``optional``, since GitLab always sends
the key (``null`` where there is no value); ``allow_none`` marks the nullable ones.

Request bodies are not described here: the document takes them from the schemas the handlers
validate with (jobsvc.http.params, jobsvc.http.runner_params).
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from jobsvc.domain.statuses import STATUSES


def _req(field: type[fields.Field], nullable: bool = False, **kwargs: Any) -> Any:
    return field(required=True, allow_none=nullable, **kwargs)


def string(nullable: bool = False, **kwargs: Any) -> fields.String:
    return _req(fields.String, nullable, **kwargs)


def integer(nullable: bool = False, **kwargs: Any) -> fields.Integer:
    return _req(fields.Integer, nullable, **kwargs)


def number(nullable: bool = False, **kwargs: Any) -> fields.Float:
    return _req(fields.Float, nullable, **kwargs)


def boolean(**kwargs: Any) -> fields.Boolean:
    return _req(fields.Boolean, **kwargs)


def nested(schema: type[Schema] | str, nullable: bool = False, **kwargs: Any) -> fields.Nested:
    return fields.Nested(schema, required=True, allow_none=nullable, **kwargs)


def strings() -> fields.List:
    return fields.List(fields.String(), required=True)


def null() -> fields.Raw:
    """A key GitLab sends and jobsvc always answers ``null`` for."""
    return fields.Raw(required=True, metadata={"type": "null"})


def status() -> fields.String:
    return string(validate=validate.OneOf(STATUSES))


def optional(field: fields.Field) -> fields.Field:
    field.required = False
    return field


# --- the Jobs API ---------------------------------------------------------------------------------


class UserSchema(Schema):
    """API::Entities::User, as embedded in jobs and pipelines."""

    id = integer()
    username = string()
    public_email = string(True)
    name = string()
    state = string()
    locked = boolean()
    avatar_url = string(True)
    web_url = string()
    created_at = string(True)
    bio = string(True)
    location = string(True)
    linkedin = string(True)
    twitter = string(True)
    discord = string()
    website_url = string(True)
    github = string()
    organization = string(True)
    job_title = string(True)
    pronouns = null()
    bot = boolean()
    work_information = null()
    followers = integer()
    following = integer()
    local_time = null()


class CurrentUserSchema(UserSchema):
    """``GET /user``: API::Entities::UserPublic; ``is_admin`` only for an administrator."""

    last_sign_in_at = null()
    confirmed_at = string(True)
    last_activity_on = string()
    email = string(True)
    theme_id = integer()
    color_scheme_id = integer()
    projects_limit = integer()
    current_sign_in_at = null()
    identities = fields.List(fields.Dict(), required=True)
    can_create_group = boolean()
    can_create_project = boolean()
    two_factor_enabled = boolean()
    external = boolean()
    private_profile = boolean()
    commit_email = string(True)
    is_admin = optional(boolean())


class CommitSchema(Schema):
    id = string()
    short_id = string()
    created_at = string(True)
    parent_ids = strings()
    title = string(True)
    message = string(True)
    author_name = string(True)
    author_email = string(True)
    authored_date = string(True)
    committer_name = string(True)
    committer_email = string(True)
    committed_date = string(True)
    trailers = _req(fields.Dict)
    extended_trailers = _req(fields.Dict)
    web_url = string()


class JobRunnerSchema(Schema):
    """The runner as a job shows it (API::Entities::Ci::Runner)."""

    id = integer()
    description = string()
    ip_address = null()
    active = boolean()
    paused = boolean()
    is_shared = boolean()
    runner_type = string(validate=validate.OneOf(["instance_type", "group_type", "project_type"]))
    name = string(True)
    online = boolean()
    created_at = string()
    status = string(validate=validate.OneOf(["online", "offline", "never_contacted", "stale"]))
    job_execution_status = string(validate=validate.OneOf(["active", "idle"]))


class ArtifactSchema(Schema):
    file_type = string()
    size = integer()
    filename = string()
    file_format = string(True)


class ArtifactsFileSchema(Schema):
    filename = string()
    size = integer()


class JobProjectSchema(Schema):
    ci_job_token_scope_enabled = boolean()


class PipelineBasicSchema(Schema):
    """API::Entities::Ci::PipelineBasic."""

    id = integer()
    iid = integer(True)
    project_id = integer()
    sha = string()
    ref = string()
    status = status()
    source = string(True)
    created_at = string(True)
    updated_at = string(True)
    web_url = string()


class PipelineListItemSchema(PipelineBasicSchema):
    """An item of ``GET /projects/:id/pipelines``: PipelineBasic and the pipeline's ``name``."""

    name = string(True)


class DetailedStatusSchema(Schema):
    icon = string()
    text = string()
    label = string()
    group = string()
    tooltip = string()
    has_details = boolean()
    details_path = string()
    illustration = null()
    favicon = string()


class PipelineSchema(PipelineBasicSchema):
    """API::Entities::Ci::Pipeline."""

    before_sha = string(True)
    tag = boolean()
    yaml_errors = string(True)
    user = nested(UserSchema, True)
    started_at = string(True)
    finished_at = string(True)
    committed_at = string(True)
    duration = integer(True)
    queued_duration = number(True)
    coverage = string(True)
    detailed_status = nested(DetailedStatusSchema)
    archived = boolean()


class JobSchema(Schema):
    """API::Entities::Ci::Job. ``failure_reason`` only for a failed job, ``artifacts_file`` only while an
    unexpired archive exists."""

    id = integer()
    status = status()
    stage = string()
    name = string()
    ref = string()
    tag = boolean()
    coverage = number(True)
    allow_failure = boolean()
    created_at = string(True)
    started_at = string(True)
    finished_at = string(True)
    erased_at = string(True)
    duration = number(True)
    queued_duration = number(True)
    user = nested(UserSchema, True)
    commit = nested(CommitSchema, True)
    pipeline = nested(PipelineBasicSchema)
    failure_reason = optional(string())
    web_url = string()
    project = nested(JobProjectSchema)
    source = string(True)
    artifacts_file = optional(nested(ArtifactsFileSchema))
    artifacts = fields.List(fields.Nested(ArtifactSchema), required=True)
    runner = nested(JobRunnerSchema, True)
    runner_manager = null()
    artifacts_expire_at = string(True)
    archived = boolean()
    tag_list = strings()


class NamespaceSchema(Schema):
    id = integer()
    name = string()
    path = string()
    kind = string()
    full_path = string()
    parent_id = integer(True)
    avatar_url = string(True)
    web_url = string()


class BasicProjectSchema(Schema):
    """API::Entities::BasicProjectDetails: a project as ``simple=true`` lists it."""

    id = integer()
    description = string(True)
    name = string()
    name_with_namespace = string()
    path = string()
    path_with_namespace = string()
    created_at = string(True)
    default_branch = string(True)
    tag_list = strings()
    topics = strings()
    ssh_url_to_repo = string()
    http_url_to_repo = string()
    web_url = string()
    readme_url = string(True)
    forks_count = integer()
    avatar_url = string(True)
    star_count = integer()
    last_activity_at = string(True)
    visibility = string(validate=validate.OneOf(["private", "internal", "public"]))
    namespace = nested(NamespaceSchema)


class ProjectLinksSchema(Schema):
    self = string()
    issues = string()
    merge_requests = string()
    repo_branches = string()
    labels = string()
    events = string()
    members = string()
    cluster_agents = string()


class ProjectAccessSchema(Schema):
    access_level = integer()
    notification_level = integer()


class PermissionsSchema(Schema):
    project_access = nested(ProjectAccessSchema, True)
    group_access = nested(ProjectAccessSchema, True)


class ProjectSchema(BasicProjectSchema):
    """API::Entities::Project: the fields jobsvc answers."""

    links = nested(ProjectLinksSchema, data_key="_links")
    empty_repo = boolean()
    archived = boolean()
    resolve_outdated_diff_discussions = boolean()
    jobs_enabled = boolean()
    builds_access_level = string()
    public_jobs = boolean()
    shared_runners_enabled = boolean()
    ci_job_token_scope_enabled = boolean()
    ci_config_path = string(True)
    permissions = nested(PermissionsSchema)


class KasSchema(Schema):
    enabled = boolean()
    externalUrl = string(True)  # noqa: N815 - GitLab's key
    externalK8sProxyUrl = string(True)  # noqa: N815 - GitLab's key
    version = string(True)


class VersionSchema(Schema):
    version = string()
    revision = string()
    kas = nested(KasSchema)
    enterprise = boolean()


# --- the runner API: answers ----------------------------------------------------------------------


class RunnerRegistrationSchema(Schema):
    """API::Entities::Ci::RunnerRegistrationDetails: ``POST /runners`` (201) and ``POST /runners/verify`` (200)."""

    id = integer()
    token = string()
    token_expires_at = string(True)


class JobInfoSchema(Schema):
    id = integer()
    name = string()
    stage = string()
    pipeline_id = integer()
    project_id = integer()
    project_name = string()
    project_full_path = string()
    namespace_id = integer(True)
    root_namespace_id = integer(True)
    organization_id = integer(True)
    user_id = integer(True)
    time_in_queue_seconds = integer()


class GitInfoSchema(Schema):
    repo_url = string()
    ref = string()
    sha = string()
    before_sha = string(True)
    ref_type = string(validate=validate.OneOf(["branch", "tag"]))
    refspecs = strings()
    depth = integer()
    repo_object_format = string()
    protected = boolean()


class RunnerInfoSchema(Schema):
    timeout = integer()
    runner_session_url = string(True)


class VariableSchema(Schema):
    key = string()
    value = string()
    public = boolean()
    masked = boolean()


class StepSchema(Schema):
    name = string()
    script = strings()
    timeout = integer()
    when = string()
    allow_failure = boolean()


class ArtifactSpecSchema(Schema):
    name = string()
    untracked = boolean()
    paths = strings()
    when = string()
    expire_in = string(True)
    artifact_type = string()
    artifact_format = string()


class DependencySchema(Schema):
    id = integer()
    name = string()
    token = string()
    artifacts_file = nested(ArtifactsFileSchema)


class FeaturesSchema(Schema):
    trace_sections = boolean()
    failure_reasons = strings()


class JobPayloadSchema(Schema):
    """API::Entities::Ci::JobRequest::Response: what ``POST /jobs/request`` hands a runner (201)."""

    id = integer()
    token = string()
    allow_git_fetch = boolean()
    job_info = nested(JobInfoSchema)
    git_info = nested(GitInfoSchema)
    runner_info = nested(RunnerInfoSchema)
    variables = fields.List(fields.Nested(VariableSchema), required=True)
    steps = fields.List(fields.Nested(StepSchema), required=True)
    hooks = fields.List(fields.Dict(), required=True)
    image = _req(fields.Dict, True)
    services = fields.List(fields.Dict(), required=True)
    artifacts = fields.List(fields.Nested(ArtifactSpecSchema), required=True)
    cache = fields.List(fields.Dict(), required=True)
    credentials = fields.List(fields.Dict(), required=True)
    features = nested(FeaturesSchema)
    dependencies = fields.List(fields.Nested(DependencySchema), required=True)

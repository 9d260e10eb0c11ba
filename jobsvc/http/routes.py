"""The route table: every endpoint jobsvc answers, in one place."""

from __future__ import annotations

from aiohttp import web

from jobsvc.http.handlers import actions, artifacts, jobs, meta, monitoring, projects, runner
from jobsvc.http.pages import assets, browse, signin, views

API = "/api/v4"
# A project's full path on the pages: two or more segments, none of them "-" (GitLab's separator before
# a project's own pages), and not under a name GitLab keeps for itself (api, -, users, explore, assets).
PROJECT = "/{project:(?!(?:api|-|users|explore|assets)/)(?:(?!-/)[^/]+/)+(?!-/)[^/]+}"


def setup(app: web.Application) -> None:
    get = app.router.add_get
    get(API, meta.api_root)
    get(API + "/", meta.api_root)
    get(API + "/openapi.json", meta.openapi_document)
    get(API + "/version", meta.version)
    get(API + "/user", meta.current_user)
    get(API + "/job", jobs.get_current_job)
    get(API + "/projects", projects.list_projects)
    get(API + "/projects/{id}", projects.get_project)
    get(API + "/projects/{id}/pipelines", projects.list_pipelines)
    app.router.add_post(API + "/projects/{id}/pipeline", projects.create_pipeline)
    get(API + "/projects/{id}/pipelines/{pipeline_id}", projects.get_pipeline)
    get(API + "/projects/{id}/pipelines/{pipeline_id}/jobs", jobs.list_pipeline_jobs)
    get(API + "/projects/{id}/jobs", jobs.list_project_jobs)
    # by ref before by id, so that a ref is never read as a job id; the ref may hold slashes, and
    # the raw variant splits at the first "/raw/" (artifact paths are likelier to hold one than refs)
    get(API + "/projects/{id}/jobs/artifacts/{ref_name:.+}/download", artifacts.download_by_ref)
    get(API + "/projects/{id}/jobs/artifacts/{ref_name:.+?}/raw/{artifact_path:[\\s\\S]+}", artifacts.raw_by_ref)
    get(API + "/projects/{id}/jobs/{job_id}", jobs.get_job)
    get(API + "/projects/{id}/jobs/{job_id}/trace", artifacts.trace)
    get(API + "/projects/{id}/jobs/{job_id}/artifacts", artifacts.download)
    get(API + "/projects/{id}/jobs/{job_id}/artifacts/{artifact_path:[\\s\\S]+}", artifacts.file)
    app.router.add_post(API + "/projects/{id}/jobs/{job_id}/cancel", actions.cancel)
    app.router.add_post(API + "/projects/{id}/jobs/{job_id}/retry", actions.retry)
    app.router.add_post(API + "/projects/{id}/jobs/{job_id}/erase", actions.erase)
    app.router.add_post(API + "/projects/{id}/jobs/{job_id}/play", actions.play)
    app.router.add_post(API + "/projects/{id}/jobs/{job_id}/artifacts/keep", artifacts.keep)
    app.router.add_delete(API + "/projects/{id}/jobs/{job_id}/artifacts", artifacts.delete_job_artifacts)
    app.router.add_delete(API + "/projects/{id}/artifacts", artifacts.delete_project_artifacts)

    # GitLab's monitoring endpoints, outside the API
    get("/-/health", monitoring.basic_health)
    get("/-/liveness", monitoring.liveness)
    get("/-/readiness", monitoring.readiness)
    get("/-/metrics", monitoring.metrics)

    # the runner API
    app.router.add_post(API + "/runners", runner.register)
    app.router.add_delete(API + "/runners", runner.unregister)
    app.router.add_post(API + "/runners/verify", runner.verify)
    app.router.add_post(API + "/jobs/request", runner.request_job)
    app.router.add_put(API + "/jobs/{job_id}", runner.update_job)
    app.router.add_patch(API + "/jobs/{job_id}/trace", runner.patch_trace)
    app.router.add_post(API + "/jobs/{job_id}/artifacts", runner.upload_artifacts)
    get(API + "/jobs/{job_id}/artifacts", runner.download_dependency)

    # the pages for people, at GitLab's web paths (jobsvc/http/pages)
    get("/", views.root)
    get("/explore/projects", views.projects)
    get("/users/sign_in", signin.sign_in_form)
    app.router.add_post("/users/sign_in", signin.sign_in)
    app.router.add_post("/users/sign_out", signin.sign_out)
    get("/assets/{name}", assets.asset)
    get(PROJECT, views.project)
    get(PROJECT + "/-/pipelines", views.pipelines)
    get(PROJECT + "/-/pipelines/{pipeline_id}", views.pipeline)
    get(PROJECT + "/-/jobs/{job_id}", views.job)
    get(PROJECT + "/-/jobs/{job_id}/raw", views.raw_log)
    get(PROJECT + "/-/jobs/{job_id}/artifacts/browse", browse.browse)
    get(PROJECT + "/-/jobs/{job_id}/artifacts/browse/{path:[\\s\\S]*}", browse.browse)
    get(PROJECT + "/-/jobs/{job_id}/artifacts/download", browse.download)
    get(PROJECT + "/-/jobs/{job_id}/artifacts/raw/{artifact_path:[\\s\\S]+}", browse.raw_file)

"""Prometheus metrics: one registry per application, a middleware that counts requests, the scrape's text.

What is counted (``/-/metrics``; every name is documented in docs/operating.md):

- ``http_requests_total{method, route, status}`` and ``http_request_duration_seconds{method, route}``,
  GitLab's names for them. ``route`` is the route's pattern (``/api/v4/projects/{id}/jobs/{job_id}``),
  never the path a client sent, and a method outside HTTP's usual ones is ``other``, so no request can
  add a series; a path no route matches is ``(unmatched)``. A request's time runs from its handler's
  start to the last byte of its response (a download included), as its per-request task ends.
- ``jobsvc_trace_appends_total`` / ``jobsvc_trace_appended_bytes_total`` and
  ``jobsvc_artifact_uploads_total`` / ``jobsvc_artifact_uploaded_bytes_total``: accepted ones, counted
  by the runner API's handlers.
- ``jobsvc_jobs{status}``, ``jobsvc_stored_blobs{kind}`` and ``jobsvc_stored_bytes{kind}``: read from the
  database at each scrape (every process of a deployment on one database reports the same numbers).
- the process's own (CPU, memory, open files), from prometheus_client's ProcessCollector.

A registry of its own per app (not prometheus_client's global one): every test builds apps of its own,
and two apps in one process must not count into each other.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

from jobsvc.domain.statuses import STATUSES
from jobsvc.http.keys import METRICS
from jobsvc.storage.repo import Repository

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "(unmatched)"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# seconds: API answers take milliseconds, downloads and uploads up to minutes
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
STORED_KINDS = ("artifacts", "logs")


def route_of(request: web.BaseRequest) -> str:
    """The pattern of the route that matched (its canonical form), or ``(unmatched)``."""
    match_info = getattr(request, "match_info", None)
    resource = match_info.route.resource if match_info is not None else None
    return resource.canonical if resource is not None else UNMATCHED


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        self.requests = Counter(
            "http_requests", "Requests answered, by method, route and status.", ["method", "route", "status"],
            registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "http_request_duration_seconds", "Time from a request's handler starting to its response's last byte.",
            ["method", "route"], buckets=BUCKETS, registry=registry,
        )  # fmt: skip
        self.trace_appends = Counter("jobsvc_trace_appends", "Job log appends accepted.", registry=registry)
        self.trace_bytes = Counter("jobsvc_trace_appended_bytes", "Bytes of accepted log appends.", registry=registry)
        self.uploads = Counter("jobsvc_artifact_uploads", "Artifact uploads accepted.", registry=registry)
        self.upload_bytes = Counter(
            "jobsvc_artifact_uploaded_bytes", "Bytes of accepted artifact uploads.", registry=registry
        )
        self.jobs = Gauge("jobsvc_jobs", "Jobs in the database, by status.", ["status"], registry=registry)
        self.stored_blobs = Gauge(
            "jobsvc_stored_blobs", "Files the database points at: artifacts and archived logs.", ["kind"],
            registry=registry,
        )  # fmt: skip
        self.stored_bytes = Gauge(
            "jobsvc_stored_bytes", "Bytes of the files the database points at.", ["kind"], registry=registry
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and checks its arguments: once per series, not per request
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def trace_appended(self, size: int) -> None:
        self.trace_appends.inc()
        self.trace_bytes.inc(size)

    def artifact_uploaded(self, size: int) -> None:
        self.uploads.inc()
        self.upload_bytes.inc(size)

    async def scrape(self, repo: Repository) -> bytes:
        """The exposition text, with the database's numbers read now."""
        counts = await repo.job_counts()
        totals = await repo.stored_totals()
        for status in STATUSES:
            self.jobs.labels(status).set(counts.get(status, 0))
        for kind in STORED_KINDS:
            blobs, size = totals.get(kind, (0, 0))
            self.stored_blobs.labels(kind).set(blobs)
            self.stored_bytes.labels(kind).set(size)
        return generate_latest(self.registry)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outside the error middleware, so it sees the status the client gets."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away
        raise
    finally:
        metrics = request.app[METRICS]
        method = request.method if request.method in METHODS else "other"
        route = route_of(request)

        def done(_task: object) -> None:
            metrics.observe(method, route, status, time.perf_counter() - start)

        task = asyncio.current_task()
        if task is not None:  # aiohttp's per-request task ends once the response is sent
            task.add_done_callback(done)
        else:
            done(None)

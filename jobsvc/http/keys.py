"""Typed application keys: handlers import these, never the app module."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from jobsvc.domain.ratelimit import RateLimiter
    from jobsvc.http.cache import VersionedCache
    from jobsvc.http.metrics import Metrics
    from jobsvc.services.ratelimits import SharedRateLimiter
    from jobsvc.services.tracestore import TraceStore
    from jobsvc.settings import Config
    from jobsvc.storage.blobs import BlobStore
    from jobsvc.storage.repo import Repository
    from jobsvc.storage.rows import Backend

CONFIG: web.AppKey[Config] = web.AppKey("config")
DB: web.AppKey[Backend] = web.AppKey("db")  # the backend; everything goes through REPO
REPO: web.AppKey[Repository] = web.AppKey("repo")
STORE: web.AppKey[BlobStore] = web.AppKey("store")  # the blob store: a directory, or an S3 bucket
TRACES: web.AppKey[TraceStore] = web.AppKey("traces")  # the log store that goes with it
RATE_LIMITER: web.AppKey[RateLimiter | SharedRateLimiter] = web.AppKey("rate_limiter")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")  # this app's Prometheus registry and counters
# The external URL a fixture declared (the setting, when given, wins over it).
EXTERNAL_URL: web.AppKey[str] = web.AppKey("external_url")
# Read from the database, kept while it does not change (jobsvc.http.cache): what a token's digest
# finds, a project with a caller's access level or a pipeline, a job's serialized entity.
CREDENTIALS: web.AppKey[VersionedCache] = web.AppKey("credentials")
RECORDS: web.AppKey[VersionedCache] = web.AppKey("records")
JOB_JSON: web.AppKey[VersionedCache] = web.AppKey("job_json")
# The start-up reconcile of the artifact rows with their blobs, which runs after the app listens.
RECONCILE: web.AppKey[asyncio.Task[None]] = web.AppKey("reconcile")

"""The application factory: tests, the local mock and production build the same app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from jobsvc.domain.ratelimit import RateLimiter
from jobsvc.http import cache, routes
from jobsvc.http.keys import CONFIG, DB, EXTERNAL_URL, METRICS, RATE_LIMITER, RECONCILE, REPO, STORE, TRACES
from jobsvc.http.metrics import Metrics, metrics_middleware
from jobsvc.http.middleware import error_middleware, security_headers
from jobsvc.http.pages import respond
from jobsvc.services import artifacts, processing, traces
from jobsvc.services.leases import Lease
from jobsvc.services.ratelimits import SharedRateLimiter
from jobsvc.settings import Config
from jobsvc.storage import fixture_format, fixtures
from jobsvc.storage.backends import open_database
from jobsvc.storage.blobs import open_blob_store
from jobsvc.storage.repo import Repository

log = logging.getLogger(__name__)

RECONCILE_LEASE = 180.0  # seconds: the sweeper lease the start-up reconcile takes when the sweeper is off
DEMO_FIXTURE = Path(__file__).resolve().parents[1] / "demo" / "demo.yaml"


def fixture_paths(config: Config) -> list[Path]:
    paths = [Path(p) for p in config.fixtures]
    if config.demo:
        paths.insert(0, DEMO_FIXTURE)
    return paths


async def _storage(app: web.Application) -> AsyncIterator[None]:
    """The database and the blob store (with the log store that goes with it), with the fixtures loaded."""
    config = app[CONFIG]
    store = open_blob_store(config.data_dir, min_free=config.min_free_space * 1024 * 1024, store_url=config.store_url)
    await store.start()
    try:
        db = await open_database(config.database_url, config.data_dir)
        try:
            repo = Repository(db)
            for path in fixture_paths(config):
                summary = await fixtures.load_fixture(repo, store, fixture_format.read_fixture(path))
                log.info("%s", summary)
            app[EXTERNAL_URL] = await repo.instance.setting("external_url") or ""
            app[DB] = db
            app[REPO] = repo
            limit = config.jobs_rate_limit
            app[RATE_LIMITER] = SharedRateLimiter(repo, limit) if db.shared else RateLimiter(limit)
            app[STORE] = store
            app[TRACES] = traces.trace_store(repo, store)
            yield
        finally:
            await db.close()
    finally:
        await store.close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The tasks that run for as long as the app does: the artifact sweeper (after the start-up reconcile,
    which runs in the background: the app answers meanwhile) and the delayed-job scheduler."""
    repo, store, shared, interval = app[REPO], app[STORE], app[DB].shared, app[CONFIG].sweep_interval
    tasks = [asyncio.create_task(processing.scheduler(repo, Lease(repo, "scheduler", 10, shared=shared)))]
    lease = Lease(repo, "sweeper", 3 * interval if interval > 0 else RECONCILE_LEASE, shared=shared)
    # before the app listens: whatever is uploaded from now on is not the reconcile's
    app[RECONCILE] = reconcile = asyncio.create_task(artifacts.reconcile(repo, store, lease, since=datetime.now(UTC)))
    tasks.append(reconcile)
    if interval > 0:  # 0 turns the sweeper off (a sleep(0) loop would spin on the database)
        tasks.append(asyncio.create_task(artifacts.sweeper(repo, store, interval, lease, after=reconcile)))
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[metrics_middleware, error_middleware])
    app[CONFIG] = config
    app[METRICS] = Metrics()
    cache.setup(app)
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(_background)
    app.on_response_prepare.append(security_headers)
    respond.setup(app)  # the pages' templates
    routes.setup(app)
    return app

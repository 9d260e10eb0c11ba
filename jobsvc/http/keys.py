"""Typed application keys: handlers import these, never the app module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from jobsvc.domain.ratelimit import RateLimiter
    from jobsvc.services.ratelimits import SharedRateLimiter
    from jobsvc.settings import Config
    from jobsvc.storage.repo import Repository
    from jobsvc.storage.rows import Backend
    from jobsvc.storage.store import Store

CONFIG: web.AppKey[Config] = web.AppKey("config")
DB: web.AppKey[Backend] = web.AppKey("db")  # the backend; everything goes through REPO
REPO: web.AppKey[Repository] = web.AppKey("repo")
STORE: web.AppKey[Store] = web.AppKey("store")
RATE_LIMITER: web.AppKey[RateLimiter | SharedRateLimiter] = web.AppKey("rate_limiter")
# The external URL a fixture declared (the setting, when given, wins over it).
EXTERNAL_URL: web.AppKey[str] = web.AppKey("external_url")

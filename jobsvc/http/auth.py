"""Who is calling: personal access tokens and CI job tokens, as GitLab finds them.

Tokens are looked up by their SHA-256 digest (an indexed equality), never
compared as strings. What a lookup found (or that it found nothing) is kept in the app's
``CREDENTIALS`` cache for as long as the database does not change (jobsvc.http.cache): a revoked
token, a blocked user or a job that stopped running is seen by the next request. Expiry and scopes
are checked on every request. Failures answer GitLab's bodies: 401 for unknown tokens,
rack-oauth2's ``invalid_token`` for expired and revoked ones, 403
``insufficient_scope`` for a ``read_api`` token on anything but GET/HEAD,
403 for blocked users.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from jobsvc.domain import errors
from jobsvc.domain.timefmt import today
from jobsvc.domain.tokens import digest
from jobsvc.http.cache import row_through
from jobsvc.http.keys import CREDENTIALS, REPO
from jobsvc.http.urls import base_url
from jobsvc.storage.rows import Row

READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user, acting through a PAT or a running job's token."""

    user: Row
    job_id: int | None = None  # set when authenticated by a job token
    job_project_id: int | None = None

    @property
    def user_id(self) -> int:
        return self.user["id"]

    @property
    def admin(self) -> bool:
        return bool(self.user["admin"])


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _private_token(request: web.Request) -> str | None:
    return (
        request.headers.get("PRIVATE-TOKEN") or request.query.get("private_token") or request.query.get("access_token")
    )


def _job_token(request: web.Request) -> str | None:
    return request.headers.get("JOB-TOKEN") or request.query.get("job_token")


@functools.lru_cache(maxsize=64)
def _scopes(text: str) -> frozenset[str]:
    """A token's scopes (a JSON array; tokens share a handful of these)."""
    return frozenset(json.loads(text))


def _check_user(user: Row, request: web.Request) -> None:
    if user["state"] == "blocked":
        raise errors.forbidden("Your account has been blocked.")
    if user["state"] == "deactivated":
        raise errors.forbidden(
            "Your account has been deactivated by your administrator. Please log back in "
            "from a web browser to reactivate your account at " + base_url(request)
        )


async def _lookup(
    request: web.Request, kind: str, token: str, find: Callable[[str], Awaitable[Row | None]]
) -> Row | None:
    """The row a token's digest finds (``find``), through the CREDENTIALS cache."""
    key = digest(token)
    return await row_through(request, request.app[CREDENTIALS], (kind, key), lambda: find(key))


async def _by_pat(request: web.Request, token: str, method: str) -> Principal:
    row = await _lookup(request, "pat", token, request.app[REPO].token_by_digest)
    if row is None:
        raise errors.unauthorized()
    if row["revoked"]:
        raise errors.invalid_token("revoked")
    if row["expires_at"] is not None and row["expires_at"] <= today().isoformat():
        raise errors.invalid_token("expired")
    if "api" not in _scopes(row["scopes"]) and method not in READ_METHODS:
        raise errors.insufficient_scope("api")
    _check_user(row, request)
    return Principal(row)


async def _by_job_token(request: web.Request, token: str) -> Principal | None:
    """The running job a token belongs to; None if it is no job's token."""
    row = await _lookup(request, "job", token, request.app[REPO].job_by_token_digest)
    if row is None:
        return None
    if row["job_status"] != "running" or row["id"] is None:
        raise errors.unauthorized()
    _check_user(row, request)
    return Principal(row, job_id=row["job_id"], job_project_id=row["job_project_id"])


async def authenticate(request: web.Request, *, job_token_allowed: bool = False) -> Principal | None:
    """The caller, or None when no credentials were sent. Bad credentials raise."""
    bearer = _bearer(request)
    if job_token_allowed:
        job_token = _job_token(request)
        if job_token is not None:
            principal = await _by_job_token(request, job_token)
            if principal is None:
                raise errors.unauthorized()
            return principal
        if bearer is not None:
            principal = await _by_job_token(request, bearer)
            if principal is not None:
                return principal
    token = _private_token(request) or bearer
    if token is None:
        return None
    return await _by_pat(request, token, request.method)


async def require(request: web.Request, *, job_token_allowed: bool = False) -> Principal:
    """``authenticate!``: 401 without valid credentials."""
    principal = await authenticate(request, job_token_allowed=job_token_allowed)
    if principal is None:
        raise errors.unauthorized()
    return principal


async def personal_token_principal(request: web.Request, token: str) -> Principal:
    """The user a personal access token stands for, checked as for a read (the pages' session holds one):
    unknown, expired and revoked tokens and blocked users raise the API's errors."""
    return await _by_pat(request, token, "GET")


async def job_token_principal(request: web.Request, token: str) -> Principal | None:
    """The caller a job token stands for (its job's user), for the runner's own routes."""
    return await _by_job_token(request, token)

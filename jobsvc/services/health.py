"""Readiness: whether this process can serve now, as GitLab's health checks report it.

GitLab's ``/-/readiness`` runs each check with a time limit and reports every one, by name, as a list
of results (``lib/gitlab/health_checks/``: ``db_check``, ``redis_check``, ...). jobsvc depends on two
things: its database (``db_check``, a read of a table) and its blob store (``store_check``: the data
directory's folders and a tiny file written and removed, or a HEAD of the S3 bucket).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from jobsvc.storage.blobs import BlobStore
from jobsvc.storage.repo import Repository

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 10.0  # seconds, GitLab's DbCheck limit


@dataclass(frozen=True)
class CheckResult:
    name: str
    success: bool
    message: str | None = None


async def _probe(name: str, human: str, check: Callable[[], Awaitable[None]], timeout: float) -> CheckResult:
    try:
        async with asyncio.timeout(timeout):
            await check()
    except TimeoutError:
        log.warning("readiness: the %s check timed out after %gs", human, timeout)
        return CheckResult(name, False, f"{human} check timed out")
    except Exception as exc:  # whatever the database or the store raise, the answer is "failed", never a 500
        log.warning("readiness: the %s check failed: %s: %s", human, type(exc).__name__, exc)
        return CheckResult(name, False, f"unexpected {human} check result: {str(exc) or type(exc).__name__}")
    return CheckResult(name, True)


async def readiness(repo: Repository, store: BlobStore, timeout: float = CHECK_TIMEOUT) -> list[CheckResult]:
    """Both checks, run side by side."""
    return list(
        await asyncio.gather(
            _probe("db_check", "Db", repo.ping, timeout),
            _probe("store_check", "Store", store.check, timeout),
        )
    )

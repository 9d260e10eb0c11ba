"""GitLab's monitoring endpoints: ``/-/health``, ``/-/liveness``, ``/-/readiness`` and ``/-/metrics``.

As in GitLab (``app/controllers/health_controller.rb``, ``lib/gitlab/middleware/basic_health_check.rb``,
``RequiresAllowlistedMonitoringClient``), only clients in the monitoring allowlist get an answer; any
other gets the 404 of a path that does not exist.

- ``/-/health``: ``200 GitLab OK`` in plain text; the process answers, nothing else is looked at.
- ``/-/liveness``: ``200 {"status":"ok"}``.
- ``/-/readiness``: the database and the blob store, each checked (jobsvc.services.health) and reported
  by name as a list of results: ``{"status":"ok","db_check":[{"status":"ok"}],"store_check":[...]}``, or
  ``503`` with ``"status":"failed"`` and the failed check's ``message``, and ``X-GitLab-Custom-Error: 1``
  (so that a proxy in front shows this body, not an error page of its own). GitLab runs its service
  checks only with ``?all=1``; jobsvc's two are what it needs to serve, so they always run.
- ``/-/metrics``: the Prometheus exposition (jobsvc.http.metrics).
"""

from __future__ import annotations

import functools
import ipaddress

from aiohttp import web

from jobsvc.domain import errors
from jobsvc.http.handlers.base import json_response
from jobsvc.http.keys import CONFIG, METRICS, REPO, STORE
from jobsvc.http.metrics import CONTENT_TYPE
from jobsvc.services import health

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(allowlist: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part, strict=False) for part in allowlist.split(",") if part)


def allowed(allowlist: str, remote: str | None) -> bool:
    """Whether a peer address is in the allowlist (an IPv4 peer seen as ``::ffff:a.b.c.d`` counts as IPv4)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(allowlist))


def _monitoring_client(request: web.Request) -> None:
    if not allowed(request.app[CONFIG].monitoring_allowlist, request.remote):
        raise errors.route_not_found()


async def basic_health(request: web.Request) -> web.Response:
    _monitoring_client(request)
    return web.Response(text="GitLab OK", content_type="text/plain")


async def liveness(request: web.Request) -> web.Response:
    _monitoring_client(request)
    return json_response({"status": "ok"})


async def readiness(request: web.Request) -> web.Response:
    _monitoring_client(request)
    results = await health.readiness(request.app[REPO], request.app[STORE])
    success = all(result.success for result in results)
    checks: dict[str, list[dict[str, str]]] = {}
    for result in results:
        payload = {"status": "ok" if result.success else "failed"}
        if result.message:
            payload["message"] = result.message
        checks.setdefault(result.name, []).append(payload)
    body = {"status": "ok" if success else "failed", **checks}
    if success:
        return json_response(body)
    return json_response(body, 503, {"X-GitLab-Custom-Error": "1"})


async def metrics(request: web.Request) -> web.Response:
    _monitoring_client(request)
    text = await request.app[METRICS].scrape(request.app[REPO])
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})

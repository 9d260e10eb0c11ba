"""GitLab's monitoring endpoints: /-/health, /-/liveness, /-/readiness (the database and the store), and the
monitoring allowlist in front of them."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import replace

import pytest

from jobsvc.http.app import create_app
from jobsvc.http.handlers.monitoring import allowed
from jobsvc.http.keys import DB
from jobsvc.services import health

READY = {"status": "ok", "db_check": [{"status": "ok"}], "store_check": [{"status": "ok"}]}


async def test_health_is_gitlabs_plain_text(client):
    resp = await client.get("/-/health")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.text() == "GitLab OK"


async def test_liveness(client):
    resp = await client.get("/-/liveness")
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.json() == {"status": "ok"}


async def test_readiness_reports_each_check_by_name(client):
    for query in ("", "?all=1"):  # GitLab's all=1 adds its service checks; jobsvc's two always run
        resp = await client.get("/-/readiness" + query)
        assert resp.status == 200
        assert await resp.json() == READY
        assert "X-GitLab-Custom-Error" not in resp.headers


async def test_readiness_fails_with_the_database_closed_and_recovers(client):
    db = client.app[DB]
    await db.close()
    try:
        resp = await client.get("/-/readiness")
        assert resp.status == 503
        assert resp.headers["X-GitLab-Custom-Error"] == "1"
        body = await resp.json()
        assert body["status"] == "failed"
        assert body["store_check"] == [{"status": "ok"}]
        [db_check] = body["db_check"]
        assert db_check["status"] == "failed"
        assert db_check["message"].startswith("unexpected Db check result: ")
        assert (await client.get("/-/liveness")).status == 200  # alive, only not ready
    finally:
        await db.open()
    resp = await client.get("/-/readiness")
    assert resp.status == 200 and await resp.json() == READY


@pytest.mark.directory_store
async def test_readiness_fails_when_the_store_directory_is_gone(client, config):
    shutil.rmtree(config.data_dir / "artifacts")
    resp = await client.get("/-/readiness")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "failed" and body["db_check"] == [{"status": "ok"}]
    [store_check] = body["store_check"]
    assert store_check["status"] == "failed"
    assert "artifacts is not a directory" in store_check["message"]
    (config.data_dir / "artifacts").mkdir()
    assert (await client.get("/-/readiness")).status == 200


@pytest.mark.directory_store
async def test_readiness_fails_when_the_store_cannot_be_written(client, config):
    if os.geteuid() == 0:  # root writes anywhere: take the folder away instead
        shutil.rmtree(config.data_dir / "tmp")
        (config.data_dir / "tmp").write_text("not a folder")
    else:
        (config.data_dir / "tmp").chmod(0o500)
    try:
        resp = await client.get("/-/readiness")
        assert resp.status == 503
        assert (await resp.json())["store_check"][0]["status"] == "failed"
    finally:
        if (config.data_dir / "tmp").is_dir():
            (config.data_dir / "tmp").chmod(0o700)


class _HangingRepository:
    async def ping(self) -> None:
        await asyncio.sleep(60)


class _FineStore:
    async def check(self) -> None:
        return None


async def test_a_check_that_hangs_times_out():
    results = await health.readiness(_HangingRepository(), _FineStore(), timeout=0.05)  # type: ignore[arg-type]
    assert results == [
        health.CheckResult("db_check", False, "Db check timed out"),
        health.CheckResult("store_check", True),
    ]


@pytest.mark.parametrize("path", ["/-/health", "/-/liveness", "/-/readiness", "/-/metrics"])
async def test_clients_outside_the_allowlist_get_a_404(aiohttp_client, config, path):
    client = await aiohttp_client(create_app(replace(config, monitoring_allowlist="10.0.0.0/8,fd00::/8")))
    resp = await client.get(path)
    assert resp.status == 404
    assert await resp.json() == {"error": "404 Not Found"}  # as any path that does not exist


def test_the_allowlist_matches_addresses_and_networks():
    default = "127.0.0.0/8,::1/128"
    assert allowed(default, "127.0.0.1") and allowed(default, "127.9.9.9") and allowed(default, "::1")
    assert allowed(default, "::ffff:127.0.0.1")  # an IPv4 peer on a dual-stack socket
    assert not allowed(default, "10.1.2.3") and not allowed(default, "::2")
    assert allowed("fe80::/10", "fe80::1%eth0")
    assert not allowed(default, None) and not allowed(default, "") and not allowed(default, "not-an-address")
    assert not allowed("", "127.0.0.1")  # empty: nobody


def test_the_allowlist_setting_is_checked_and_normalized():
    from jobsvc.cli import build_parser, resolve

    args = build_parser().parse_args(["serve", "--monitoring-allowlist", " 10.1.2.3/8, ::1 ,"])
    assert resolve(args, {})["monitoring_allowlist"] == "10.0.0.0/8,::1/128"
    assert resolve(build_parser().parse_args(["serve"]), {})["monitoring_allowlist"] == "127.0.0.0/8,::1/128"
    with pytest.raises(ValueError, match="JOBSVC_MONITORING_ALLOWLIST: not an IP address or network: 'localhost'"):
        resolve(build_parser().parse_args(["serve"]), {"JOBSVC_MONITORING_ALLOWLIST": "localhost"})

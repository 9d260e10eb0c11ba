"""The API on PostgreSQL: the scenario of tests/pgscenario.py runs through, and the answers of SQLite and
PostgreSQL, loaded with the same fixtures, are the same bytes (statuses, paging headers, bodies)."""

from __future__ import annotations

import re

import pytest
import yaml

from jobsvc.domain.timefmt import now_iso
from jobsvc.http.app import create_app
from jobsvc.settings import Config
from tests import pgscenario
from tests.conftest import SHA, auth, world

pytestmark = pytest.mark.slow

READS = [
    "/projects", "/projects?membership=true", "/projects?visibility=public&search=gitlab_test%25",
    "/projects?search=GITLAB", "/projects?order_by=name&sort=asc", "/projects?order_by=path",
    "/projects?order_by=updated_at", "/projects/1", "/projects/GITLAB-org%2Fgitlab-test", "/user",
    "/projects/1/pipelines", "/projects/1/pipelines?scope=finished", "/projects/1/pipelines?order_by=user_id",
    "/projects/1/pipelines?order_by=user_id&sort=asc", "/projects/1/pipelines?username=ROOT",
    f"/projects/1/pipelines?sha={SHA}", "/projects/1/pipelines?source=parent_pipeline", "/projects/1/pipelines/6",
    "/projects/1/pipelines/6/jobs", "/projects/1/pipelines/6/jobs?include_retried=true&scope[]=failed",
    "/projects/5/jobs?per_page=5&page=2", "/projects/5/jobs?scope[]=failed", "/projects/5/jobs?pagination=keyset",
    "/projects/1/jobs", "/projects/1/jobs/8", "/projects/1/jobs/6", "/projects/2/jobs", "/projects/6/jobs",
    "/projects/1/jobs/8/trace", "/projects/2/jobs/artifacts/main/raw/dist/app.txt?job=build",
    "/projects/extra%2Fapp/pipelines", "/projects/extra%2Fapp/pipelines?order_by=user_id",  # a NULL user_id
    "/projects/extra%2Fapp/pipelines?order_by=user_id&sort=asc",
]  # fmt: skip


def _config(tmp_path, name: str, database_url: str) -> Config:
    world_file, extra_file = tmp_path / "world.yaml", tmp_path / "extra.yaml"
    world_file.write_text(yaml.safe_dump(world(), sort_keys=False))
    extra_file.write_text(yaml.safe_dump(pgscenario.EXTRA, sort_keys=False))
    return Config(data_dir=tmp_path / name, fixtures=[str(world_file), str(extra_file)],
                  registration_token=pgscenario.REGISTRATION, database_url=database_url)  # fmt: skip


def _timeless(body: str) -> str:
    """Today's times (the fixtures' defaults, a second apart in the two loads) and what is counted from now."""
    today = now_iso()[:10]
    body = re.sub(today + r"T[0-9:.]+(Z|\+00:00)", "(now)", body)
    return re.sub(r'"(duration|queued_duration)":[0-9.]+', r'"\1":(since)', body)


async def test_the_scenario_runs_on_postgres(aiohttp_client, tmp_path, postgres_dsn):
    client = await aiohttp_client(create_app(_config(tmp_path, "var", postgres_dsn)))
    await pgscenario._api(client, tmp_path)


async def test_sqlite_and_postgres_answer_the_same(aiohttp_client, tmp_path, postgres_dsn):
    clients = [
        await aiohttp_client(create_app(_config(tmp_path, "sqlite", ""))),
        await aiohttp_client(create_app(_config(tmp_path, "postgres", postgres_dsn))),
    ]
    for path in READS:
        answers = []
        for client in clients:
            resp = await client.get("/api/v4" + path, headers=auth("root"))
            headers = {k: v for k, v in resp.headers.items() if k.startswith("X-") or k == "Link"}
            answers.append((resp.status, headers, _timeless((await resp.read()).decode("utf-8", "replace"))))
        assert answers[0] == answers[1], path

"""Keep, delete and expire artifacts; the sweeper; start-up reconciliation of the store."""

import asyncio

import pytest

from jobsvc.http.app import create_app
from jobsvc.http.keys import DB, REPO, STORE
from jobsvc.services import artifacts
from tests.conftest import auth, job_blobs


async def job(client, job_id):
    return await (await client.get(f"/api/v4/projects/1/jobs/{job_id}", headers=auth("root"))).json()


class TestKeep:
    async def test_keep(self, client):
        resp = await client.post("/api/v4/projects/1/jobs/8/artifacts/keep", headers=auth("maintainer"))
        assert resp.status == 200
        body = await resp.json()
        assert body["id"] == 8 and body["artifacts_expire_at"] is None and "artifacts_file" in body

    async def test_no_unexpired_archive(self, client):
        for job_id in (9, 6):
            resp = await client.post(f"/api/v4/projects/1/jobs/{job_id}/artifacts/keep", headers=auth("root"))
            assert resp.status == 404

    async def test_roles_and_protected_refs(self, client):
        url = "/api/v4/projects/1/jobs/8/artifacts/keep"
        assert (await client.post(url)).status == 401
        assert (await client.post(url, headers=auth("reporter"))).status == 403
        resp = await client.post(url, headers=auth("developer"))  # master is protected
        assert resp.status == 403 and await resp.json() == {"message": "403 Forbidden"}
        assert (await client.post(url, headers=auth("outsider"))).status == 404
        assert (await client.post(url, headers=auth("readonly"))).status == 403
        resp = await client.post("/api/v4/projects/1/jobs/999/artifacts/keep", headers=auth("root"))
        assert resp.status == 404 and await resp.json() == {"message": "404 Not found"}


class TestDelete:
    async def test_delete_job_artifacts(self, client, config):
        url = "/api/v4/projects/1/jobs/8/artifacts"
        assert (await client.delete(url)).status == 401
        assert (await client.delete(url, headers=auth("developer"))).status == 403
        before = await job_blobs(client, 8)
        assert len(before) == (2 if config.store_url else 1)  # in a bucket, the archived log is a blob too
        resp = await client.delete(url, headers=auth("maintainer"))
        assert resp.status == 204 and await resp.read() == b""
        body = await job(client, 8)
        assert [a["file_type"] for a in body["artifacts"]] == ["trace"] and "artifacts_file" not in body
        assert len(await job_blobs(client, 8)) == len(before) - 1
        # GitLab does not check that there was anything to delete
        assert (await client.delete(url, headers=auth("maintainer"))).status == 204

    async def test_delete_project_artifacts(self, client):
        url = "/api/v4/projects/1/artifacts"
        assert (await client.delete(url)).status == 401
        assert (await client.delete(url, headers=auth("developer"))).status == 403
        resp = await client.delete(url, headers=auth("maintainer"), json={})
        assert resp.status == 202 and await resp.json() == {"message": "202 Accepted"}


class TestSweeper:
    async def test_expired_artifacts_are_swept(self, aiohttp_client, config):
        config.sweep_interval = 0.05
        client = await aiohttp_client(create_app(config))
        for _ in range(100):
            if not (await job(client, 9))["artifacts"]:
                break
            await asyncio.sleep(0.05)
        assert (await job(client, 9))["artifacts"] == []
        assert await job_blobs(client, 9) == []
        assert "artifacts_file" in await job(client, 8)

    async def test_an_interval_of_zero_turns_the_sweeper_off(self, aiohttp_client, config, monkeypatch):
        rounds = []

        async def counted(*args):
            rounds.append(args)
            return 0

        monkeypatch.setattr(artifacts, "sweep", counted)
        config.sweep_interval = 0
        client = await aiohttp_client(create_app(config))
        await asyncio.sleep(0.2)  # a sleep(0) loop would have run thousands of rounds by now
        assert rounds == [] and (await job(client, 9))["artifacts"] != []

    async def test_locked_pipelines_keep_expired_artifacts(self, client):
        db, store = client.app[DB], client.app[STORE]

        async def lock(tx):
            await tx.execute("UPDATE pipelines SET artifacts_locked = 1 WHERE id = 6")

        await db.write(lock)
        assert await artifacts.sweep(client.app[REPO], store) == 0
        assert len((await job(client, 9))["artifacts"]) == 1

    async def test_expire_project_artifacts_then_sweep(self, client):
        store = client.app[STORE]
        await artifacts.expire_project_artifacts(client.app[REPO], 1)
        assert await artifacts.sweep(client.app[REPO], store) == 2  # jobs 8 and 9; traces stay
        assert [a["file_type"] for a in (await job(client, 8))["artifacts"]] == ["trace"]


@pytest.mark.directory_store
async def test_reconcile_removes_orphans_and_reports_missing_files(aiohttp_client, config, caplog):
    client = await aiohttp_client(create_app(config))
    store = client.app[STORE]
    orphan = config.data_dir / "artifacts" / "77" / ("0" * 64 + ".zip")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crash")
    (config.data_dir / "tmp" / "x.part").write_bytes(b"half")
    archive = next((config.data_dir / "artifacts" / "8").iterdir())
    archive.unlink()
    await client.close()
    client = await aiohttp_client(create_app(config))
    assert not orphan.exists() and not (config.data_dir / "tmp" / "x.part").exists()
    assert f"artifacts/8/{archive.name} is missing" in caplog.text
    assert store is not client.app[STORE]

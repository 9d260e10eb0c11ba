"""Keep, delete and expire artifacts; the sweeper; start-up reconciliation of the store."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from jobsvc.domain.timefmt import now_iso
from jobsvc.http.app import create_app
from jobsvc.http.keys import DB, RECONCILE, REPO, STORE
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
    assert not (config.data_dir / "tmp" / "x.part").exists()
    await client.app[RECONCILE]  # in the background: the app answers meanwhile
    assert not orphan.exists()
    assert f"artifacts/8/{archive.name} is missing" in caplog.text
    assert store is not client.app[STORE]


class TestOrphanSweep:
    """The orphan sweep compares the store's listing with the rows a batch at a time."""

    async def test_small_batches_find_what_one_batch_finds(self, client, caplog, monkeypatch):
        store, repo = client.app[STORE], client.app[REPO]
        await client.app[RECONCILE]
        # directories whose names sort differently as numbers and as keys ("1/" < "10/" < "100/" < "11/" < "7/")
        orphans = {(await store.put_bytes(job, b"left by job %d" % job, "zip")).key for job in (1, 10, 100, 11, 7, 77)}
        rows = sorted(key for key in await repo.artifacts.all_keys() if key.startswith("artifacts/"))
        gone = {rows[0], rows[-1]}
        for key in gone:
            await store.remove(key)
        listed = [info.key async for info in store.list_artifacts()]
        assert listed == sorted(listed) and orphans <= set(listed)
        removed: list[str] = []

        async def remove(key: str) -> None:  # recorded, not removed: each batch size sees the same blobs
            removed.append(key)

        monkeypatch.setattr(store, "remove", remove)
        for batch in (1, 2, 3, len(listed), 1000):
            removed.clear()
            caplog.clear()
            found = await artifacts.sweep_orphans(repo, store, timedelta(0), missing_before=now_iso(), batch=batch)
            assert set(removed) == orphans and len(removed) == len(orphans), batch
            missing = {r.getMessage().split()[2] for r in caplog.records if "is missing" in r.getMessage()}
            assert missing == gone, batch
            assert (found.listed, found.removed, found.missing, found.finished) == (len(listed), 6, 2, True)

    async def test_what_came_after_the_start_is_left_alone(self, client, caplog):
        """The reconcile runs while the app answers: a blob written since the start may have its row about
        to commit, and a row created since then may have been read before its blob was listed."""
        store, repo = client.app[STORE], client.app[REPO]
        await client.app[RECONCILE]
        young = (await store.put_bytes(77, b"an upload whose row has not committed yet", "zip")).key
        key = (await repo.archive(8))["store_key"]
        await store.remove(key)
        caplog.clear()
        started = datetime.now(UTC) - timedelta(minutes=5)
        found = await artifacts.sweep_orphans(repo, store, timedelta(0), since=started, missing_before="2000-01-01")
        assert (found.removed, found.missing) == (0, 0) and "is missing" not in caplog.text
        assert young in [info.key async for info in store.list_artifacts()]
        found = await artifacts.sweep_orphans(repo, store, timedelta(0), missing_before=now_iso())
        assert (found.removed, found.missing) == (1, 1) and f"artifact file {key} is missing" in caplog.text
        assert young not in [info.key async for info in store.list_artifacts()]

    async def test_another_process_holding_the_lease_stops_it(self, client, caplog):
        store, repo = client.app[STORE], client.app[REPO]
        await client.app[RECONCILE]
        orphan = (await store.put_bytes(77, b"left by a crash", "zip")).key

        class Held:
            async def take(self) -> bool:
                return False

        with caplog.at_level(logging.INFO, logger="jobsvc.services.artifacts"):
            await artifacts.reconcile(repo, store, Held(), since=datetime.now(UTC) + timedelta(days=2))  # type: ignore[arg-type]
        assert orphan in [info.key async for info in store.list_artifacts()]
        assert "another process holds the sweeper lease" in caplog.text

    async def test_the_app_answers_before_the_reconcile_ends(self, aiohttp_client, config, monkeypatch):
        release = asyncio.Event()
        real = artifacts.sweep_orphans

        async def slow(*args, **kwargs):
            await release.wait()
            return await real(*args, **kwargs)

        monkeypatch.setattr(artifacts, "sweep_orphans", slow)
        config.sweep_interval = 0.05
        client = await aiohttp_client(create_app(config))
        resp = await client.get("/api/v4/projects/1/jobs/8", headers=auth("root"))
        assert resp.status == 200
        assert not client.app[RECONCILE].done()
        release.set()
        await client.app[RECONCILE]

"""Two ``jobsvc serve`` processes on one PostgreSQL and one store: the races run through both.

Nothing that the other process needs lives in memory, so a client may reach either process for
any request: retries, job claims, log appends and artifact downloads give the answers one process
would give. Both processes start at once on an empty database and load the same fixture file; it
is migrated and loaded exactly once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import itertools
import subprocess
import sys
import zipfile

import aiohttp
import asyncpg
import pytest
import yaml

from tests.conftest import RunningServer

pytestmark = pytest.mark.slow

ROOT = "glpat-two-processes-root0"
REGISTRATION = "two-processes-registration"
JOBS = 30  # parallel jobs of one stage: what the runners race for
CI = "\n".join(f"job-{n}:\n  script: [make]" for n in range(JOBS)) + "\n"
FIXTURE = {
    "users": [{"username": "root", "admin": True, "tokens": [{"token": ROOT}]}],
    "projects": [
        {
            "path": "g/app",
            "id": 1,
            "default_branch": "main",
            "ci_config": CI,
            "members": [{"user": "root", "role": "owner"}],
            "pipelines": [{"id": 1, "ref": "main", "jobs": [{"id": 1, "name": "flaky", "status": "failed"}]}],
        }
    ],
}
ADMIN = {"PRIVATE-TOKEN": ROOT}


@pytest.fixture(params=["s3", "directory"])
def servers(request, tmp_path, postgres_server):
    """Two processes on one fresh database and one store, started together: a bucket, each process with a
    data directory of its own (the deployment the README shows), or one data directory both use."""
    fixture = tmp_path / "fixture.yaml"
    fixture.write_text(yaml.safe_dump(FIXTURE, sort_keys=False))
    dsn = postgres_server.new_database()
    env = {"JOBSVC_DATABASE_URL": dsn, "JOBSVC_REGISTRATION_TOKEN": REGISTRATION, "JOBSVC_SWEEP_INTERVAL": "1"}
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        env |= {
            "JOBSVC_STORE_URL": f"s3://{s3.new_bucket()}/jobsvc?endpoint_url={s3.endpoint_url}",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }
    data_dirs = [tmp_path / "a", tmp_path / "b"] if request.param == "s3" else [tmp_path / "var"] * 2
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        started = [
            pool.submit(RunningServer, ["--data-dir", str(data_dir), "--fixtures", str(fixture)], env)
            for data_dir in data_dirs
        ]
        running = [future.result() for future in started]  # a failed start raises here
    try:
        assert not list(tmp_path.glob("*/jobsvc.sqlite3"))  # the database is PostgreSQL's, not a file
        yield [server.url for server in running], dsn
    finally:
        for number, server in enumerate(running):
            server.stop()
            # shown with a failing test's output: a 500's traceback is in the server's log
            print(f"--- server {number} ({server.url}) logged:\n{server.errors}")


async def test_two_processes_answer_as_one(servers):
    servers, dsn = servers
    urls = itertools.cycle(servers)
    async with aiohttp.ClientSession() as http:
        # the fixture was loaded once, though both processes started on the empty database together
        jobs = await (await http.get(f"{next(urls)}/api/v4/projects/1/jobs", headers=ADMIN)).json()
        assert [job["id"] for job in jobs] == [1]

        # 50 retries of one failed job, spread over both: one new job
        async def retry(url: str) -> int:
            async with http.post(f"{url}/api/v4/projects/1/jobs/1/retry", headers=ADMIN) as resp:
                return resp.status

        statuses = await asyncio.gather(*(retry(next(urls)) for _ in range(50)))
        assert sorted(statuses) == [201] + [403] * 49
        listed = await (await http.get(f"{next(urls)}/api/v4/projects/1/pipelines/1/jobs?include_retried=true",
                                       headers=ADMIN)).json()  # fmt: skip
        assert [job["name"] for job in listed].count("flaky") == 2

        # a pipeline of 30 pending jobs and 20 runners polling both processes: each job goes to exactly one
        created = await http.post(f"{next(urls)}/api/v4/projects/1/pipeline?ref=main", headers=ADMIN)
        assert created.status == 201
        runners = []
        for _ in range(20):
            async with http.post(f"{next(urls)}/api/v4/runners", json={"token": REGISTRATION}) as resp:
                assert resp.status == 201
                runners.append((await resp.json())["token"])

        async def poll(token: str, order: int) -> list[dict]:
            taken = []
            for attempt in itertools.count(order):
                url = servers[attempt % 2]
                async with http.post(f"{url}/api/v4/jobs/request", json={"token": token}) as resp:
                    if resp.status == 204:
                        return taken
                    assert resp.status == 201
                    taken.append(await resp.json())
            raise AssertionError("unreachable")

        claims = [job for taken in await asyncio.gather(*(poll(t, n) for n, t in enumerate(runners))) for job in taken]
        claimed = [job["id"] for job in claims]
        assert len(claimed) == len(set(claimed)) == JOBS + 1  # the 30, and the retried job's new attempt

        # log appends alternating between the processes give the exact log
        job = next(job for job in claims if job["job_info"]["name"] == "job-0")
        expected = b""
        for n in range(12):
            piece = f"line {n} from process {n % 2}\n".encode() * (n + 1)
            headers = {"JOB-TOKEN": job["token"], "Content-Range": f"{len(expected)}-{len(expected) + len(piece) - 1}"}
            async with http.patch(f"{servers[n % 2]}/api/v4/jobs/{job['id']}/trace", data=piece, headers=headers) as r:
                assert r.status == 202, await r.text()
            expected += piece
        for url in servers:
            async with http.get(f"{url}/api/v4/projects/1/jobs/{job['id']}/trace", headers=ADMIN) as resp:
                assert resp.status == 200 and await resp.read() == expected
            async with http.get(
                f"{url}/api/v4/projects/1/jobs/{job['id']}/trace", headers={**ADMIN, "Range": "bytes=-40"}
            ) as resp:
                assert resp.status == 206 and await resp.read() == expected[-40:]

        # an archive uploaded through one process downloads byte-identical from the other
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("out/report.txt", "made by job-0\n" * 1000)
        form = aiohttp.FormData()
        form.add_field("token", job["token"])
        form.add_field("file", archive.getvalue(), filename="artifacts.zip", content_type="application/zip")
        async with http.post(f"{servers[0]}/api/v4/jobs/{job['id']}/artifacts", data=form) as resp:
            assert resp.status == 201, await resp.text()
        async with http.get(f"{servers[1]}/api/v4/projects/1/jobs/{job['id']}/artifacts", headers=ADMIN) as resp:
            assert resp.status == 200 and await resp.read() == archive.getvalue()
        async with http.get(
            f"{servers[1]}/api/v4/projects/1/jobs/{job['id']}/artifacts/out/report.txt", headers=ADMIN
        ) as resp:
            assert resp.status == 200 and await resp.read() == b"made by job-0\n" * 1000

    # the sweeper runs in one process at a time: one lease, kept by one holder round after round
    conn = await asyncpg.connect(dsn)
    try:
        holders = []
        for _ in range(3):
            await asyncio.sleep(1.2)
            holders.append([tuple(r) for r in await conn.fetch("SELECT name, holder FROM leases ORDER BY name")])
    finally:
        await conn.close()
    assert [[name for name, _ in seen] for seen in holders] == [["sweeper"]] * 3
    assert len({seen[0][1] for seen in holders}) == 1

    # a token minted by the command line straight into PostgreSQL works on either process
    made = subprocess.run(
        [sys.executable, "-m", "jobsvc", "token", "create", "root", "--database-url", dsn, "--scope", "read_api"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    minted = {"PRIVATE-TOKEN": made.stdout.strip()}
    async with aiohttp.ClientSession() as http:
        for url in servers:
            async with http.get(f"{url}/api/v4/projects/1/jobs/1", headers=minted) as resp:
                assert resp.status == 200

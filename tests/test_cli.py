"""The jobsvc command: load, token create, settings from the environment, and serve on a real socket."""

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from jobsvc import cli
from jobsvc.settings import Config

GOOD = {
    "users": [{"username": "root", "admin": True}],
    "projects": [{"path": "g/p", "id": 1, "pipelines": [{"jobs": [{"id": 1, "name": "build"}]}]}],
}


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_load_and_load_again(tmp_path, capsys):
    fixture = write(tmp_path / "good.yaml", GOOD)
    assert cli.main(["load", str(fixture), "--data-dir", str(tmp_path / "d")]) == 0
    assert "loaded 1 users, 0 runners, 1 projects, 1 pipelines, 1 jobs" in capsys.readouterr().out
    assert cli.main(["load", str(fixture), "--data-dir", str(tmp_path / "d")]) == 0
    assert "already loaded" in capsys.readouterr().out


def test_bad_fixture_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = write(
        tmp_path / "bad.yaml",
        {"projects": [{"path": "g/p", "pipelines": [{"jobs": [{"name": "x", "status": "nope"}]}]}]},
    )
    assert cli.main(["load", str(bad), "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "projects[0].pipelines[0].jobs[0].status: Must be one of:" in err
    assert not (tmp_path / "d").exists()


def test_clash_exits_2(tmp_path, capsys):
    data_dir = str(tmp_path / "d")
    assert cli.main(["load", str(write(tmp_path / "a.yaml", GOOD)), "--data-dir", data_dir]) == 0
    other = dict(GOOD, users=[{"username": "someone"}])
    assert cli.main(["load", str(write(tmp_path / "b.yaml", other)), "--data-dir", data_dir]) == 2
    assert "projects[0].id: 1 already exists in the database" in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path, capsys):
    assert cli.main(["load", str(tmp_path / "nope.yaml"), "--data-dir", str(tmp_path / "d")]) == 2


async def test_token_create(tmp_path, capsys, aiohttp_client):
    from jobsvc.app import create_app

    data_dir = tmp_path / "d"
    assert await _in_thread(["load", str(write(tmp_path / "a.yaml", GOOD)), "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    assert await _in_thread(["token", "create", "root", "--scope", "read_api", "--data-dir", str(data_dir)]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("glpat-") and len(token) >= 20
    client = await aiohttp_client(create_app(Config(data_dir=data_dir)))
    resp = await client.get("/api/v4/user", headers={"PRIVATE-TOKEN": token})
    assert resp.status == 200 and (await resp.json())["username"] == "root"
    assert await _in_thread(["token", "create", "nobody", "--data-dir", str(data_dir)]) == 2


async def _in_thread(argv):
    import asyncio

    return await asyncio.to_thread(cli.main, argv)


def test_settings_from_environment_and_flags():
    args = cli.build_parser().parse_args(["serve", "--port", "9000"])
    values = cli.resolve(
        args,
        {
            "JOBSVC_PORT": "7000",
            "JOBSVC_HOST": "0.0.0.0",
            "JOBSVC_DEMO": "true",
            "JOBSVC_FIXTURES": f"a.yaml{os.pathsep}b.yaml",
        },
    )
    assert values["port"] == 9000 and values["host"] == "0.0.0.0" and values["demo"] is True
    assert values["fixtures"] == ["a.yaml", "b.yaml"]
    with pytest.raises(ValueError, match="JOBSVC_PORT"):
        cli.resolve(args, {"JOBSVC_PORT": "many"})


def test_serve_demo_on_a_real_socket(tmp_path):
    """`jobsvc serve --demo` starts, prints its URL and tokens, answers the README's curl line, and stops."""
    env = {**os.environ, "JOBSVC_DATA_DIR": str(tmp_path / "d")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobsvc", "serve", "--demo", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "listening on" in line:
                break
        url = lines[-1].split("listening on ")[1].split()[0]
        banner = "".join(lines)
        assert "glpat-demo-root-000000000000" in banner and "curl -H" in banner
        request = urllib.request.Request(
            f"{url}/api/v4/projects/1/jobs/8", headers={"PRIVATE-TOKEN": "glpat-demo-root-000000000000"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            import json

            job = json.load(resp)
        assert (job["id"], job["name"], job["pipeline"]["id"]) == (8, "rubocop", 6)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0

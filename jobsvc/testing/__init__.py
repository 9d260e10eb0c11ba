"""jobsvc in downstream tests: servers a test starts, a runner it plays, and the pytest plugin (docs/testing.md).

The names are imported when first used, so that pytest loading the plugin imports no server code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobsvc.testing.processes import ServerError
    from jobsvc.testing.runner import Runner, RunnerError, RunnerJob
    from jobsvc.testing.servers import DEMO, JobsvcServer, start_server

_WHERE = {
    "DEMO": "servers",
    "JobsvcServer": "servers",
    "start_server": "servers",
    "Runner": "runner",
    "RunnerJob": "runner",
    "RunnerError": "runner",
    "ServerError": "processes",
}
__all__ = ["DEMO", "JobsvcServer", "Runner", "RunnerError", "RunnerJob", "ServerError", "start_server"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"jobsvc.testing.{_WHERE[name]}"), name)

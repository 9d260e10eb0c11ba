"""jobsvc.pyz, the one-file build (.ci/build_pyz.py): built, then started by a Python that has none of jobsvc's
dependencies, in an environment without the venv."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import zipfile
from pathlib import Path

import pytest

from jobsvc import GITLAB_VERSION, __version__

pytestmark = pytest.mark.slow  # pip, shiv and a server in a child process

_SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "build_pyz.py"
_spec = importlib.util.spec_from_file_location("build_pyz", _SCRIPT)
assert _spec is not None and _spec.loader is not None
build_pyz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_pyz)


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> Path:
    return build_pyz.build(tmp_path_factory.mktemp("pyz") / "jobsvc.pyz")


def test_every_dependency_comes_from_the_file(pyz, tmp_path):
    """The plain Python may have some of them installed (orjson, say): the file's own copies are the ones used."""
    home = tmp_path / "home"
    env = {**build_pyz.bare_environment(home), "SHIV_INTERPRETER": "1"}  # shiv's bootstrap, then a Python prompt
    modules = ("jobsvc", "aiohttp", "aiohttp._http_parser", "multidict", "yarl", "orjson", "yaml", "marshmallow")
    script = f"import importlib\nprint('files:', [importlib.import_module(m).__file__ for m in {modules!r}])\n"
    run = subprocess.run(
        [build_pyz.plain_python(), str(pyz)], input=script, env=env, capture_output=True, text=True, timeout=120
    )
    assert "files: " in run.stdout, run.stdout + run.stderr
    files = ast.literal_eval(run.stdout.split("files: ", 1)[1].splitlines()[0])
    assert len(files) == len(modules)
    assert all(file.startswith(str(home / ".shiv")) for file in files), files


def test_the_file_holds_jobsvc_its_dependencies_and_the_schema(pyz):
    names = set(zipfile.ZipFile(pyz).namelist())
    assert "site-packages/jobsvc/cli.py" in names and "site-packages/jobsvc/demo/demo.yaml" in names
    assert "site-packages/share/jobsvc/schema.sql" in names
    assert any(name.startswith("site-packages/aiohttp/_http_parser") and name.endswith(".so") for name in names)
    assert not any(name.endswith(".pyc") for name in names)  # compiled on the machine it runs on
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_it_serves_the_demo_in_a_bare_environment(pyz, tmp_path):
    answer = build_pyz.smoke(pyz, tmp_path / "home")
    assert answer["version"] == f"{GITLAB_VERSION}-jobsvc" and answer["revision"] == f"jobsvc-{__version__}"
    extracted = [path.name for path in (tmp_path / "home" / ".shiv").iterdir() if path.is_dir()]
    assert len(extracted) == 1 and extracted[0].startswith("jobsvc.pyz_")  # under SHIV_ROOT, not ~/.shiv
    assert list((tmp_path / "home" / "tmp").iterdir()) == []  # the demo's temporary data directory is gone

"""Build jobsvc.pyz, one file that runs ``python3 jobsvc.pyz serve --demo`` where there is only Python.

    .venv/bin/python .ci/build_pyz.py [--output jobsvc.pyz] [--smoke]

Why shiv and not the stdlib's zipapp: Python imports pure-Python modules from inside a zip, but never an
extension module, and jobsvc's dependencies have compiled parts (aiohttp's C HTTP parser, which
``serve`` insists on, multidict, yarl, frozenlist, propcache, orjson). A zipapp would need extraction
code of its own; shiv's bootstrap does exactly that: on the first start it unpacks the bundled
site-packages once to ``~/.shiv`` (or ``$SHIV_ROOT``), in a folder named by the build's hash, and imports
from there. The compiled parts are the wheels of the Python that builds it, so the file runs on that
Python version and platform (a build with CPython 3.11 on x86_64 Linux runs on any CPython 3.11 there).

The build: jobsvc and its dependencies installed with ``pip install --target`` from a copy of the
source (so no build/ or egg-info is left in the work tree), then packed by shiv with ``jobsvc.cli:main``
as the entry point. ``--smoke`` then starts the file as a bare machine would (see ``smoke``).
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ("jobsvc", "setup.cfg", "pyproject.toml", "README.md", "schema.sql", "schema.postgres.sql")
DEMO_TOKEN = "glpat-demo-root-000000000000"  # root's token in jobsvc/demo/demo.yaml


def build(output: Path) -> Path:
    """Build the file at ``output``; pip and shiv run with this interpreter (shiv is in the test extra)."""
    with tempfile.TemporaryDirectory(prefix="jobsvc-pyz-") as work:
        source, site_packages = Path(work) / "source", Path(work) / "site-packages"
        source.mkdir()
        for name in SOURCE:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / name, source / name)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check"]
        subprocess.run([*pip, "--target", str(site_packages), str(source)], check=True)
        shutil.rmtree(site_packages / "bin", ignore_errors=True)  # console scripts pointing at this interpreter
        output.parent.mkdir(parents=True, exist_ok=True)
        shiv = [sys.executable, "-m", "shiv", "--site-packages", str(site_packages), "--reproducible"]
        shiv += ["--entry-point", "jobsvc.cli:main", "--python", "/usr/bin/env python3"]
        subprocess.run([*shiv, "--output-file", str(output)], check=True, stdout=subprocess.DEVNULL)
    return output


def bare_environment(home: Path) -> dict[str, str]:
    """What a machine with only Python gives a process: no venv on PATH, no PYTHONPATH; HOME, SHIV_ROOT and the
    temporary directory (where ``--demo`` keeps its data) all in ``home``."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "SHIV_ROOT": str(home / ".shiv"),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
    }


def plain_python() -> str:
    """The interpreter this one's venv (if any) was made from: the same version, none of the venv's packages."""
    return getattr(sys, "_base_executable", sys.executable)


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def smoke(pyz: Path, home: Path, timeout: float = 180.0) -> dict:
    """``python3 jobsvc.pyz serve --demo --port 0`` in a bare environment: wait for "listening on", GET
    /api/v4/version with the demo's root token, stop it with SIGTERM (exit 0). Returns the version answer."""
    home.mkdir(parents=True, exist_ok=True)
    command = [plain_python(), str(pyz), "serve", "--demo", "--port", "0"]
    proc = subprocess.Popen(
        command, cwd=home, env=bare_environment(home), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("jobsvc.pyz did not listen in time:\n" + "".join(output)) from None
            if line is None:
                raise RuntimeError(f"jobsvc.pyz exited with {proc.wait()}:\n" + "".join(output))
            output.append(line)
            if " listening on " in line:
                url = line.split(" listening on ", 1)[1].split()[0]
        request = urllib.request.Request(f"{url}/api/v4/version", headers={"PRIVATE-TOKEN": DEMO_TOKEN})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as resp:
            answer = json.loads(resp.read())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        reader.join(10)
        proc.stdout.close()
    if code != 0:
        raise RuntimeError(f"jobsvc.pyz exited with {code} on SIGTERM:\n" + "".join(output))
    return answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--output", type=Path, default=ROOT / "jobsvc.pyz")
    parser.add_argument("--smoke", action="store_true", help="then start its demo in a bare environment")
    args = parser.parse_args()
    pyz = build(args.output.resolve())
    print(f"built {pyz} ({pyz.stat().st_size // 1024} KiB)")
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix="jobsvc-pyz-home-") as home:
            answer = smoke(pyz, Path(home))
        print(f"{plain_python()} {pyz.name} serve --demo answered GET /api/v4/version: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

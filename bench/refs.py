"""The references bench/run measures jobsvc against, installed and started here, each pinned to a CPU.

* nginx (Debian's): one process, ``sendfile on``, ``tcp_nopush`` off (nginx's default), no access log,
  serving a directory: the ceiling of a static file or body on this machine.
* the minimal aiohttp app (``bench/min_app.py``): a fixed body, a ``pread`` tail, a ``FileResponse``.
* Prism and json-server from npm, the mock servers a user might pick instead of jobsvc for a local GitLab mock,
  installed once into a cache directory (``npm install --prefix``) at the pinned versions below, serving a canned
  20-job page: jobsvc's own page 1, byte for byte (json-server pretty-prints it).

``ensure_tools`` installs what is missing with apt-get when it runs as root. Every ``start_*`` returns the
process and its port; the caller stops it with ``common.stop_process``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import pinned, start_listening, stop_process

PRISM = "@stoplight/prism-cli@5.14.2"
JSON_SERVER = "json-server@0.17.4"
APT_TOOLS = {"nginx": "nginx", "wrk": "wrk", "curl": "curl", "unzip": "unzip", "taskset": "util-linux"}
NGINX_CONF = """\
master_process off;
daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    # tcp_nopush stays off (nginx's default): with it on, a Range tail whose start is not page-aligned
    # waited ~44 ms here (a delayed ACK) and one-stream downloads were slower.
    keepalive_requests 1000000;   # the default 1000 would make wrk reconnect
    types {{ application/json json; }}
    default_type application/octet-stream;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def _nginx() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def ensure_tools() -> None:
    """nginx, wrk, curl, unzip and taskset, from Debian's packages if missing (as root); SystemExit otherwise."""
    missing = [tool for tool in APT_TOOLS if (_nginx() if tool == "nginx" else shutil.which(tool)) is None]
    if not missing:
        return
    packages = sorted({APT_TOOLS[tool] for tool in missing})
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install -y {' '.join(packages)}")
    print(f"# installing {' '.join(packages)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], check=True, env=env)


def ensure_npm(prefix: Path) -> dict[str, str]:
    """Prism and json-server in ``prefix`` (installed on first use, ~20 s); their binaries by name."""
    bins = {"prism": prefix / "node_modules/.bin/prism", "json-server": prefix / "node_modules/.bin/json-server"}
    stamp = prefix / "installed.txt"
    wanted = f"{PRISM} {JSON_SERVER}\n"
    if not (all(b.exists() for b in bins.values()) and stamp.exists() and stamp.read_text() == wanted):
        if not shutil.which("npm"):
            raise SystemExit("npm not found: apt-get install -y nodejs npm")
        prefix.mkdir(parents=True, exist_ok=True)
        print(f"# npm install --prefix {prefix} {PRISM} {JSON_SERVER}", flush=True)
        cmd = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save", PRISM, JSON_SERVER]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        stamp.write_text(wanted)
    return {name: str(path) for name, path in bins.items()}


def npm_versions(prefix: Path) -> dict[str, str]:
    found = {}
    for name in ("@stoplight/prism-cli", "json-server"):
        package = prefix / "node_modules" / name / "package.json"
        found[name] = json.loads(package.read_text())["version"] if package.exists() else "?"
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(
    proc: subprocess.Popen,
    port: int,
    path: str,
    log: Path,
    timeout: float = 60,
    headers: dict[str, str] | None = None,
    interval: float = 0.1,
) -> None:
    """Until ``GET path`` answers 200, asking every ``interval`` s; SystemExit with the log if the process
    exits or it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                return
        except OSError:
            pass
        time.sleep(interval)
    stop_process(proc)
    raise SystemExit(f"{log.stem} did not answer GET {path}: {log.read_text(errors='replace')[-2000:]}")


def _spawn(cmd: list[str], log: Path, port: int, path: str) -> tuple[subprocess.Popen, int]:
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_http(proc, port, path, log)
    return proc, port


def start_nginx(root: Path, run: Path, cpu: int | None, probe: str) -> tuple[subprocess.Popen, int]:
    """nginx serving ``root`` on a free loopback port, its files under ``run``; ``probe``: a path that answers 200."""
    nginx = _nginx()
    if nginx is None:
        raise SystemExit("nginx not found: apt-get install -y nginx")
    port = free_port()
    conf = run / "nginx.conf"
    conf.write_text(NGINX_CONF.format(run=run, port=port, root=root))
    cmd = [*pinned(cpu), nginx, "-e", str(run / "error.log"), "-p", str(run), "-c", str(conf)]
    return _spawn(cmd, run / "nginx.log", port, probe)


def start_min_app(page: Path, directory: Path, run: Path, cpu: int | None) -> tuple[subprocess.Popen, int]:
    cmd = [*pinned(cpu), sys.executable, str(Path(__file__).with_name("min_app.py")), "--page", str(page)]
    return start_listening([*cmd, "--dir", str(directory)], run / "min_app.log", timeout=60)


def openapi_document(page: bytes, path: str) -> dict:
    """An OpenAPI document whose one operation answers ``page`` (Prism serves the example as it is)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "GitLab job list (a canned page)", "version": "1.0.0"},
        "paths": {
            path: {
                "get": {
                    "operationId": "listProjectJobs",
                    "parameters": [
                        {"name": "per_page", "in": "query", "schema": {"type": "integer"}},
                        {"name": "page", "in": "query", "schema": {"type": "integer"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "jobs",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "array", "items": {"type": "object"}},
                                    "example": json.loads(page),
                                }
                            },
                        }
                    },
                }
            }
        },
    }


def start_prism(binary: str, page: bytes, run: Path, cpu: int | None) -> tuple[subprocess.Popen, int, str]:
    """``prism mock -v warn`` on a document answering ``page`` at /api/v4/projects/1/jobs; process, port, path.

    ``-v warn``: Prism's default (info) logs two lines per request and serves about half as much."""
    route = "/api/v4/projects/{id}/jobs"
    document = run / "openapi.json"
    document.write_text(json.dumps(openapi_document(page, route)))
    port = free_port()
    cmd = [*pinned(cpu), binary, "mock", "-v", "warn", "-h", "127.0.0.1", "-p", str(port), str(document)]
    path = "/api/v4/projects/1/jobs?per_page=20"
    proc, port = _spawn(cmd, run / "prism.log", port, path)
    return proc, port, path


def start_json_server(binary: str, page: bytes, run: Path, cpu: int | None) -> tuple[subprocess.Popen, int, str]:
    """json-server on a database whose ``jobs`` are the page, answering it at /jobs; process, port, path."""
    db = run / "json-server-db.json"
    db.write_text(json.dumps({"jobs": json.loads(page)}))
    port = free_port()
    cmd = [*pinned(cpu), binary, "--quiet", "--host", "127.0.0.1", "--port", str(port), str(db)]
    proc, port = _spawn(cmd, run / "json-server.log", port, "/jobs")
    return proc, port, "/jobs"

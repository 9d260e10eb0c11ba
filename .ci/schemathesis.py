#!/usr/bin/env python3
"""CI: schemathesis against a real ``jobsvc serve`` on 127.0.0.1, checking the server against its own document.

The server runs on a free port with the demo data in a temporary directory (a registration token set,
so the runner API is exercised too); schemathesis loads GET /api/v4/openapi.json from it and runs
with a fixed seed and a bounded number of examples per operation. The server is stopped whatever
happens (SIGTERM, then SIGKILL), and the temporary directory removed. The exit code is schemathesis'.

Usage: .venv/bin/python .ci/schemathesis.py [extra schemathesis arguments, e.g. --max-examples 100]
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REGISTRATION_TOKEN = "demo-registration-token"  # the document's example for POST /runners
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
SEED = "20261201"
MAX_EXAMPLES = "25"  # per operation and phase: about two minutes on CI's two cores
START_TIMEOUT = 30
RUN_TIMEOUT = 900  # a hung run is stopped and fails the step


def _die_with_parent() -> None:
    """In the server's child process (Linux): SIGTERM it should the driver die without cleaning up (SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through main's finally, which stops the server


def start(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [str(BIN / "jobsvc"), "serve", "--demo", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", "0",
         "--registration-token", REGISTRATION_TOKEN, "--jobs-rate-limit", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, preexec_fn=_die_with_parent,
    )  # fmt: skip
    found: list[str] = []

    def read() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            if not found and "listening on " in line:
                found.append(line.split("listening on ", 1)[1].split()[0])
            elif found:
                sys.stderr.write("[jobsvc] " + line)  # tracebacks of 500s, for the log

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while not found:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("jobsvc serve did not start")
        time.sleep(0.05)
    return server, found[0]


def stop(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="jobsvc-schemathesis-") as temp:
        server = None
        try:
            server, url = start(Path(temp) / "var")
            command = [
                str(BIN / "schemathesis"), "--config-file", str(ROOT / ".ci" / "schemathesis.toml"),
                "run", f"{url}/api/v4/openapi.json", "--url", url,
                "--checks", CHECKS, "--seed", SEED, "--max-examples", MAX_EXAMPLES, "--workers", "1",
                "--request-timeout", "30",
                *argv,
            ]  # fmt: skip
            print("+", " ".join(command), flush=True)
            started = time.monotonic()
            try:
                code = subprocess.call(command, cwd=temp, timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"schemathesis did not finish in {RUN_TIMEOUT}s", flush=True)
                code = 124
            print(f"schemathesis exited {code} after {time.monotonic() - started:.0f}s", flush=True)
            return code
        finally:
            if server is not None:
                stop(server)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

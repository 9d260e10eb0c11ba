"""What the benchmarks share: CPU pinning, starting and stopping ``jobsvc serve``, wrk, sequential latency.

Every process started here is stopped by ``stop_process`` (SIGTERM, then SIGKILL after a grace period);
the scripts call it in ``finally``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# wrk's summary as one parseable line: requests, duration (µs), p50, p99 (µs), socket errors, non-2xx/3xx.
WRK_REPORT = """done = function(s, lat, req)
  local e = s.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", s.requests, s.duration, lat:percentile(50),
    lat:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""
LISTENING = " listening on http://127.0.0.1:"


def pinned(cpus: int | str | None) -> list[str]:
    """A ``taskset -c CPUS`` prefix (``0``, ``1`` or ``0,1``), or nothing without taskset or CPUs."""
    if cpus is None or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(cpus)]


def repin(pid: int, cpus: str) -> None:
    """Move a running process, all its threads and all its descendants to ``cpus`` (``taskset -a -p``)."""
    for each in [pid, *descendants(pid)]:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(each)], check=False, capture_output=True)


def descendants(pid: int) -> list[int]:
    """The pids of a process's children, grandchildren and so on (from /proc)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def jobsvc_serve(serve_args: Sequence[str], cpu: int | str | None = None, entry: Sequence[str] = ("-m", "jobsvc")):
    """The command line of ``jobsvc serve`` on 127.0.0.1 and a free port, pinned to ``cpu``.

    ``entry`` replaces ``-m jobsvc`` (a script that patches something, then runs the CLI)."""
    return [*pinned(cpu), sys.executable, *entry, "serve", "--host", "127.0.0.1", "--port", "0", *serve_args]


def start_jobsvc(
    serve_args: Sequence[str],
    log: Path,
    cpu: int | str | None = None,
    *,
    entry: Sequence[str] = ("-m", "jobsvc"),
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> tuple[subprocess.Popen, int]:
    """``jobsvc serve`` (see ``jobsvc_serve``) with its output in ``log``; it and its port once it listens."""
    return start_listening(jobsvc_serve(serve_args, cpu, entry), log, env=env, timeout=timeout)


def start_listening(
    cmd: Sequence[str], log: Path, *, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[subprocess.Popen, int]:
    """Run ``cmd`` with its output in ``log`` until it prints ``… listening on http://127.0.0.1:PORT``.

    Returns the process and PORT. One that exits or does not listen within ``timeout`` s is stopped, and the
    run ends with its output."""
    proc = spawn(cmd, log, env)
    return proc, wait_listening(proc, log, timeout)


def spawn(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``cmd`` in the background, its output (stdout and stderr) in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def wait_listening(proc: subprocess.Popen, log: Path, timeout: float = 120) -> int:
    """The port once ``proc`` has printed ``… listening on http://127.0.0.1:PORT`` in ``log``; a process that exits
    or does not listen within ``timeout`` s is stopped, and the run ends with its output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if LISTENING in line:
                return int(line.split(LISTENING)[1].split()[0].rstrip("/"))
        time.sleep(0.05)
    what = f"it exited with {proc.returncode}" if proc.returncode is not None else f"not listening after {timeout:g} s"
    stop_process(proc)
    raise SystemExit(f"{' '.join(proc.args)}: {what}; its output:\n{log.read_text(errors='replace')}")


def stop_process(proc: subprocess.Popen, sig: signal.Signals = signal.SIGTERM, grace: float = 10) -> None:
    """Send ``sig``, wait up to ``grace`` s, then SIGKILL: the process is gone when this returns."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def pin_self(cpu: int | None) -> bool:
    """Pin this process (and what it starts from now on) to ``cpu``, if the machine has it."""
    if cpu is None or not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) <= cpu:
        return False
    os.sched_setaffinity(0, {cpu})
    return True


# --- load -------------------------------------------------------------------------------------------


def write_wrk_script(directory: Path) -> Path:
    lua = directory / "report.lua"
    lua.write_text(WRK_REPORT)
    return lua


def wrk_command(
    url: str, headers: dict[str, str], conns: int, secs: float, lua: Path, cpus: int | str | None, timeout: int = 5
):
    """wrk's command line; wrk takes whole seconds only. A request that takes over ``timeout`` s is an error."""
    cmd = [*pinned(cpus), "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(secs))}s", "--timeout", f"{timeout}s"]
    cmd += ["-s", str(lua)]
    for key, value in headers.items():
        cmd += ["-H", f"{key}: {value}"]
    return [*cmd, url]


def wrk_result(stdout: str) -> dict:
    """The RESULT line of WRK_REPORT: req/s, p50 and p99 ms, errors, non-2xx/3xx and their sum ``bad``."""
    line = next((x for x in stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no RESULT line:\n{stdout}")
    requests, duration, p50, p99, errors, non2xx = map(int, line.split()[1:])
    return {
        "requests": requests,
        "secs": duration / 1e6,
        "rps": requests / (duration / 1e6),
        "p50": p50 / 1000,
        "p99": p99 / 1000,
        "errors": errors,
        "non2xx": non2xx,
        "bad": errors + non2xx,
    }


def run_wrk(
    url: str, headers: dict[str, str], conns: int, secs: float, lua: Path, cpus: int | str | None, timeout: int = 5
) -> dict:
    """One wrk run (one thread, ``conns`` connections, ``secs`` s), pinned to ``cpus``."""
    cmd = wrk_command(url, headers, conns, secs, lua, cpus, timeout)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=secs + timeout + 30)
    return wrk_result(done.stdout)


def run_wrks(
    urls: Sequence[str], headers: dict[str, str], conns: int, secs: float, lua: Path, cpus, timeout: int = 5
) -> dict:
    """One wrk per URL at the same time, ``conns`` connections each; their requests added up."""
    procs = [
        subprocess.Popen(wrk_command(url, headers, conns, secs, lua, cpus, timeout), stdout=subprocess.PIPE, text=True)
        for url in urls
    ]
    try:
        results = [wrk_result(proc.communicate(timeout=secs + timeout + 30)[0]) for proc in procs]
    finally:
        for proc in procs:
            stop_process(proc)
    secs_max = max(r["secs"] for r in results)
    return {
        "requests": sum(r["requests"] for r in results),
        "secs": secs_max,
        "rps": sum(r["rps"] for r in results),
        "p50": max(r["p50"] for r in results),
        "p99": max(r["p99"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "non2xx": sum(r["non2xx"] for r in results),
        "bad": sum(r["bad"] for r in results),
        "each_rps": [r["rps"] for r in results],
    }


def get(conn: http.client.HTTPConnection, path: str, headers: dict) -> tuple[int, bytes, http.client.HTTPResponse]:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, response.read(), response


def single(
    conn: http.client.HTTPConnection,
    path: str,
    headers: dict,
    n: int,
    warmup: int = 5,
    check: Callable[[int, bytes], bool] | None = None,
) -> tuple[float, float]:
    """p50 and p99 ms of n sequential requests on one keep-alive connection (after ``warmup`` unmeasured).

    ``check(status, body)`` is applied to every answer; one it rejects ends the run.
    """
    samples = []
    for index in range(warmup + n):
        began = time.perf_counter()
        status, body, _ = get(conn, path, headers)
        elapsed = (time.perf_counter() - began) * 1000
        if check is not None and not check(status, body):
            raise SystemExit(f"{path}: unexpected answer {status} with {len(body)} bytes: {body[:200]!r}")
        if index >= warmup:
            samples.append(elapsed)
    samples.sort()
    return statistics.median(samples), samples[min(n - 1, int(n * 0.99))]


def spread(values: Sequence[float], digits: int = 0) -> str:
    """``median [min–max]``, with thousands separators."""
    return f"{statistics.median(values):,.{digits}f} [{min(values):,.{digits}f}–{max(values):,.{digits}f}]"

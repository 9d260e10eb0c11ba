"""bench/run's measurements that are not a wrk run: curl downloads, memory, start-up, log appends.

* ``curl``: one GET into /dev/null (status, bytes, time to first byte, total).
* ``RssSampler``: a process's VmRSS every 20 ms, for the peak during a request.
* ``startup``: ``jobsvc serve --demo`` from spawn to its first answer, and its RSS a second later.
* ``appends``: 32 running jobs, one client task and keep-alive connection each, appending 16 KiB chunks to its
  log, each waiting for its 202, as a runner does; then every log read back over HTTP and compared with the
  chunks acknowledged (each chunk names its job and position, so a lost, repeated or unacknowledged chunk shows).
* ``synced_appends``: the same for a moment under ``strace -f -y``, counting the fdatasync/fsync calls on the
  logs against the 202s: whether each acknowledged append reached the disk, as far as a syscall count can say.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import descendants, pinned, start_listening, stop_process
from prepare import TRACE_JOBS, TRACE_USER_TOKEN, trace_job_token
from refs import free_port, wait_http

CHUNK = 16 * 1024
DEMO_TOKEN = "glpat-demo-root-000000000000"


def vm_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no VmRSS for {pid}")


class RssSampler(threading.Thread):
    """VmRSS of one process every ``interval`` s while running; ``peak`` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = vm_rss_mb(pid)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.peak = max(self.peak, vm_rss_mb(self.pid))
            except OSError:
                return

    def __enter__(self) -> RssSampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self.join(5)
        self.peak = max(self.peak, vm_rss_mb(self.pid))


def curl(url: str, headers: dict[str, str], cpu: int | None, max_time: float = 300) -> dict:
    """One GET with curl into /dev/null: status, bytes, time to first byte and total (s)."""
    cmd = [*pinned(cpu), "curl", "-sS", "--max-time", f"{max_time:g}", "-o", "/dev/null"]
    cmd += ["-w", "%{http_code} %{size_download} %{time_starttransfer} %{time_total}"]
    for key, value in headers.items():
        cmd += ["-H", f"{key}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=max_time + 30)
    status, size, ttfb, total = out.stdout.split()
    return {"status": int(status), "bytes": int(size), "ttfb": float(ttfb), "total": float(total)}


def jobsvc_command() -> list[str]:
    """``jobsvc`` as a user runs it: the console script next to this Python, else ``python -m jobsvc``."""
    script = Path(sys.executable).with_name("jobsvc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobsvc"]


def startup(runs: int, cpu: int | None, log_dir: Path) -> dict:
    """``jobsvc serve --demo`` ``runs`` times: seconds from spawn to the first 200 of ``GET /api/v4/version``
    (polled every 5 ms), the RSS 1 s after it, and any error line in its output."""
    seconds, rss, problems = [], [], []
    for run in range(runs):
        port = free_port()
        log = log_dir / f"demo-{run}.log"
        with log.open("w") as out:
            began = time.perf_counter()
            proc = subprocess.Popen(
                [*pinned(cpu), *jobsvc_command(), "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            wait_http(proc, port, "/api/v4/version", log, headers={"PRIVATE-TOKEN": DEMO_TOKEN}, interval=0.005)
            seconds.append(time.perf_counter() - began)
            time.sleep(1)
            rss.append(vm_rss_mb(proc.pid))
        finally:
            stop_process(proc)
        problems += error_lines(log)
    return {"seconds": seconds, "rss_mb": rss, "problems": problems}


ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


def error_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if ERROR_LINE.search(line)]


# --- log appends ------------------------------------------------------------------------------------


def chunk_for(job: int, number: int) -> bytes:
    """The ``number``-th 16 KiB chunk of job ``job``'s log: it names both, so each chunk is told apart."""
    head = f"job {job} chunk {number:08d} ".encode()
    return (head * (CHUNK // len(head) + 1))[: CHUNK - 1] + b"\n"


def start_trace_server(
    data_dir: Path, fixture: Path, cpu: int | None, wrapper: list[str] | None = None, command: list[str] | None = None
) -> tuple[subprocess.Popen, int]:
    """jobsvc on a fresh data directory with the 32 running jobs (``wrapper``: e.g. strace in front; ``command``:
    another way to run jobsvc's CLI than ``jobsvc``)."""
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [*pinned(cpu), *(wrapper or []), *(command or jobsvc_command()), "serve", "--host", "127.0.0.1"]
    cmd += ["--port", "0"]
    cmd += ["--data-dir", str(data_dir), "--fixtures", str(fixture)]
    return start_listening(cmd, data_dir.parent / f"{data_dir.name}.log", timeout=120)


async def append_load(port: int, secs: float) -> dict:
    import aiohttp

    url = f"http://127.0.0.1:{port}/api/v4/jobs"
    latencies: list[float] = []
    failures: dict[int, int] = {}
    acked: list[int] = [0] * TRACE_JOBS
    stop_at = 0.0

    async def runner(index: int, session: aiohttp.ClientSession) -> None:
        offset = 0
        while time.monotonic() < stop_at:
            chunk = chunk_for(index, acked[index])
            headers = {"JOB-TOKEN": trace_job_token(index), "Content-Range": f"{offset}-{offset + CHUNK - 1}"}
            began = time.perf_counter()
            async with session.patch(f"{url}/{100 + index}/trace", data=chunk, headers=headers) as resp:
                await resp.read()
                if resp.status != 202:
                    failures[resp.status] = failures.get(resp.status, 0) + 1
                    offset = int(resp.headers.get("Range", "0-0").split("-")[1])
                    continue
            latencies.append(time.perf_counter() - began)
            offset += CHUNK
            acked[index] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=TRACE_JOBS)) as session:
        for index in range(TRACE_JOBS):  # one connection each, opened before the clock starts: an empty PATCH
            headers = {"JOB-TOKEN": trace_job_token(index), "Content-Range": "0-0"}
            async with session.patch(f"{url}/{100 + index}/trace", data=b"", headers=headers) as resp:
                await resp.read()
        began = time.monotonic()
        stop_at = began + secs
        await asyncio.gather(*(runner(i, session) for i in range(TRACE_JOBS)))
        elapsed = time.monotonic() - began
    latencies.sort()
    total = sum(acked)
    return {
        "appends_per_s": total / elapsed,
        "appends": total,
        "acked": acked,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "failures": failures,
    }


def read_back(port: int, acked: list[int]) -> dict:
    """Every log over ``GET /projects/1/jobs/:id/trace`` against the chunks acknowledged: lost or extra bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    wrong = []
    try:
        for index, count in enumerate(acked):
            conn.request(
                "GET", f"/api/v4/projects/1/jobs/{100 + index}/trace", headers={"PRIVATE-TOKEN": TRACE_USER_TOKEN}
            )
            response = conn.getresponse()
            body = response.read()
            expected = b"".join(chunk_for(index, n) for n in range(count))
            if response.status != 200 or body != expected:
                wrong.append(f"job {100 + index}: {response.status}, {len(body)} bytes against {len(expected)}")
    finally:
        conn.close()
    return {"intact": not wrong, "wrong": wrong}


def appends(data_dir: Path, fixture: Path, secs: float, cpu: int | None) -> dict:
    """One appends run on a fresh server: appends/s, latencies, the read-back check, the server's error lines."""
    proc, port = start_trace_server(data_dir, fixture, cpu)
    try:
        result = asyncio.run(append_load(port, secs))
        result.update(read_back(port, result["acked"]))
    finally:
        stop_process(proc)
    result["problems"] = error_lines(data_dir.parent / f"{data_dir.name}.log")
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


# With -f, a call that another thread interrupts is split: "fdatasync(7</…/traces/100.log> <unfinished ...>",
# then "<... fdatasync resumed>) = 0". So the calls are counted where they start, and failures apart.
SYNC_START = re.compile(r"\b(?:fdatasync|fsync)\(\d+<[^>]*/traces/[^>]*>")
SYNC_FAILED = re.compile(r"(?:fdatasync|fsync)(?:\(| resumed>).*= -1 ")


def synced_appends(data_dir: Path, fixture: Path, secs: float, cpu: int | None) -> dict | None:
    """The appends for ``secs`` under ``strace -f -y -e trace=fdatasync,fsync`` (slow: not a speed figure):
    the 202s counted, and the sync calls that succeeded on a file under traces/. None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    out = data_dir.parent / f"{data_dir.name}.strace"
    wrapper = [strace, "-f", "-qq", "-y", "-e", "trace=fdatasync,fsync", "-o", str(out)]
    proc, port = start_trace_server(data_dir, fixture, cpu, wrapper)
    try:
        before = out.read_text(errors="replace").count("\n") if out.exists() else 0
        result = asyncio.run(append_load(port, secs))
        time.sleep(0.2)
        lines = out.read_text(errors="replace").splitlines()[before:]
    finally:
        # SIGTERM to strace would only detach it and leave jobsvc running: stop jobsvc, then strace ends
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            for pid in descendants(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        stop_process(proc)
    syncs = sum(1 for line in lines if SYNC_START.search(line))
    failed = sum(1 for line in lines if SYNC_FAILED.search(line))
    shutil.rmtree(data_dir, ignore_errors=True)
    out.unlink(missing_ok=True)
    return {
        "appends": result["appends"],
        "log_syncs": syncs,
        "failed_syncs": failed,
        "durable": syncs >= result["appends"] > 0 and not failed,
    }

#!/usr/bin/env python3
"""Artifact and log downloads: full archive vs nginx, Range tails, one file out of a 1 GiB zip, server RSS.

    .venv/bin/python bench/artifacts_bench.py [--dir /tmp/jobsvc-bench/artifacts] [--rounds 5]

In one run:

1. Generates the data if it is missing (gen_artifacts.py: a 1 GiB zip with 10,000 entries, a
   10 MB zip, a 500 MiB and a 1 MiB log, a fixture) and loads the fixture into ``DIR/store`` with
   ``python -m jobsvc load`` in its own process (the loader reads each file whole, so it is kept
   out of the server whose memory is measured; its own peak RSS is reported).
2. Starts ``jobsvc serve`` on ``DIR/store`` and nginx (sendfile on, one process) with its root
   at the same directory, both on loopback and pinned to --server-cpu. Both stay up; only one of
   them is measured at any moment. Clients (curl, wrk, this process) are pinned to --client-cpu.
3. Checks the bytes once: SHA-256 of the whole archive and of both big members as jobsvc sends
   them, and every Range tail against the file on disk.
4. Runs --rounds interleaved rounds of
   (a) the whole 1 GiB archive with curl, 1 connection, --downloads times from each server in
       alternating order (the round's figure is the median), with the server's CPU use;
   (b) ``Range: bytes=-65536`` of the 1 GiB and 10 MB archives and of the 500 MiB and 1 MiB logs
       (jobsvc, and nginx for the big ones): sequential keep-alive latency, then wrk req/s;
   (c) ``GET /projects/1/jobs/1/artifacts/logs/big.log`` (100 MiB, deflated) and
       ``.../logs/stored.log`` (100 MiB, stored) with curl: time to first byte and total,
       against ``unzip -p`` of the same member (pinned to the server's core, output to /dev/null,
       and once more into a pipe for its time to first byte).
5. Stresses the server once: 4 deflated extractions, 2 stored ones and 2 full downloads at
   the same time, then 4 extractions cut off by the client after 0.1 s.

A thread samples the server's VmRSS (and VmHWM, Threads) from /proc every 20 ms for the whole
run. Prints medians over rounds and ratios taken within each round. Every process started here
is stopped in all cases (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import gen_artifacts
from common import WRK_REPORT, pinned, run_wrk, stop_process
from list_bench import start_server

TAIL = 65536
RSS_LIMIT_MB = 150
PROJECT = 1
BIG_JOB, SMALL_JOB = 1, 2
DEFLATED_MEMBER, STORED_MEMBER = "logs/big.log", "logs/stored.log"
NGINX_CONF = """\
master_process off;
daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    # tcp_nopush stays off (nginx's default). With it on, a Range tail whose start is not
    # page-aligned waited ~44 ms here (delayed ACK) and one-stream downloads were slower.
    keepalive_requests 1000000;   # the default 1000 would make wrk reconnect
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


# --- data and processes ----------------------------------------------------------------------------


def load_fixture(folder: Path) -> dict:
    """``jobsvc load`` in a child process; returns its wall time, peak RSS and output."""
    cmd = [sys.executable, "-m", "jobsvc", "load", str(folder / "fixture.yaml"), "--data-dir", str(folder / "store")]
    began = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    if proc.returncode != 0:
        raise SystemExit(f"jobsvc load failed ({proc.returncode}):\n{out}")
    maxrss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    return {"seconds": round(time.monotonic() - began, 1), "children_maxrss_mb": round(maxrss_mb, 1), "output": summary}


def store_paths(store: Path) -> dict[str, Path]:
    """Where the loader put each job's archive and log."""
    with sqlite3.connect(f"file:{store / 'jobsvc.sqlite3'}?mode=ro", uri=True) as con:
        rows = dict(
            con.execute("SELECT job_id, store_key FROM job_artifacts WHERE file_type = 'archive' AND job_id IN (1, 2)")
        )
    if set(rows) != {BIG_JOB, SMALL_JOB}:
        raise SystemExit(f"the store in {store} does not hold the bench jobs' archives: {rows}")
    return {
        "big.zip": store / rows[BIG_JOB],
        "small.zip": store / rows[SMALL_JOB],
        "big.log": store / "traces" / f"{BIG_JOB}.log",
        "small.log": store / "traces" / f"{SMALL_JOB}.log",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_nginx(root: Path, run: Path, cpu: int) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise SystemExit("nginx not found: apt-get install -y nginx")
    for _ in range(3):  # the free port may be taken between the probe and nginx's bind
        port = free_port()
        conf = run / "nginx.conf"
        conf.write_text(NGINX_CONF.format(run=run, port=port, root=root))
        log = (run / "nginx.out").open("w")
        cmd = [*pinned(cpu), nginx, "-e", str(run / "error.log"), "-p", str(run), "-c", str(conf)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, port
            except OSError:
                time.sleep(0.05)
        stop_process(proc)
    raise SystemExit(f"nginx did not start: {(run / 'error.log').read_text() if (run / 'error.log').exists() else ''}")


class RssSampler(threading.Thread):
    """VmRSS, VmHWM and Threads of one process every ``interval`` s; the maximum per phase."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.phase = "start"
        self.max_rss: dict[str, float] = {}
        self.samples = 0
        self.hwm = 0.0
        self._done = threading.Event()

    def read(self) -> dict[str, float]:
        fields = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    fields[key] = float(value.split()[0]) / (1024 if key != "Threads" else 1)
        return fields

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                fields = self.read()
            except OSError:
                return
            self.samples += 1
            self.hwm = max(self.hwm, fields["VmHWM"])
            self.max_rss[self.phase] = max(self.max_rss.get(self.phase, 0.0), fields["VmRSS"])

    def stop(self) -> None:
        self._done.set()
        self.join(5)


# --- clients ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def curl(url: str, headers: dict[str, str], cpu: int, max_time: float = 300) -> dict:
    """One GET with curl into /dev/null: status, bytes, time to first byte and total (s)."""
    cmd = [*pinned(cpu), "curl", "-sS", "--max-time", f"{max_time:g}", "-o", "/dev/null"]
    cmd += ["-w", "%{http_code} %{size_download} %{time_starttransfer} %{time_total}"]
    for key, value in headers.items():
        cmd += ["-H", f"{key}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=max_time + 30)
    status, size, ttfb, total = out.stdout.split()
    return {"status": int(status), "bytes": int(size), "ttfb": float(ttfb), "total": float(total), "rc": out.returncode}


def fetch_sha256(port: int, path: str, headers: dict[str, str]) -> tuple[int, int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        digest, size, buffer = hashlib.sha256(), 0, bytearray(1 << 20)
        view = memoryview(buffer)
        while n := response.readinto(buffer):
            digest.update(view[:n])
            size += n
        return response.status, size, digest.hexdigest()
    finally:
        conn.close()


def unzip_total(archive: Path, member: str, cpu: int) -> float:
    """Wall time of ``unzip -p archive member > /dev/null``, pinned to ``cpu``."""
    began = time.perf_counter()
    subprocess.run(
        [*pinned(cpu), "unzip", "-p", str(archive), member], stdout=subprocess.DEVNULL, check=True, timeout=120
    )
    return time.perf_counter() - began


def unzip_piped(archive: Path, member: str, cpu: int) -> dict:
    """``unzip -p`` into a pipe read here: time to its first byte, total, bytes."""
    began = time.perf_counter()
    proc = subprocess.Popen([*pinned(cpu), "unzip", "-p", str(archive), member], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        buffer, size, ttfb = bytearray(1 << 20), 0, None
        while n := proc.stdout.readinto(buffer):
            if ttfb is None:
                ttfb = time.perf_counter() - began
            size += n
        proc.wait(60)
        return {"ttfb": ttfb or 0.0, "total": time.perf_counter() - began, "bytes": size}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def latency(port: int, path: str, headers: dict[str, str], n: int, tail: bool) -> tuple[float, float]:
    """p50 and p99 ms of n sequential requests (``Range: bytes=-65536`` if ``tail``) on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        fields = {**headers, "Range": f"bytes=-{TAIL}"} if tail else headers
        samples = []
        for index in range(n + 10):
            began = time.perf_counter()
            conn.request("GET", path, headers=fields)
            response = conn.getresponse()
            body = response.read()
            if (response.status, len(body)) != (206, TAIL) if tail else response.status != 200:
                raise SystemExit(f"{path}: {response.status} with {len(body)} bytes")
            if index >= 10:  # the first 10 warm up
                samples.append((time.perf_counter() - began) * 1000)
        samples.sort()
        return statistics.median(samples), samples[min(n - 1, int(n * 0.99))]
    finally:
        conn.close()


# --- the run ---------------------------------------------------------------------------------------


def check_bytes(
    api: int, web: int, token: dict, nginx_paths: dict, files: dict[str, Path], manifest: dict, cpu: int
) -> dict:
    """Everything jobsvc sends is the source's bytes; returns the cold (first) extraction timings."""
    checks = {}
    cold = curl(f"http://127.0.0.1:{api}{api_path('member', DEFLATED_MEMBER)}", token, cpu)
    status, size, digest = fetch_sha256(api, api_path("archive"), token)
    checks["archive"] = status == 200 and size == manifest["files"]["big.zip"]["size"]
    checks["archive"] &= digest == manifest["files"]["big.zip"]["sha256"]
    for member in (DEFLATED_MEMBER, STORED_MEMBER):
        expected = manifest["members"]["big.zip"][member]
        status, size, digest = fetch_sha256(api, api_path("member", member), token)
        checks[member] = status == 200 and size == expected["size"] and digest == expected["sha256"]
    for name, (port, path, fields) in tail_targets(api, web, token, nginx_paths).items():
        source = files[name.split()[1]]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path, headers={**fields, "Range": f"bytes=-{TAIL}"})
        response = conn.getresponse()
        body, size = response.read(), source.stat().st_size
        conn.close()
        with source.open("rb") as handle:
            handle.seek(size - TAIL)
            expected = handle.read()
        content_range = response.getheader("Content-Range")
        checks[f"tail {name}"] = response.status == 206 and body == expected
        checks[f"tail {name}"] &= content_range == f"bytes {size - TAIL}-{size - 1}/{size}"
    out = subprocess.run(["unzip", "-p", str(files["big.zip"]), DEFLATED_MEMBER], capture_output=True, timeout=120)
    checks["unzip -p"] = (
        hashlib.sha256(out.stdout).hexdigest() == manifest["members"]["big.zip"][DEFLATED_MEMBER]["sha256"]
    )
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise SystemExit(f"wrong bytes: {failed}")
    print(f"# bytes checked: {', '.join(checks)}", flush=True)
    return cold


def api_path(kind: str, member: str = "", job: int = BIG_JOB) -> str:
    base = f"/api/v4/projects/{PROJECT}/jobs/{job}"
    return {"archive": f"{base}/artifacts", "member": f"{base}/artifacts/{member}", "trace": f"{base}/trace"}[kind]


def reference_targets(api: int, token: dict) -> dict[str, tuple[int, str, dict]]:
    """jobsvc's own requests without a file: auth only, and auth + the project and job lookups (JSON)."""
    return {
        "jobsvc GET /version": (api, "/api/v4/version", token),
        "jobsvc GET job": (api, f"/api/v4/projects/{PROJECT}/jobs/{BIG_JOB}", token),
    }


def tail_targets(api: int, web: int, token: dict, nginx_paths: dict) -> dict[str, tuple[int, str, dict]]:
    """name -> (port, path, headers); the second word of the name is the file."""
    return {
        "jobsvc big.zip": (api, api_path("archive"), token),
        "jobsvc small.zip": (api, api_path("archive", job=SMALL_JOB), token),
        "jobsvc big.log": (api, api_path("trace"), token),
        "jobsvc small.log": (api, api_path("trace", job=SMALL_JOB), token),
        "nginx big.zip": (web, nginx_paths["big.zip"], {}),
        "nginx big.log": (web, nginx_paths["big.log"], {}),
    }


def stress(api: int, token: dict, cpu: int, sampler: RssSampler, archive_size: int) -> dict:
    """Concurrent downloads, then extractions the client abandons; threads must come back down."""
    threads_before = sampler.read()["Threads"]
    urls = [api_path("member", DEFLATED_MEMBER)] * 4 + [api_path("member", STORED_MEMBER)] * 2
    urls += [api_path("archive")] * 2
    sizes = [100 << 20] * 6 + [archive_size] * 2
    began = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*pinned(cpu), "curl", "-sS", "--max-time", "120", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"]
            + ["-H", f"PRIVATE-TOKEN: {token['PRIVATE-TOKEN']}", f"http://127.0.0.1:{api}{url}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    results = []
    for proc in procs:
        try:
            results.append((proc.communicate(timeout=180)[0].split() + ["?", "0"])[:2])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    wall = time.perf_counter() - began
    aborted = [curl(f"http://127.0.0.1:{api}{urls[0]}", token, cpu, max_time=0.1) for _ in range(4)]
    deadline, threads_after = time.monotonic() + 10, sampler.read()["Threads"]
    while threads_after > threads_before and time.monotonic() < deadline:
        time.sleep(0.1)
        threads_after = sampler.read()["Threads"]
    after = curl(f"http://127.0.0.1:{api}{urls[0]}", token, cpu)
    return {
        "concurrent": len(urls),
        "wall_s": wall,
        "statuses": [r[0] for r in results],
        "bytes": [int(r[1]) for r in results],
        "complete": [r[0] for r in results] == ["200"] * len(urls) and [int(r[1]) for r in results] == sizes,
        "aborted_bytes": [a["bytes"] for a in aborted],
        "threads_before": threads_before,
        "threads_after": threads_after,
        "after_ok": after["status"] == 200 and after["bytes"] > 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/jobsvc-bench/artifacts"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--downloads", type=int, default=3, help="1 GiB downloads per server and round (median)")
    parser.add_argument("--single", type=int, default=200, help="sequential Range requests per URL and round")
    parser.add_argument("--wrk-secs", type=float, default=3, help="wrk seconds per Range URL and round; 0: no wrk")
    parser.add_argument("--conns", type=int, default=64, help="wrk connections for the Range tails")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    for tool in ("curl", "unzip") + (("wrk",) if args.wrk_secs else ()):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install -y nginx wrk curl unzip")
    if (os.cpu_count() or 1) > max(args.server_cpu, args.client_cpu):
        os.sched_setaffinity(0, {args.client_cpu})
    else:
        print("warning: not enough CPUs to pin server and client apart; numbers will be noisy", file=sys.stderr)

    manifest = gen_artifacts.generate(args.dir)
    loaded = load_fixture(args.dir)
    print(
        f"# jobsvc load: {loaded['output'].strip()} ({loaded['seconds']} s, peak RSS of the loader "
        f"{loaded['children_maxrss_mb']:.0f} MB)",
        flush=True,
    )
    store = (args.dir / "store").resolve()
    files = store_paths(store)
    nginx_paths = {name: "/" + str(path.relative_to(store)) for name, path in files.items()}
    token = {"PRIVATE-TOKEN": manifest["token"]}
    big_zip = files["big.zip"]
    results: dict = {"manifest_files": manifest["files"], "load": loaded, "rounds": []}
    results["args"] = {key: str(value) for key, value in vars(args).items()}

    with tempfile.TemporaryDirectory(prefix="jobsvc-artifacts-bench-") as tmp:
        run = Path(tmp)
        lua = run / "report.lua"
        lua.write_text(WRK_REPORT)
        server = nginx = sampler = None
        try:
            server, api = start_server(store, args.server_cpu, run / "server.log")
            sampler = RssSampler(server.pid)
            results["rss_at_start_mb"] = sampler.read()["VmRSS"]
            sampler.start()
            nginx, web = start_nginx(store, run, args.server_cpu)
            print(
                f"# jobsvc pid {server.pid} on :{api}, nginx pid {nginx.pid} on :{web}; "
                f"RSS at start {results['rss_at_start_mb']:.1f} MB",
                flush=True,
            )
            for path in files.values():  # page cache, for both servers alike
                with path.open("rb") as handle:
                    while handle.read(8 << 20):
                        pass

            sampler.phase = "check"
            cold = check_bytes(api, web, token, nginx_paths, files, manifest, args.client_cpu)
            results["cold_extraction"] = cold
            print(
                f"# first extraction (parses the 10,000-entry central directory): TTFB {cold['ttfb'] * 1000:.1f} ms, "
                f"total {cold['total']:.3f} s",
                flush=True,
            )
            curl(f"http://127.0.0.1:{web}{nginx_paths['big.zip']}", {}, args.client_cpu)  # warm-up
            tails = tail_targets(api, web, token, nginx_paths)
            for name, (port, path, fields) in (tails | reference_targets(api, token)).items():
                latency(port, path, fields, 20, tail=name in tails)
                if args.wrk_secs:
                    if name in tails:
                        fields = {**fields, "Range": f"bytes=-{TAIL}"}
                    run_wrk(f"http://127.0.0.1:{port}{path}", fields, args.conns, 1, lua, args.client_cpu)

            pids = {"jobsvc": server.pid, "nginx": nginx.pid}
            for round_no in range(1, args.rounds + 1):
                results["rounds"].append(
                    one_round(round_no, args, api, web, token, nginx_paths, big_zip, lua, sampler, pids)
                )

            sampler.phase = "stress"
            time.sleep(1)
            results["stress"] = stress(api, token, args.client_cpu, sampler, big_zip.stat().st_size)
            sampler.phase = "end"
            time.sleep(0.5)
            final = sampler.read()
            results["vmhwm_mb"] = final["VmHWM"]
            results["rss_end_mb"] = final["VmRSS"]
        finally:
            if sampler is not None:
                sampler.stop()
            for proc in (nginx, server):
                if proc is not None:
                    stop_process(proc)
        results["rss_max_by_phase_mb"] = sampler.max_rss if sampler else {}
        results["rss_samples"] = sampler.samples if sampler else 0
        log_text = (run / "server.log").read_text(errors="replace")
        results["server_log_problems"] = [
            line for line in log_text.splitlines() if "Traceback" in line or "ERROR" in line or "Error" in line
        ]
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def one_round(
    round_no: int,
    args: argparse.Namespace,
    api: int,
    web: int,
    token: dict,
    nginx_paths: dict,
    big_zip: Path,
    lua: Path,
    sampler: RssSampler,
    pids: dict[str, int],
) -> dict:
    cpu, result = args.client_cpu, {"round": round_no}
    time.sleep(1)
    sampler.phase = "download"
    order = ["nginx", "jobsvc"] if round_no % 2 else ["jobsvc", "nginx"]
    downloads = {
        "nginx": (f"http://127.0.0.1:{web}{nginx_paths['big.zip']}", {}),
        "jobsvc": (f"http://127.0.0.1:{api}{api_path('archive')}", token),
    }
    speeds: dict[str, list[float]] = {name: [] for name in order}
    busy: dict[str, list[float]] = {name: [] for name in order}
    for index in range(args.downloads):
        for name in order if index % 2 == 0 else order[::-1]:
            before = cpu_seconds(pids[name])
            got = curl(*downloads[name], cpu)
            if got["status"] != 200 or got["bytes"] != big_zip.stat().st_size:
                raise SystemExit(f"round {round_no}: {name} download: {got}")
            speeds[name].append(got["bytes"] / got["total"] / 1e6)
            busy[name].append((cpu_seconds(pids[name]) - before) / got["total"])
    for name in order:
        result[f"download {name}"] = statistics.median(speeds[name])
        result[f"download {name} samples"] = speeds[name]
        result[f"download {name} server busy"] = statistics.median(busy[name])
    result["download ratio"] = result["download jobsvc"] / result["download nginx"]

    sampler.phase = "range"
    tails = tail_targets(api, web, token, nginx_paths)
    targets = tails | reference_targets(api, token)
    for name, (port, path, fields) in targets.items():
        result[f"latency {name}"] = latency(port, path, fields, args.single, tail=name in tails)
    if args.wrk_secs:
        time.sleep(0.5)
        for name, (port, path, fields) in targets.items():
            if name in tails:
                fields = {**fields, "Range": f"bytes=-{TAIL}"}
            result[f"wrk {name}"] = run_wrk(
                f"http://127.0.0.1:{port}{path}", fields, args.conns, args.wrk_secs, lua, cpu
            )
        time.sleep(1)  # let queued work drain before the timed extraction

    sampler.phase = "extract"
    for member, label in ((DEFLATED_MEMBER, "deflated"), (STORED_MEMBER, "stored")):
        got = curl(f"http://127.0.0.1:{api}{api_path('member', member)}", token, cpu)
        if got["status"] != 200 or got["bytes"] != 100 << 20:
            raise SystemExit(f"round {round_no}: extraction of {member}: {got}")
        result[f"extract {label} jobsvc"] = got
        result[f"extract {label} unzip"] = unzip_total(big_zip, member, args.server_cpu)
        result[f"extract {label} unzip piped"] = unzip_piped(big_zip, member, args.server_cpu)

    extract = result["extract deflated jobsvc"]
    print(
        f"round {round_no}: download nginx {result['download nginx']:,.0f} MB/s, "
        f"jobsvc {result['download jobsvc']:,.0f} MB/s ({result['download ratio']:.2f}); tail p50 big/small zip "
        f"{result['latency jobsvc big.zip'][0]:.2f}/{result['latency jobsvc small.zip'][0]:.2f} ms, "
        f"log {result['latency jobsvc big.log'][0]:.2f}/{result['latency jobsvc small.log'][0]:.2f} ms; "
        f"extract deflated TTFB {extract['ttfb'] * 1000:.1f} ms total {extract['total']:.3f} s vs unzip "
        f"{result['extract deflated unzip']:.3f} s; stored {result['extract stored jobsvc']['total']:.3f} s vs "
        f"{result['extract stored unzip']:.3f} s; max RSS so far {max(sampler.max_rss.values()):.1f} MB",
        flush=True,
    )
    return result


# --- the report ------------------------------------------------------------------------------------


def spread(values: list[float], fmt: str = ",.0f") -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def report(results: dict) -> None:
    rounds = results["rounds"]
    col = lambda key: [r[key] for r in rounds]  # noqa: E731
    print(f"\n{len(rounds)} interleaved rounds; medians [min–max] over rounds; ratios taken within each round\n")

    downloads = len(rounds[0]["download nginx samples"])
    print(
        f"Full download of the 1 GiB archive, curl, 1 connection (MB/s; median of {downloads} per server and round)\n"
    )
    print("| round | nginx (sendfile) | jobsvc | jobsvc / nginx | server core busy: nginx / jobsvc |")
    print("| --- | --- | --- | --- | --- |")
    for r in rounds:
        print(
            f"| {r['round']} | {r['download nginx']:,.0f} | {r['download jobsvc']:,.0f} | {r['download ratio']:.2f} "
            f"| {r['download nginx server busy']:.0%} / {r['download jobsvc server busy']:.0%} |"
        )
    print(
        f"| **median** | {spread(col('download nginx'))} | {spread(col('download jobsvc'))} | "
        f"**{spread(col('download ratio'), '.2f')}** | {statistics.median(col('download nginx server busy')):.0%} / "
        f"{statistics.median(col('download jobsvc server busy')):.0%} |"
    )

    print("\nRange: bytes=-65536 (and two jobsvc requests without a file, for reference)\n")
    print(
        "| request | single p50 / p99 ms | p50 vs the small file | wrk req/s | req/s vs the small file "
        "| req/s vs nginx, same file | req/s vs jobsvc GET job |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    pairs = {"big.zip": "small.zip", "big.log": "small.log"}

    def ratio(a: str, b: str, key: str) -> str:
        """a / b within each round, median [min–max]: p50 latency (key "latency") or req/s (key "wrk")."""
        if f"{key} {a}" not in rounds[0] or f"{key} {b}" not in rounds[0]:
            return ""
        if key == "latency":
            return spread([r[f"latency {a}"][0] / r[f"latency {b}"][0] for r in rounds], ".2f")
        return spread([r[f"wrk {a}"]["rps"] / r[f"wrk {b}"]["rps"] for r in rounds], ".2f")

    for name in [key.split(" ", 1)[1] for key in rounds[0] if key.startswith("latency ")]:
        server, file = name.split(" ", 1)
        small = f"jobsvc {pairs[file]}" if server == "jobsvc" and file in pairs else ""
        nginx = f"nginx {file}" if server == "jobsvc" else ""
        job = "jobsvc GET job" if server == "jobsvc" else ""
        p50 = statistics.median(r[f"latency {name}"][0] for r in rounds)
        p99 = statistics.median(r[f"latency {name}"][1] for r in rounds)
        rps = spread([r[f"wrk {name}"]["rps"] for r in rounds]) if f"wrk {name}" in rounds[0] else ""
        row = [name, f"{p50:.2f} / {p99:.2f}", ratio(name, small, "latency"), rps]
        row += [ratio(name, small, "wrk"), ratio(name, nginx, "wrk"), ratio(name, job, "wrk") if name != job else ""]
        print("| " + " | ".join(row) + " |")

    print("\nOne 100 MiB file out of the 1 GiB, 10,000-entry archive\n")
    print(
        "| member | jobsvc TTFB ms | jobsvc total s | MB/s | `unzip -p > /dev/null` s | jobsvc / unzip "
        "| unzip into a pipe: TTFB ms / total s |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    for label in ("deflated", "stored"):
        got = [r[f"extract {label} jobsvc"] for r in rounds]
        unzip = col(f"extract {label} unzip")
        piped = col(f"extract {label} unzip piped")
        totals = [g["total"] for g in got]
        print(
            f"| {label} | {spread([g['ttfb'] * 1000 for g in got], '.1f')} | {spread(totals, '.3f')} "
            f"| {statistics.median([g['bytes'] / g['total'] / 1e6 for g in got]):,.0f} | {spread(unzip, '.3f')} "
            f"| {spread([t / u for t, u in zip(totals, unzip, strict=True)], '.2f')} "
            f"| {statistics.median([p['ttfb'] * 1000 for p in piped]):.1f} / "
            f"{statistics.median([p['total'] for p in piped]):.3f} |"
        )
    cold = results["cold_extraction"]
    print(
        f"\nFirst extraction after start (parses the central directory): TTFB {cold['ttfb'] * 1000:.1f} ms, "
        f"total {cold['total']:.3f} s"
    )

    stress_result = results["stress"]
    print(
        f"\nStress: {stress_result['concurrent']} concurrent downloads (4 deflated, 2 stored members, 2 archives) in "
        f"{stress_result['wall_s']:.2f} s, {'all complete' if stress_result['complete'] else 'NOT ALL COMPLETE'} "
        f"(statuses {sorted(set(stress_result['statuses']))}); then 4 extractions cut "
        f"after 0.1 s (received {stress_result['aborted_bytes']} bytes); server threads "
        f"{stress_result['threads_before']:.0f} before, {stress_result['threads_after']:.0f} after; "
        f"a download after that {'works' if stress_result['after_ok'] else 'FAILS'}"
    )

    by_phase = results["rss_max_by_phase_mb"]
    peak = max([results["vmhwm_mb"], *by_phase.values()])
    print(
        f"\nServer memory ({results['rss_samples']} samples, every 20 ms): RSS at start "
        f"{results['rss_at_start_mb']:.1f} MB; max VmRSS per phase: "
        + ", ".join(f"{phase} {mb:.1f}" for phase, mb in by_phase.items())
        + f"; VmHWM at the end {results['vmhwm_mb']:.1f} MB -> peak {peak:.1f} MB, "
        f"{'under' if peak < RSS_LIMIT_MB else 'OVER'} the {RSS_LIMIT_MB} MB limit"
    )
    print(
        f"Loader (`jobsvc load`, separate process): {results['load']['seconds']} s, peak RSS "
        f"{results['load']['children_maxrss_mb']:.0f} MB"
    )
    problems = results["server_log_problems"]
    if problems:
        print(f"Server log: {len(problems)} problem lines, e.g. {problems[:3]}")
    else:
        print("Server log: no errors")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

"""``jobsvc load`` shows how far it got on a terminal, and writes nothing of it anywhere else."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobsvc.progress import CLEAR_TO_END, Progress

JOBS = 3000


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_the_line_is_redrawn_at_most_ten_times_a_second():
    screen, clock = Terminal(), Clock()
    progress = Progress(screen, clock=clock)
    progress.note("reading big.yaml")
    for done in range(1, 1001):
        clock.now += 0.001  # a job a millisecond: one second in all
        progress.count("loading", done, 1000, "jobs")
    progress.finish()
    frames = screen.getvalue().split("\r")[1:]
    assert frames[0] == "reading big.yaml" + CLEAR_TO_END
    assert frames[1] == "loading: 1 / 1,000 jobs (0%)" + CLEAR_TO_END
    assert frames[-1] == "loading: 1,000 / 1,000 jobs (100%)" + CLEAR_TO_END + "\n"  # the last one always
    assert 9 <= len(frames) - 1 <= 12  # about ten redraws in the second, not a thousand


def test_anywhere_else_nothing_is_written():
    stream = io.StringIO()  # not a terminal
    progress = Progress(stream)
    progress.note("reading")
    progress.count("loading", 10, 10, "jobs")
    progress.finish()
    assert stream.getvalue() == ""


def big_fixture(folder: Path) -> Path:
    jobs = [{"name": f"job-{i}", "status": "success" if i % 4 else "failed"} for i in range(JOBS)]
    data = {
        "users": [{"username": "root", "tokens": [{"token": "glpat-progress-test-0000"}]}],
        "projects": [{"path": "big/project", "pipelines": [{"jobs": jobs[i : i + 100]} for i in range(0, JOBS, 100)]}],
    }
    path = folder / "big.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def load_command(folder: Path) -> list[str]:
    return [sys.executable, "-m", "jobsvc", "load", str(big_fixture(folder)), "--data-dir", str(folder / "var")]


@pytest.mark.slow
def test_load_on_a_terminal_shows_progress(tmp_path):
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(load_command(tmp_path), stdout=subprocess.PIPE, stderr=terminal, text=True)
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal's last handle
                break
            if not chunk:
                break
            shown += chunk
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 0
    assert out.endswith(f"loaded 1 users, 0 runners, 1 projects, 30 pipelines, {JOBS} jobs\n")
    text = shown.decode()
    assert f"\rreading {tmp_path / 'big.yaml'}" in text
    assert f"\rloading: {JOBS:,} / {JOBS:,} jobs (100%)\x1b[K" in text
    assert text.count("\rloading: ") >= 2  # drawn as it went, not only at the end
    assert text.endswith("\n") or text.endswith("\r\n")


@pytest.mark.slow
def test_load_elsewhere_stays_quiet(tmp_path):
    done = subprocess.run(load_command(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stdout.endswith(f"{JOBS} jobs\n")
    assert "\r" not in done.stderr and "loading" not in done.stderr and "reading" not in done.stderr

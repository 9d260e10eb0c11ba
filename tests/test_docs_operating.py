"""docs/operating.md says what the code does: its metrics are the app's, its findings are check's, and its
backup recipe for a running server gives a copy that jobsvc check passes."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from jobsvc.cli import main
from tests.conftest import copy_world

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    return PAGE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


async def test_every_metric_is_documented_and_nothing_else(client):
    text = await (await client.get("/-/metrics")).text()
    families = {family.name for family in text_string_to_metric_families(text)}
    table = _section("Metrics")
    documented = {name.removesuffix("_total") for name in re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)}
    served = {name for name in families if not name.startswith("process_") and not name.endswith("_created")}
    assert documented == served
    assert "`_created`" in table  # each counter's creation time, which prometheus_client adds
    assert {name.removesuffix("_created") for name in families if name.endswith("_created")} <= documented


def test_every_finding_of_check_is_documented():
    kinds = set(re.findall(r'report\.add\("([a-z-]+)"', (ROOT / "jobsvc" / "storage" / "check.py").read_text()))
    documented = set(re.findall(r"^\| `([a-z-]+): ", _section("Checking a data directory"), re.MULTILINE))
    assert kinds == documented == {"integrity", "foreign-key", "missing", "size", "orphan"}


def test_the_backup_of_a_running_server_passes_check(tmp_path, world_template, capsys):
    live = tmp_path / "live"
    copy_world(world_template, live)
    server = sqlite3.connect(live / "jobsvc.sqlite3")  # as a running server: the last commit only in the -wal
    try:
        server.execute("PRAGMA wal_autocheckpoint = 0")
        with server:
            server.execute("INSERT INTO instance_settings (key, value) VALUES ('committed', 'last')")
        assert (live / "jobsvc.sqlite3-wal").stat().st_size > 0
        [snippet] = re.findall(r"python3 -c '([^']+)'", _section("Backups of the data directory"))
        backup = tmp_path / "backup"
        backup.mkdir()
        subprocess.run([sys.executable, "-c", snippet, live / "jobsvc.sqlite3", backup / "jobsvc.sqlite3"], check=True)
        for folder in ("artifacts", "traces"):  # what the page's rsync copies
            shutil.copytree(live / folder, backup / folder)
    finally:
        server.close()
    assert not (backup / "jobsvc.sqlite3-wal").exists()  # the copy is one file
    assert main(["check", "--data-dir", str(backup)]) == 0, capsys.readouterr().out
    with sqlite3.connect(backup / "jobsvc.sqlite3") as copy:
        assert copy.execute("SELECT value FROM instance_settings WHERE key = 'committed'").fetchone() == ("last",)

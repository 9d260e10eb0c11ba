"""``jobsvc check``: a clean data directory passes; each kind of damage is named and exits 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jobsvc.cli import main
from tests.conftest import copy_world


@pytest.fixture
def data_dir(tmp_path, world_template) -> Path:
    folder = tmp_path / "var"
    copy_world(world_template, folder)
    return folder


def run_check(data_dir: Path, capsys) -> tuple[int, list[str]]:
    code = main(["check", "--data-dir", str(data_dir)])
    return code, capsys.readouterr().out.splitlines()


def rows(data_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "jobsvc.sqlite3") as conn:
        return conn.execute(sql).fetchall()


def a_key(data_dir: Path, file_type: str) -> tuple[int, str]:
    [(job_id, key)] = rows(data_dir, f"SELECT job_id, store_key FROM job_artifacts WHERE file_type = '{file_type}' "
                                     "ORDER BY id LIMIT 1")  # fmt: skip
    return job_id, key


def test_a_clean_data_directory_passes_and_changes_nothing(data_dir, capsys):
    before = sorted((p.relative_to(data_dir), p.stat().st_mtime_ns) for p in data_dir.rglob("*"))
    code, out = run_check(data_dir, capsys)
    assert sorted((p.relative_to(data_dir), p.stat().st_mtime_ns) for p in data_dir.rglob("*")) == before
    assert code == 0
    [summary] = out
    assert summary.startswith(f"checked {data_dir}: ") and summary.endswith("files: no problems")
    [checked] = rows(data_dir, "SELECT count(*) FROM job_artifacts")
    assert f": {checked[0]} rows, " in summary


def test_orphans_are_files_no_row_points_at(data_dir, capsys):
    orphan = data_dir / "artifacts" / "999" / (64 * "a" + ".zip")
    orphan.parent.mkdir()
    orphan.write_bytes(b"PK")
    (data_dir / "traces" / "77777.log").write_text("a log of no job\n")
    code, out = run_check(data_dir, capsys)
    assert code == 1
    assert out[:-1] == [
        f"orphan: artifacts/999/{64 * 'a'}.zip: no row points at it",
        "orphan: traces/77777.log: the log of job 77777, which does not exist",
    ]
    assert out[-1].endswith("2 problem(s)")


def test_a_row_whose_file_is_gone(data_dir, capsys):
    job_id, key = a_key(data_dir, "archive")
    (data_dir / key).unlink()
    code, out = run_check(data_dir, capsys)
    assert code == 1
    assert out[0].startswith(f"missing: {key}: the file of job {job_id}'s archive (")
    assert out[0].endswith(" bytes) is not in the store") and len(out) == 2


def test_a_file_of_another_size_than_its_row(data_dir, capsys):
    job_id, key = a_key(data_dir, "trace")
    size = (data_dir / key).stat().st_size
    with open(data_dir / key, "ab") as log:
        log.write(b"appended behind jobsvc's back\n")
    code, out = run_check(data_dir, capsys)
    assert code == 1
    assert out[0] == f"size: {key}: job {job_id}'s trace is recorded as {size} bytes, the file has {size + 30}"


def test_a_row_pointing_at_a_deleted_row(data_dir, capsys):
    job_id, _ = a_key(data_dir, "archive")
    with sqlite3.connect(data_dir / "jobsvc.sqlite3") as conn:  # foreign keys are off unless switched on
        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
    code, out = run_check(data_dir, capsys)
    assert code == 1
    assert any(line.startswith("foreign-key: job_artifacts row ") and line.endswith("a missing jobs row")
               for line in out)  # fmt: skip


def test_a_damaged_database(data_dir, capsys):
    database = data_dir / "jobsvc.sqlite3"
    page = rows(data_dir, "PRAGMA page_size")[0][0]
    pages = database.stat().st_size // page
    with open(database, "r+b") as file:
        for number in range(2, pages, 3):  # every third page past the first: b-tree pages in a mess
            file.seek(number * page + 8)
            file.write(b"\xff" * 64)
    code, out = run_check(data_dir, capsys)
    assert code == 1
    assert out[0].startswith("integrity: ")
    assert out[-1].endswith("problem(s)")


def test_a_file_that_is_not_a_database(data_dir, capsys):
    with open(data_dir / "jobsvc.sqlite3", "r+b") as file:
        file.write(b"not a database" * 8)
    code, out = run_check(data_dir, capsys)
    assert code == 1
    assert out[0] == "integrity: file is not a database"


def test_no_database_is_a_usage_error(tmp_path, capsys):
    assert main(["check", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: no database in {tmp_path}\n"


def test_rows_still_in_the_write_ahead_log_are_read(data_dir, capsys):
    """A server running (or killed) leaves committed rows in the -wal file: they count."""
    blob = data_dir / "artifacts" / "8" / (64 * "b" + ".gz")
    blob.write_bytes(b"gz")
    writer = sqlite3.connect(data_dir / "jobsvc.sqlite3")
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        with writer:
            writer.execute(
                """INSERT INTO job_artifacts (job_id, project_id, file_type, file_format, filename, size, sha256,
                       store_key, created_at) VALUES (8, 1, 'junit', 'gzip', 'junit.xml.gz', 2, '', ?, '')""",
                (blob.relative_to(data_dir).as_posix(),),
            )
        assert (data_dir / "jobsvc.sqlite3-wal").stat().st_size > 0
        code, out = run_check(data_dir, capsys)
        assert code == 0, out
    finally:
        writer.close()

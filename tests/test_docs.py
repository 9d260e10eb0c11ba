"""The README is the front door: its settings table and its commands must match the code and CI."""

import re
from pathlib import Path

from jobsvc.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _default_cell(default):
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if default in ("", []):
        return "(none)"
    return f"`{default}`"


def test_settings_table_matches_the_code():
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `(JOBSVC_[A-Z_]+)` \| ([^|]+?) \| (.+?) \|$", README, re.MULTILINE)
    documented = [(flag, env, default.strip(), text.strip()) for flag, env, default, text in rows]
    expected = [(s.flag, s.env, _default_cell(s.default), s.help) for s in SETTINGS]
    assert documented == expected


def test_readme_shows_the_two_commands_near_the_top():
    top = README[:1500]
    assert "jobsvc serve --demo" in top
    assert ".venv/bin/python -m pytest" in top


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = ".venv/bin/pip install -e '.[test]'"
    assert install in README and install in ci
    commands = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    test_command = ".venv/bin/python -m pytest"
    assert test_command in commands
    assert f"&& {test_command}" in README
    # only the schemathesis run comes after the test suite
    assert commands[commands.index(test_command) + 1 :] == [".venv/bin/python .ci/schemathesis.py"]

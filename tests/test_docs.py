"""The README is the front door: its settings table and its commands must match the code and CI."""

import os
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
    # only the schemathesis run and the one-file build's demo come after the test suite
    assert commands[commands.index(test_command) + 1 :] == [
        ".venv/bin/python .ci/schemathesis.py",
        ".venv/bin/python .ci/build_pyz.py --smoke",
    ]


# Workspace notes a clone does not have: the project cites GitLab's own files or states the fact instead.
_OUTSIDE = re.compile(
    "|".join(
        re.escape(name)
        for name in ("shared" + "/", "reference" + "/", "hardening" + ".md", "performance" + ".md",
                     "gitlab-jobs-api" + ".md", "clients" + ".md", "/" + "work/", "reference" + " §")
    )
)  # fmt: skip


def _files_below(top: Path):
    """Every file below ``top``, not descending into folders whose name starts with a dot: git-ignored working
    data such as bench/.data (bench/run's cache of generated data and npm packages)."""
    for folder, dirs, files in os.walk(top):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        yield from (Path(folder) / name for name in files)


def _project_text_files():
    for folder in ("jobsvc", "tests", "bench", "docs", ".ci"):
        for path in sorted(_files_below(ROOT / folder)):
            if path.suffix in ("", ".py", ".md", ".yaml", ".yml", ".sql", ".sh", ".json", ".cfg"):
                yield path
    yield from (ROOT / name for name in ("README.md", "setup.cfg", "pyproject.toml", "schema.sql"))


def test_nothing_points_outside_the_repository():
    hits = []
    for path in _project_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if _OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert hits == []


def test_readme_tree_lists_every_module():
    tree = README.split("## Project tree", 1)[1].split("```", 2)[1]
    package = ROOT / "jobsvc"
    missing = [
        path.relative_to(package).as_posix()
        for path in sorted(package.rglob("*.py"))
        if path.name != "__init__.py"
        and path.parent.name != "handlers"
        and path.parent.name not in ("services", "queries")
        and not re.search(rf"^\s+{re.escape(path.name)}\s", tree, re.MULTILINE)
    ]
    missing += [
        path.name + "/"
        for path in sorted(package.rglob("*"))
        if path.is_dir() and path.name != "__pycache__" and f" {path.name}/" not in tree
    ]
    assert missing == []

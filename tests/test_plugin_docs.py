"""docs/testing.md's examples, run as a downstream project would run them: files of their own, pytest in a child.

Every ```python block of the page that starts with ``# NAME.py`` is a file of that project; the test
writes them all and expects every test function in them to pass, so the page cannot drift from the plugin.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
_BLOCK = re.compile(r"^```python\n# (?P<name>[\w./-]+\.py)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)


def example_files(markdown: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for match in _BLOCK.finditer(markdown):
        assert match["name"] not in files, f"{match['name']} twice in the page"
        files[match["name"]] = match["code"]
    return files


def test_the_page_is_read_block_by_block():
    page = "text\n```python\n# test_a.py\ndef test_x():\n    pass\n```\n\n```python\nnot a file\n```\n"
    page += "```python\n# conftest.py\nimport pytest\n```\n"
    assert example_files(page) == {"test_a.py": "def test_x():\n    pass\n", "conftest.py": "import pytest\n"}


@pytest.mark.slow
def test_the_examples_pass(pytester: pytest.Pytester):
    files = example_files(PAGE.read_text(encoding="utf-8"))
    assert {"conftest.py", "test_demo_jobs.py", "test_release_tool.py", "test_two_servers.py"} <= set(files)
    for name, code in files.items():
        (pytester.path / name).write_text(code, encoding="utf-8")
    # a strict downstream project: warnings are errors there too
    pytester.makeini("[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n")
    tests = sum(len(re.findall(r"^def test_", code, re.MULTILINE)) for code in files.values())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=tests)

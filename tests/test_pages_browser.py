"""The pages in a real browser: Debian's Chromium driven by playwright, against the app on a loopback port.

Covered: the log's colours (computed styles), collapsing a section and opening one a #L link points
into, the live tail growing while the runner appends to the log through the runner API (and the script's
rendering matching the server's once the page is reloaded), signing in and out, and that the page
breaks no rule of its Content-Security-Policy and runs nothing from the log. Screenshots go under
tmp_path; their paths are in the test's properties and output.

Playwright's own browser download is not used: Chromium comes from Debian (``apt-get install chromium``,
which .ci/servers.sh does). Without it, or without playwright, these tests are skipped; under CI=true
they fail instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from jobsvc.http.app import create_app
from jobsvc.http.pages import ansi, session
from jobsvc.settings import Config
from tests.realservers import unavailable

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # as root, Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
E = "\x1b"
ROOT_TOKEN = "glpat-browser-root-0000"
DEV_TOKEN = "glpat-browser-dev-00000"
JOB_TOKEN = "glcbt-browser-live-job-0000"
WAIT = 15_000  # ms: the tail polls every second

COLOUR_LOG = (
    f"{E}[0Ksection_start:1700000000:prepare[collapsed=true]\r{E}[0K{E}[1mPreparing the environment{E}[0m\n"
    "Using the docker executor\n"
    "Pulling ruby:3.2\n"
    f"{E}[0Ksection_end:1700000007:prepare\r{E}[0K\n"
    f"{E}[0Ksection_start:1700000007:step_script\r{E}[0K{E}[36;1mExecuting the script{E}[0m\n"
    f"$ {E}[31mred{E}[0m {E}[1;32mbold green{E}[0m {E}[38;5;82mpalette{E}[0m {E}[38;2;255;128;0mtruecolor{E}[0m "
    f"{E}[48;5;17;97mon blue{E}[0m {E}[3mitalic{E}[0m {E}[4munderline{E}[0m\n"
    "<script>alert('from the log')</script><img src=x onerror=alert(2)>\n"
    f"{E}]8;;javascript:alert(3){E}\\a link that stays text{E}]8;;{E}\\\n"
    f"{E}[0Ksection_end:1700000042:step_script\r{E}[0K\n"
    f"{E}[32;1mJob succeeded{E}[0m\n"
)
LIVE_START = f"{E}[0Ksection_start:1700000000:build\r{E}[0K{E}[1mBuilding{E}[0m\nstep 0\n"


def browser_world() -> dict[str, Any]:
    commit = {"title": "Colours", "author_name": "Root", "created_at": "2024-01-01T00:00:00.000Z"}
    return {
        "users": [
            {"username": "root", "id": 1, "admin": True, "tokens": [{"token": ROOT_TOKEN}]},
            {"username": "dev", "id": 2, "tokens": [{"token": DEV_TOKEN, "scopes": ["read_api"]}]},
        ],
        "runners": [{"id": 1, "description": "browser-runner", "token": "glrt-browser-runner-000", "is_shared": True}],
        "projects": [
            {
                "path": "demo/colours",
                "id": 1,
                "visibility": "public",
                "public_builds": True,
                "pipelines": [
                    {
                        "id": 1,
                        "ref": "main",
                        "commit": commit,
                        "jobs": [
                            {"id": 1, "name": "colours", "stage": "build", "status": "success", "trace": COLOUR_LOG},
                            {"id": 2, "name": "live", "stage": "test", "status": "running", "token": JOB_TOKEN,
                             "runner": 1, "trace": LIVE_START},
                        ],
                    }
                ],
            },
            {
                "path": "demo/secret",
                "id": 2,
                "visibility": "private",
                "members": [{"user": "dev", "role": "developer"}],
                "pipelines": [{"id": 3, "ref": "main", "jobs": [{"id": 3, "name": "hidden", "status": "success"}]}],
            },
        ],
    }  # fmt: skip


@pytest.fixture
async def base_url(tmp_path: Path, aiohttp_server) -> str:
    """The app on a free loopback port, loaded with the browser world."""
    fixture = tmp_path / "browser-world.yaml"
    fixture.write_text(yaml.safe_dump(browser_world(), sort_keys=False))
    server = await aiohttp_server(create_app(Config(data_dir=tmp_path / "var", fixtures=[str(fixture)])))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium (bash .ci/servers.sh does, as root)")
    if importlib.util.find_spec("playwright") is None:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Watched:
    """A page, with what must never happen on it: CSP violations, script errors, dialogs."""

    def __init__(self, page: Any):
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda message: self._console(message))
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("dialog", lambda dialog: self._dialog(dialog))

    def _console(self, message: Any) -> None:
        url = message.location.get("url", "")
        # a page answered with a 404 on purpose, and the favicon jobsvc has none of, are no problem
        expected = "Failed to load resource" in message.text and ("/assets/" not in url or "favicon" in url)
        if message.type in ("error", "warning") and not expected:
            self.problems.append(f"console {message.type}: {message.text} ({url})")

    def _dialog(self, dialog: Any) -> None:
        self.problems.append(f"a dialog opened: {dialog.message}")
        asyncio.ensure_future(dialog.dismiss())


async def open_page(browser: Any) -> tuple[Any, Watched]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    return page, Watched(page)


async def screenshot(page: Any, path: Path, record_property: Any) -> None:
    await page.screenshot(path=str(path), full_page=True)
    record_property("screenshot", str(path))
    print(f"screenshot: {path}")


def rgb(colour: tuple[int, int, int]) -> str:
    return f"rgb({colour[0]}, {colour[1]}, {colour[2]})"


async def style_of(page: Any, selector: str, prop: str) -> str:
    return await page.locator(selector).first.evaluate(f"el => getComputedStyle(el)[{json.dumps(prop)}]")


async def test_the_logs_colours(base_url, browser, tmp_path, record_property):
    page, watched = await open_page(browser)
    await page.goto(f"{base_url}/demo/colours/-/jobs/1")
    line = "#L5 .lt"
    assert await style_of(page, f"{line} .fg-1", "color") == rgb(ansi.PALETTE[1])
    assert await style_of(page, f"{line} .fg-2.bold", "color") == rgb(ansi.PALETTE[2])
    assert await style_of(page, f"{line} .fg-2.bold", "fontWeight") == "700"
    assert await style_of(page, f"{line} .fg-82", "color") == rgb(ansi.PALETTE[82])
    # truecolor: the exact colour, which the page's script applies (no style attribute in the markup)
    assert await style_of(page, f"{line} [data-fg]", "color") == "rgb(255, 128, 0)"
    assert await style_of(page, f"{line} .bg-17", "backgroundColor") == rgb(ansi.PALETTE[17])
    assert await style_of(page, f"{line} .bg-17", "color") == rgb(ansi.PALETTE[15])
    assert await style_of(page, f"{line} .italic", "fontStyle") == "italic"
    assert await style_of(page, f"{line} .underline", "textDecorationLine") == "underline"
    assert await style_of(page, "#L2 .lt", "color") == "rgb(229, 229, 229)"  # the log's own text colour
    # what the log holds is text, never markup
    shown = "<script>alert('from the log')</script><img src=x onerror=alert(2)>"
    assert await page.locator("#L6 .lt").inner_text() == shown
    assert await page.locator("#log script, #log img").count() == 0
    assert await page.locator("#L7 .lt").inner_text() == "a link that stays text"
    assert await page.locator("#log a:not(.ln)").count() == 0
    await screenshot(page, tmp_path / "log-colours.png", record_property)
    assert watched.problems == []


async def test_the_pipelines_status_icons_and_colours(base_url, browser, tmp_path, record_property):
    page, watched = await open_page(browser)
    await page.goto(f"{base_url}/demo/colours/-/pipelines/1")
    assert await style_of(page, "h1 .ci-status.ci-running", "color") == "rgb(31, 117, 203)"
    assert await style_of(page, "#job-1 .ci-mini.ci-success", "color") == "rgb(16, 133, 72)"
    assert await style_of(page, "#job-1 .ci-icon .ring", "stroke") == "rgb(16, 133, 72)"  # drawn in the status colour
    assert await style_of(page, "#job-2 .ci-mini.ci-running", "color") == "rgb(31, 117, 203)"
    stages = [await stage.get_attribute("data-stage") for stage in await page.locator(".stage").all()]
    assert stages == ["build", "test"]
    await screenshot(page, tmp_path / "pipeline.png", record_property)
    await page.click("#job-1")
    await page.wait_for_url(f"{base_url}/demo/colours/-/jobs/1")
    assert watched.problems == []


async def test_collapsing_a_section(base_url, browser, tmp_path, record_property):
    page, watched = await open_page(browser)
    await page.goto(f"{base_url}/demo/colours/-/jobs/1")
    # prepare is collapsed=true: its header shows, its lines do not
    assert await page.locator("#L1").is_visible() and not await page.locator("#L2").is_visible()
    await page.locator("#L1 .lt").click()
    assert await page.locator("#L2").is_visible() and await page.locator("#L3").is_visible()
    await page.locator("#L1 .lt").click()
    assert not await page.locator("#L2").is_visible()
    # step_script is open; a click on its header collapses it
    assert await page.locator("#L5").is_visible()
    assert await page.locator("#L4 .duration").inner_text() == "00:35"
    await page.locator("#L4 .lt").click()
    assert not await page.locator("#L5").is_visible() and await page.locator("#L8").is_visible()
    await screenshot(page, tmp_path / "log-collapsed.png", record_property)
    # a link to a line inside a collapsed section opens the section
    await page.goto(f"{base_url}/demo/colours/-/jobs/1#L3")
    await page.locator("#L3").wait_for(state="visible", timeout=WAIT)
    assert await page.locator("#L3").evaluate("el => el.matches(':target')")
    assert watched.problems == []


DOM_TREE = """log => {
    const tree = node => node.nodeType === 3 ? node.data : node.nodeType !== 1 ? null : [
        node.tagName.toLowerCase(),
        Object.fromEntries(Array.from(node.attributes, a => [a.name, a.value])),
        Array.from(node.childNodes, tree).filter(child => child !== null)];
    const copy = log.cloneNode(true);
    copy.normalize();
    return Array.from(copy.childNodes, tree);
}"""


class Runner:
    """The runner's side: appends to job 2's log and finishes it, through the runner API."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str):
        self.http, self.base_url, self.size = http, base_url, len(LIVE_START.encode())

    async def append(self, text: str) -> None:
        data = text.encode()
        headers = {"JOB-TOKEN": JOB_TOKEN, "Content-Range": f"{self.size}-{self.size + len(data) - 1}"}
        async with self.http.patch(f"{self.base_url}/api/v4/jobs/2/trace", data=data, headers=headers) as answer:
            assert answer.status == 202, await answer.text()
        self.size += len(data)

    async def finish(self) -> None:
        body = {"token": JOB_TOKEN, "state": "success"}
        async with self.http.put(f"{self.base_url}/api/v4/jobs/2", json=body) as answer:
            assert answer.status == 200, await answer.text()


async def test_the_live_tail_grows_while_the_runner_appends(base_url, browser, tmp_path, record_property):
    page, watched = await open_page(browser)
    await page.goto(f"{base_url}/demo/colours/-/jobs/2")
    assert await page.locator("#log.live").count() == 1
    assert await page.locator("#log .line").count() == 2  # the header of build, and step 0
    async with aiohttp.ClientSession() as http:
        runner = Runner(http, base_url)
        await runner.append(f"step 1 {E}[31mred")
        await runner.append(f" still red{E}[0m\n")  # a line in two appends
        await page.locator("#L3").wait_for(timeout=WAIT)
        assert await page.locator("#L3 .lt").inner_text() == "step 1 red still red"
        assert await style_of(page, "#L3 .fg-1", "color") == rgb(ansi.PALETTE[1])
        # the open section takes the new lines, and its end gives its header the duration
        assert await page.locator("details.open-section #L3").count() == 1
        await runner.append(
            f"{E}[0Ksection_end:1700000065:build\r{E}[0K\n"
            f"{E}[0Ksection_start:1700000065:upload[collapsed=true]\r{E}[0KUploading\n"
            f"{E}[38;2;10;200;30mexact{E}[0m\n<b>not bold</b>\n"
            f"{E}[0Ksection_end:1700000070:upload\r{E}[0K\nalmost don"
        )
        await page.locator("#L6").wait_for(state="attached", timeout=WAIT)
        assert await page.locator("#L1 .duration").inner_text() == "01:05"
        assert await page.locator("details.open-section").count() == 0
        assert not await page.locator("#L5").is_visible()  # collapsed=true in the tail too
        await page.locator("#L4 .lt").click()
        assert await style_of(page, "#L5 [data-fg]", "color") == "rgb(10, 200, 30)"
        assert await page.locator("#L6 .lt").inner_text() == "<b>not bold</b>"
        await page.locator("#L4 .lt").click()  # closed again, as the server will render it
        assert await page.locator("#L7").count() == 0  # the unfinished line waits for its line break
        await screenshot(page, tmp_path / "live-tail.png", record_property)
        await runner.finish()
    await page.locator("#log-finished").wait_for(timeout=WAIT)
    assert await page.locator("#L7 .lt").inner_text() == "almost don"  # the job ended: its last line shows
    tailed = await page.locator("#log").evaluate(DOM_TREE)
    # the server renders the whole log the same way the script rendered the tail
    await page.reload()
    assert await page.locator("#log.live").count() == 0
    assert await page.locator("#log").evaluate(DOM_TREE) == tailed
    await screenshot(page, tmp_path / "live-tail-finished.png", record_property)
    assert watched.problems == []


async def test_signing_in_and_out(base_url, browser, tmp_path, record_property):
    page, watched = await open_page(browser)
    response = await page.goto(f"{base_url}/demo/secret/-/pipelines")
    assert response.status == 404
    await page.click("#sign-in")
    await page.fill("#token", "glpat-not-a-real-token-000")
    await page.click("#sign-in-submit")
    assert await page.locator("#sign-in-error").inner_text() == "Invalid token."
    await page.fill("#token", DEV_TOKEN)
    await page.click("#sign-in-submit")
    await page.wait_for_url(f"{base_url}/demo/secret/-/pipelines")
    assert await page.locator("#signed-in-as").inner_text() == "dev"
    assert await page.locator("#pipeline-3").count() == 1
    cookies = {cookie["name"]: cookie for cookie in await page.context.cookies()}
    assert cookies[session.SESSION_COOKIE]["httpOnly"] and cookies[session.SESSION_COOKIE]["sameSite"] == "Lax"
    assert cookies[session.CSRF_COOKIE]["httpOnly"] and cookies[session.CSRF_COOKIE]["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # neither is readable by a script
    await screenshot(page, tmp_path / "signed-in.png", record_property)
    await page.click("#sign-out")
    await page.wait_for_url(f"{base_url}/explore/projects")
    assert await page.locator("#sign-in").count() == 1
    assert session.SESSION_COOKIE not in {cookie["name"] for cookie in await page.context.cookies()}
    assert (await page.goto(f"{base_url}/demo/secret/-/pipelines")).status == 404
    assert watched.problems == []

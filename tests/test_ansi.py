"""The log renderer (jobsvc/http/pages/ansi.py): tables of SGR, lines, sections, and hostile logs.

Pure: bytes in, HTML out. The hostile cases parse the output and check that it holds nothing but the
renderer's own elements, attributes and classes, and that the text shown is the log's text.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsvc.http.pages import ansi
from jobsvc.http.pages.ansi import PLAIN, Style, apply_sgr, render

E = "\x1b"

# --- SGR ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "params", "expected"),
    [
        (PLAIN, "31", Style(fg=1)),
        (PLAIN, "91", Style(fg=9)),
        (PLAIN, "42", Style(bg=2)),
        (PLAIN, "107", Style(bg=15)),
        (PLAIN, "1;3;4", Style(bold=True, italic=True, underline=True)),
        (Style(bold=True, italic=True, underline=True), "22;23;24", PLAIN),
        (Style(fg=1, bold=True), "0", PLAIN),
        (Style(fg=1, bold=True), "", PLAIN),  # ESC [ m is a reset
        (Style(fg=1, bg=2), "39", Style(bg=2)),
        (Style(fg=1, bg=2), "49", Style(fg=1)),
        (PLAIN, "38;5;196", Style(fg=196)),
        (PLAIN, "48;5;0", Style(bg=0)),
        (PLAIN, "38;5;256", PLAIN),  # past the palette: ignored
        (PLAIN, "38;2;255;128;0", Style(fg=(255, 128, 0))),
        (PLAIN, "48;2;1;2;3;1", Style(bg=(1, 2, 3), bold=True)),  # what follows the colour still counts
        (PLAIN, "38;2;256;0;0", PLAIN),
        (PLAIN, "38;2;1;2", PLAIN),  # cut short
        (PLAIN, "38:5:82", Style(fg=82)),  # the colon forms
        (PLAIN, "38:2::10:20:30", Style(fg=(10, 20, 30))),
        (PLAIN, "38:2:10:20:30", Style(fg=(10, 20, 30))),
        (PLAIN, "4:3", Style(underline=True)),
        (Style(underline=True), "4:0", PLAIN),
        (PLAIN, "1;31;0;32", Style(fg=2)),
        (PLAIN, "99999999999999999999;31", Style(fg=1)),  # a huge number is ignored, not an error
        (PLAIN, "5;7;8;9;53", PLAIN),  # blink, inverse, hidden, strike, overline: not shown
        (PLAIN, "38", PLAIN),
        (PLAIN, ";;31", Style(fg=1)),
    ],
)
def test_sgr(start: Style, params: str, expected: Style) -> None:
    assert apply_sgr(start, params) == expected


@pytest.mark.parametrize(
    "style",
    [PLAIN, Style(fg=3), Style(bg=200), Style(fg=(1, 2, 3), bg=(250, 251, 252)), Style(bold=True, underline=True)],
)
def test_the_state_a_reader_carries_on_with_gives_the_same_style(style: Style) -> None:
    assert apply_sgr(PLAIN, style.sgr()) == style


# --- lines -------------------------------------------------------------------------------------------


def lines(rendered: str) -> list[tuple[int, str]]:
    """(number, visible text) of each line."""
    line = r'id="L(\d+)"><a class="ln" href="#L\d+">\d+</a><span class="lt">(.*?)</span>(?:<span class="duration">|</)'
    found = re.findall(line, rendered)
    return [(int(n), html.unescape(re.sub(r"<[^>]+>", "", text))) for n, text in found]


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (b"", []),
        (b"one\ntwo\n", [(1, "one"), (2, "two")]),
        (b"one\ntwo", [(1, "one"), (2, "two")]),  # a complete log's last line needs no line break
        (b"one\r\ntwo\r\n", [(1, "one"), (2, "two")]),
        (b"a\n\nb\n", [(1, "a"), (2, ""), (3, "b")]),  # blank lines keep their numbers
        (b"50%\r75%\r100%\n", [(1, "100%")]),  # a lone CR drops what the line had
        (b"tab\there\n", [(1, "tab\there")]),
        (b"bell\x07 nul\x00 del\x7f c1\xc2\x9b\n", [(1, "bell nul del c1")]),
        (b"\xff\xfe bad utf-8\n", [(1, "\ufffd\ufffd bad utf-8")]),
        ("caf\u00e9 \u2713\n".encode(), [(1, "caf\u00e9 \u2713")]),
        (b"\x1b[2J\x1b[1;1Hcleared\x1b[0K\n", [(1, "cleared")]),  # cursor and erase sequences are dropped
        (b"\x1b(Bcharset \x1b7saved\x1b8\n", [(1, "charset saved")]),
        (b"cut \x1b[31", [(1, "cut ")]),
        (b"dangling \x1b", [(1, "dangling ")]),
        (b"a section_start:x:name\n", [(1, "a section_start:x:name")]),  # not a marker: text
    ],
)
def test_lines(log: bytes, expected: list[tuple[int, str]]) -> None:
    assert lines(render(log).html) == expected


def test_spans_carry_classes_only() -> None:
    out = render(f"{E}[1;31mred{E}[0m {E}[38;5;82mgreen{E}[48;5;17m on blue{E}[0m\n".encode()).html
    assert '<span class="fg-1 bold">red</span> ' in out
    assert '<span class="fg-82">green</span><span class="fg-82 bg-17"> on blue</span>' in out


def test_truecolor_gets_the_nearest_class_and_the_exact_colour() -> None:
    out = render(f"{E}[38;2;255;128;0;48;2;0;0;1mtc\n".encode()).html
    assert '<span class="fg-208 bg-16" data-fg="#ff8000" data-bg="#000001">tc</span>' in out
    assert ansi.nearest((255, 128, 0)) == 208 and ansi.PALETTE[208] == (255, 135, 0)


def test_a_style_lasts_across_lines_and_runs_on() -> None:
    rendered = render(f"{E}[32mone\ntwo\n{E}[1mthree".encode(), complete=False)
    assert rendered.html.count('class="fg-2"') == 2 and "three" not in rendered.html
    # the style of the cut line's start: its own ESC [ 1 m is read with the rest of that line
    assert rendered.sgr == "38;5;2" and rendered.next_line == 3 and rendered.consumed == len(f"{E}[32mone\ntwo\n")
    assert apply_sgr(PLAIN, rendered.sgr) == Style(fg=2)
    assert render(f"{E}[32mone\ntwo\n{E}[1mthree\n".encode()).sgr == "1;38;5;2"


def test_a_running_log_is_rendered_up_to_its_last_line_break() -> None:
    assert render(b"no line break yet", complete=False) == ansi.Rendered("", 0, 1, "")
    tail = render(b"a\nb\nhalf", complete=False, first_line=7)
    assert lines(tail.html) == [(7, "a"), (8, "b")] and tail.consumed == 4 and tail.next_line == 9


def test_line_numbers_link_to_themselves() -> None:
    assert (
        render(b"x\n").html == '<div class="line" id="L1"><a class="ln" href="#L1">1</a><span class="lt">x</span></div>'
    )


# --- sections ----------------------------------------------------------------------------------------


def start(name: str, ts: int = 100, options: str = "") -> str:
    return f"{E}[0Ksection_start:{ts}:{name}{options}\r{E}[0K"


def end(name: str, ts: int = 103) -> str:
    return f"{E}[0Ksection_end:{ts}:{name}\r{E}[0K"


def test_a_section_is_a_details_with_its_header_line_and_duration() -> None:
    log = f"{start('prepare_script')}{E}[32;1mPreparing{E}[0;m\ninside\n{end('prepare_script')}\nafter\n"
    out = render(log.encode()).html
    assert out == (
        '<details class="section" open><summary class="line section-header" id="L1"><a class="ln" href="#L1">1</a>'
        '<span class="lt"><span class="fg-2 bold">Preparing</span></span><span class="duration">00:03</span></summary>'
        '<div class="line" id="L2"><a class="ln" href="#L2">2</a><span class="lt">inside</span></div></details>'
        '<div class="line" id="L3"><a class="ln" href="#L3">3</a><span class="lt">after</span></div>'
    )


@pytest.mark.parametrize(
    ("options", "open_", "duration"),
    [
        ("", True, True),
        ("[collapsed=true]", False, True),
        ("[collapsed=false]", True, True),
        ("[hide_duration=true]", True, False),
        ("[collapsed=true,hide_duration=true]", False, False),
        ("[collapsed=true, hide_duration=false]", False, True),
    ],
)
def test_section_options(options: str, open_: bool, duration: bool) -> None:
    out = render(f"{start('s', options=options)}head\nx\n{end('s', 4000)}\n".encode()).html
    assert (" open>" in out.split("<summary")[0]) is open_
    assert ('<span class="duration">01:05:00</span>' in out) is duration


@pytest.mark.parametrize(
    ("log", "tree"),
    [
        # nested sections, each closed
        (start("a") + "A\n" + start("b") + "B\nb1\n" + end("b") + "\na1\n" + end("a") + "\n", "[A [B b1] a1]"),
        # an end for a section that is not open is dropped
        (start("a") + "A\n" + end("zzz") + "\nstill in a\n" + end("a") + "\n", "[A still in a]"),
        # closing the outer section closes the inner one too
        (start("a") + "A\n" + start("b") + "B\n" + end("a") + "\nout\n" + end("b") + "\n", "[A [B]] out"),
        # a header may be empty: the section's name stands in
        (start("Step_Script") + "\nx\n" + end("step_script") + "\n", "[step-script x]"),
        # text before a start on the same line is a line of its own; text after an end too
        ("before" + start("a") + "A\n" + "x" + end("a") + "after\n", "before [A x] after"),
        # markers written with no line break in between
        (start("a") + start("b") + "B\n" + end("b") + end("a") + "\n", "[a [B]]"),
        # an unterminated section stays open
        (start("a") + "A\nrunning\n", "[A running]"),
        # blank lines inside a section
        (start("a") + "A\n\n" + end("a") + "\n", "[A ()]"),
    ],
)  # fmt: skip
def test_section_trees(log: str, tree: str) -> None:
    assert _tree(render(log.encode()).html) == tree


def _tree(out: str) -> str:
    """A compact picture: [ for a section, ] for its end, the text of each line, () for an empty one."""
    words: list[str] = []

    class Picture(HTMLParser):
        text: str | None = None
        in_number = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "details":
                words.append("[")
            self.in_number = tag == "a" or ("class", "duration") in attrs
            if ("class", "lt") in attrs:
                self.text = ""

        def handle_endtag(self, tag: str) -> None:
            if tag == "details":
                words.append("]")
            elif tag in ("div", "summary") and self.text is not None:
                words.append(self.text or "()")
                self.text = None
            self.in_number = False

        def handle_data(self, data: str) -> None:
            if self.text is not None and not self.in_number:
                self.text += data

    Picture().feed(out)
    return " ".join(words).replace("[ ", "[").replace(" ]", "]")


def test_open_sections_are_marked_for_the_reader_that_carries_on() -> None:
    out = render((start("outer", 10) + "O\n" + start("inner", 11, "[hide_duration=true]") + "I\nx\n").encode()).html
    assert '<details class="section open-section" data-name="outer" data-start="10" open>' in out
    assert (
        '<details class="section open-section" data-name="inner" data-start="11" data-hide-duration="true" open>' in out
    )


def test_sections_nest_only_so_deep() -> None:
    log = "".join(start(f"s{i}") + f"h{i}\n" for i in range(ansi.MAX_DEPTH + 5))
    out = render(log.encode()).html
    assert out.count("<details") == ansi.MAX_DEPTH
    assert len(lines(out)) == ansi.MAX_DEPTH + 5  # the deeper headers are lines of the deepest section


def test_a_huge_start_time_does_not_break_the_renderer() -> None:
    out = render((f"{E}[0Ksection_start:{'9' * 5000}:s\r{E}[0Kh\n" + end("s", 5)).encode()).html
    assert '<span class="duration">00:05</span>' in out


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "00:00"), (59, "00:59"), (61, "01:01"), (3600, "01:00:00"), (-5, "00:00")]
)
def test_durations(seconds: int, shown: str) -> None:
    assert ansi.duration(seconds) == shown


# --- hostile logs ------------------------------------------------------------------------------------

ALLOWED_TAGS = {"div", "span", "a", "details", "summary"}
ALLOWED_CLASSES = re.compile(
    r"^(line|ln|lt|section|open-section|section-header|duration|bold|italic|underline|[fb]g-\d{1,3})$"
)
ALLOWED_ATTRIBUTES = {
    "class": re.compile(r"^[a-z0-9 -]+$"),
    "id": re.compile(r"^L\d+$"),
    "href": re.compile(r"^#L\d+$"),
    "data-fg": re.compile(r"^#[0-9a-f]{6}$"),
    "data-bg": re.compile(r"^#[0-9a-f]{6}$"),
    "data-name": re.compile(r"^[a-z0-9-]+$"),
    "data-start": re.compile(r"^\d+$"),
    "data-hide-duration": re.compile(r"^true$"),
    "open": re.compile(r"^$"),
}


class Checker(HTMLParser):
    """Every element, attribute and class the output holds must be the renderer's own."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.text: list[str] = []
        self.in_number = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag {tag}")
        for name, value in attrs:
            pattern = ALLOWED_ATTRIBUTES.get(name)
            if pattern is None or not pattern.match(value or ""):
                self.problems.append(f"attribute {name}={value!r}")
            if name == "class":
                self.problems += [f"class {c}" for c in (value or "").split() if not ALLOWED_CLASSES.match(c)]
        if tag == "a":
            self.in_number += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self.in_number -= 1
        elif tag in ("div", "summary"):
            self.text.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.in_number:
            self.text.append(data)


def check(out: str) -> Checker:
    checker = Checker()
    checker.feed(out)
    checker.close()
    assert checker.problems == []
    return checker


HOSTILE = [
    b"<script>alert(1)</script>\n",
    b'"><img src=x onerror=alert(1)>\n',
    b"</div></details><script>alert(1)</script>\n",
    b"\x1b]8;;javascript:alert(1)\x1b\\click me\x1b]8;;\x1b\\\n",  # OSC 8 hyperlink
    b"\x1b]8;;https://evil.example/\x07bell-terminated\x1b]8;;\x07\n",
    b"\x1b]0;<script>title</script>\x07after title\n",  # window title
    b"\x1bP<script>dcs</script>\x1b\\after dcs\n",
    b"\x1b]8;;unterminated <b>link\n",
    b'section_start:1:"><script>alert(1)</script>\r\x1b[0Kheader\n',  # not a valid section name: text
    b'section_start:1:a[collapsed=true"onmouseover=alert(1)]\r\x1b[0Kh\n',
    b"section_start:1:<svg/onload=alert(1)>\r\x1b[0K\n",
    b"section_end:1:2<script>alert(document.domain)</script>\r\x1b[0K\n",  # gitlab-foss#41346
    b'\x1b[38;2;255;0;0;"onmouseover="alert(1)mx\n',
    b'\x1b[38;5;1"><script>m\n',
    b"\x1b[31;<script>m not sgr\n",
    b"&amp; &lt; &#x3c; \xe2\x80\xae reversed\n",
]


@pytest.mark.parametrize("log", HOSTILE)
def test_hostile_logs_give_only_the_renderers_markup(log: bytes) -> None:
    out = render(log).html
    checker = check(out)
    assert (
        "<script" not in out
        and "<img" not in out
        and "<svg" not in out
        and "javascript:" not in out.split('href="#L')[0]
    )
    shown = "".join(checker.text)
    assert "evil.example" not in shown and "javascript" not in shown  # hyperlink targets are never shown either


@pytest.mark.parametrize(
    ("log", "shown"),
    [
        (b"<script>alert(1)</script>\n", "<script>alert(1)</script>\n"),
        (b"\x1b]8;;javascript:alert(1)\x1b\\click me\x1b]8;;\x1b\\\n", "click me\n"),
        (b"\x1b]0;<script>title</script>\x07after title\n", "after title\n"),
        (b"\x1b]8;;unterminated <b>link\n", "\n"),
        (b"section_end:1:2<script>alert(1)</script>\n", "section_end:1:2<script>alert(1)</script>\n"),
        (b"section_end:1:2<script>alert(1)</script>\r\x1b[0K\n", "\n"),  # the lone CR drops the line's text
    ],
)
def test_hostile_text_is_shown_as_text(log: bytes, shown: str) -> None:
    assert "".join(check(render(log).html).text) == shown


PIECES = st.sampled_from(
    ["\x1b[", "\x1b]", "\x1b\\", "\x07", "m", ";", ":", "38", "2", "5", "255", "\r", "\n", "\x1b[0K", "<", ">", '"',
     "'", "&", "section_start:1:a", "section_end:2:a", "[collapsed=true]", "\r\x1b[0K", "x", "\x00", "\x9b", "\u202e",
     "é"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES | st.text(max_size=5), max_size=40), st.booleans())
def test_any_log_gives_only_the_renderers_markup(pieces: list[str], complete: bool) -> None:
    data = "".join(pieces).encode("utf-8", "surrogatepass")
    rendered = render(data, complete=complete)
    check(rendered.html)
    assert 0 <= rendered.consumed <= len(data)
    assert apply_sgr(PLAIN, rendered.sgr).sgr() == rendered.sgr


def test_the_palette_stylesheet() -> None:
    css = ansi.palette_css()
    assert ".log .fg-1 { color: #cd0000; }" in css and ".log .bg-255 { background-color: #eeeeee; }" in css
    assert ".log .fg-16 { color: #000000; }" in css and ".log .fg-231 { color: #ffffff; }" in css
    assert css.count("\n") == 512

"""A job log as escaped HTML: ANSI colours and styles, and GitLab's collapsible sections.

Pure: bytes in, a string of HTML out; nothing from jobsvc, no I/O. The log is hostile (a job's script
writes it), so:

* every character of text goes through :func:`html.escape`, and the only markup is this module's own
  ``div``/``span``/``a``/``details``/``summary`` with class names from fixed sets;
* the only values taken from the log into attributes are numbers this module parsed and checked
  (line numbers, palette indexes, ``#rrggbb`` built from three integers 0-255, section start times) and
  section names, which must match GitLab's ``[a-zA-Z0-9_.-]+`` and are then folded to ``[a-z0-9-]``;
* every escape sequence but SGR (``ESC [ ... m``) is dropped whole: OSC 8 hyperlinks and window titles
  (up to BEL or ST), DCS/APC/PM/SOS strings, cursor movement, ``ESC [ 0 K``; so are C0 and C1 controls
  other than tab.

What is understood, as GitLab's ``Gitlab::Ci::Ansi2json`` reads a log:

* SGR 0/empty (reset), 1 bold, 3 italic, 4 underline (and ``4:x``), 22/23/24 to turn them off,
  30-37/90-97 and 40-47/100-107 (16 colours), 38/48 ``;5;n`` (256 colours) and ``;2;r;g;b`` (truecolor;
  the colon forms too), 39/49 defaults. Anything else is ignored; a style lasts across lines.
* ``\\r\\n`` ends a line like ``\\n``; a lone ``\\r`` drops what the line had so far (a progress bar
  shows its last state).
* ``section_start:<unix time>:<name>[collapsed=true]\\r\\e[0K`` opens a section whose header is the
  rest of that line; ``section_end:<unix time>:<name>\\r\\e[0K`` closes it (and any section opened
  inside it that is still open); an end for a section that is not open is dropped. The header shows
  the duration (end - start) unless ``hide_duration=true``. Sections nest up to MAX_DEPTH deep; a
  start deeper than that is dropped.

A running job's log is rendered up to its last complete line (:func:`render` with ``complete=False``);
:attr:`Rendered.consumed`, :attr:`Rendered.next_line` and :attr:`Rendered.sgr` say where a reader
carries on (the page's script, ``static/log.js``, follows the same rules for what it appends), and a
section still open is marked ``open-section`` with its name and start time.

A truecolor span gets the class of the nearest colour of the 256-colour palette (so it is coloured
without script too) and ``data-fg``/``data-bg`` with the exact ``#rrggbb``, which the page's script
applies: the Content-Security-Policy allows no style attribute in the markup.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import re
from dataclasses import dataclass, field

MAX_DEPTH = 32

# the 16 colours: xterm's defaults
BASE16 = (
    (0x00, 0x00, 0x00), (0xCD, 0x00, 0x00), (0x00, 0xCD, 0x00), (0xCD, 0xCD, 0x00),
    (0x00, 0x00, 0xEE), (0xCD, 0x00, 0xCD), (0x00, 0xCD, 0xCD), (0xE5, 0xE5, 0xE5),
    (0x7F, 0x7F, 0x7F), (0xFF, 0x00, 0x00), (0x00, 0xFF, 0x00), (0xFF, 0xFF, 0x00),
    (0x5C, 0x5C, 0xFF), (0xFF, 0x00, 0xFF), (0x00, 0xFF, 0xFF), (0xFF, 0xFF, 0xFF),
)  # fmt: skip
_CUBE = (0, 95, 135, 175, 215, 255)


def _palette() -> tuple[tuple[int, int, int], ...]:
    cube = [(_CUBE[i // 36], _CUBE[i // 6 % 6], _CUBE[i % 6]) for i in range(216)]
    grays = [(8 + 10 * i,) * 3 for i in range(24)]
    return (*BASE16, *cube, *grays)


PALETTE: tuple[tuple[int, int, int], ...] = _palette()


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{value:02x}" for value in rgb)


@functools.lru_cache(maxsize=4096)
def nearest(rgb: tuple[int, int, int]) -> int:
    """The index (16-255: the cube or the grays) of the palette colour nearest to ``rgb``."""
    return min(range(16, 256), key=lambda i: sum((a - b) ** 2 for a, b in zip(PALETTE[i], rgb, strict=True)))


def palette_css() -> str:
    """The stylesheet of the 256 foreground and background classes (served as /assets/ansi.css)."""
    rules = [f".log .fg-{i} {{ color: {hex_colour(c)}; }}" for i, c in enumerate(PALETTE)]
    rules += [f".log .bg-{i} {{ background-color: {hex_colour(c)}; }}" for i, c in enumerate(PALETTE)]
    return "\n".join(rules) + "\n"


# --- styles ---------------------------------------------------------------------------------------

Colour = int | tuple[int, int, int] | None  # a palette index, an exact colour, or the default


@dataclass(frozen=True)
class Style:
    fg: Colour = None
    bg: Colour = None
    bold: bool = False
    italic: bool = False
    underline: bool = False

    def sgr(self) -> str:
        """SGR parameters that give this style from the default one ("" for the default)."""
        codes = [code for code, on in (("1", self.bold), ("3", self.italic), ("4", self.underline)) if on]
        for base, colour in (("38", self.fg), ("48", self.bg)):
            if isinstance(colour, int):
                codes.append(f"{base};5;{colour}")
            elif colour is not None:
                codes.append(f"{base};2;{colour[0]};{colour[1]};{colour[2]}")
        return ";".join(codes)


PLAIN = Style()
_SGR_PARAMS = re.compile(r"[0-9;:]*")


def _number(text: str) -> int | None:
    digits = text.lstrip("0")
    return int(digits or "0") if text.isdigit() and text.isascii() and len(digits) <= 9 else None


def _extended(values: list[int | None]) -> tuple[Colour | bool, int]:
    """``5;n`` or ``2;r;g;b`` after a 38/48: (the colour, or False when malformed; parameters used)."""
    kind = values[0] if values else None
    if kind == 5 and len(values) >= 2:
        index = values[1]
        return (index if index is not None and index <= 255 else False), 2
    if kind == 2 and len(values) >= 4:
        rgb = values[1:4]
        if all(v is not None and v <= 255 for v in rgb):
            return (rgb[0], rgb[1], rgb[2]), 4  # type: ignore[return-value]
        return False, 4
    return False, len(values)


def apply_sgr(style: Style, params: str) -> Style:
    """The style after ``ESC [ params m``."""
    fields = params.split(";")
    i = 0
    while i < len(fields):
        part = fields[i]
        i += 1
        if ":" in part:  # the colon form keeps a code's arguments in one parameter
            sub = part.split(":")
            code = _number(sub[0])
            if code in (38, 48):
                args = [_number(s) for s in sub[1:]]
                if args[:1] == [2] and len(args) >= 5:  # 38:2:<colour space>:r:g:b
                    args = [2, *args[2:5]]
                colour, _ = _extended(args)
                if colour is not False:
                    style = _with_colour(style, code == 38, colour)
            elif code == 4:
                style = _replace(style, underline=_number(sub[1]) not in (0, None) if len(sub) > 1 else True)
            continue
        code = 0 if part == "" else _number(part)
        if code is None:
            continue
        if code in (38, 48):
            colour, used = _extended([_number(f) for f in fields[i : i + 4]])
            i += used
            if colour is not False:
                style = _with_colour(style, code == 38, colour)
        else:
            style = _simple(style, code)
    return style


def _simple(style: Style, code: int) -> Style:
    if code == 0:
        return PLAIN
    flags = {1: ("bold", True), 3: ("italic", True), 4: ("underline", True), 22: ("bold", False),
             23: ("italic", False), 24: ("underline", False)}  # fmt: skip
    if code in flags:
        name, value = flags[code]
        return _replace(style, **{name: value})
    for low, fg, offset in ((30, True, 0), (90, True, 8), (40, False, 0), (100, False, 8)):
        if low <= code <= low + 7:
            return _with_colour(style, fg, code - low + offset)
    if code in (39, 49):
        return _with_colour(style, code == 39, None)
    return style


def _with_colour(style: Style, fg: bool, colour: Colour) -> Style:
    return _replace(style, fg=colour) if fg else _replace(style, bg=colour)


def _replace(style: Style, **changes: object) -> Style:
    return dataclasses.replace(style, **changes)  # type: ignore[arg-type]


def _span(style: Style, text: str) -> str:
    escaped = html.escape(text, quote=True)
    if style == PLAIN:
        return escaped
    classes, data = [], []
    for prefix, colour in (("fg", style.fg), ("bg", style.bg)):
        if isinstance(colour, int):
            classes.append(f"{prefix}-{colour}")
        elif colour is not None:
            classes.append(f"{prefix}-{nearest(colour)}")
            data.append(f' data-{prefix}="{hex_colour(colour)}"')
    classes += [name for name, on in (("bold", style.bold), ("italic", style.italic),
                                      ("underline", style.underline)) if on]  # fmt: skip
    return f'<span class="{" ".join(classes)}"{"".join(data)}>{escaped}</span>'


# --- lines and sections -----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<section>section_(?P<action>start|end):(?P<time>\d+):(?P<name>[A-Za-z0-9_.-]+)"
    r"(?P<options>\[\w+=\w+(?:, ?\w+=\w+)*\])?\r\x1b\[0K)"
    r"|(?P<csi>\x1b\[(?P<params>[0-?]*)(?P<inter>[ -/]*)(?P<final>[@-~])?)"
    r"|(?P<string>\x1b[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\)?)"  # OSC, DCS, APC, PM, SOS: up to BEL or ST
    r"|(?P<escape>\x1b[ -/]*[0-~]?)"
    r"|(?P<cr>\r)"
    r"|(?P<control>[\x00-\x08\x0a-\x1f\x7f-\x9f])"
    r"|(?P<text>[^\x00-\x08\x0a-\x1f\x7f-\x9fs]+|s)",
    re.ASCII,
)


@dataclass
class Line:
    number: int
    segments: list[tuple[Style, str]]


@dataclass
class Section:
    name: str
    start: int
    collapsed: bool = False
    hide_duration: bool = False
    header: Line | None = None
    end: int | None = None
    children: list[Line | Section] = field(default_factory=list)


def section_name(raw: str) -> str:
    """GitLab's folding of a section name: lower case, anything but a-z and 0-9 as '-'."""
    return re.sub(r"[^a-z0-9]", "-", raw.lower())


def _options(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    return dict(option.strip().split("=", 1) for option in raw[1:-1].split(","))


def _time(digits: str) -> int:
    return int(digits) if len(digits) <= 15 else 0


def duration(seconds: int) -> str:
    """A section's duration as GitLab shows it: mm:ss, or h:mm:ss past an hour."""
    seconds = max(0, seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class _Builder:
    """Physical lines in, a tree of lines and sections out."""

    def __init__(self, first_line: int, style: Style):
        self.root = Section("", 0)
        self.stack = [self.root]
        self.number = first_line
        self.style = style

    def line(self, text: str) -> None:
        segments: list[tuple[Style, str]] = []
        header: Section | None = None  # the section whose header this piece is
        after_marker = False
        for match in _TOKEN.finditer(text):
            kind = match.lastgroup
            if kind == "text":
                value = match.group()
                if segments and segments[-1][0] == self.style:
                    segments[-1] = (self.style, segments[-1][1] + value)
                else:
                    segments.append((self.style, value))
            elif kind == "csi":
                params = match.group("params")
                if match.group("final") == "m" and not match.group("inter") and _SGR_PARAMS.fullmatch(params):
                    self.style = apply_sgr(self.style, params)
            elif kind == "cr":
                segments = []
            elif kind == "section":
                name = section_name(match.group("name"))
                opening = match.group("action") == "start"
                if (opening and len(self.stack) > MAX_DEPTH) or (
                    not opening and not any(s.name == name for s in self.stack[1:])
                ):
                    after_marker = True  # dropped; but a line of markers alone is still no line
                    continue
                self._flush(segments, header, at_marker=True, after_marker=after_marker)
                segments, header, after_marker = [], None, True
                if opening:
                    options = _options(match.group("options"))
                    header = Section(
                        name,
                        _time(match.group("time")),
                        collapsed=options.get("collapsed") == "true",
                        hide_duration=options.get("hide_duration") == "true",
                    )
                    self.stack[-1].children.append(header)
                    self.stack.append(header)
                else:  # sections still open inside this one end with it
                    end, closed = _time(match.group("time")), self.root
                    while closed.name != name:
                        closed = self.stack.pop()
                        closed.end = end
            # escape sequences, strings and controls: dropped
        self._flush(segments, header, at_marker=False, after_marker=after_marker)

    def _flush(self, segments: list, header: Section | None, *, at_marker: bool, after_marker: bool) -> None:
        if header is not None:
            header.header = Line(self.number, segments)
        elif segments or not (at_marker or after_marker):
            self.stack[-1].children.append(Line(self.number, segments))
        else:
            return
        self.number += 1


def _line_html(line: Line, tag: str, extra_class: str = "", suffix: str = "") -> str:
    body = "".join(_span(style, text) for style, text in line.segments)
    n = line.number
    return (
        f'<{tag} class="line{extra_class}" id="L{n}"><a class="ln" href="#L{n}">{n}</a>'
        f'<span class="lt">{body}</span>{suffix}</{tag}>'
    )


def _section_html(section: Section, out: list[str]) -> None:
    still_open = section.end is None
    attributes = ' class="section open-section"' if still_open else ' class="section"'
    if still_open:
        attributes += f' data-name="{html.escape(section.name)}" data-start="{section.start}"'
    if section.hide_duration:
        attributes += ' data-hide-duration="true"'
    out.append(f"<details{attributes}{'' if section.collapsed else ' open'}>")
    suffix = ""
    if section.end is not None and not section.hide_duration:
        suffix = f'<span class="duration">{duration(section.end - section.start)}</span>'
    header = section.header or Line(0, [])
    if not header.segments:
        header = Line(header.number, [(PLAIN, section.name)])
    out.append(_line_html(header, "summary", " section-header", suffix))
    _children_html(section.children, out)
    out.append("</details>")


def _children_html(children: list[Line | Section], out: list[str]) -> None:
    for child in children:
        if isinstance(child, Line):
            out.append(_line_html(child, "div"))
        else:
            _section_html(child, out)


@dataclass(frozen=True)
class Rendered:
    html: str  # escaped: safe to put in a page as it is
    consumed: int  # bytes of the input rendered (up to the last complete line, unless complete)
    next_line: int  # the number the next line gets
    sgr: str  # the style the next line starts with, as SGR parameters


def render(data: bytes, *, complete: bool = True, first_line: int = 1) -> Rendered:
    """The log ``data`` as HTML lines (``complete=False``: only up to its last line break)."""
    if not complete:
        data = data[: data.rfind(b"\n") + 1]
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    builder = _Builder(first_line, PLAIN)
    for line in lines:
        builder.line(line.removesuffix("\r"))
    out: list[str] = []
    _children_html(builder.root.children, out)
    return Rendered("".join(out), len(data), builder.number, builder.style.sgr())

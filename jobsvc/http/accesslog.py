"""Secrets never reach a log: query values redacted as GitLab's ``filter_parameters`` does, no token headers.

GitLab replaces the value of every parameter whose name ends in ``token`` or
``key``, or contains ``password`` or ``secret`` (and a few more, listed in
``_FILTERED_NAMES``) by ``[FILTERED]`` before it logs a request. ``redact``
does the same to a request target (``/path?query``) or a URL, matching the
percent-decoded names without regard to case, and each part of a Rack-style
name (``variables[0][value]``) on its own. Userinfo (``user:password@``) is
dropped from URLs.

``AccessLogger`` writes one line per request with a fixed set of fields: the
peer, the time, the redacted request line, status, body size, the redacted
Referer, the User-Agent and the time taken. No other header is ever logged, so
PRIVATE-TOKEN, JOB-TOKEN, Authorization and Cookie cannot leak through it.
``JsonAccessLogger`` (``--access-log-format json``) writes the same fields, and
the route's pattern, as one JSON object per line (JSON lines), named as GitLab's
JSON logs name them; see ``JsonAccessLogger``.

aiohttp itself logs a malformed request with the bytes around the fault (the
request line or a header line, token and all) and a traceback;
``http_logger()`` is the logger jobsvc hands aiohttp instead, whose filter
keeps only the reason, at info: a bad request is the client's problem.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time as _time
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from jobsvc.http.metrics import route_of

FILTERED = "[FILTERED]"

# GitLab's config/application.rb filter_parameters: patterns, then names matched anywhere in a name part.
_FILTERED_PATTERNS = re.compile(r"token$|password|secret|key$|^(?:body|description|note|text|title)$")
_FILTERED_NAMES = (
    "certificate",
    "encrypted_key",
    "hook",
    "import_url",
    "otp_attempt",
    "sentry_dsn",
    "trace",
    "variables",
    "content",
)
_SEPARATORS = re.compile(r"([&;])")
_NAME_PARTS = re.compile(r"[^\[\]]+")


def is_filtered(name: str) -> bool:
    """Whether GitLab would log the value of a parameter with this (decoded) name as [FILTERED]."""
    for part in _NAME_PARTS.findall(name.lower()):
        if _FILTERED_PATTERNS.search(part) or any(word in part for word in _FILTERED_NAMES):
            return True
    return False


def redact_query(query: str) -> str:
    """A raw query string with the value of every filtered parameter replaced by [FILTERED]."""
    if not query:
        return query
    pieces = _SEPARATORS.split(query)
    for index in range(0, len(pieces), 2):
        name, equals, _value = pieces[index].partition("=")
        if equals and is_filtered(unquote_plus(name)):
            pieces[index] = f"{name}={FILTERED}"
    return "".join(pieces)


def redact(target: str) -> str:
    """A request target (``/path?query``) or an absolute URL, safe to log."""
    if "://" not in target:
        path, mark, query = target.partition("?")
        return path + mark + redact_query(query)
    try:
        parts = urlsplit(target)
    except ValueError:
        return "-"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, redact_query(parts.query), redact_query(parts.fragment)))


class AccessLogger(AbstractAccessLogger):
    """One line per request: ``peer [time] "METHOD target HTTP/x.y" status size "referer" "agent" seconds``."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        version = request.version
        referer = request.headers.get("Referer")
        self.logger.info(
            '%s [%s] "%s %s HTTP/%d.%d" %d %d "%s" "%s" %.3fs',
            request.remote or "-",
            _time.strftime("%d/%b/%Y:%H:%M:%S %z", _time.localtime()),
            request.method,
            redact(request.raw_path),
            version.major,
            version.minor,
            response.status,
            response.body_length,
            redact(referer) if referer else "-",
            request.headers.get("User-Agent", "-"),
            time,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class JsonAccessLogger(AbstractAccessLogger):
    """One JSON object per line on stderr, for log shippers: one ``orjson.dumps`` per request, no logging record.

    The names are GitLab's: ``time``, ``severity``, ``method``, ``path``, ``status``, ``duration_s``,
    ``remote_ip``, ``ua`` and ``route`` as in its ``api_json.log``, and ``referrer`` as in Workhorse's
    access log; ``written_bytes`` is the response's bytes on the connection, its head included (the text
    log's size). ``path`` has no query; ``query``, when there is one, is the raw query with every filtered
    value ``[FILTERED]`` (GitLab logs its ``params`` so). Lines are buffered and written
    together once per turn of the event loop, so a busy server makes one write for many requests.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path, _, query = request.raw_path.partition("?")
        entry: dict[str, object] = {
            "time": _now_utc(),
            "severity": "INFO",
            "method": request.method,
            "path": path,
            "status": response.status,
            "duration_s": round(time, 5),
            "written_bytes": response.body_length,
            "remote_ip": request.remote,
            "route": route_of(request),
            "ua": request.headers.get("User-Agent"),
        }
        if query:
            entry["query"] = redact_query(query)
        referer = request.headers.get("Referer")
        if referer:
            entry["referrer"] = redact(referer)
        _LINES.add(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))

    @property
    def enabled(self) -> bool:
        return True


_second: list[tuple[int, str]] = [(-1, "")]


def _now_utc() -> str:
    """Now as GitLab writes times (2015-12-24T15:51:21.802Z); the part up to the second made once a second."""
    now = _time.time()
    whole = int(now)
    second, prefix = _second[0]
    if second != whole:
        prefix = _time.strftime("%Y-%m-%dT%H:%M:%S.", _time.gmtime(whole))
        _second[0] = (whole, prefix)
    return f"{prefix}{int((now - whole) * 1000):03d}Z"


class _Lines:
    """Log lines waiting for the end of this turn of the event loop, then written to stderr in one go."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []

    def add(self, line: bytes) -> None:
        self.pending.append(line)
        if len(self.pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: write now
                self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        try:
            stream = sys.stderr.buffer
            stream.write(b"".join(lines))
            stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: the lines are lost, the server goes on
            pass


_LINES = _Lines()


def flush_json_lines() -> None:
    """Write what is still buffered (the server calls this as it stops)."""
    _LINES.flush()


class _ParserErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info[1] if record.exc_info else None
        if isinstance(failure, HttpProcessingError):
            reason = (failure.message or type(failure).__name__).split("\n", 1)[0].rstrip(": ")
            record.msg, record.args = f"{record.getMessage()}: {failure.code} {reason}", ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def http_logger() -> logging.Logger:
    """The logger for aiohttp's connection handlers: parser errors without the request's bytes."""
    logger = logging.getLogger("jobsvc.http")
    if not any(isinstance(f, _ParserErrorFilter) for f in logger.filters):
        logger.addFilter(_ParserErrorFilter())
    return logger

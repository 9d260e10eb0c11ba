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

aiohttp itself logs a malformed request with the bytes around the fault (the
request line or a header line, token and all) and a traceback;
``http_logger()`` is the logger jobsvc hands aiohttp instead, whose filter
keeps only the reason, at info: a bad request is the client's problem.
"""

from __future__ import annotations

import logging
import re
import time as _time
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

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

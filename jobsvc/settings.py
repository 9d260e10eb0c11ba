"""jobsvc's settings: one table, read from command-line flags and JOBSVC_* variables.

The README's settings table is checked against SETTINGS by a test, so a new
setting is added here, with its help text, and then documented there.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobsvc.domain import numbers
from jobsvc.domain.dburl import parse_database_url
from jobsvc.domain.durations import DurationError, parse_duration


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def parse_url(text: str) -> str:
    text = text.strip().rstrip("/")
    if text and not (text.startswith("http://") or text.startswith("https://")):
        raise ValueError(f"not an http(s) URL: {text!r}")
    return text


def parse_database(text: str) -> str:
    parse_database_url(text)
    return text.strip()


def parse_store_url(text: str) -> str:
    """An s3:// URL, or empty; the rest of it is checked when the store is opened (jobsvc.storage.s3url)."""
    text = text.strip()
    if text and not text.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {text!r} (s3://BUCKET[/PREFIX][?endpoint_url=http://HOST:PORT])")
    return text


def parse_paths(text: str) -> list[str]:
    return [part for part in text.split(os.pathsep) if part]


def _whole(text: str, low: int, high: int, what: str) -> int:
    """An integer written in ASCII digits within ``low..high`` (``int()`` would take "٥" and "1_0")."""
    try:
        number = numbers.parse_int(text)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ValueError(f"not {what}: {text!r}")
    return number


def parse_port(text: str) -> int:
    return _whole(text, 0, 65535, "a TCP port (0-65535)")


def parse_seconds(text: str) -> float:
    """A duration in seconds, fractions allowed; 0 turns the limit off."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"not a number of seconds: {text!r}")
    return seconds


def parse_count(text: str) -> int:
    return _whole(text, 0, numbers.INT64_MAX, "a whole number >= 0")


def parse_networks(text: str) -> str:
    """Comma-separated addresses or networks (``127.0.0.0/8,::1/128``), written back in their normal form."""
    networks = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(f"not an IP address or network: {part!r}") from None
    return ",".join(networks)


ACCESS_LOG_FORMATS = ("text", "json")


def parse_access_log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in ACCESS_LOG_FORMATS:
        raise ValueError(f"not an access log format: {text!r} (text or json)")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error")


def log_levels(text: str) -> tuple[str, dict[str, str]]:
    """``debug`` or ``debug,aiosqlite=debug``: jobsvc's level, then levels for named third-party loggers."""
    first, *rest = [part.strip().lower() for part in text.split(",")]
    named: dict[str, str] = {}
    for part in rest:
        name, _, level = part.partition("=")
        if not name or level not in LOG_LEVELS:
            raise ValueError(f"not a LOGGER=LEVEL pair: {part!r}")
        named[name] = level
    if first not in LOG_LEVELS:
        raise ValueError(f"not a log level: {text!r} (debug, info, warning or error)")
    return first, named


def parse_log_level(text: str) -> str:
    log_levels(text)
    return text.strip().lower()


def parse_expire_in(text: str) -> str:
    try:
        parse_duration(text)
    except DurationError:
        raise ValueError(f"not a duration: {text!r} (e.g. '30 days', '2h 30m' or 'never')") from None
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    flag_only: bool = False  # a command-line switch with no environment variable

    @property
    def env(self) -> str:
        return "JOBSVC_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "Address to listen on."),
    Setting("port", 8080, "TCP port to listen on (0 picks a free one).", parse_port),
    Setting(
        "header_timeout",
        20,
        "Seconds a client has to send a whole request head (from connecting, or from its first byte); 0: no limit.",
        parse_seconds,
    ),
    Setting("body_timeout", 60, "Seconds a request body may go without a byte arriving; 0: no limit.", parse_seconds),
    Setting("keepalive_timeout", 75, "Seconds an idle keep-alive connection stays open.", parse_seconds),
    Setting(
        "max_connections",
        500,
        "Open connections at most; past it a client gets 503 and is closed; 0: no cap.",
        parse_count,
    ),
    Setting("data_dir", "var", "Directory holding the SQLite database and the file store; created on first start."),
    Setting(
        "database_url",
        "",
        "Database: postgresql://USER:PASSWORD@HOST:PORT/DB (needs the postgres extra) or sqlite:///PATH; "
        "default: SQLite in the data directory.",
        parse_database,
    ),
    Setting(
        "store_url",
        "",
        "Keep artifacts and logs in an S3-compatible bucket instead: s3://BUCKET[/PREFIX][?endpoint_url=URL"
        "&presign=1...] (see Object storage; needs the s3 extra); default: the data directory.",
        parse_store_url,
    ),
    Setting(
        "fixtures",
        [],
        "Fixture files to load on start (repeat the flag; in the variable, separate with ':').",
        parse_paths,
    ),
    Setting(
        "demo", False, "Load the built-in demo data; without --data-dir, into a fresh temporary directory.", parse_bool
    ),
    Setting(
        "external_url",
        "",
        "Public base URL for web_url and Link headers; default: the request's own scheme and host.",
        parse_url,
    ),
    Setting(
        "jobs_rate_limit",
        600,
        "Requests per minute and user to GET /projects/:id/jobs (GitLab's project_jobs_api_rate_limit); 0 disables.",
        parse_count,
    ),
    Setting(
        "registration_token",
        "",
        "Token with which runners register (POST /api/v4/runners); empty: registration is off.",
    ),
    Setting(
        "max_artifacts_size",
        100,
        "Largest artifact upload a runner may send, in MB (GitLab's max_artifacts_size).",
        parse_count,
    ),
    Setting(
        "min_free_space",
        64,
        "Free space, in MB, that artifact uploads and log appends leave on the data directory's filesystem "
        "(they answer 507 instead), so state changes and deletes still fit; 0 disables.",
        parse_count,
    ),
    Setting(
        "trace_size_limit", 100, "Largest job log, in MB; past it the job fails with trace_size_exceeded.", parse_count
    ),
    Setting(
        "default_artifacts_expire_in",
        "30 days",
        "Expiry of uploaded artifacts without expire_in; 'never' keeps them.",
        parse_expire_in,
    ),
    Setting(
        "sweep_interval",
        60,
        "Seconds between two runs of the sweeper that removes expired artifacts; 0 turns it off.",
        parse_count,
    ),
    Setting(
        "shutdown_timeout",
        30,
        "Seconds requests in flight (downloads, uploads, log appends) get to finish after SIGTERM or SIGINT, "
        "while no new connection is taken; then they are cut off (at once on a second signal, or with 0).",
        parse_seconds,
    ),
    Setting(
        "monitoring_allowlist",
        "127.0.0.0/8,::1/128",
        "Client addresses and networks that may read /-/readiness, /-/liveness, /-/health and /-/metrics "
        "(GitLab's monitoring ip_whitelist); others get 404; empty: nobody.",
        parse_networks,
    ),
    Setting("access_log", False, "Log one line per request to stderr (costs throughput).", parse_bool),
    Setting(
        "access_log_format",
        "text",
        "The access log's lines: text (peer, request line, status, size, Referer, User-Agent, time) or json "
        "(one JSON object per line, with GitLab's field names: time, method, path, status, duration_s, ...).",
        parse_access_log_format,
    ),
    Setting(
        "log_level",
        "info",
        "Logging level of jobsvc: debug, info, warning or error; libraries log at info at most, "
        "unless named (debug,aiosqlite=debug).",
        parse_log_level,
    ),
)

SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass
class Config:
    """What the app factory needs; tests build one directly."""

    data_dir: Path
    database_url: str = ""
    store_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    header_timeout: float = 20
    body_timeout: float = 60
    keepalive_timeout: float = 75
    max_connections: int = 500
    fixtures: list[str] = field(default_factory=list)
    demo: bool = False
    external_url: str = ""
    jobs_rate_limit: int = 600
    registration_token: str = ""
    max_artifacts_size: int = 100
    min_free_space: int = 64
    trace_size_limit: int = 100
    default_artifacts_expire_in: str = "30 days"
    sweep_interval: int = 60
    shutdown_timeout: float = 30
    monitoring_allowlist: str = "127.0.0.0/8,::1/128"
    access_log: bool = False
    access_log_format: str = "text"
    log_level: str = "info"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobsvc.sqlite3"


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """Values of the JOBSVC_* variables that are set, parsed; raises ValueError naming the variable."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        if raw is None:
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ValueError(f"{setting.env}: {exc}") from None
    return values

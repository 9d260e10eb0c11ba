"""The ``--store-url`` of an S3-compatible object store: where artifacts and logs go when not on local disk.

Form::

    s3://<bucket>[/<key prefix>][?endpoint_url=http://host:port][&region=...][&addressing_style=path]
                                 [&presign=1][&presign_expiry=<seconds>]

* ``bucket``: an S3 bucket name (3-63 of ``a-z 0-9 . -``, starting and ending with a letter or digit).
* the path, if any, is a key prefix every object key is put under (``ci/`` in ``s3://b/ci``); percent-escapes
  are decoded; empty, ``.`` and ``..`` segments are refused, so the prefix is always a plain ``a/b/`` form.
* ``endpoint_url``: the S3 API of a non-AWS server (SeaweedFS, MinIO, Ceph), ``http(s)://host[:port]``
  only. Without it the store is AWS S3 of ``region``.
* ``region`` (default ``us-east-1``): signs requests (SigV4) and picks the AWS endpoint.
* ``addressing_style``: ``path`` (``host/bucket/key``; the default with an ``endpoint_url``, since a bucket
  name is rarely a resolvable host there), ``virtual`` (``bucket.host/key``) or ``auto`` (botocore decides;
  the default for AWS).
* ``presign`` (``1``/``0``, ``true``/``false``; default 0): whether downloads may be answered with a
  redirect to a presigned URL instead of being proxied; ``presign_expiry`` (seconds, default 300, at most
  SigV4's 7 days) is how long such a URL stays valid.

Credentials never go in the URL (it is logged and shown in ``--help``): they come from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), see :func:`credentials_from_env`.

This module imports nothing from aiobotocore, so a bad URL is reported even where the ``s3`` extra is
not installed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_REGION = "us-east-1"
DEFAULT_PRESIGN_EXPIRY = 300
MAX_PRESIGN_EXPIRY = 7 * 24 * 3600  # SigV4's limit on X-Amz-Expires
MAX_PREFIX = 512  # bytes; S3 keys may be 1024, and the store's own keys need room after the prefix

_BUCKET = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_IPV4 = re.compile(r"\A\d+\.\d+\.\d+\.\d+\Z")
_REGION = re.compile(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")
_DIGITS = re.compile(r"\A[0-9]{1,9}\Z")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_ADDRESSING = ("path", "virtual", "auto")
_FLAGS = {"1": True, "true": True, "0": False, "false": False}
_OPTIONS = ("endpoint_url", "region", "addressing_style", "presign", "presign_expiry")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""  # "" or "a/b/": always ends in "/"
    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    addressing_style: str = "auto"
    presign: bool = False
    presign_expiry: int = DEFAULT_PRESIGN_EXPIRY

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never the secret in a log line or a traceback
        return f"Credentials(access_key={self.access_key!r}, secret_key=***)"


def parse_store_url(url: str) -> S3Location:
    """The S3 location a ``--store-url`` names; a ValueError that says what is wrong otherwise."""
    if _CONTROL.search(url):
        raise ValueError("the store URL contains a control character")
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(f"the store URL must start with s3:// (got {url!r})")
    if parts.fragment or url.endswith("#"):
        raise ValueError("the store URL may not have a #fragment")
    options = _options(parts.query)
    endpoint_url = _endpoint(options["endpoint_url"]) if "endpoint_url" in options else None
    return S3Location(
        bucket=_bucket(parts.netloc),
        prefix=_prefix(parts.path),
        endpoint_url=endpoint_url,
        region=_region(options.get("region", DEFAULT_REGION)),
        addressing_style=_addressing(options.get("addressing_style", "path" if endpoint_url else "auto")),
        presign=_flag("presign", options.get("presign", "0")),
        presign_expiry=_expiry(options.get("presign_expiry", str(DEFAULT_PRESIGN_EXPIRY))),
    )


def credentials_from_env(environ: Mapping[str, str] = os.environ) -> Credentials:
    """The keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, if set).

    Only these: botocore's full chain would also read ~/.aws files and, with nothing found, ask the
    EC2 instance metadata service over the network, which a misconfigured server should not do.
    """
    access_key = environ.get("AWS_ACCESS_KEY_ID", "")
    secret_key = environ.get("AWS_SECRET_ACCESS_KEY", "")
    missing = [
        name for name, value in (("AWS_ACCESS_KEY_ID", access_key), ("AWS_SECRET_ACCESS_KEY", secret_key)) if not value
    ]
    if missing:
        raise ValueError(f"an s3:// store needs credentials: set {' and '.join(missing)}")
    return Credentials(access_key, secret_key, environ.get("AWS_SESSION_TOKEN") or None)


def _options(query: str) -> dict[str, str]:
    if not query:
        return {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ValueError(f"the store URL's query is not name=value pairs joined by &: {query!r}") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in _OPTIONS:
            raise ValueError(f"unknown store URL option {name!r} (known: {', '.join(_OPTIONS)})")
        if name in options:
            raise ValueError(f"store URL option {name!r} is given twice")
        options[name] = value
    return options


def _bucket(netloc: str) -> str:
    if not netloc:
        raise ValueError("the store URL names no bucket: s3://<bucket>/<prefix>")
    if "@" in netloc:
        raise ValueError("credentials do not go in the store URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if ":" in netloc:
        raise ValueError("the store URL's bucket may not have a port: the server goes in ?endpoint_url=")
    if not _BUCKET.match(netloc) or ".." in netloc or _IPV4.match(netloc):
        raise ValueError(
            f"{netloc!r} is not a valid bucket name (3-63 characters of a-z, 0-9, '.', '-', "
            "starting and ending with a letter or digit)"
        )
    return netloc


def _prefix(path: str) -> str:
    try:
        decoded = unquote(path, errors="strict").strip("/")
    except UnicodeDecodeError:
        raise ValueError("the store URL's key prefix has percent-escapes that are not UTF-8") from None
    if not decoded:
        return ""
    if _CONTROL.search(decoded):
        raise ValueError("the store URL's key prefix contains a control character")
    for segment in decoded.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"the key prefix {decoded!r} has an empty, '.' or '..' segment")
    if len(decoded.encode()) + 1 > MAX_PREFIX:
        raise ValueError(f"the key prefix is longer than {MAX_PREFIX} bytes")
    return decoded + "/"


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint_url must be an http:// or https:// URL with a host (got {value!r})")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials do not go in endpoint_url: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"endpoint_url must be scheme://host[:port] with nothing after it (got {value!r})")
    try:
        parts.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"endpoint_url has an invalid port (got {value!r})") from None
    return f"{parts.scheme}://{parts.netloc}"


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(f"region must be a region name such as us-east-1 (got {value!r})")
    return value


def _addressing(value: str) -> str:
    if value not in _ADDRESSING:
        raise ValueError(f"addressing_style must be one of {', '.join(_ADDRESSING)} (got {value!r})")
    return value


def _flag(name: str, value: str) -> bool:
    try:
        return _FLAGS[value.lower()]
    except KeyError:
        raise ValueError(f"{name} must be 1 or 0 (got {value!r})") from None


def _expiry(value: str) -> int:
    if not _DIGITS.match(value) or not 1 <= int(value) <= MAX_PRESIGN_EXPIRY:
        raise ValueError(
            f"presign_expiry must be a whole number of seconds from 1 to {MAX_PRESIGN_EXPIRY} (got {value!r})"
        )
    return int(value)

"""Tokens are kept and looked up by their SHA-256 digest, never as the secret itself."""

from __future__ import annotations

import hashlib


def token_bytes(token: str) -> bytes:
    """A token as bytes, whatever it holds: a header of bytes that are not UTF-8 reaches us as lone
    surrogates (aiohttp decodes with surrogateescape); such a token is no one's, never an error."""
    return token.encode("utf-8", "surrogatepass")


def digest(token: str) -> str:
    return hashlib.sha256(token_bytes(token)).hexdigest()

"""Who is looking at a page: a personal access token given on the sign-in page, kept in a cookie.

* The session cookie holds the token itself (base64url), ``HttpOnly`` and ``SameSite=Lax`` (so a
  ``web_url`` followed from elsewhere still opens signed in), ``Secure`` over HTTPS. The token is looked
  up on every request exactly as the API looks up a ``PRIVATE-TOKEN`` for a read, so an unknown,
  expired or revoked token or a blocked user is refused at once: the page is shown signed out and the
  cookie is cleared. Nothing is kept on the server, so any process behind a load balancer can serve.
* CSRF: the sign-in and sign-out forms carry a token that must equal a second cookie, ``HttpOnly`` and
  ``SameSite=Strict`` (a double-submit token another site can neither read nor send), and a POST whose
  ``Origin`` names another origin is refused.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from dataclasses import dataclass

from aiohttp import web

from jobsvc.domain import errors
from jobsvc.http.auth import Principal, personal_token_principal
from jobsvc.http.urls import base_url

SESSION_COOKIE = "_jobsvc_session"
CSRF_COOKIE = "_jobsvc_csrf"
CSRF_FIELD = "authenticity_token"
_CSRF_SHAPE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")
_VIEWER: web.RequestKey[Viewer] = web.RequestKey("pages_viewer")
_CSRF: web.RequestKey[str] = web.RequestKey("pages_csrf")


@dataclass(frozen=True)
class Viewer:
    principal: Principal | None
    refused: str | None = None  # why the session's token was refused (the cookie is then cleared)

    @property
    def username(self) -> str | None:
        return self.principal.user["username"] if self.principal else None


def encode_token(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode("utf-8")).decode("ascii").rstrip("=")


def decode_token(value: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def refusal(exc: errors.ApiError) -> str:
    """What the API's refusal of a token says, in words for the page."""
    description = exc.body.get("error_description") or exc.body.get("message") or "Invalid token."
    return "Invalid token." if description == "401 Unauthorized" else str(description).removeprefix("403 Forbidden - ")


async def check_token(request: web.Request, token: str) -> Principal:
    """The token's user, or the API's error (a token that is not UTF-8 or empty is nobody's: 401)."""
    if not token:
        raise errors.unauthorized()
    return await personal_token_principal(request, token)


async def viewer(request: web.Request) -> Viewer:
    """The request's viewer, looked up once per request."""
    if _VIEWER in request:
        return request[_VIEWER]
    found = Viewer(None)
    value = request.cookies.get(SESSION_COOKIE)
    if value is not None:
        token = decode_token(value)
        try:
            found = Viewer(await check_token(request, token or ""))
        except errors.ApiError as exc:
            found = Viewer(None, refused=refusal(exc))
    request[_VIEWER] = found
    return found


def csrf_token(request: web.Request) -> str:
    """The request's CSRF token: the cookie's, or a new one (sent as the cookie with the page)."""
    if _CSRF not in request:
        value = request.cookies.get(CSRF_COOKIE, "")
        request[_CSRF] = value if _CSRF_SHAPE.match(value) else secrets.token_urlsafe(32)
    return request[_CSRF]


def _secure(request: web.Request) -> bool:
    return request.secure or base_url(request).startswith("https://")


def keep_cookies(request: web.Request, response: web.StreamResponse, seen: Viewer, csrf: str) -> None:
    """Send the CSRF cookie when the browser lacks it; clear a session whose token was refused."""
    if request.cookies.get(CSRF_COOKIE) != csrf:
        response.set_cookie(CSRF_COOKIE, csrf, path="/", httponly=True, samesite="Strict", secure=_secure(request))
    if seen.refused is not None:
        forget(request, response)


def remember(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, encode_token(token), path="/", httponly=True, samesite="Lax", secure=_secure(request)
    )


def forget(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax", secure=_secure(request))


def same_origin(request: web.Request) -> bool:
    """No ``Origin`` (older browsers, curl) or this server's own; ``null`` and other origins are refused."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    own = {f"{request.scheme}://{request.host}", base_url(request).rstrip("/")}
    return origin in own


def csrf_ok(request: web.Request, form_value: str) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return (
        same_origin(request)
        and bool(_CSRF_SHAPE.match(cookie))
        and hmac.compare_digest(cookie.encode(), form_value.encode("utf-8", "replace"))
    )


def local_path(target: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site (``//host``, ``/\\host``)."""
    if (
        target
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and target.isprintable()
        and target.isascii()
    ):
        return target
    return "/"

"""Every error jobsvc answers, in GitLab's exact shapes.

GitLab (Grape) has two body shapes, and clients read both:

* ``{"message": ...}`` from ``render_api_error!`` and its helpers
  (``not_found!``, ``forbidden!``, ``bad_request!``, ...);
* ``{"error": ...}`` from parameter validation and from ``error!`` with a
  plain string (the catch-all 404 route, the offset-pagination limit).

Hierarchy::

    ApiError                 an HTTP answer with a status, a JSON body and headers
     ├─ messages built by the helpers below: unauthorized(), forbidden(), ...
     └─ ParamError           a Grape-style validation failure: 400 {"error": "<param> <problem>"}

Handlers and services raise; ``jobsvc.http.middleware.error_middleware`` turns every
ApiError (and anything unexpected, as a 500) into the response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An HTTP error answer: status, JSON body and extra headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class ParamError(ApiError):
    """Grape parameter validation: ``{"error": "scope does not have a valid value"}``."""

    def __init__(self, problems: list[str]):
        super().__init__(400, {"error": ", ".join(problems)})
        self.problems = problems


def _message(status: int, text: str, headers: Mapping[str, str] | None = None) -> ApiError:
    return ApiError(status, {"message": text}, headers)


def unauthorized() -> ApiError:
    return _message(401, "401 Unauthorized")


def forbidden(reason: str | None = None, headers: Mapping[str, str] | None = None) -> ApiError:
    return _message(403, f"403 Forbidden - {reason}" if reason else "403 Forbidden", headers)


def bad_request(reason: str | None = None) -> ApiError:
    return _message(400, f"400 Bad request - {reason}" if reason else "400 Bad request")


def not_found(what: str | None = None) -> ApiError:
    """``not_found!`` / ``not_found!('Job')``: "404 Not Found", "404 Job Not Found"."""
    return _message(404, f"404 {what} Not Found" if what else "404 Not Found")


def record_not_found() -> ApiError:
    """ActiveRecord::RecordNotFound: note the lower-case "f"."""
    return _message(404, "404 Not found")


def route_not_found() -> ApiError:
    """The catch-all route: Grape ``error!`` with a string, hence the ``error`` key."""
    return ApiError(404, {"error": "404 Not Found"})


def conflict(reason: str | None = None) -> ApiError:
    return _message(409, f"409 Conflict: {reason}" if reason else "409 Conflict")


def insufficient_storage() -> ApiError:
    """A full disk (the database's or the file store's): 507, which runners retry later."""
    return _message(507, "507 Insufficient Storage")


def internal_error() -> ApiError:
    return _message(500, "500 Internal Server Error")


_TOKEN_ERRORS = {
    "expired": "Token is expired. You can either do re-authorization or token refresh.",
    "revoked": "Token was revoked. You have to re-authorize from the user.",
}


def invalid_token(reason: str) -> ApiError:
    """rack-oauth2's 401 for an expired or revoked token, with its WWW-Authenticate header."""
    description = _TOKEN_ERRORS[reason]
    header = f'Bearer realm="", error="invalid_token", error_description="{description}"'
    return ApiError(
        401,
        {"error": "invalid_token", "error_description": description},
        {"WWW-Authenticate": header},
    )


def insufficient_scope(required: str = "api") -> ApiError:
    description = "The request requires higher privileges than provided by the access token."
    header = f'Bearer realm="", error="insufficient_scope", error_description="{description}", scope="{required}"'
    return ApiError(
        403,
        {"error": "insufficient_scope", "error_description": description, "scope": required},
        {"WWW-Authenticate": header},
    )


def rate_limited(retry_after: int) -> ApiError:
    return ApiError(
        429,
        {"message": {"error": "This endpoint has been requested too many times. Try again later."}},
        {"Retry-After": str(retry_after)},
    )

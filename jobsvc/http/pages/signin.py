"""The sign-in page (``/users/sign_in``: a personal access token in a form) and signing out."""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from jobsvc.domain import errors
from jobsvc.http.pages import respond, session

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form's text fields; anything else (another type, a broken body) is an empty form."""
    if request.content_type not in FORM_TYPES:
        return {}
    try:
        data = await request.post()
    except (ValueError, LookupError, AssertionError, HttpProcessingError):  # a body cut short, a bad part, a charset
        return {}
    return {key: value for key, value in data.items() if isinstance(value, str)}


def _sign_in_page(request: web.Request, redirect_to: str, error: str | None, status: int):
    return respond.render(request, "sign_in.html", {"redirect_to": redirect_to, "error": error}, status=status)


@respond.page
async def sign_in_form(request: web.Request) -> web.StreamResponse:
    redirect_to = session.local_path(request.query.get("redirect_to"))
    seen = await session.viewer(request)
    return await _sign_in_page(request, redirect_to, seen.refused, 200)


@respond.page
async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    redirect_to = session.local_path(form.get("redirect_to"))
    if not session.csrf_ok(request, form.get(session.CSRF_FIELD, "")):
        return await _sign_in_page(request, redirect_to, "The form has expired: please try again.", 422)
    token = form.get("token", "").strip()
    try:
        await session.check_token(request, token)
    except errors.ApiError as exc:
        return await _sign_in_page(request, redirect_to, session.refusal(exc), 401)
    response = respond.see_other(redirect_to)
    session.remember(request, response, token)
    return response


@respond.page
async def sign_out(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    if not session.csrf_ok(request, form.get(session.CSRF_FIELD, "")):
        return await respond.render(
            request, "error.html", {"status": 422, "message": "The form has expired: please try again."}, status=422
        )
    response = respond.see_other("/")
    session.forget(request, response)
    return response

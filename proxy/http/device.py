"""`/device`: where a person signs in and approves (or denies) a device code.

The CLI prints the page's address and a code; the person signs in here with their
email and password, checks that the code matches, and decides. The session is a
signed, HttpOnly, SameSite=Lax cookie (Secure behind https); every form carries the
session's CSRF token; output is escaped by Jinja; sign-ins and code guesses are
throttled by the identity service.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, redirect, render_template, request, session

from ..core.errors import GatewayError
from ..services import Services, UserRecord

PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


def device_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("device", __name__, template_folder="templates")
    identity, flow = services.identity, services.device_flow

    async def signed_in() -> UserRecord | None:
        user_id = session.get("uid")
        user = await identity.user(user_id) if isinstance(user_id, str) else None
        if user is None or not user.active:
            session.pop("uid", None)
            return None
        return user

    async def page(status: int = 200, **context: Any) -> Response:
        context.setdefault("user", None)
        context.setdefault("error", None)
        context.setdefault("user_code", "")
        context.setdefault("email", "")
        html = await render_template(
            "device.html",
            csrf_token=_csrf_token(),
            signup_open=identity.signup_open,
            **context,
        )
        return Response(html, status=status, content_type="text/html; charset=utf-8",
                        headers=PAGE_HEADERS)  # fmt: skip

    async def show(user: UserRecord | None, typed: str, status: int = 200) -> Response:
        """The page for this user and code: sign in, enter the code, or confirm it."""
        if user is None:
            return await page(status, state="sign-in", user_code=typed)
        if not typed:
            return await page(status, state="code", user=user)
        try:
            found = await flow.device_request(typed, _address())
        except GatewayError as error:
            return await page(error.status, state="code", user=user, user_code=typed,
                              error=error.message)  # fmt: skip
        return await page(status, state="confirm", user=user, user_code=found.user_code,
                          client_id=found.client_id, scope=found.scope)  # fmt: skip

    @bp.get("/device")
    async def device() -> Response:
        return await show(await signed_in(), request.args.get("user_code", "")[:64].strip())

    @bp.post("/device/sign-in")
    async def sign_in() -> Response:
        form = await _checked_form()
        typed = form.get("user_code", "")[:64].strip()
        email = form.get("email", "")[:320]
        try:
            user = await identity.sign_in(email, form.get("password", ""), _address())
        except GatewayError as error:
            return await page(error.status, state="sign-in", user_code=typed, email=email,
                              error=error.message)  # fmt: skip
        _start_session(user)
        return _back_to_device(typed)

    @bp.post("/device/sign-up")
    async def sign_up() -> Response:
        form = await _checked_form()
        typed = form.get("user_code", "")[:64].strip()
        email = form.get("email", "")[:320]
        try:
            user = await identity.sign_up(email, form.get("name", ""), form.get("password", ""))
        except GatewayError as error:
            return await page(error.status, state="sign-in", user_code=typed, email=email,
                              error=error.message)  # fmt: skip
        _start_session(user)
        return _back_to_device(typed)

    @bp.post("/device/decide")
    async def decide() -> Response:
        form = await _checked_form()
        user = await signed_in()
        typed = form.get("user_code", "")[:64].strip()
        if user is None:
            return await show(None, typed, status=401)
        approve = form.get("decision") == "approve"
        try:
            found = await flow.device_request(typed, _address())
            await flow.decide(found.user_code, user, approve)
        except GatewayError as error:
            return await page(error.status, state="code", user=user, user_code=typed,
                              error=error.message)  # fmt: skip
        return await page(state="done", user=user, approved=approve, client_id=found.client_id)

    async def reset_page(status: int = 200, **context: Any) -> Response:
        context.setdefault("error", None)
        html = await render_template("reset.html", csrf_token=_csrf_token(), **context)
        return Response(html, status=status, content_type="text/html; charset=utf-8",
                        headers=PAGE_HEADERS)  # fmt: skip

    @bp.get("/reset-password")
    async def reset_form() -> Response:
        token = request.args.get("token", "")[:200]
        user = await identity.reset_target(token)
        if user is None:
            return await reset_page(404, error="this link is unknown, used or expired: ask the "
                                    "operator for a new one")  # fmt: skip
        return await reset_page(email=user.email, token=token)

    @bp.post("/reset-password")
    async def reset() -> Response:
        form = await _checked_form()
        token = form.get("token", "")[:200]
        try:
            user = await identity.reset_password(token, form.get("password", ""))
        except GatewayError as error:
            target = await identity.reset_target(token)
            return await reset_page(error.status, error=error.message, token=token,
                                    email=target.email if target else None)  # fmt: skip
        return await reset_page(done=True, email=user.email)

    @bp.post("/device/sign-out")
    async def sign_out() -> Response:
        await _checked_form()
        session.clear()
        return _back_to_device("")

    return bp


class CSRFMismatch(GatewayError):
    status = 403
    type = "permission_error"


def _csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


async def _checked_form() -> dict[str, str]:
    """The posted form, once its CSRF token matches the session's (403 otherwise)."""
    form = await request.form
    expected = session.get("csrf")
    given = form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
        raise CSRFMismatch("the form expired or came from elsewhere; reload the page")
    return {name: form.get(name, "") for name in form}


def _start_session(user: UserRecord) -> None:
    session.clear()  # a new session id for a new identity: no fixation
    session["uid"] = user.id
    session["csrf"] = secrets.token_urlsafe(24)


def _back_to_device(user_code: str) -> Response:
    query = f"?{urlencode({'user_code': user_code})}" if user_code else ""
    return redirect(f"/device{query}", code=303)  # type: ignore[return-value]


def _address() -> str:
    return request.remote_addr or "unknown"

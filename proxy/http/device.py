"""`/device`: where a person signs in and approves (or denies) a device code.

The CLI prints the page's address and a code; the person signs in here with their
email and password, checks that the code matches, and decides. The session is a
signed, HttpOnly, SameSite=Lax cookie (Secure behind https); every form carries the
session's CSRF token; output is escaped by Jinja; sign-ins and code guesses are
throttled by the identity service.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, redirect, render_template, request, session

from ..core.errors import GatewayError
from ..services import Services, UserRecord
from .sessions import (
    PAGE_HEADERS,
    address,
    checked_form,
    csrf_token,
    signed_in_user,
    start_session,
)


def device_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("device", __name__, template_folder="templates")
    identity, flow = services.identity, services.device_flow

    async def signed_in() -> UserRecord | None:
        return await signed_in_user(identity)

    async def page(status: int = 200, **context: Any) -> Response:
        context.setdefault("user", None)
        context.setdefault("error", None)
        context.setdefault("user_code", "")
        context.setdefault("email", "")
        html = await render_template(
            "device.html",
            csrf_token=csrf_token(),
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
            found = await flow.device_request(typed, address())
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
        form = await checked_form()
        typed = form.get("user_code", "")[:64].strip()
        email = form.get("email", "")[:320]
        try:
            user = await identity.sign_in(email, form.get("password", ""), address())
        except GatewayError as error:
            return await page(error.status, state="sign-in", user_code=typed, email=email,
                              error=error.message)  # fmt: skip
        start_session(user)
        return _back_to_device(typed)

    @bp.post("/device/sign-up")
    async def sign_up() -> Response:
        form = await checked_form()
        typed = form.get("user_code", "")[:64].strip()
        email = form.get("email", "")[:320]
        try:
            user = await identity.sign_up(email, form.get("name", ""), form.get("password", ""))
        except GatewayError as error:
            return await page(error.status, state="sign-in", user_code=typed, email=email,
                              error=error.message)  # fmt: skip
        start_session(user)
        return _back_to_device(typed)

    @bp.post("/device/decide")
    async def decide() -> Response:
        form = await checked_form()
        user = await signed_in()
        typed = form.get("user_code", "")[:64].strip()
        if user is None:
            return await show(None, typed, status=401)
        approve = form.get("decision") == "approve"
        try:
            found = await flow.device_request(typed, address())
            await flow.decide(found.user_code, user, approve)
        except GatewayError as error:
            return await page(error.status, state="code", user=user, user_code=typed,
                              error=error.message)  # fmt: skip
        return await page(state="done", user=user, approved=approve, client_id=found.client_id)

    async def reset_page(status: int = 200, **context: Any) -> Response:
        context.setdefault("error", None)
        html = await render_template("reset.html", csrf_token=csrf_token(), **context)
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
        form = await checked_form()
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
        await checked_form()
        session.clear()
        return _back_to_device("")

    return bp


def _back_to_device(user_code: str) -> Response:
    query = f"?{urlencode({'user_code': user_code})}" if user_code else ""
    return redirect(f"/device{query}", code=303)  # type: ignore[return-value]

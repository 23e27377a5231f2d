"""`/oauth/authorize`: where a person lets an application (an MCP client) use their account.

The application registered itself (`POST /oauth/register`) and sent its person here with
a PKCE challenge; they sign in (the `/device` page's session), see which application asks,
and approve or deny. Either way the browser goes back to the application's registered
redirect URI; a request naming an unknown application or an unregistered URI is answered
on this page, never redirected. The page's CSP lets its form lead to that one URI only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from quart import Blueprint, Response, redirect, render_template, request

from ..core.errors import GatewayError
from ..services import AuthorizationRequest, Redirect, Services, UserRecord
from .sessions import PAGE_HEADERS, address, checked_form, csrf_token, signed_in_user, start_session

FIELDS = ("client_id", "redirect_uri", "response_type", "code_challenge",
          "code_challenge_method", "scope", "state")  # fmt: skip


def authorize_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("authorize", __name__, template_folder="templates")
    identity, codes = services.identity, services.identity.codes

    async def page(status: int, asked: AuthorizationRequest | None, **context: Any) -> Response:
        context.setdefault("user", None)
        context.setdefault("error", None)
        context.setdefault("email", "")
        html = await render_template(
            "authorize.html",
            csrf_token=csrf_token(),
            asked=asked,
            fields=asked.fields() if asked else {},
            **context,
        )
        headers = dict(PAGE_HEADERS)
        if asked is not None:  # the decision's redirect is a form's destination too
            target = urlsplit(asked.redirect_uri)
            origin = f"{target.scheme}://{target.netloc}"
            headers["content-security-policy"] = headers["content-security-policy"].replace(
                "form-action 'self'", f"form-action 'self' {origin}"
            )
        return Response(html, status=status, content_type="text/html; charset=utf-8",
                        headers=headers)  # fmt: skip

    async def checked(args: dict[str, str]) -> AuthorizationRequest | Response:
        """The request, or the answer to a bad one (a page, or a redirect to the client)."""
        try:
            return await codes.request(args)
        except Redirect as refused:
            return redirect(refused.url, code=303)  # type: ignore[return-value]
        except GatewayError as error:
            return await page(error.status, None, error=error.message)

    async def show(args: dict[str, str], status: int = 200, **context: Any) -> Response:
        asked = await checked(args)
        if isinstance(asked, Response):
            return asked
        user = await signed_in_user(identity)
        return await page(status, asked, user=user, **context)

    @bp.get("/oauth/authorize")
    async def authorize() -> Response:
        return await show({k: request.args[k][:2000] for k in FIELDS if k in request.args})

    @bp.post("/oauth/authorize/sign-in")
    async def sign_in() -> Response:
        form = await checked_form()
        args = {k: form[k] for k in FIELDS if k in form}
        email = form.get("email", "")[:320]
        try:
            user = await identity.sign_in(email, form.get("password", ""), address())
        except GatewayError as error:
            return await show(args, error.status, email=email, error=error.message)
        start_session(user)
        return redirect(f"/oauth/authorize?{urlencode(args)}", code=303)  # type: ignore[return-value]

    @bp.post("/oauth/authorize/decide")
    async def decide() -> Response:
        form = await checked_form()
        asked = await checked({k: form[k] for k in FIELDS if k in form})
        if isinstance(asked, Response):
            return asked
        user: UserRecord | None = await signed_in_user(identity)
        if user is None:
            return await page(401, asked, error="sign in first")
        if form.get("decision") != "approve":
            return redirect(codes.deny(asked), code=303)  # type: ignore[return-value]
        try:
            target = await codes.approve(asked, user)
        except GatewayError as error:
            return await page(error.status, asked, user=user, error=error.message)
        return redirect(target, code=303)  # type: ignore[return-value]

    return bp

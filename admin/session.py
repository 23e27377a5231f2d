"""Who is signed in to the admin pages, and the checks every page and form makes.

The session is Quart's signed cookie (HttpOnly, SameSite=Lax, Secure behind https),
shared with the /device page but keyed apart; it ends after `IDLE` seconds without a
request. Only users with the admin role get in (403 otherwise); every form carries the
session's CSRF token (403 without it, before anything changes).
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from quart import request, session

from proxy.core.errors import GatewayError
from proxy.services import Services, UserRecord

IDLE = 30 * 60  # seconds
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


class NotSignedIn(Exception):
    """No admin session: the page redirects to sign-in."""


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"


async def current_admin(services: Services) -> UserRecord:
    user_id, seen = session.get("admin_uid"), session.get("admin_seen", 0)
    if not isinstance(user_id, str) or time.time() - float(seen) > IDLE:
        session.pop("admin_uid", None)
        raise NotSignedIn()
    user = await services.identity.user(user_id)
    if user is None or not user.active:
        session.pop("admin_uid", None)
        raise NotSignedIn()
    if not user.is_admin:
        raise Forbidden("this account is not an administrator")
    session["admin_seen"] = int(time.time())
    return user


def start(user: UserRecord) -> None:
    keep_csrf = session.get("csrf")
    session.clear()  # a new identity, a new session
    session["admin_uid"] = user.id
    session["admin_seen"] = int(time.time())
    session["csrf"] = keep_csrf if isinstance(keep_csrf, str) else secrets.token_urlsafe(24)


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


async def checked_form() -> dict[str, str]:
    """The posted form once its CSRF token matches the session's; 403 otherwise."""
    form = await request.form
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(
        expected, form.get("csrf_token", "")
    ):
        raise Forbidden("the form expired or came from elsewhere; reload the page")
    return {name: form.get(name, "") for name in form}


def address() -> str:
    return request.remote_addr or "unknown"


def page_context(admin: UserRecord | None, **extra: Any) -> dict[str, Any]:
    return {"admin": admin, "csrf_token": csrf_token(), **extra}

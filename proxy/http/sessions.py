"""The people-facing pages' session: a signed cookie holding who signed in and a CSRF token.

The cookie is HttpOnly and SameSite=Lax (Secure behind https); every form carries the
session's CSRF token, compared in constant time; signing in starts a new session.
"""

from __future__ import annotations

import hmac
import secrets

from quart import request, session

from ..core.errors import GatewayError
from ..services import IdentityService, UserRecord

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


async def signed_in_user(identity: IdentityService) -> UserRecord | None:
    """Who this browser signed in as, while their account is active."""
    user_id = session.get("uid")
    user = await identity.user(user_id) if isinstance(user_id, str) else None
    if user is None or not user.active:
        session.pop("uid", None)
        return None
    return user


class CSRFMismatch(GatewayError):
    status = 403
    type = "permission_error"


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


async def checked_form() -> dict[str, str]:
    """The posted form, once its CSRF token matches the session's (403 otherwise)."""
    form = await request.form
    expected = session.get("csrf")
    given = form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
        raise CSRFMismatch("the form expired or came from elsewhere; reload the page")
    return {name: form.get(name, "") for name in form}


def start_session(user: UserRecord) -> None:
    session.clear()  # a new session id for a new identity: no fixation
    session["uid"] = user.id
    session["csrf"] = secrets.token_urlsafe(24)


def address() -> str:
    return request.remote_addr or "unknown"

"""The admin pages: each reads through the services and renders a Jinja template.

Every page needs an administrator's session (else sign-in, or 403 for a non-admin);
every form checks the CSRF token before anything changes, and every change is written
to the audit log with who did it and from where.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, redirect, render_template, request
from quart_schema import hide

from proxy.core.errors import BadRequest, GatewayError, NotFound
from proxy.core.money import MoneyError, format_usd, usd_to_units
from proxy.services import Services, UserRecord

from . import charts
from . import session as auth
from .system_view import system_views
from .usage_view import usage_filter, usage_views

View = Callable[..., Awaitable[Response]]


def admin_blueprint(services: Services) -> Blueprint:
    bp = Blueprint(
        "admin", __name__, url_prefix="/admin", template_folder="templates", static_folder="static"
    )
    accounts, reports, admin_api = services.accounts, services.reports, services.admin

    async def render(template: str, status: int = 200, **context: Any) -> Response:
        html = await render_template(
            template,
            money=_money,
            when=_when,
            rate=_rate,
            **auth.page_context(context.pop("admin", None), **context),
        )
        return Response(
            html, status=status, content_type="text/html; charset=utf-8", headers=auth.HEADERS
        )

    def page(view: Callable[..., Awaitable[Response]]) -> View:
        """A page for administrators: its first argument is the signed-in admin."""

        @wraps(view)
        async def guarded(*args: Any, **kwargs: Any) -> Response:
            try:
                who = await auth.current_admin(services)
            except auth.NotSignedIn:
                target = "/admin/sign-in?" + urlencode({"next": request.full_path})
                return redirect(target, code=303)  # type: ignore[return-value]
            except auth.Forbidden as error:
                return await render("error.html", 403, title="Not allowed", error=error.message)
            try:
                return await view(who, *args, **kwargs)
            except GatewayError as error:
                return await render(
                    "error.html", error.status, admin=who, title="Not done", error=error.message
                )

        return hide(guarded)  # type: ignore[no-any-return]

    async def audit(who: UserRecord, action: str, target: str, detail: str = "") -> None:
        await admin_api.record(who.email, action, target, detail, auth.address())

    @bp.get("/sign-in")
    @hide
    async def sign_in_page() -> Response:
        return await render("signin.html", title="Sign in", email="")

    @bp.post("/sign-in")
    @hide
    async def sign_in() -> Response:
        form = await auth.checked_form()
        email = form.get("email", "")[:320]
        try:
            user = await services.identity.sign_in(email, form.get("password", ""), auth.address())
        except GatewayError as error:
            return await render(
                "signin.html", error.status, title="Sign in", email=email, error=error.message
            )
        if not user.is_admin:
            return await render(
                "signin.html",
                403,
                title="Sign in",
                email=email,
                error="this account is not an administrator",
            )
        auth.start(user)
        target = request.args.get("next", "/admin/")
        return redirect(target if target.startswith("/admin") else "/admin/", code=303)  # type: ignore[return-value]

    @bp.post("/sign-out")
    @hide
    async def sign_out() -> Response:
        await auth.checked_form()
        auth.session.clear()
        return redirect("/admin/sign-in", code=303)  # type: ignore[return-value]

    @bp.get("/")
    @page
    async def dashboard(who: UserRecord) -> Response:
        board = await reports.dashboard()
        windows = [
            ("last hour", board["hour"]),
            ("today (UTC)", board["day"]),
            ("last 30 days", board["month"]),
        ]
        return await render(
            "dashboard.html",
            admin=who,
            title="Dashboard",
            board=board,
            windows=windows,
            chart_requests=charts.bars(board["per_day"], "requests", title="requests"),
            chart_cost=charts.bars(board["per_day"], "cost", title="spend", show=_money),
        )

    @bp.get("/users")
    @page
    async def users(who: UserRecord) -> Response:
        q = request.args.get("q", "")[:200]
        return await render(
            "users.html", admin=who, title="Users", q=q, users=await reports.users(q)
        )

    @bp.post("/users")
    @page
    async def create_user(who: UserRecord) -> Response:
        form = await auth.checked_form()
        user = await accounts.create_user(
            form.get("email", ""), name=form.get("name", "")[:200], admin=form.get("admin") == "1"
        )
        await audit(who, "create-user", user.id, user.email)
        return redirect(f"/admin/users/{user.id}", code=303)  # type: ignore[return-value]

    @bp.get("/users/<user_id>")
    @page
    async def user_detail(who: UserRecord, user_id: str) -> Response:
        return await user_page(who, user_id)

    async def user_page(who: UserRecord, user_id: str, **extra: Any) -> Response:
        user = await services.identity.user(user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        keys = [k for k, _ in await accounts.user_keys(user.id)]
        selected = usage_filter({"user": user.id, "days": "30"})
        per_day = (await reports.usage(selected, None, 1))["per_day"]
        return await render(
            "user.html",
            ledger=await reports.ledger(user_id=user.id),
            payments=await services.payments.payments(user_id=user.id),
            admin=who,
            title=user.email,
            user=user,
            keys=keys,
            chart=charts.bars(per_day, "requests", title="requests"),
            **extra,
        )

    @bp.post("/users/<user_id>/reset-link")
    @page
    async def reset_link(who: UserRecord, user_id: str) -> Response:
        await auth.checked_form()
        user = await services.admin.user(user_id=user_id)
        link = await services.identity.reset_link(user.id)
        await audit(who, "password-reset-link", user.id, user.email)
        return await user_page(who, user_id, reset_link=link)

    @bp.post("/users/<user_id>/status")
    @page
    async def user_status(who: UserRecord, user_id: str) -> Response:
        form = await auth.checked_form()
        user = await services.admin.user(user_id=user_id)
        await accounts.set_user_status(
            user.email, form.get("status", ""), actor=who.email, address=auth.address()
        )
        return redirect(f"/admin/users/{user_id}", code=303)  # type: ignore[return-value]

    @bp.post("/users/<user_id>/keys")
    @page
    async def create_key(who: UserRecord, user_id: str) -> Response:
        form = await auth.checked_form()
        user = await services.admin.user(user_id=user_id)
        credit = _amount(form.get("credit") or "0", allow_negative=False)
        new = await accounts.create_key(
            user.email, form.get("name", "")[:200], credit=credit, actor=who.email
        )
        await audit(who, "create-key", new.record.id, f"{new.record.name}, credit {credit}")
        return await key_page(who, new.record.id, raw=new.raw, notice="key created")

    async def key_page(who: UserRecord, key_id: str, status: int = 200, **extra: Any) -> Response:
        key = await accounts.key(key_id)
        ledger = await accounts.ledger(key_id, 50)
        tiers = [t.name for t in services.settings.tiers]
        owned = await accounts.user_keys(key.user_id)
        extra.setdefault("siblings", [k for k, _ in owned if k.id != key.id and k.active])
        return await render(
            "key.html",
            status,
            admin=who,
            title=f"Key {key.name}",
            key=key,
            ledger=ledger,
            tiers=tiers,
            **extra,
        )

    @bp.get("/keys")
    @page
    async def keys(who: UserRecord) -> Response:
        f = {n: request.args.get(n, "")[:200] for n in ("owner", "status", "tier", "idle")}
        idle = int(f["idle"]) if f["idle"].isdigit() else None
        return await render(
            "keys.html",
            admin=who,
            title="Keys",
            f=f,
            keys=await reports.keys(
                owner=f["owner"], status=f["status"], tier=f["tier"], idle_days=idle
            ),
        )

    @bp.get("/keys/<key_id>")
    @page
    async def key_detail(who: UserRecord, key_id: str) -> Response:
        return await key_page(who, key_id)

    @bp.post("/keys/<key_id>/revoke")
    @page
    async def revoke(who: UserRecord, key_id: str) -> Response:
        await auth.checked_form()
        await accounts.revoke_key(key_id)
        await audit(who, "revoke-key", key_id)
        return await key_page(who, key_id, notice="revoked: its next call gets 401")

    @bp.post("/keys/<key_id>/credit")
    @page
    async def credit(who: UserRecord, key_id: str) -> Response:
        form = await auth.checked_form()
        amount = _amount(form.get("amount", ""), allow_negative=True)
        note = form.get("note", "")[:200] or None
        if form.get("confirmed") != "1":  # the preview: nothing changes yet
            key = await accounts.key(key_id)
            verb = "grant" if amount > 0 else "take back"
            text = (
                f"{verb} ${format_usd(abs(amount))} on {key.name}: balance "
                f"${format_usd(key.balance)} → ${format_usd(key.balance + amount)}"
            )
            preview = {"amount": format_usd(amount), "note": note or "", "text": text}
            return await key_page(who, key_id, preview=preview)
        done = await accounts.grant(key_id, amount, note=note, actor=who.email)
        await audit(who, done.kind, key_id, f"{format_usd(amount)} ({note or 'no note'})")
        return await key_page(who, key_id, notice=f"{done.kind} of ${format_usd(amount)} done")

    @bp.post("/keys/<key_id>/limits")
    @page
    async def limits(who: UserRecord, key_id: str) -> Response:
        form = await auth.checked_form()
        chosen = {
            "tier": form.get("tier") or None,
            "rps": _number(form.get("rps", ""), float, "requests/s"),
            "burst": _number(form.get("burst", ""), int, "burst"),
            "max_streams": _number(form.get("max_streams", ""), int, "streams"),
        }
        saved = await accounts.set_limits(key_id, **chosen)
        await audit(who, "set-limits", key_id, str(saved))
        return await key_page(who, key_id, notice="limits saved")

    @bp.post("/keys/<key_id>/move")
    @page
    async def move(who: UserRecord, key_id: str) -> Response:
        form = await auth.checked_form()
        key = await accounts.key(key_id)
        amount = _amount(form.get("amount", ""), allow_negative=False)
        _, target = await accounts.transfer(
            key.user_id, key_id, form.get("to_key", ""), amount, actor=who.email
        )
        await audit(who, "transfer", key_id, f"{format_usd(amount)} to {target.id}")
        return await key_page(who, key_id, notice=f"moved ${format_usd(amount)} to {target.name}")

    @bp.get("/audit")
    @page
    async def audit_log(who: UserRecord) -> Response:
        f = {n: request.args.get(n, "")[:100] for n in ("action", "actor", "target")}
        return await render(
            "audit.html", admin=who, title="Audit log", f=f, rows=await reports.audit(**f)
        )

    usage_views(bp, services, page, render)
    system_views(bp, services, page, render)
    bp.record_once(lambda state: hide(state.app.view_functions["admin.static"].__func__))
    return bp


def _amount(text: str, *, allow_negative: bool) -> int:
    try:
        amount = usd_to_units(text.strip())
    except MoneyError as exc:
        raise BadRequest(f"the amount: {exc}") from exc
    if amount < 0 and not allow_negative:
        raise BadRequest("the amount cannot be negative")
    if allow_negative and amount == 0:
        raise BadRequest("the amount must not be zero")
    return amount


def _number(text: str, kind: type, name: str) -> Any:
    """An optional number from a form field (empty: keep the tier's)."""
    if not text.strip():
        return None
    try:
        return kind(text.strip())
    except ValueError as exc:
        raise BadRequest(f"{name} must be a number, got {text!r}") from exc


def _money(units: int | None) -> str:
    if units is None:
        return "-"
    return f"-${format_usd(-units)}" if units < 0 else f"${format_usd(units)}"


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "0 %"

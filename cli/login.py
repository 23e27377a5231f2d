"""`tokenroute login` and `logout`: RFC 8628 against whichever issuer the gateway names."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from . import client, credentials
from .output import EXIT_SERVER, UserFacingError, emit
from .session import Session, login_record

SCOPES = "openid profile email offline_access"


def login_command(args: argparse.Namespace) -> int:
    session = Session(args)
    discovery = client.request("GET", session.api_url + "/api/v1/auth/discovery")
    client_id = discovery["client_id"]
    code = client.request("POST", discovery["device_authorization_endpoint"],
                          form={"client_id": client_id, "scope": SCOPES})  # fmt: skip
    shown = {k: code.get(k) for k in ("verification_uri", "verification_uri_complete",
                                       "user_code", "expires_in")}  # fmt: skip
    if args.json:
        print(json.dumps(shown), flush=True)  # at once: an agent relays it to its human
    else:
        print(f"Visit: {code['verification_uri']}")
        print(f"And enter code: {code['user_code']}")
        print("Waiting for authorization...", flush=True)
        if sys.stdout.isatty() and not args.no_browser:
            _open(code.get("verification_uri_complete") or code["verification_uri"])
    tokens = _poll(discovery["token_endpoint"], client_id, code)
    credentials.save_credentials({
        "api_url": session.api_url, "client_id": client_id,
        "token_endpoint": discovery["token_endpoint"], "issuer": discovery.get("issuer"),
        **login_record(tokens),
    })  # fmt: skip
    emit({"status": "logged_in", "api_url": session.api_url}, args.json, "OK logged in")
    return 0


def _poll(endpoint: str, client_id: str, code: dict[str, Any]) -> dict[str, Any]:
    interval = max(1, int(code.get("interval", 5)))
    deadline = time.monotonic() + int(code.get("expires_in", 600))
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": code["device_code"], "client_id": client_id}  # fmt: skip
    while time.monotonic() < deadline:
        time.sleep(interval)
        try:
            return client.request("POST", endpoint, form=form)  # type: ignore[no-any-return]
        except client.HTTPFailure as exc:
            error = exc.body.get("error") if isinstance(exc.body, dict) else None
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += 5
                continue
            if error == "access_denied":
                raise UserFacingError("login denied on the device page: run `tokenroute login` "
                                      "again and approve it", EXIT_SERVER) from exc  # fmt: skip
            if error == "expired_token":
                raise UserFacingError("the login code expired before it was approved: run "
                                      "`tokenroute login` again", EXIT_SERVER) from exc  # fmt: skip
            raise UserFacingError(f"login failed: {exc}", EXIT_SERVER) from exc
    raise UserFacingError("the login code expired before it was approved: run "
                          "`tokenroute login` again", EXIT_SERVER)  # fmt: skip


def _open(url: str) -> None:
    import contextlib
    import webbrowser

    with contextlib.suppress(Exception):  # no browser: the printed address is enough
        webbrowser.open(url)


def logout_command(args: argparse.Namespace) -> int:
    saved = credentials.load_credentials()
    revoked = False
    if saved and saved.get("refresh_token") and saved.get("token_endpoint"):
        revoke = str(saved["token_endpoint"]).rsplit("/", 1)[0] + "/revoke"
        try:
            client.request("POST", revoke, form={"token": saved["refresh_token"]}, timeout=10)
            revoked = True
        except UserFacingError:
            pass  # the local credentials go anyway; the refresh token expires on its own
    forgot = credentials.forget_credentials()
    human = "logged out" if forgot else "not logged in"
    emit({"logged_out": forgot, "revoked": revoked}, args.json, human)
    return 0

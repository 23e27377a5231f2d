"""`whoami`, `balance`, `usage`, `topup`, `models`, `env`, `test`: a person's (or an
agent's) view of their account, over the gateway's HTTP API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import client
from .output import EXIT_USER, UserFacingError, emit, money, table
from .session import Session

TEST_MODEL = "openai/gpt-4o-mini"


def whoami_command(args: argparse.Namespace) -> int:
    me = Session(args).call("GET", "/api/v1/me")
    human = (f"{me['display_name'] or me['email']} <{me['email']}>\n"
             f"balance {money(me['balance_usd'])}, {me['status']}, id {me['id']}")  # fmt: skip
    emit(me, args.json, human)
    return 0


def balance_command(args: argparse.Namespace) -> int:
    balance = Session(args).call("GET", "/api/v1/balance")
    emit(balance, args.json, f"{money(balance['balance_usd'])} {balance['currency']}")
    return 0


def usage_command(args: argparse.Namespace) -> int:
    if not 1 <= args.days <= 365:
        raise UserFacingError(f"--days must be from 1 to 365, got {args.days}")
    query = f"?days={args.days}" + (f"&key={args.key}" if args.key else "")
    usage = Session(args).call("GET", "/api/v1/usage" + query)
    if args.json:
        emit(usage, True, "")
        return 0
    lines = [
        f"last {usage['range_days']} days: {usage['total_requests']} requests, "
        f"{usage['total_tokens_in']} tokens in, {usage['total_tokens_out']} out, "
        f"{money(usage['total_cost_usd'])}"
    ]
    if usage.get("by_model"):
        rows = [[m["model"], str(m["requests"]), str(m["tokens_in"]), str(m["tokens_out"]),
                 money(m["cost_usd"])] for m in usage["by_model"]]  # fmt: skip
        lines += ["", table(["MODEL", "REQUESTS", "TOKENS IN", "TOKENS OUT", "COST"], rows)]
    print("\n".join(lines))
    return 0


def topup_command(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"amount_usd": args.amount}
    if args.key:
        body["key"] = args.key
    checkout = Session(args).call("POST", "/api/v1/topup", json_body=body)
    url = checkout["checkout_url"]
    gets = checkout.get("credit_usd")
    note = f" (the key gets {money(gets)} of credit)" if gets else ""
    human = f"Pay {money(checkout['amount_usd'])}{note} on this page:\n{url}"
    emit(checkout, args.json, human)
    if sys.stdout.isatty() and not args.json and not args.no_browser:
        import contextlib
        import webbrowser

        with contextlib.suppress(Exception):
            webbrowser.open(url)
    return 0


def models_command(args: argparse.Namespace) -> int:
    session = Session(args)
    key = session.api_key(getattr(args, "key", None))
    headers: dict[str, str] = {}
    listing = client.request("GET", session.api_url + "/v1/models", bearer=key,
                             headers_out=headers)  # fmt: skip
    models = listing["data"]
    if args.json:
        emit(models, True, "")
        return 0
    rows = []
    for m in models:
        pricing = m.get("pricing") or {}
        rows.append([m["id"], _per_million(pricing.get("input")),
                     _per_million(pricing.get("output")),
                     str(m.get("context_length") or "-")])  # fmt: skip
    print(table(["MODEL", "INPUT $/1M", "OUTPUT $/1M", "CONTEXT"], rows))
    limit = headers.get("x-ratelimit-limit-requests")
    if limit:
        print(f"\nthis key's rate limit: bursts of {limit} requests")
    return 0


def env_command(args: argparse.Namespace) -> int:
    session = Session(args)
    key = session.api_key(args.key)
    if args.format == "anthropic":
        raise UserFacingError("the Anthropic API is not served by this gateway yet: use "
                              "--format openai")  # fmt: skip
    print(f"OPENAI_API_KEY={key}")
    print(f"OPENAI_BASE_URL={session.api_url}/v1")
    return 0


def test_command(args: argparse.Namespace) -> int:
    session = Session(args)
    key = session.api_key(getattr(args, "key", None))
    model = args.model or _default_model(session, key)
    body = {"model": model, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Reply with the word OK."}]}  # fmt: skip
    try:
        answer = client.request("POST", session.api_url + "/v1/chat/completions",
                                json_body=body, bearer=key, timeout=120)  # fmt: skip
    except client.HTTPFailure as exc:
        if exc.status == 402:
            raise UserFacingError(
                f"{exc} -- add credit: tokenroute topup --amount 5", EXIT_USER
            ) from exc
        raise
    reply = (answer["choices"][0]["message"].get("content") or "").strip()
    data = {"ok": True, "model": model, "reply": reply, "usage": answer.get("usage")}
    emit(data, args.json, f"OK connected ({model})\nreply: {reply}")
    return 0


def _default_model(session: Session, key: str) -> str:
    """gpt-4o-mini where served, else the cheapest chat model the gateway lists."""
    listing = client.request("GET", session.api_url + "/v1/models", bearer=key)
    models = [m for m in listing["data"] if m.get("pricing") and m.get("kind", "chat") == "chat"]
    if any(m["id"] == TEST_MODEL for m in listing["data"]):
        return TEST_MODEL
    if not models:
        raise UserFacingError("the gateway lists no models to test with")

    def price(m: dict[str, Any]) -> float:
        pricing = m["pricing"]
        return float(pricing.get("input") or 0) + float(pricing.get("output") or 0)

    return str(min(models, key=price)["id"])


def _per_million(usd: Any) -> str:
    """The catalog's price (USD per 1M tokens, a string) as money."""
    return "-" if usd is None else f"${usd}"

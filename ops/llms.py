#!/usr/bin/env python3
"""Write `/llms.txt` and `/llms-full.txt` from the CLI's own parser, `/openapi.json` and the
MCP server's tools.

The gateway serves these files with `{base_url}` filled in; `tests/test_llms_txt.py`
fails when they differ from what this script writes, so they cannot drift from the
commands and routes they describe.

  .venv/bin/python ops/llms.py        # rewrite proxy/data/llms*.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.main import OPERATOR, build_parser  # noqa: E402
from proxy.core.config import Settings  # noqa: E402
from proxy.http.mcp import DESCRIPTIONS as MCP_TOOLS  # noqa: E402
from proxy.http.openapi import ROUTES  # noqa: E402

OUT = ROOT / "proxy" / "data"
SUMMARY = (
    "tokenroute is an OpenAI-compatible LLM API gateway: point any OpenAI SDK at "
    "{base_url}/v1 with an sk-tr-* key for chat completions and embeddings, and reach "
    "OpenAI, Anthropic, Google, DeepSeek, "
    "Mistral and more, with prepaid per-key balances, usage, fallback between models and "
    "auto-routing (model tokenroute/auto)."
)
SEQUENCE = """\
tokenroute login                              # OAuth device flow: relay the code to your human
tokenroute keys create --name myapp --json    # {"raw": "sk-tr-..."}: shown once, cached
tokenroute env >> .env                        # OPENAI_API_KEY + OPENAI_BASE_URL={base_url}/v1
tokenroute test                               # OK connected (<model>)
tokenroute topup --amount 5 --json            # on 402: hand the checkout URL to your human;
                                              # never pay on their behalf"""
EXIT_CODES = """\
0  success
1  user error or any 4xx: bad input, insufficient balance (402), no key, not logged in
2  network error: the gateway could not be reached (retry with backoff)
3  server error: a 5xx, or a login that was denied or expired"""
MCP = """\
{base_url}/mcp is a remote MCP server (streamable HTTP) with the same account tools:
Authorization: Bearer <sk-tr key or login token>. For Claude Code:
claude mcp add --transport http tokenroute {base_url}/mcp --header "Authorization: Bearer sk-tr-..."
"""
ERRORS = """\
401 authentication_error  missing, bad or revoked key or login
402 insufficient_quota    balance exhausted: top up
429 rate_limit_error      slow down (Retry-After)
503 service_unavailable   try again shortly"""


def commands() -> list[tuple[str, str, list[str]]]:
    """(command, help, flags) for every account command, from the parser itself."""
    parser = build_parser(["admin"])
    found: list[tuple[str, str, list[str]]] = []

    def walk(sub: argparse.ArgumentParser, prefix: str) -> None:
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                for name, child in action.choices.items():
                    if name in OPERATOR:  # the operator's commands are not for agents
                        continue
                    walk(child, f"{prefix} {name}".strip())
                    if not any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                        found.append((f"{prefix} {name}".strip(), helps.get(name) or "",
                                      _flags(child)))  # fmt: skip

    walk(parser, "")
    return found


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    flags = []
    for action in parser._actions:
        if action.dest == "help":
            continue
        name = action.option_strings[0] if action.option_strings else action.dest.upper()
        metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
        takes = action.option_strings and not isinstance(action, argparse._StoreTrueAction)
        required = " (required)" if action.required and action.option_strings else ""
        described = f": {action.help}" if action.help else ""
        flags.append(
            f"{name}{' ' + str(metavar) if takes and metavar else ''}{required}{described}"
        )
    return flags


def endpoints() -> list[str]:
    from proxy.app import create_app

    app = create_app(Settings(db_path=Path("unused.db")))
    schema: dict[str, Any] = app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    lines = []
    for path, methods in sorted(schema["paths"].items()):
        for method, operation in methods.items():
            auth = {s for entry in operation.get("security", []) for s in entry}
            who = " (X-Internal-Secret)" if "internalSecret" in auth else (
                " (Bearer)" if "bearer" in auth else "")  # fmt: skip
            lines.append(f"{method.upper():6} {path}{who}")
    assert len(ROUTES) + 1 <= len(lines)  # every described route, and the chat route
    return lines


def render() -> tuple[str, str]:
    short = "\n".join([
        "# tokenroute", "", f"> {SUMMARY}", "",
        "## For AI agents", "", "```bash", SEQUENCE, "```", "",
        "## MCP", "", MCP + "Tools: " + ", ".join(MCP_TOOLS) + ".", "",
        "## Docs", "",
        "- [OpenAPI document]({base_url}/openapi.json): every endpoint, request and response",
        "- [Full reference]({base_url}/llms-full.txt): CLI commands, endpoints, error and "
        "exit codes",
        "- [Discovery]({base_url}/api/v1/auth/discovery): issuer, client_id and endpoints "
        "for RFC 8628 device flow",
        "",
        "## Anthropic clients", "",
        "Claude Code and the Anthropic SDKs: ANTHROPIC_BASE_URL={base_url} and "
        "ANTHROPIC_API_KEY=sk-tr-... (POST /v1/messages, /v1/messages/count_tokens; any "
        "model id: claude-sonnet-4-5, openai/gpt-4o-mini, tokenroute/auto). Errors in "
        "Anthropic's shape: 402 billing_error is an exhausted balance.",
        "",
    ])  # fmt: skip
    full = [short, "## CLI reference", "",
            "Every command takes --json (or TOKENROUTE_JSON=1) and --api-url (or "
            "TOKENROUTE_API_URL, default {base_url}); TOKENROUTE_API_KEY skips login for the "
            "commands a key may run. Credentials: ~/.tokenroute/credentials.json; the last "
            "key made: ~/.tokenroute/last_key.txt.", ""]  # fmt: skip
    for name, help_text, flags in commands():
        full.append(f"### tokenroute {name}")
        full.append(help_text)
        full.extend(f"- {flag}" for flag in flags)
        full.append("")
    full += ["## MCP tools", "", *(f"- {name}: {text}" for name, text in MCP_TOOLS.items()),
             ""]  # fmt: skip
    full += ["## Exit codes", "", "```", EXIT_CODES, "```", "",
             "## Endpoints", "", "```", *endpoints(), "```", "",
             "## Errors", "", "OpenAI's envelope: "
             '{"error": {"message": "...", "type": "...", "code": 401}}', "",
             "```", ERRORS, "```", ""]  # fmt: skip
    return short, "\n".join(full)


def main() -> int:
    short, full = render()
    (OUT / "llms.txt").write_text(short)
    (OUT / "llms-full.txt").write_text(full)
    print(f"wrote {OUT / 'llms.txt'} and {OUT / 'llms-full.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

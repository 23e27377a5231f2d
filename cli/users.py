"""Operator identity commands: passwords, enabling and disabling users, approving a
device code from the server's terminal, rotating the token signing key.

Passwords are read from standard input (one line), never from the command line,
where other users of the machine could see them.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from proxy.services import OperatorServices, UserRecord

from .common import UserFacingError, iso, run_operator
from .output import emit


def add_commands(sub: Any) -> list[argparse.ArgumentParser]:
    password = sub.add_parser("set-password", help="set a user's password (read from stdin)")
    password.add_argument("--email", required=True)
    password.add_argument("--password-stdin", action="store_true", required=True,
                          help="read the password from standard input (one line)")  # fmt: skip
    password.set_defaults(run=set_password_command)

    disable = sub.add_parser("disable-user", help="disable a user: their logins and keys get 401")
    disable.add_argument("--email", required=True)
    disable.set_defaults(run=status_command, status="disabled")

    enable = sub.add_parser("enable-user", help="enable a disabled user again")
    enable.add_argument("--email", required=True)
    enable.set_defaults(run=status_command, status="active")

    approve = sub.add_parser("approve-device", help="approve a pending device code for a user")
    approve.add_argument("code", help="the user code the login shows, e.g. BCDF-GHJK")
    approve.add_argument("--email", required=True, help="the user who logs in")
    approve.set_defaults(run=approve_command)

    rotate = sub.add_parser(
        "rotate-signing-key", help="sign new login tokens with a new key (old ones stay valid)"
    )
    rotate.set_defaults(run=rotate_command)
    return [password, disable, enable, approve, rotate]


def read_password() -> str:
    """One line from stdin without its line ending; at a terminal, asked without echo."""
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    line = sys.stdin.readline()
    if not line:
        raise UserFacingError("--password-stdin: nothing on standard input")
    return line.rstrip("\r\n")


def user_json(user: UserRecord) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "is_admin": user.is_admin,
        "status": user.status,
        "created_at": iso(user.created_at),
    }


def set_password_command(args: argparse.Namespace) -> int:
    password = read_password()

    async def set_password(ops: OperatorServices) -> UserRecord:
        return await ops.identity.set_password(args.email, password)

    user = run_operator(args, set_password)
    emit(user_json(user), args.json, f"password set for {user.email}")
    return 0


def status_command(args: argparse.Namespace) -> int:
    async def change(ops: OperatorServices) -> UserRecord:
        return await ops.accounts.set_user_status(args.email, args.status, actor="cli")

    user = run_operator(args, change)
    verb = "disabled" if user.status == "disabled" else "enabled"
    emit(user_json(user), args.json, f"{verb} {user.email}")
    return 0


def approve_command(args: argparse.Namespace) -> int:
    async def approve(ops: OperatorServices) -> Any:
        return await ops.device_flow.approve_as(args.code, args.email)

    found = run_operator(args, approve)
    data = {"user_code": found.user_code, "client_id": found.client_id, "email": args.email,
            "status": found.status}  # fmt: skip
    emit(data, args.json, f"approved {found.user_code} for {args.email} ({found.client_id})")
    return 0


def rotate_command(args: argparse.Namespace) -> int:
    async def rotate(ops: OperatorServices) -> str:
        return await ops.identity.rotate_signing_key()

    kid = run_operator(args, rotate)
    emit({"kid": kid}, args.json, f"new signing key {kid}; tokens signed before stay valid")
    return 0

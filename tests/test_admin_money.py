"""`tokenroute admin grant|ledger|set-limits` as real subprocesses on a database file."""

from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import run_cli, run_json


async def make_key(db: str, credit: str = "5") -> dict[str, str]:
    await run_json("admin", "create-user", "--email", "m@example.com", "--db", db)
    return await run_json(  # type: ignore[no-any-return]
        "admin", "create-key", "--email", "m@example.com", "--name", "k", "--credit", credit,
        "--db", db,
    )  # fmt: skip


async def test_grant_and_ledger_newest_first(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    key = await make_key(db)
    granted = await run_json(
        "admin", "grant", "--key", key["id"], "--amount", "2.5", "--note", "promo", "--db", db
    )
    assert granted == {
        "key_id": key["id"],
        "kind": "grant",
        "amount_usd": "2.50",
        "balance_usd": "7.50",
    }
    taken = await run_json(
        "admin", "grant", "--key", key["id"], "--amount", "-0.000001", "--db", db
    )
    assert taken["kind"] == "adjustment" and taken["balance_usd"] == "7.499999"
    ledger = await run_json("admin", "ledger", "--key", key["id"], "--db", db)
    entries = ledger["entries"]
    assert [(e["kind"], e["amount_usd"]) for e in entries] == [
        ("adjustment", "-0.000001"),
        ("grant", "2.50"),
        ("grant", "5.00"),
    ]
    assert entries[1]["note"] == "promo" and entries[0]["created_at"].endswith("+00:00")
    human = await run_cli("admin", "ledger", "--key", key["id"], "--db", db)
    assert human.returncode == 0 and human.stdout.splitlines()[0].split()[1] == "adjustment"


async def test_money_commands_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    key = await make_key(db, credit="1")
    cases = [
        (("grant", "--key", key["id"], "--amount", "five"), "--amount"),
        (("grant", "--key", key["id"], "--amount", "-2"), "below zero"),
        (("grant", "--key", "nope", "--amount", "1"), "no key with id nope"),
        (("ledger", "--key", "nope"), "no key with id nope"),
        (("set-limits", "--key", key["id"], "--tier", "gold"), "no tier named 'gold'"),
        (("set-limits", "--key", key["id"], "--rps", "0"), "--rps"),
        (("set-limits", "--key", key["id"], "--rps", "nan"), "rps must be a number above 0"),
        (("set-limits", "--key", key["id"], "--rps", "inf"), "rps must be a number above 0"),
        (("set-limits", "--key", key["id"]), "nothing to change"),
    ]
    for args, message in cases:
        done = await run_cli("admin", *args, "--db", db)
        assert done.returncode == 1, args
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    limits = await run_json(
        "admin", "set-limits", "--key", key["id"], "--rps", "2.5", "--max-streams", "3", "--db", db
    )
    assert limits == {
        "key_id": key["id"],
        "tier": None,
        "rps": 2.5,
        "burst": None,
        "max_streams": 3,
    }

"""`kinema admin ...`: accounts, API keys, credit grants and plans, straight on the service's database.

    kinema admin create-account alice --plan pro      # prints the account id and a new API key
    kinema admin create-key alice
    kinema admin grant alice 500
    kinema admin set-plan alice standard
    kinema admin plan team --monthly-credits 50000 --concurrency 8 --priority 20
    kinema admin show alice
    kinema admin image-hash banned/*.png >> blocked-images.txt   # then: kinema serve --blocked-images blocked-images.txt
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

admin_app = typer.Typer(no_args_is_help=True, help="Manage accounts, API keys, credits and plans.")

DataDir = typer.Option(Path("kinema-data"), "--data-dir", help="The service's data directory (SQLite database).")
DatabaseUrl = typer.Option(None, "--database-url", help="SQLAlchemy URL (default: SQLite in --data-dir).")


def _sessions(data_dir: Path, database_url: str | None) -> Any:
    from kinema.service.app import seed_plans
    from kinema.service.db import open_database
    from kinema.service.settings import Settings

    settings = Settings(data_dir=data_dir, database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _, sessions = open_database(settings.url)
    seed_plans(sessions, settings)
    return sessions


@admin_app.command("create-account")
def create_account_cmd(name: str, plan: str = typer.Option("free", help="free, standard, pro or one made with `admin plan`."),
                       data_dir: Path = DataDir, database_url: str | None = DatabaseUrl) -> None:  # fmt: skip
    """Create an account (credited with its plan's monthly credits) and its first API key."""
    from kinema.service.accounts import create_account, create_key

    s = _sessions(data_dir, database_url)
    acct = create_account(s, name, plan)
    typer.echo(f"account {acct} ({name}, plan {plan})")
    typer.echo(f"api key: {create_key(s, acct)}  (shown once; only its hash is stored)")


@admin_app.command("create-key")
def create_key_cmd(account: str, data_dir: Path = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """A new API key for an account (by name or id)."""
    from kinema.service.accounts import create_key, find_account

    s = _sessions(data_dir, database_url)
    typer.echo(f"api key: {create_key(s, find_account(s, account))}  (shown once)")


@admin_app.command("revoke-key")
def revoke_key_cmd(prefix: str, data_dir: Path = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """Revoke the key(s) starting with PREFIX (the first 8 characters)."""
    from kinema.service.accounts import revoke_key

    typer.echo(f"revoked {revoke_key(_sessions(data_dir, database_url), prefix)} key(s)")


@admin_app.command("grant")
def grant_cmd(account: str, credits: int, note: str = typer.Option("admin grant"), data_dir: Path = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """Add credits to an account."""
    from kinema.service.accounts import find_account, grant

    s = _sessions(data_dir, database_url)
    typer.echo(f"balance: {grant(s, find_account(s, account), credits, note)} credits")


@admin_app.command("set-plan")
def set_plan_cmd(account: str, plan: str, data_dir: Path = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """Move an account to another plan."""
    from kinema.service.accounts import find_account, set_plan

    s = _sessions(data_dir, database_url)
    set_plan(s, find_account(s, account), plan)
    typer.echo(f"{account}: plan {plan}")


@admin_app.command("plan")
def plan_cmd(name: str, monthly_credits: int = typer.Option(...), concurrency: int = typer.Option(1), priority: int = typer.Option(0),
             data_dir: Path = DataDir, database_url: str | None = DatabaseUrl) -> None:  # fmt: skip
    """Create or change a plan."""
    from kinema.service.accounts import upsert_plan

    upsert_plan(_sessions(data_dir, database_url), name, monthly_credits, concurrency, priority)
    typer.echo(f"plan {name}: {monthly_credits} credits/month, {concurrency} at once, priority {priority}")


@admin_app.command("show")
def show_cmd(account: str, data_dir: Path = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """An account's plan and balance."""
    from kinema.service import ledger
    from kinema.service.accounts import find_account
    from kinema.service.db import Account

    s = _sessions(data_dir, database_url)
    acct_id = find_account(s, account)
    with s() as session:
        acct = session.get(Account, acct_id)
        typer.echo(f"account {acct_id} ({acct.name}), plan {acct.plan}, balance {ledger.balance(session, acct_id)} credits")


@admin_app.command("image-hash")
def image_hash_cmd(images: list[Path]) -> None:
    """Print each image's perceptual hash: a line of the file `kinema serve --blocked-images` reads."""
    from kinema.errors import KinemaInputError
    from kinema.service.moderation import image_hash_file

    for image in images:
        if not image.is_file():
            raise KinemaInputError(f"{image}: no such image file")
        typer.echo(f"{image_hash_file(image)}  # {image.name}")


def register(app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")

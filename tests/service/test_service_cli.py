"""`kinema admin` against a fresh data directory, and `kinema serve`'s option checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from typer.testing import CliRunner

from kinema.cli import app


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_admin_creates_accounts_keys_grants_and_plans(tmp_path: Path) -> None:
    d = str(tmp_path)
    r = run("admin", "create-account", "alice", "--plan", "standard", "--data-dir", d)
    assert r.exit_code == 0, r.output
    key = re.search(r"api key: (kn_\S+)", r.output).group(1)
    assert "balance 2000 credits" in run("admin", "show", "alice", "--data-dir", d).output
    assert "balance: 2500 credits" in run("admin", "grant", "alice", "500", "--data-dir", d).output
    assert run("admin", "plan", "team", "--monthly-credits", "50000", "--concurrency", "8", "--priority", "20", "--data-dir", d).exit_code == 0
    assert run("admin", "set-plan", "alice", "team", "--data-dir", d).exit_code == 0
    assert "plan team" in run("admin", "show", "alice", "--data-dir", d).output
    key2 = re.search(r"api key: (kn_\S+)", run("admin", "create-key", "alice", "--data-dir", d).output).group(1)
    assert key2 != key
    assert "revoked 1 key" in run("admin", "revoke-key", key2[:8], "--data-dir", d).output

    from kinema.service.app import hash_key
    from kinema.service.db import ApiKey, open_database
    from kinema.service.settings import Settings

    engine, sessions = open_database(Settings(data_dir=tmp_path).url)
    with sessions() as s:
        stored = [k.key_hash for k in s.query(ApiKey).all()]
    engine.dispose()
    assert hash_key(key) in stored and key not in stored  # only the hash is kept


def test_admin_refuses_unknown_accounts_and_plans(tmp_path: Path) -> None:
    d = str(tmp_path)
    r = run("admin", "create-account", "bob", "--plan", "platinum", "--data-dir", d)
    assert r.exit_code != 0 and "unknown plan" in str(r.exception or r.output)
    r = run("admin", "grant", "nobody", "5", "--data-dir", d)
    assert r.exit_code != 0 and "no account" in str(r.exception or r.output)


def test_serve_refuses_an_unknown_executor(tmp_path: Path) -> None:
    r = run("serve", "--executor", "k8s", "--data-dir", str(tmp_path))
    assert r.exit_code != 0 and "--executor" in str(r.exception or r.output)

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

    from kinema.service.accounts import hash_key
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


def _serve_settings(monkeypatch: pytest.MonkeyPatch, *args: str):
    """Run `kinema serve ARGS` up to the point where it would start listening; return its Settings."""
    import uvicorn

    import kinema.service.app as service_app

    seen = {}
    monkeypatch.setattr(service_app, "create_app", lambda settings, factory: seen.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    r = run("serve", *args)
    return r, seen.get("settings")


def test_blocked_images_and_upload_limits_reach_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from media_helpers import png

    from kinema.service.moderation import image_hash_file

    image = tmp_path / "banned.png"
    image.write_bytes(png(pattern=True))
    r = run("admin", "image-hash", str(image))
    assert r.exit_code == 0, r.output
    assert r.output.split()[0] == image_hash_file(image)
    blocked = tmp_path / "blocked.txt"
    blocked.write_text("# refused inputs\n" + r.output + "\n")
    r, settings = _serve_settings(monkeypatch, "--data-dir", str(tmp_path), "--blocked-images", str(blocked), "--max-upload-mib", "1", "--max-media-upload-mib", "2.5")
    assert r.exit_code == 0, r.output
    assert settings.moderation_image_hashes == (image_hash_file(image),)
    assert settings.max_upload_bytes == 1024 * 1024 and settings.max_media_upload_bytes == int(2.5 * 1024 * 1024)


def test_a_bad_blocked_images_file_or_limit_stops_serve_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(r, settings, needle: str) -> bool:  # (the CLI's entry point turns KinemaInputError into one line and exit 2)
        return r.exit_code != 0 and settings is None and needle in str(r.exception or r.output)

    blocked = tmp_path / "blocked.txt"
    blocked.write_text("0123456789abcdef\nnot-a-hash\n")
    assert refused(*_serve_settings(monkeypatch, "--data-dir", str(tmp_path), "--blocked-images", str(blocked)), "blocked.txt:2")
    assert refused(*_serve_settings(monkeypatch, "--data-dir", str(tmp_path), "--blocked-images", str(tmp_path / "missing.txt")), "missing.txt")
    assert refused(*_serve_settings(monkeypatch, "--data-dir", str(tmp_path), "--max-upload-mib", "0"), "--max-upload-mib")
    assert refused(run("admin", "image-hash", str(tmp_path / "nope.png")), None, "nope.png")

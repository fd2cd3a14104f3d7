"""Embedded-mode files are their owner's alone: in a fresh VAR_DIR the real commands create the
SQLite database, the secret key, outgoing mail, the content-credentials CA and the chain signer
with mode 0600 in folders with mode 0700, even under the common umask 022."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory) -> Path:
    var = tmp_path_factory.mktemp("embedded") / "var"  # created by the platform itself
    env = {key: value for key, value in os.environ.items()
           if key not in {"DATABASE_URL", "SQLITE_PATH", "REDIS_URL", "BROKER_URL", "SECRET_KEY", "EMAIL_BACKEND",
                          "DEPLOYMENT", "CHAIN_RPC_URL", "CHAIN_DIR", "RIGHTS_KEYS_DIR", "MEDIA_ROOT"}}
    env["VAR_DIR"] = str(var)

    def manage(*args):
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=300, preexec_fn=lambda: os.umask(0o022))
        assert result.returncode == 0, result.stderr[-3000:]

    manage("migrate", "--no-input", "-v", "0")
    manage("sendtestemail", "someone@example.test")
    manage("setup_ca")
    manage("shell", "-c", "from rights.chain import chain_signer; chain_signer()")
    return var


def test_the_folder_and_the_database_are_the_owners_only(var_dir):
    assert mode(var_dir) == 0o700
    database = var_dir / "db.sqlite3"
    assert database.stat().st_size > 0  # migrated: the file SQLite used is the one created 0600
    for path in [database, *var_dir.glob("db.sqlite3-*")]:
        assert mode(path) == 0o600, path
    assert mode(var_dir / "secret_key") == 0o600


def test_outgoing_mail_is_the_owners_only(var_dir):
    mails = list((var_dir / "mail").iterdir())
    assert mails and b"someone@example.test" in mails[0].read_bytes()
    assert mode(var_dir / "mail") == 0o700
    assert all(mode(path) == 0o600 for path in mails), [(path, oct(mode(path))) for path in mails]


def test_key_files_are_the_owners_only(var_dir):
    keys = var_dir / "keys"
    assert mode(keys) == 0o700
    pems = list(keys.glob("*.pem")) + list(keys.glob("*.key"))
    assert pems, list(keys.iterdir())
    assert all(mode(path) == 0o600 for path in pems), [(path.name, oct(mode(path))) for path in pems]
    assert mode(var_dir / "chain") == 0o700
    assert mode(var_dir / "chain" / "signer.key") == 0o600

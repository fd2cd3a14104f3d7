"""Production refuses unsafe settings; `check --deploy` is clean with the required variables."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "Zq8#mP2$vL9!xR4&tN7*wB3^" + "y" * 20


def manage(*args, env_overrides):
    env = {key: value for key, value in os.environ.items()
           if key not in {"DATABASE_URL", "REDIS_URL", "BROKER_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"}}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def production_env(tmp_path, **overrides):
    env = {
        "DEPLOYMENT": "production",
        "SECRET_KEY": GOOD_KEY,
        "ALLOWED_HOSTS": "studio.example.com",
        "DATABASE_URL": "postgres://platform@127.0.0.1:5432/platform",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "VAR_DIR": str(tmp_path),
    }
    env.update(overrides)
    return {key: value for key, value in env.items() if value is not None}


@pytest.mark.parametrize(
    "overrides, complaint",
    [
        ({"DEBUG": "1"}, "DEBUG is on"),
        ({"SECRET_KEY": None}, "SECRET_KEY is missing"),
        ({"SECRET_KEY": "django-insecure-" + "x" * 60}, "SECRET_KEY is missing, a default"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS is empty"),
        ({"DATABASE_URL": None}, "DATABASE_URL is not set"),
        ({"REDIS_URL": None}, "REDIS_URL is not set"),
        ({"OUTBOUND_ALLOW_PRIVATE_URLS": "1"}, "OUTBOUND_ALLOW_PRIVATE_URLS (or WEBHOOK_ALLOW_PRIVATE_URLS) is on"),
        ({"WEBHOOK_ALLOW_PRIVATE_URLS": "1"}, "without OUTBOUND_ALLOWED_NETWORKS"),
    ],
)
def test_production_refuses_to_start_with_unsafe_settings(tmp_path, overrides, complaint):
    result = manage("check", env_overrides=production_env(tmp_path, **overrides))
    assert result.returncode != 0
    assert "refusing to start in production" in result.stderr and complaint in result.stderr


def test_production_opens_private_addresses_only_as_listed_networks(tmp_path):
    listed = manage("check", env_overrides=production_env(
        tmp_path, OUTBOUND_ALLOW_PRIVATE_URLS="1", OUTBOUND_ALLOWED_NETWORKS="10.20.0.0/16, fd12::/64"))
    assert listed.returncode == 0, listed.stderr
    malformed = manage("check", env_overrides=production_env(tmp_path, OUTBOUND_ALLOWED_NETWORKS="10.0.0.0/8,nope"))
    assert malformed.returncode != 0 and "OUTBOUND_ALLOWED_NETWORKS: 'nope' is not a network" in malformed.stderr


HALF_KEYS = "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set together"


@pytest.mark.parametrize("overrides, complaint", [
    ({"S3_ACCESS_KEY_ID": None}, "STORAGE_BACKEND is s3 but S3_BUCKET is not set"),
    ({"S3_BUCKET": "media", "S3_SECRET_ACCESS_KEY": None}, HALF_KEYS),
    ({"S3_BUCKET": "media", "S3_ACCESS_KEY_ID": None}, HALF_KEYS),
])
def test_s3_storage_refuses_to_start_half_configured(tmp_path, overrides, complaint):
    env = {"STORAGE_BACKEND": "s3", "S3_ACCESS_KEY_ID": "key", "S3_SECRET_ACCESS_KEY": "secret", **overrides}
    result = manage("check", env_overrides=production_env(tmp_path, **env))
    assert result.returncode != 0 and complaint in result.stderr


def test_check_deploy_passes_with_production_settings(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_embedded_mode_needs_nothing_and_keeps_its_secret_outside_the_repo(tmp_path):
    result = manage("check", env_overrides={"VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    key_file = tmp_path / "secret_key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert len(key_file.read_text()) >= 50

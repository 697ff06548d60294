"""Settings: every bad value stops start-up with one line naming the variable."""
import os
import subprocess
import sys

import pytest

from app import create_app
from core.platform.settings import Settings, SettingsError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_match_the_contract():
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///instance/app.db"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.storage_backend == "local" and s.local_storage_root == "instance/storage"
    assert s.minio_bucket == "evidence" and s.minio_secure is False and s.minio_region == "us-east-1"
    assert s.signed_url_ttl_seconds == 3600
    assert s.av_scan_enabled is True and s.av_scanner == "eicar"
    assert s.clamd_url == "tcp://127.0.0.1:3310"
    assert s.allowed_file_types == ("pdf", "jpg", "jpeg", "png", "csv")
    assert s.max_upload_mb == 25 and s.evidence_retention_days == 730 and s.kajabi_raw_retention_days == 365
    assert s.enable_internal_endpoints is False and s.unmatched_alert_threshold == 50
    assert s.cron_secret == "" and s.kajabi_webhook_secret == ""
    assert len(s.secret_key) >= 32  # random per run in development


@pytest.mark.parametrize("env, names", [
    ({"MAX_UPLOAD_MB": "abc"}, "MAX_UPLOAD_MB"),
    ({"MAX_UPLOAD_MB": "0"}, "MAX_UPLOAD_MB"),
    ({"AV_SCAN_ENABLED": "maybe"}, "AV_SCAN_ENABLED"),
    ({"AV_SCANNER": "norton"}, "AV_SCANNER"),
    ({"STORAGE_BACKEND": "s3"}, "STORAGE_BACKEND"),
    ({"STORAGE_BACKEND": "minio"}, "MINIO_ENDPOINT"),
    ({"DATABASE_URL": "postgresql://x/y"}, "DATABASE_URL"),
    ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
    ({"CLAMD_URL": "http://x"}, "CLAMD_URL"),
    ({"ALLOWED_FILE_TYPES": "pdf,exe"}, "ALLOWED_FILE_TYPES"),
    ({"ENABLE_INTERNAL_ENDPOINTS": "2"}, "ENABLE_INTERNAL_ENDPOINTS"),
    ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
    ({"APP_ENV": "production"}, "SECRET_KEY"),
    ({"APP_ENV": "production", "SECRET_KEY": "short"}, "SECRET_KEY"),
])
def test_bad_values_name_the_variable(env, names):
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert names in str(info.value)
    assert "\n" not in str(info.value)


def test_ttl_is_clamped_to_an_hour():
    s = Settings.from_env({"SIGNED_URL_TTL_SECONDS": "86400"})
    assert s.signed_url_ttl_seconds == 3600
    assert s.clamp_ttl(7200) == 3600 and s.clamp_ttl(60) == 60 and s.clamp_ttl(None) == 3600


def test_production_cookies_are_secure(make_settings):
    production = create_app(make_settings({}, APP_ENV="production", SECRET_KEY="x" * 40,
                                              NOTIFICATIONS_ENABLED="false"))  # CSRF on: a session
    development = create_app(make_settings(None, APP_ENV="development"))
    assert production.config["SESSION_COOKIE_SECURE"] and production.config["REMEMBER_COOKIE_SECURE"]
    assert not development.config["SESSION_COOKIE_SECURE"]  # plain http://localhost keeps working
    response = production.test_client().get("/login", base_url="https://points.example.com")
    assert "Secure" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]


def test_bad_setting_stops_the_command_line_with_one_line():
    env = {**os.environ, "FLASK_APP": "app:main_app", "MAX_UPLOAD_MB": "abc"}
    proc = subprocess.run([sys.executable, "-m", "flask", "routes"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: bad setting: MAX_UPLOAD_MB='abc' is not a whole number"]


def test_blank_endpoint_secrets_count_as_unset_and_production_wants_long_ones():
    spaces = Settings.from_env({"KAJABI_WEBHOOK_SECRET": "   ", "CRON_SECRET": "\t", "INTERNAL_METRICS_TOKEN": " "})
    assert (spaces.kajabi_webhook_secret, spaces.cron_secret, spaces.internal_metrics_token) == ("", "", "")
    assert Settings.from_env({"CRON_SECRET": "  padded-secret  "}).cron_secret == "padded-secret"
    production = {"APP_ENV": "production", "SECRET_KEY": "x" * 40, "NOTIFICATIONS_ENABLED": "0"}
    with pytest.raises(SettingsError, match="CRON_SECRET must be at least 16 characters in production"):
        Settings.from_env({**production, "CRON_SECRET": "short"})
    assert Settings.from_env({**production, "CRON_SECRET": "c" * 16}).cron_secret == "c" * 16
    assert Settings.from_env(production).cron_secret == ""  # unset is allowed: the endpoint is off


def test_a_webhook_secret_of_spaces_keeps_the_webhook_off(make_app):
    app = make_app(KAJABI_WEBHOOK_SECRET="   ")
    response = app.test_client().post("/api/webhooks/kajabi?token=%20%20%20", data="{}", content_type="application/json")
    assert response.status_code == 503 and response.get_json()["code"] == "not_configured"


@pytest.mark.parametrize("raw", ["٥", "５", "1_000", "²", "0x10", "1e3", ""])
def test_a_number_setting_takes_ascii_digits_only(raw):
    """Python's int() reads other scripts' digits and underscores: WEB_THREADS=٥ was 5."""
    with pytest.raises(SettingsError, match="is not a whole number"):
        Settings.from_env({"MAX_UPLOAD_MB": raw})
    assert Settings.from_env({"MAX_UPLOAD_MB": " 7 "}).max_upload_mb == 7

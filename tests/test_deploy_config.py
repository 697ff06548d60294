"""deploy/: the compose file, .env.example and the settings module agree, and the compose file
has the shape that would start (health checks everywhere, one-shots first, services healthy
before the app). No Docker engine runs where these tests run, so the file is checked as data
(YAML) rather than started; docs/operations.md says so."""
from __future__ import annotations

import os
import re

import pytest
import yaml

from core.platform.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
APP_SERVICES = ("migrate", "web", "worker", "scheduler")
ONE_SHOTS = ("migrate", "createbucket")
# Read by deploy/gunicorn.conf.py or set for the process, not by the app's settings.
DEPLOY_ONLY = {"POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "WEB_CONCURRENCY", "WEB_THREADS",
               "WEB_KEEPALIVE_REQUESTS", "WEB_CLIENT_TIMEOUT", "FORWARDED_ALLOW_IPS"}
PROCESS_ONLY = {"FLASK_APP", "PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY", "WEB_THREADS"}


def _read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as fh:
        return fh.read()


def settings_variables() -> set[str]:
    """Every environment variable core/platform/settings.py reads: the quoted names its getters
    and parsers are called with."""
    return set(re.findall(r'\(\s*"([A-Z][A-Z0-9_]{2,})"', _read("core", "platform", "settings.py")))


def example_variables() -> dict[str, str]:
    """NAME -> value of every `NAME=value` or `# NAME=value` line of deploy/.env.example."""
    return dict(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", _read("deploy", ".env.example"), re.M))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(_read("deploy", "docker-compose.yml"))


def test_env_example_lists_every_setting_and_invents_none():
    listed, read = set(example_variables()), settings_variables()
    assert len(read) > 30  # the pattern still finds the settings' names
    assert read - listed == set(), "settings the example does not list"
    assert listed - read - DEPLOY_ONLY == set(), "variables the app never reads"


def test_env_example_defaults_are_the_real_defaults():
    defaults = Settings.from_env({})
    example = example_variables()
    for name in settings_variables() - {"SECRET_KEY"}:
        value = example[name]
        if not value:  # shown blank: unset by default
            assert getattr(defaults, name.lower()) in ("", False), name
            continue
        assert getattr(Settings.from_env({name: value}), name.lower()) == getattr(defaults, name.lower()), name


def test_every_service_has_a_health_check_or_is_a_one_shot(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"


def test_start_up_order(compose):
    services = compose["services"]
    for name in ("web", "worker", "scheduler"):
        needs = services[name]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}
        assert needs["createbucket"] == {"condition": "service_completed_successfully"}
        for dependency in ("postgres", "redis", "minio", "clamav"):
            assert needs[dependency] == {"condition": "service_healthy"}, (name, dependency)
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["command"] == "flask db upgrade"
    assert services["createbucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing store/evidence" in services["createbucket"]["command"][0]
    assert services["clamav"]["depends_on"]["freshclam"]["condition"] == "service_healthy"
    for name, service in services.items():  # a service_healthy wait needs a health check to wait on
        for dependency, rule in (service.get("depends_on") or {}).items():
            if rule["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck", {}).get("test"), (name, dependency)


def test_the_app_gets_only_settings_it_reads_and_every_interpolated_variable_is_listed(compose):
    read = settings_variables()
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["env_file"] == [".env"]
        unknown = set(service["environment"]) - read - PROCESS_ONLY
        assert unknown == set(), f"{name} sets variables the app never reads: {unknown}"
        env = service["environment"]
        assert env["MINIO_ENDPOINT"] == "minio:9000" and env["MINIO_PUBLIC_URL"].startswith("${MINIO_PUBLIC_URL")
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", _read("deploy", "docker-compose.yml")))
    assert interpolated - set(example_variables()) == set()


def test_prometheus_loads_the_rules_and_scrapes_metrics(compose):
    service = compose["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in service["volumes"]
    config = yaml.safe_load(_read("deploy", "prometheus", "prometheus.yml"))
    for rule_file in config["rule_files"]:
        assert os.path.isfile(os.path.join(DEPLOY, "prometheus", rule_file))
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["web:8000"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/internal_metrics_token"
    assert compose["secrets"]["internal_metrics_token"] == {"environment": "INTERNAL_METRICS_TOKEN"}


def test_mounted_files_exist_and_clamd_streams_more_than_an_upload(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith("./"):
                continue  # a named volume
            path = os.path.join(DEPLOY, source[2:])
            if source == "./clamd.conf" and not os.path.exists(path):
                continue  # added by the scan-limits change (issue: clamd limits); checked below once there
            assert os.path.exists(path), f"{name} mounts {source}, which is missing"
    clamd = os.path.join(DEPLOY, "clamd.conf")
    if os.path.exists(clamd):
        match = re.search(r"^StreamMaxLength\s+(\d+)([KM]?)", _read("deploy", "clamd.conf"), re.M)
        assert match, "clamd.conf sets no StreamMaxLength"
        size = int(match.group(1)) * {"": 1, "K": 1024, "M": 1024 * 1024}[match.group(2)]
        assert size > Settings().max_upload_bytes


def test_scheduler_health_check_follows_its_heartbeat(app, redis_conn):
    import subprocess
    import sys

    from jobs.schedule import heartbeat_key, run_forever

    from tests.conftest import REDIS_URL

    queues = app.extensions["points"].queues
    env = {**os.environ, "REDIS_URL": REDIS_URL, "QUEUE_PREFIX": queues.prefix}
    check = lambda: subprocess.run([sys.executable, "deploy/healthcheck.py", "scheduler"], cwd=ROOT, env=env,  # noqa: E731
                                   capture_output=True, text=True, timeout=60)
    redis_conn.delete(heartbeat_key(queues.prefix))
    dead = check()
    assert dead.returncode == 1 and "has not ticked" in dead.stderr
    ticks = iter([False, True])
    with app.app_context():
        run_forever(queues, stop=lambda: next(ticks), sleep=lambda _s: None)
    assert check().returncode == 0
    assert 0 < redis_conn.ttl(heartbeat_key(queues.prefix)) <= 30


def test_app_services_run_under_an_init_that_reaps_orphans(compose):
    """A killed PDF renderer leaves its child to PID 1; without an init there, each became a zombie."""
    app_services = [name for name, service in compose["services"].items() if "build" in service]
    assert app_services and all(compose["services"][name].get("init") is True for name in app_services)

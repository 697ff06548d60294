"""The alert rules, evaluated by Prometheus's own tool: `promtool check rules` (syntax, templates)
and `promtool test rules` (tests/prometheus/alerts_test.yml feeds series minute by minute and
asserts each alert fires, and stays quiet, when it should). promtool comes with Debian's
`prometheus` package (APT_PACKAGES in the Makefile); it starts no server."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = [os.path.join(ROOT, "deploy", "prometheus", name) for name in ("recording.yml", "alerts.yml")]
TESTS = os.path.join(ROOT, "tests", "prometheus", "alerts_test.yml")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install -y --no-install-recommends prometheus (make test does)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_rules_pass_promtool_check(promtool):
    result = _run(promtool, "check", "rules", *RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_quiet_under_promtool(promtool):
    result = _run(promtool, "test", "rules", TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    alerts = {rule["alert"] for path in RULES for group in yaml.safe_load(open(path))["groups"]
              for rule in group["rules"] if "alert" in rule}
    fired, quiet = set(), set()
    for case in yaml.safe_load(open(TESTS))["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts - fired == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"
    assert {"KajabiToLedgerBurnRateFast", "KajabiToLedgerBurnRateSlow", "ReadyzFailing", "HTTP5xxRate"} <= alerts


def test_prometheus_loads_both_rule_files():
    config = yaml.safe_load(open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")))
    assert set(config["rule_files"]) == {"recording.yml", "alerts.yml"}

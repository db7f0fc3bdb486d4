"""The alert rules (monitoring/rules/*.yml): valid for promtool, every alert unit-tested by promtool both
firing and quiet (monitoring/tests/*.yml), with a severity and a runbook section in docs/runbook-alerts.md.
promtool is Debian's (package prometheus, installed by tools/toolchain.sh): missing, the tests fail."""
import glob
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.unit

RULES = sorted(glob.glob(os.path.join(REPO_ROOT, "monitoring", "rules", "*.yml")))
TESTS = sorted(glob.glob(os.path.join(REPO_ROOT, "monitoring", "tests", "*.yml")))
RUNBOOK = os.path.join(REPO_ROOT, "docs", "runbook-alerts.md")
SEVERITIES = {"critical", "warning"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool is missing: install Debian's `prometheus` package (tools/toolchain.sh does)")
    return path


def _run(*args: str) -> str:
    done = subprocess.run([_promtool(), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def _alerts() -> dict[str, dict]:
    alerts: dict[str, dict] = {}
    for path in RULES:
        with open(path) as f:
            for group in yaml.safe_load(f)["groups"]:
                for rule in group["rules"]:
                    if "alert" in rule:
                        assert rule["alert"] not in alerts, f"alert {rule['alert']} defined twice"
                        alerts[rule["alert"]] = rule
    return alerts


def _cases() -> list[dict]:
    cases = []
    for path in TESTS:
        with open(path) as f:
            for test in yaml.safe_load(f)["tests"]:
                cases += test.get("alert_rule_test", [])
    return cases


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    return {re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-")
            for m in re.finditer(r"^#+\s+(.+)$", markdown, re.M)}


def test_rule_files_pass_promtool_check():
    assert RULES
    out = _run("check", "rules", *RULES)
    assert out.count("SUCCESS") == len(RULES), out


def test_promtool_unit_tests_pass():
    assert TESTS
    out = _run("test", "rules", *TESTS)
    assert "FAILED" not in out and out.count("SUCCESS") == len(TESTS), out


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases = _cases()
    untested = []
    for name in _alerts():
        fires = any(c["alertname"] == name and c.get("exp_alerts") for c in cases)
        quiet = any(c["alertname"] == name and not c.get("exp_alerts") for c in cases)
        if not (fires and quiet):
            untested.append(f"{name} (fires: {fires}, quiet: {quiet})")
    assert not untested, untested
    unknown = {c["alertname"] for c in cases} - set(_alerts())
    assert not unknown, f"test cases for alerts no rule defines: {unknown}"


def test_every_alert_has_severity_summary_description_and_a_runbook_section():
    with open(RUNBOOK) as f:
        anchors = _anchors(f.read())
    problems = []
    for name, rule in _alerts().items():
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            if not annotations.get(key):
                problems.append(f"{name}: no {key}")
        url = annotations.get("runbook_url", "")
        if url != f"docs/runbook-alerts.md#{name.lower()}":
            problems.append(f"{name}: runbook_url {url!r} is not docs/runbook-alerts.md#{name.lower()}")
        elif name.lower() not in anchors:
            problems.append(f"{name}: docs/runbook-alerts.md has no section #{name.lower()}")
    assert not problems, problems


def test_the_checks_can_fail(tmp_path):
    """A broken expression fails `check rules`; a wrong expectation fails `test rules`."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n")
    done = subprocess.run([_promtool(), "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    wrong = tmp_path / "wrong_test.yml"
    wrong.write_text(yaml.safe_dump({
        "rule_files": [os.path.join(REPO_ROOT, "monitoring", "rules", "vault.yml")],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m",
                   "input_series": [{"series": 'up{job="vault", instance="v:8200"}', "values": "0 0 0 0"}],
                   "alert_rule_test": [{"eval_time": "3m", "alertname": "VaultNodeDown", "exp_alerts": []}]}]}))
    done = subprocess.run([_promtool(), "test", "rules", str(wrong)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr

"""A third-party audit of the manifests: kube-score (tools/build-kube-score.sh) over every Kubernetes object
the prod composition declares, as Pulumi would send them (the stack run under mocks: offline, no cluster).
A finding fails the test unless infra/kube-score-waivers.yaml waives that check for that object, with a
reason; a waiver that matches no object fails it too."""
import json
import os
import subprocess

import pulumi
import pytest
import yaml
from kubernetes import client as kclient

from service.executor.base import JobSpec
from service.executor.kubernetes_backend import KubernetesBackend
from stacks import deploy
from tests.helpers import REPO_ROOT
from tests.unit.helpers import run

pytestmark = pytest.mark.unit
WAIVERS = os.path.join(REPO_ROOT, "infra", "kube-score-waivers.yaml")
# kube-score's grades: 1 critical, 5 warning, 7 almost OK, 10 OK.
GRADES = {1: "CRITICAL", 5: "WARNING", 7: "ALMOST_OK"}


def _prod_local_config() -> dict:
    with open(os.path.join(REPO_ROOT, "Pulumi.prod-local.yaml")) as f:
        config = yaml.safe_load(f)["config"]
    return {k.removeprefix("vault-envvars:"): str(v) for k, v in config.items() if k != "vault-envvars:kubeconfig"}


COMPOSITIONS = {
    "prod-local": _prod_local_config(),
    # A production shape: your IdP and database, the service behind an Ingress with TLS.
    "prod": {"jwksUrl": "https://idp.example/keys", "jwtIssuer": "https://idp.example",
             "databaseUrl": "postgresql://envvars@db.example/envvars", "ingressHost": "envvars.example",
             "ingressTlsSecret": "envvars-tls", "serviceImage": "registry.example/envvars:1.4.2"},
}


def _kube_score() -> str:
    with open(os.path.join(REPO_ROOT, "tools", "versions.env")) as f:
        version = next(line.split("=", 1)[1].strip() for line in f if line.startswith("KUBE_SCORE_VERSION="))
    cache = os.environ.get("TOOLCHAIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vault-envvars-toolchain")
    path = os.path.join(cache, f"kube-score-{version}", "kube-score")
    if not os.access(path, os.X_OK):
        pytest.fail(f"kube-score {version} is missing: tools/toolchain.sh builds it (tools/build-kube-score.sh)")
    return path


def _manifests(mocks) -> list[dict]:
    """Every Kubernetes object the program declared, as a manifest (Secret and ConfigMap contents left out:
    kube-score does not read them), and a Job as the service makes one for an execution."""
    out = []
    for r in mocks.resources:
        if not r.typ.startswith("kubernetes:") or r.typ.endswith(":Provider"):
            continue
        obj = {k: v for k, v in r.inputs.items() if k not in ("data", "stringData")}
        out.append(obj)
    jobs_ns = next((m["metadata"]["name"] for m in out if m["kind"] == "Namespace"
                    and m["metadata"]["name"].endswith("jobs")), None)
    if jobs_ns:
        api = kclient.ApiClient()
        job = KubernetesBackend(jobs_ns, "registry.example/job:1.0", api_client=api).manifest(
            JobSpec("example", ["true"], {}, 300))
        out.append({**api.sanitize_for_serialization(job), "apiVersion": "batch/v1", "kind": "Job"})
        out[-1]["metadata"]["namespace"] = jobs_ns
    return out


def _waivers() -> list[dict]:
    with open(WAIVERS) as f:
        waivers = yaml.safe_load(f) or []
    for w in waivers:
        assert set(w) == {"check", "objects", "reason"} and w["objects"] and len(w["reason"]) > 20, w
        assert all("*" not in o for o in w["objects"]), f"no blanket waivers: {w}"
    return waivers


def _apply_waivers(manifests: list[dict], waivers: list[dict]) -> None:
    """Annotates each waived object with kube-score/ignore: the check, for that object only."""
    by_name = {f"{m['kind']}/{m['metadata']['name']}": m for m in manifests}
    for w in waivers:
        for name in w["objects"]:
            if name in by_name:
                notes = by_name[name]["metadata"].setdefault("annotations", {})
                notes["kube-score/ignore"] = ",".join(filter(None, [notes.get("kube-score/ignore"), w["check"]]))


def _findings(manifests: list[dict]) -> list[str]:
    text = yaml.safe_dump_all(manifests, sort_keys=False)
    r = subprocess.run([_kube_score(), "score", "--output-format", "json", "--kubernetes-version", "v1.34", "-"],
                       input=text, capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr[-2000:]  # 1: findings
    findings = []
    for obj in json.loads(r.stdout):
        name = f"{obj['type_meta']['kind']}/{obj['object_meta']['name']}"
        for check in obj["checks"]:
            if check.get("skipped") or check["grade"] >= 10:
                continue
            why = "; ".join(f"{c.get('path', '')}: {c['summary']}".strip(": ") for c in check.get("comments") or [])
            findings.append(f"{GRADES.get(check['grade'], check['grade'])} {name} {check['check']['id']}: {why}")
    return sorted(findings)


@pytest.fixture(scope="module")
def waivers() -> list[dict]:
    return _waivers()


@pytest.mark.parametrize("composition", sorted(COMPOSITIONS))
def test_kube_score_finds_nothing_unwaived(composition, waivers, mocks):
    pulumi.runtime.set_all_config({f"vault-envvars:{k}": v for k, v in COMPOSITIONS[composition].items()})
    run(lambda: deploy(composition))
    manifests = _manifests(mocks)
    assert len(manifests) > 30  # every object, not a few
    _apply_waivers(manifests, waivers)
    findings = _findings(manifests)
    assert findings == [], "\n".join(findings)


def test_every_waiver_matches_an_object_of_some_composition(waivers, mocks):
    names = set()
    for composition, config in COMPOSITIONS.items():
        mocks.resources.clear()
        pulumi.runtime.set_all_config({f"vault-envvars:{k}": v for k, v in config.items()})
        run(lambda c=composition: deploy(c))
        names |= {f"{m['kind']}/{m['metadata']['name']}" for m in _manifests(mocks)}
    stale = [(w["check"], o) for w in waivers for o in w["objects"] if o not in names]
    assert stale == [], f"waivers for objects no composition declares: {stale}"

"""The toolchain's tiers (tools/toolchain.sh): one table says which target needs which piece; the table of
docs/toolchain.md gives each piece's measured cold time, read by the script for its estimates; the Makefile asks
each target's tier. Pure text and `make -n`: no piece is built."""
import os
import re
import subprocess

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.unit

TIERS = {"dev", "cluster", "test"}


def _script() -> str:
    with open(os.path.join(REPO_ROOT, "tools", "toolchain.sh")) as f:
        return f.read()


def pieces() -> dict[str, set[str]]:
    table = re.search(r"PIECES=\$\(cat <<'TABLE'\n(.*?)\nTABLE\n", _script(), re.S).group(1)
    rows = [line.split("|") for line in table.splitlines() if not line.startswith("#")]
    return {name.strip(): set(tiers.split()) for name, tiers, _what in rows}


COLD_TIMES = "docs/toolchain.md"  # the page whose first-run table the script reads


def cold_time_rows() -> dict[str, list[str]]:
    with open(os.path.join(REPO_ROOT, COLD_TIMES)) as f:
        return {m.group(1): [c.strip() for c in m.group(0).split("|")[1:-1]]
                for m in re.finditer(r"^\| `([a-z_]+)`.*\|$", f.read(), re.M)}


def tier(*names: str) -> set[str]:
    return {p for p, tiers in pieces().items() if tiers & set(names)}


def test_every_piece_has_known_tiers_and_its_two_functions():
    script = _script()
    assert pieces()
    for name, tiers in pieces().items():
        assert tiers and tiers <= TIERS, name
        assert f"\nhave_{name}() " in script and f"\nmake_{name}() " in script, name


def test_the_dev_stack_builds_only_what_it_uses():
    """No Kubernetes piece (the dev stack's resources are the container engine's and Vault's: the engine
    loads provider plugins lazily), no test tool."""
    assert tier("dev") == {"venv", "engine", "pulumi_settings", "container_engine", "images", "engine_check", "wheels"}


def test_the_tests_get_what_they_use():
    # promtool: the alert rules' unit tests (make check); the API server and the kubernetes plugin: the prod
    # stack's tests on kube-apiserver; the PostgreSQL image: tests/integration/test_postgres_image.py
    assert {"promtool", "chromium", "postgres", "bubblewrap", "kube_api", "kube_plugin", "postgres_image"} <= tier("test")
    assert tier("dev") <= tier("test") and tier("dev") <= tier("cluster")
    assert {"kube_node", "cluster_debs"} <= tier("cluster") - tier("test")


def test_the_docs_give_every_piece_its_tiers_and_a_cold_time_the_script_can_read():
    assert f'" {COLD_TIMES} ' in _script(), f"tools/toolchain.sh does not read its cold times from {COLD_TIMES}"
    rows = cold_time_rows()
    for name, tiers in pieces().items():
        assert name in rows, f"{COLD_TIMES}'s first-run table has no row for `{name}`"
        assert set(rows[name][1].split()) == tiers, name
        assert re.match(r"^\d+(\.\d+)? (s|min)\b", rows[name][2]), (name, rows[name][2])


@pytest.mark.parametrize("target,tiers", [
    ("up", "dev"), ("up STACK=dev-ci", "dev"), ("up STACK=existing-corp", "dev"), ("down", "dev"),
    ("up STACK=prod-local", "cluster"), ("cluster", "cluster"), ("check", "test"), ("test", "test"),
    ("bench", "test"), ("test-k8s", "cluster test"), ("toolchain", ""),
])
def test_each_make_target_asks_its_tier(target, tiers):
    out = subprocess.run(["make", "-n", *target.split()], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True).stdout
    calls = re.findall(r"^bash tools/toolchain\.sh ?(.*)$", out, re.M)
    assert calls == [tiers], out

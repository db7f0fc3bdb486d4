"""Test-wide settings. The suite runs inside the project's toolchain (`make test` sources
.toolchain/env.sh): a missing piece fails loudly instead of skipping. A run that ends, however it ends
(Ctrl-C and SIGTERM included), leaves no server running."""
import os
import secrets
import shutil
import signal

import hvac
import pytest
from pulumi import automation as auto

from devkit import procs
from devkit.browser import CHROMIUM, CHROMIUM_ARGS
from devkit.cluster import ensure_cluster
from devkit.kube import start_kube_apiserver
from devkit.s3_server import start_s3_server
from devkit.stacks import ThrowawayStack
from devkit.vault_servers import start_dev_server, start_raft_cluster


def _terminated(_signum, _frame):
    # A second SIGTERM must not cut the teardown short; a handler (unlike SIG_IGN) is not inherited by
    # what the teardown starts.
    signal.signal(signal.SIGTERM, lambda *_: None)
    raise KeyboardInterrupt


def pytest_configure(config):
    # SIGTERM (a cancelled CI job, `timeout`, `kill`) unwinds like Ctrl-C: the fixtures tear down.
    signal.signal(signal.SIGTERM, _terminated)


TIERS = ("unit", "integration", "e2e", "browser", "k8s")


def pytest_collection_modifyitems(config, items):
    """Every test says its tier, so `-m unit` (make check) and the others select exactly what they name."""
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if unmarked:
        raise pytest.UsageError(f"tests without a tier marker ({', '.join(TIERS)}): {', '.join(unmarked[:10])}")


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session, exitstatus):
    try:
        return (yield)  # the fixtures' teardown, also after an interruption
    finally:
        procs.stop_all()  # whatever a teardown did not stop, or an interrupted start left running


@pytest.fixture(scope="session")
def toolchain() -> dict[str, str]:
    """The toolchain's pieces; fails (never skips) when one is missing."""
    missing = [v for v in ("PULUMI_HOME", "DOCKER_HOST", "BAO_BIN", "KUBE_TEST_BIN") if not os.environ.get(v)]
    if missing or not shutil.which("pulumi"):
        pytest.fail(f"toolchain not loaded ({', '.join(missing) or 'pulumi'} missing): run `make test`, "
                    "or `bash tools/toolchain.sh && source .toolchain/env.sh` first")
    return {"pulumi": shutil.which("pulumi"), "bao": os.environ["BAO_BIN"], "docker_host": os.environ["DOCKER_HOST"],
            "kube_bin": os.environ["KUBE_TEST_BIN"]}


# --- shared expensive fixtures: one of each per test run -------------------------------------------

@pytest.fixture(scope="session")
def pulumi_backend(tmp_path_factory, toolchain) -> dict[str, str]:
    """A file backend and passphrase of this test run only, so tests never touch the user's stacks."""
    state = tmp_path_factory.mktemp("pulumi-state")
    return {"PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": secrets.token_urlsafe(16)}


@pytest.fixture
def throwaway_stack(pulumi_backend):
    """throwaway_stack("e2e/programs/vault_kv") -> a new stack of that program; destroyed afterwards."""
    made = []

    def make(program: str) -> ThrowawayStack:
        s = ThrowawayStack(program, dict(pulumi_backend))
        made.append(s)
        return s

    yield make
    for s in made:  # a failed test still cleans up what it made
        try:
            s.destroy()
        except auto.errors.CommandError:
            pass


@pytest.fixture(scope="session")
def bao_dev_server(toolchain, tmp_path_factory):
    """A real OpenBao dev server, audit devices declared in its config (OpenBao's way)."""
    server = start_dev_server(toolchain["bao"], str(tmp_path_factory.mktemp("bao-dev")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bao_dev_server_api_audit(toolchain, tmp_path_factory):
    """A real OpenBao dev server that accepts audit devices through the API (HashiCorp Vault's way)."""
    server = start_dev_server(toolchain["bao"], str(tmp_path_factory.mktemp("bao-dev-api-audit")), api_audit=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def raft_cluster(toolchain, tmp_path_factory):
    """A real 3-node OpenBao Raft cluster with TLS on loopback, initialised and unsealed."""
    server = start_raft_cluster(toolchain["bao"], str(tmp_path_factory.mktemp("bao-raft")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (the Versity S3 gateway, tools/build-versitygw.sh) serving a temp folder
    on a loopback port; a test may stop and start it again (a store outage)."""
    server = start_s3_server(str(tmp_path_factory.mktemp("s3")))
    yield server
    server.stop()


@pytest.fixture
def vault_client(bao_dev_server) -> hvac.Client:
    return hvac.Client(url=bao_dev_server.address, token=bao_dev_server.token)


@pytest.fixture(scope="session")
def kube_apiserver(toolchain, tmp_path_factory):
    """A real kube-apiserver + etcd on loopback (no controllers: objects are stored, never run)."""
    server = start_kube_apiserver(toolchain["kube_bin"], str(tmp_path_factory.mktemp("kube")))
    yield server
    server.stop()


_CLUSTER: dict = {}  # the run's local cluster, and the id of the last test that uses it


def pytest_collection_finish(session):
    users = [item.nodeid for item in session.items if "local_cluster" in getattr(item, "fixturenames", ())]
    _CLUSTER["last_user"] = users[-1] if users else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """The idle cluster (three kubelets and containerds, the control plane) costs the rest of the run CPU:
    it stops after the last test that uses it (and that test's module fixtures), not at the run's end."""
    yield
    if item.nodeid == _CLUSTER.get("last_user") and _CLUSTER.get("cluster"):
        _CLUSTER.pop("cluster").stop()


@pytest.fixture(scope="session")
def local_cluster(toolchain):
    """The local three-node Kubernetes (tools/cluster.sh): one per run, or the one `make cluster` started."""
    missing = [v for v in ("KUBE_NODE_BIN", "COREDNS_BIN", "CRICTL_BIN", "PAUSE_BIN") if not os.environ.get(v)]
    if missing:
        pytest.fail(f"toolchain without the cluster's pieces ({', '.join(missing)}): run `make toolchain`")
    _CLUSTER["cluster"] = ensure_cluster()
    yield _CLUSTER["cluster"]
    if _CLUSTER.get("cluster"):  # not stopped already after its last user (a run stopped early)
        _CLUSTER.pop("cluster").stop()


@pytest.fixture(scope="session")
def browser():
    """One Chromium per test run (Debian's; Playwright drives it)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: tools/toolchain.sh installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_page(browser):
    """new_page(**context_options) -> a page in a fresh browser context (its own cookies and storage:
    another person)."""
    contexts = []

    def make(**options):
        ctx = browser.new_context(viewport={"width": 1200, "height": 800}, **options)
        ctx.set_default_timeout(20_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()

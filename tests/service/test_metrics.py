"""The service's /metrics after provoking what the alerts watch (monitoring/rules/service.yml): failed
authentications of each reason, env vars per user, executions failing for a missing value, Vault's state
as the service sees it and certificate expiry; and never a value, an env var name or a user id in it."""
import os
import secrets
import time

import hvac
import jwt
import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from devkit import procs
from devkit.net import free_port
from devkit.vault_servers import VaultServer
from infra.clients import vault_ops
from infra.providers.tls import make_bundle, make_signing_key
from service.app import create_app
from service.auth import AUTH_FAILURE_REASONS
from tests.service.helpers import bearer, settings_for, wait_finished

pytestmark = pytest.mark.integration
API = "/api/v2/user/env-vars"


def scrape(client) -> tuple[str, dict]:
    """/metrics as text and as {(sample name, frozenset(labels)): value}."""
    text = client.get("/metrics").text
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def sample(samples: dict, name: str, **labels):
    return samples.get((name, frozenset(labels.items())))


def _create(client, headers, name: str, value: str) -> dict:
    r = client.post(API, json={"name": name, "value": value}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_failed_authentications_are_counted_by_reason(make_client, issuer):
    client = make_client()
    now = int(time.time())
    unknown_kid = jwt.encode({"iss": issuer.iss, "sub": "mallory", "aud": issuer.audience, "iat": now, "exp": now + 60},
                             issuer.other_key(), algorithm="RS256", headers={"kid": "not-a-published-key"})
    provoked = {
        "missing_token": {},
        "malformed": {"Authorization": "Bearer not-a-jwt"},
        "unknown_key": {"Authorization": f"Bearer {unknown_kid}"},
        "bad_signature": {"Authorization": f"Bearer {issuer.token('mallory', key=issuer.other_key())}"},
        "expired": {"Authorization": f"Bearer {issuer.token('mallory', ttl=-120)}"},
        "wrong_audience": bearer_for(issuer, "mallory", audience="someone-else"),
        "wrong_issuer": {"Authorization": f"Bearer {issuer.token('mallory', iss='https://other.test.invalid')}"},
        "bad_subject": bearer(issuer, "mallory\nadmin"),
    }
    for reason, headers in provoked.items():
        assert client.get(API, headers=headers).status_code == 401, reason
    client.get(API, headers=provoked["expired"])  # counted twice
    _, samples = scrape(client)
    counts = {r: sample(samples, "envvars_auth_failures_total", reason=r) for r in AUTH_FAILURE_REASONS}
    assert counts == {r: (2.0 if r == "expired" else 1.0 if r in provoked else 0.0) for r in AUTH_FAILURE_REASONS}
    # A request the 401s were counted for shows in the latency histogram by route and status.
    assert sample(samples, "envvars_http_request_seconds_count", method="GET", route=API, status="401") == 9.0


def bearer_for(issuer, user: str, audience: str) -> dict:
    return {"Authorization": f"Bearer {issuer.token(user, audience=audience)}"}


def test_a_token_vault_refuses_is_counted_as_a_vault_login_refusal(make_client, issuer, tmp_path):
    # The service accepts the user's token but signs its Vault login with a key Vault does not trust.
    other_key = tmp_path / "other-login-key"
    other_key.write_text(make_signing_key()["key_pem"])
    client = make_client(vault_login_key_file=str(other_key))
    r = client.post(API, json={"name": "REFUSED", "value": "x"}, headers=bearer(issuer, "refused-alice"))
    assert r.status_code == 403, r.text
    _, samples = scrape(client)
    assert sample(samples, "envvars_auth_failures_total", reason="vault_login_refused") == 1.0


def test_env_vars_per_user_is_a_histogram_without_user_or_name_labels(client, issuer):
    tag = secrets.token_hex(4)
    alice, bob = f"metrics-alice-{tag}", f"metrics-bob-{tag}"
    values = {f"CANARY_{tag}_{i}": f"canary-value-{secrets.token_hex(8)}" for i in range(4)}
    names = list(values)
    _create(client, bearer(issuer, alice), names[0], values[names[0]])
    for name in names[1:]:
        _create(client, bearer(issuer, bob), name, values[name])
    text, samples = scrape(client)
    buckets = {le: sample(samples, "envvars_env_vars_per_user_bucket", le=le) for le in ("1.0", "2.0", "5.0", "+Inf")}
    assert buckets == {"1.0": 1.0, "2.0": 1.0, "5.0": 2.0, "+Inf": 2.0}  # alice has 1, bob 3
    assert sample(samples, "envvars_env_vars_per_user_count") == 2.0
    assert sample(samples, "envvars_env_vars_per_user_sum") == 4.0
    # The canary search: no value, env var name, user id or the tag anywhere in the scrape.
    for planted in [*values.values(), *names, alice, bob, tag]:
        assert planted not in text, planted


def test_every_execution_failing_for_a_missing_value_is_counted(make_client, issuer, service_vault):
    server, _ = service_vault
    client = make_client(max_workers=1)
    alice = bearer(issuer, "metrics-missing-alice")
    run = "/api/v2/execution"
    # Its value gone from Vault (drift, a restore).
    gone = _create(client, alice, "VALUE_GONE", "1")
    hvac.Client(url=server.address, token=server.token).secrets.kv.v2.delete_metadata_and_all_versions(
        path=f"users/metrics-missing-alice/{gone['id']}", mount_point="secret")
    done = wait_finished(client, alice, client.post(run, json={"command": ["true"], "env_var_ids": [gone["id"]]},
                                                    headers=alice).json()["id"])
    assert done["status"] == "failed" and "VALUE_GONE" in done["error"]
    # The env var deleted while its job waited for the only worker.
    deleted = _create(client, alice, "DELETED_WHILE_QUEUED", "2")
    blocker = client.post(run, json={"command": ["sleep", "3"]}, headers=alice).json()["id"]
    queued = client.post(run, json={"command": ["true"], "env_var_ids": [deleted["id"]]}, headers=alice).json()["id"]
    assert client.delete(f"{API}/{deleted['id']}", headers=alice).status_code == 204
    assert client.get(f"{run}/{queued}", headers=alice).json()["status"] == "queued"
    wait_finished(client, alice, blocker)
    done = wait_finished(client, alice, queued)
    assert done["status"] == "failed" and deleted["id"] in done["error"], done
    _, samples = scrape(client)
    assert sample(samples, "envvars_missing_env_var_failures_total") == 2.0
    assert sample(samples, "envvars_executions_total", outcome="failed") == 2.0


def _write(path, text: str, mode: int = 0o644) -> str:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)
    return str(path)


def _not_after(pem_file: str) -> float:
    with open(pem_file, "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).not_valid_after_utc.timestamp()


@pytest.fixture
def tls_dev_vault(toolchain, tmp_path):
    """A dev server of this test only (it is sealed and stopped) serving TLS with a 5-day certificate, as
    one about to expire."""
    bundle = make_bundle("vault", ["localhost"], ["127.0.0.1"], days=5)
    ca = _write(tmp_path / "vault-ca.pem", bundle["ca_pem"])
    cert = _write(tmp_path / "vault-cert.pem", bundle["cert_pem"])
    key = _write(tmp_path / "vault-key.pem", bundle["key_pem"], 0o600)
    port, tls_port, token = free_port(), free_port(), secrets.token_urlsafe(18)
    config = _write(tmp_path / "vault.hcl", f'listener "tcp" {{\n  address = "127.0.0.1:{tls_port}"\n'
                                            f'  tls_cert_file = "{cert}"\n  tls_key_file = "{key}"\n}}\n')
    proc = procs.start([toolchain["bao"], "server", "-dev", f"-dev-root-token-id={token}",
                        f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token", f"-config={config}"],
                       str(tmp_path / "vault.log"), cwd=str(tmp_path))
    server = VaultServer(f"https://127.0.0.1:{tls_port}", token, ca_file=ca, processes=[proc])
    try:
        vault_ops.wait_until(lambda: vault_ops.is_active(server.address, ca), 30, "the TLS dev server", interval=0.1)
        yield server
    finally:
        server.stop()


def test_vault_state_and_certificate_expiry_as_the_service_sees_them(tls_dev_vault, issuer, tmp_path):
    service = make_bundle("envvars", ["localhost"], ["127.0.0.1"], days=40)
    service_cert = _write(tmp_path / "service-cert.pem", service["cert_pem"])
    outputs = {"executor_role_id": "unused", "executor_secret_id": "unused"}  # no job runs here
    settings = settings_for(tls_dev_vault, outputs, issuer, f"sqlite:///{tmp_path}/state.db", tmp_path,
                            vault_cacert=tls_dev_vault.ca_file, tls_cert_file=service_cert)
    with TestClient(create_app(settings=settings)) as client:
        _, samples = scrape(client)
        assert [sample(samples, f"envvars_vault_{g}") for g in ("reachable", "sealed", "active")] == [1.0, 0.0, 1.0]
        expiry = "envvars_tls_certificate_expiry_timestamp_seconds"
        assert sample(samples, expiry, certificate="service") == _not_after(service_cert)
        assert sample(samples, expiry, certificate="vault_ca") == _not_after(tls_dev_vault.ca_file)
        vault_cert = str(tmp_path / "vault-cert.pem")
        assert sample(samples, expiry, certificate="vault_server") == _not_after(vault_cert)
        assert _not_after(vault_cert) - time.time() < 7 * 86400  # what CertificateExpiresIn7Days fires on

        hvac.Client(url=tls_dev_vault.address, token=tls_dev_vault.token, verify=tls_dev_vault.ca_file).sys.seal()
        _, samples = scrape(client)
        assert [sample(samples, f"envvars_vault_{g}") for g in ("reachable", "sealed", "active")] == [1.0, 1.0, 0.0]

        tls_dev_vault.stop()
        _, samples = scrape(client)
        assert [sample(samples, f"envvars_vault_{g}") for g in ("reachable", "sealed", "active")] == [0.0, 0.0, 0.0]
        assert sample(samples, expiry, certificate="vault_server") is None  # no handshake, no guess
        assert sample(samples, expiry, certificate="vault_ca") == _not_after(tls_dev_vault.ca_file)


def test_a_dashboard_session_outliving_its_token_is_counted_as_expired(client, issuer):
    codec = client.app.state.components.cookies
    stale = codec.dump({"t": issuer.token("metrics-dash-alice", ttl=-60), "c": "csrf", "n": "alice"})
    client.cookies.set("envvars_session", stale, path="/dashboard")
    r = client.get("/dashboard/env-vars", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")
    _, samples = scrape(client)
    assert sample(samples, "envvars_auth_failures_total", reason="expired") == 1.0


def test_rate_limited_and_not_found_requests_by_route_template(make_client, issuer):
    client = make_client(rate_limit="3/minute")
    alice = bearer(issuer, "metrics-busy-alice")
    unknown = f"{API}/{secrets.token_hex(16)}"
    statuses = [client.get(unknown, headers=alice).status_code for _ in range(5)]
    assert statuses == [404, 404, 404, 429, 429]
    text, samples = scrape(client)
    assert sample(samples, "envvars_rate_limited_total") == 2.0
    route = f"{API}/{{env_var_id}}"  # the template: never the id asked for
    assert sample(samples, "envvars_http_request_seconds_count", method="GET", route=route, status="404") == 3.0
    assert sample(samples, "envvars_http_request_seconds_count", method="GET", route=route, status="429") == 2.0
    assert unknown.rsplit("/", 1)[1] not in text and "metrics-busy-alice" not in text

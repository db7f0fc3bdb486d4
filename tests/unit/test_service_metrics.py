"""The service's metrics without a server: env vars per user as a bounded histogram from a SQLite database,
certificate expiry from PEM files, and why a token was refused (the reason label's fixed set)."""
import datetime

import jwt
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infra.providers.tls import make_bundle
from service.auth import AUTH_FAILURE_REASONS, _reason
from service.db import EnvVar, make_engine, migrate, session_factory
from service.metrics import Metrics, StateCollector, certificate_expiry
from service.vault import VaultStatus

pytestmark = pytest.mark.unit


def _samples(metrics: Metrics) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(generate_latest(metrics.registry).decode()) for s in f.samples}


def test_env_vars_per_user_is_one_histogram_whatever_the_number_of_users(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    migrate(url)
    sessions = session_factory(make_engine(url))
    counts = {"u1": 1, "u2": 3, "u3": 3, "u4": 60}
    with sessions() as s:
        s.add_all(EnvVar(owner=owner, name=f"N{i}") for owner, n in counts.items() for i in range(n))
        s.commit()
    m = Metrics()
    m.watch(StateCollector(sessions, lambda: VaultStatus(reachable=True, active=True), lambda: None))
    samples = _samples(m)
    bucket = {dict(labels)["le"]: v for (name, labels), v in samples.items() if name == "envvars_env_vars_per_user_bucket"}
    assert bucket == {"1.0": 1, "2.0": 1, "5.0": 3, "10.0": 3, "20.0": 3, "50.0": 3, "100.0": 4, "200.0": 4,
                      "500.0": 4, "1000.0": 4, "+Inf": 4}
    assert samples[("envvars_env_vars_per_user_count", ())] == 4
    assert samples[("envvars_env_vars_per_user_sum", ())] == 67
    assert not [k for k in samples if any(owner in str(k) for owner in counts)]  # no user in any label
    assert [samples[(f"envvars_vault_{g}", ())] for g in ("reachable", "sealed", "active")] == [1, 0, 1]
    # No certificate configured, no handshake possible: no expiry sample rather than a made-up one.
    assert not [k for k in samples if k[0] == "envvars_tls_certificate_expiry_timestamp_seconds"]


def test_a_database_error_leaves_the_rest_of_the_scrape(tmp_path):
    sessions = session_factory(make_engine(f"sqlite:///{tmp_path}/never-migrated.db"))
    m = Metrics()
    m.watch(StateCollector(sessions, lambda: VaultStatus(reachable=False), lambda: None))
    samples = _samples(m)
    assert ("envvars_env_vars_per_user_count", ()) not in samples
    assert samples[("envvars_vault_reachable", ())] == 0


def test_certificate_expiry_is_the_earliest_in_the_file(tmp_path):
    short, long = make_bundle("a", ["localhost"], [], days=3), make_bundle("b", ["localhost"], [], days=90)
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(long["ca_pem"] + short["ca_pem"])
    expiry = certificate_expiry(str(bundle))
    in_days = (expiry - datetime.datetime.now(datetime.timezone.utc).timestamp()) / 86400
    assert 2.9 < in_days <= 3
    assert certificate_expiry(str(tmp_path / "missing.pem")) is None
    (tmp_path / "junk.pem").write_text("not a certificate")
    assert certificate_expiry(str(tmp_path / "junk.pem")) is None


@pytest.mark.parametrize("error, reason", [
    (jwt.PyJWKClientConnectionError("x"), "jwks_unavailable"), (jwt.PyJWKClientError("x"), "unknown_key"),
    (jwt.InvalidSignatureError("x"), "bad_signature"), (jwt.DecodeError("x"), "malformed"),
    (jwt.ExpiredSignatureError("x"), "expired"), (jwt.ImmatureSignatureError("x"), "not_yet_valid"),
    (jwt.InvalidAudienceError("x"), "wrong_audience"), (jwt.InvalidIssuerError("x"), "wrong_issuer"),
    (jwt.MissingRequiredClaimError("exp"), "missing_claim"), (jwt.InvalidAlgorithmError("x"), "invalid"),
])
def test_each_refusal_has_its_reason(error, reason):
    assert _reason(error) == reason and reason in AUTH_FAILURE_REASONS


def test_every_reason_is_exported_from_the_start_and_unknown_ones_fold_into_invalid():
    m = Metrics()
    m.auth_failed("something-new")
    samples = _samples(m)
    counts = {dict(labels)["reason"]: v for (name, labels), v in samples.items() if name == "envvars_auth_failures_total"}
    assert counts == {r: (1 if r == "invalid" else 0) for r in AUTH_FAILURE_REASONS}

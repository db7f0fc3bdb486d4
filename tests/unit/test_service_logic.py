"""The service's pure logic, no server: output redaction, env var names, settings from the environment."""
import atexit
import datetime
import os
import tempfile

import pytest

from service.executor.redaction import redact, unredacted
from service.schemas import check_name, iso_utc, sqlite_iso_utc
from service.settings import Settings, SettingsError

pytestmark = pytest.mark.unit


# --- redact ----------------------------------------------------------------------------------------

def test_every_occurrence_of_a_value_is_replaced_by_its_env_vars_name():
    assert redact("token=abc123; again abc123.", {"TOKEN": "abc123"}) == \
        "token=[redacted:TOKEN]; again [redacted:TOKEN]."


def test_a_multiline_value_whole_and_each_of_its_lines():
    value = "first-line\nsecond-line\nab"
    out = redact(f"all: {value}\nonly: second-line\nshort: ab", {"KEY": value})
    # Lines of fewer than 4 characters (ignoring blanks) would redact ordinary text: kept.
    assert out == "all: [redacted:KEY]\nonly: [redacted:KEY]\nshort: ab"


def test_the_longest_value_first_so_one_inside_another_does_not_leak_the_rest():
    out = redact("secret-and-more | secret", {"SHORT": "secret", "LONG": "secret-and-more"})
    assert out == "[redacted:LONG] | [redacted:SHORT]"


def test_a_line_padded_with_blanks_counts_its_characters_only():
    assert redact("x  ab  y", {"V": "zzzz\n  ab  "}) == "x  ab  y"


@pytest.mark.parametrize("values", [{}, {"EMPTY": ""}])
def test_nothing_to_redact_leaves_the_output_as_it_is(values):
    assert redact("plain output\n", values) == "plain output\n"


def _forms(value: str) -> dict[str, str]:
    import base64
    import json
    import urllib.parse

    raw = value.encode()
    return {"base64": base64.b64encode(raw).decode(), "base64, no padding": base64.b64encode(raw).decode().rstrip("="),
            "base64url": base64.urlsafe_b64encode(raw).decode(),
            "base64url, no padding": base64.urlsafe_b64encode(raw).decode().rstrip("="),
            "hex": raw.hex(), "HEX": raw.hex().upper(), "percent": urllib.parse.quote(value, safe=""),
            "form": urllib.parse.quote_plus(value), "json": json.dumps(value)[1:-1],
            "json, ascii": json.dumps(value, ensure_ascii=True)[1:-1]}


# ~?> in the value: its base64 differs from its base64url; quotes, a space and é: the escapes differ too.
ENCODED = 'c4n4ry "quoted" é~?>/+ end'


@pytest.mark.parametrize("form", sorted(_forms(ENCODED)))
def test_each_encoded_form_of_a_value_is_hidden(form):
    encoded = _forms(ENCODED)[form]
    assert redact(f"leak: {encoded} :end", {"TOKEN": ENCODED}) == "leak: [redacted:TOKEN] :end"


def test_each_line_of_a_multiline_value_is_hidden_in_its_encoded_forms_too():
    value = "-----BEGIN KEY-----\nline-two-of-key\n-----END KEY-----"
    out = redact("\n".join(_forms("line-two-of-key").values()), {"KEY": value})
    assert set(out.split("\n")) == {"[redacted:KEY]"}


def test_a_value_shorter_than_the_minimum_is_not_searched_for_and_is_named():
    values = {"FLAG": "on", "PADDED": "  ab ", "TOKEN": "long-enough"}
    assert redact("turn on: on, ab, long-enough", values) == "turn on: on, ab, [redacted:TOKEN]"
    assert unredacted(values) == ["FLAG", "PADDED"]
    assert unredacted({"EMPTY": ""}) == []  # nothing to hide


# --- check_name ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["FOO", "_", "_x", "a1_B2", "Path_Extra", "LDX", "X" * 128])
def test_posix_names_are_accepted_as_they_are(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "A.B", "FOO\n", "\nFOO", "FOO ", "ÄBC", "A=B"])
def test_anything_but_a_posix_name_is_refused(name):
    with pytest.raises(ValueError, match="must be a POSIX name"):
        check_name(name)


def test_a_name_longer_than_128_characters_is_refused():
    with pytest.raises(ValueError, match="at most 128 characters"):
        check_name("X" * 129)


@pytest.mark.parametrize("name", ["PATH", "path", "Home", "LD_PRELOAD", "ld_library_path", "DYLD_INSERT_LIBRARIES",
                                  "BASH_ENV", "BASH_FUNC_x", "PYTHONPATH", "NODE_OPTIONS", "GLIBC_TUNABLES",
                                  "VAULT_TOKEN", "BAO_ADDR", "ENVVARS_VAULT_ADDR", "envvars_anything"])
def test_names_that_change_how_a_job_runs_are_reserved(name):
    with pytest.raises(ValueError, match="is reserved"):
        check_name(name)


# --- Settings.from_env -----------------------------------------------------------------------------

LOGIN_KEY = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)  # removed at exit (atexit below)
LOGIN_KEY.write("LOGIN-KEY-PEM")
LOGIN_KEY.close()
atexit.register(os.unlink, LOGIN_KEY.name)
REQUIRED = {"ENVVARS_VAULT_ADDR": "https://vault.test:8200/", "ENVVARS_OIDC_ISSUER": "https://issuer.test",
            "ENVVARS_OIDC_JWKS_URL": "https://issuer.test/keys", "ENVVARS_VAULT_LOGIN_KEY_FILE": LOGIN_KEY.name}
INTEGERS = {"VAULT_TIMEOUT_SECONDS": 1, "MAX_WORKERS": 1, "JOB_UID_BASE": 1, "JOB_MEMORY_MB": 16,
            "JOB_MAX_PROCESSES": 1, "JOB_CPU_SECONDS": 1, "JOB_OPEN_FILES": 16, "JOB_TMPFS_MB": 1,
            "JOB_MAX_OUTPUT_BYTES": 1, "DEFAULT_TIMEOUT_SECONDS": 1, "MAX_TIMEOUT_SECONDS": 1,
            "VALUE_MAX_BYTES": 1}


def test_defaults():
    s = Settings.from_env(dict(REQUIRED))
    assert s.vault_addr == "https://vault.test:8200"  # no trailing slash
    assert (s.oidc_issuer, s.oidc_jwks_url) == ("https://issuer.test", "https://issuer.test/keys")
    assert (s.oidc_audience, s.oidc_client_id, s.oidc_client_secret, s.oidc_scopes) == \
        ("env-vars", "env-vars", "", "openid")
    assert (s.database_url, s.kv_mount, s.jwt_mount, s.jwt_role, s.approle_mount) == \
        ("sqlite:///./envvars.db", "secret", "jwt", "user", "approle")
    assert (s.approle_role_id, s.approle_secret_id, s.session_key, s.vault_ca_file) == ("", "", "", "")
    assert (s.executor_backend, s.job_network, s.job_proc, s.unsafe_unsandboxed_jobs) == \
        ("subprocess", "on", "private", False)
    assert (s.vault_timeout_seconds, s.max_workers, s.default_timeout_seconds, s.max_timeout_seconds) == \
        (10, 4, 300, 3600)
    assert (s.job_memory_mb, s.job_max_processes, s.job_open_files, s.job_max_output_bytes) == \
        (1024, 128, 1024, 1 << 20)
    assert (s.rate_limit, s.value_max_bytes, s.public_url) == ("120/minute", 64 * 1024, "")


def test_only_the_given_environment_is_read(monkeypatch):
    monkeypatch.setenv("ENVVARS_KV_MOUNT", "from-the-process")
    assert Settings.from_env(dict(REQUIRED)).kv_mount == "secret"


def test_the_client_id_defaults_to_the_audience():
    assert Settings.from_env({**REQUIRED, "ENVVARS_OIDC_AUDIENCE": "aud"}).oidc_client_id == "aud"


def test_secrets_come_from_files_and_stay_out_of_repr(tmp_path):
    files = {}
    for key, value in (("APPROLE_SECRET_ID", "secret-id-value"), ("OIDC_CLIENT_SECRET", "client-secret-value"),
                       ("SESSION_KEY", "session-key-value"), ("DATABASE_URL", "postgresql://u:pw@db/envvars"),
                       ("APPROLE_ROLE_ID", "role-id-value"), ("VAULT_LOGIN_KEY", "login-key-value")):
        (tmp_path / key).write_text(value + "\n")
        files[f"ENVVARS_{key}_FILE"] = str(tmp_path / key)
    s = Settings.from_env({**REQUIRED, **files})
    assert (s.approle_secret_id, s.oidc_client_secret, s.session_key) == \
        ("secret-id-value", "client-secret-value", "session-key-value")
    assert (s.database_url, s.approle_role_id) == ("postgresql://u:pw@db/envvars", "role-id-value")
    assert s.vault_login_key == "login-key-value"
    for secret in ("secret-id-value", "client-secret-value", "session-key-value", "login-key-value"):
        assert secret not in repr(s)


@pytest.mark.parametrize("key", sorted(k.removeprefix("ENVVARS_") for k in REQUIRED))
def test_a_missing_required_setting_is_named(key):
    env = {k: v for k, v in REQUIRED.items() if k != f"ENVVARS_{key}"}
    with pytest.raises(SettingsError, match=f"^ENVVARS_{key} is required$"):
        Settings.from_env(env)


def test_the_drift_check_needs_no_users_login_key():
    """`python -m service check` (the restore check runs it) logs in as the executor only."""
    env = {k: v for k, v in REQUIRED.items() if k != "ENVVARS_VAULT_LOGIN_KEY_FILE"}
    assert Settings.from_env(env, serving=False).vault_login_key == ""


@pytest.mark.parametrize("key, value", [
    ("EXECUTOR_BACKEND", "ssh"), ("JOB_NETWORK", "off"), ("JOB_PROC", "host"), ("UNSAFE_UNSANDBOXED_JOBS", "yes"),
    ("RATE_LIMIT", "10/day"), ("RATE_LIMIT", "many"), ("PUBLIC_URL", "ftp://dash.test"),
    ("PUBLIC_URL", "https://dash.test/?next=x"), ("PUBLIC_URL", "dash.test"),
])
def test_a_bad_choice_is_refused_naming_its_key(key, value):
    with pytest.raises(SettingsError, match=f"^ENVVARS_{key} = "):
        Settings.from_env({**REQUIRED, f"ENVVARS_{key}": value})


@pytest.mark.parametrize("key", sorted(INTEGERS))
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "\u0661"])  # the last: an Arabic-Indic digit one
def test_a_bad_number_is_refused_naming_its_key(key, value):
    with pytest.raises(SettingsError, match=f"^ENVVARS_{key} = .* must be a whole number >= {INTEGERS[key]}$"):
        Settings.from_env({**REQUIRED, f"ENVVARS_{key}": value})


@pytest.mark.parametrize("key", sorted(INTEGERS))
def test_a_number_below_its_minimum_is_refused_and_the_minimum_accepted(key):
    with pytest.raises(SettingsError, match=f"^ENVVARS_{key} = '{INTEGERS[key] - 1}'"):
        Settings.from_env({**REQUIRED, f"ENVVARS_{key}": str(INTEGERS[key] - 1)})
    s = Settings.from_env({**REQUIRED, f"ENVVARS_{key}": str(INTEGERS[key])})
    assert getattr(s, key.lower()) == INTEGERS[key]


def test_choices_are_taken():
    s = Settings.from_env({**REQUIRED, "ENVVARS_EXECUTOR_BACKEND": "docker", "ENVVARS_JOB_NETWORK": "none",
                           "ENVVARS_JOB_PROC": "none", "ENVVARS_UNSAFE_UNSANDBOXED_JOBS": "TRUE",
                           "ENVVARS_RATE_LIMIT": "5/second", "ENVVARS_PUBLIC_URL": "https://dash.test/base/"})
    assert (s.executor_backend, s.job_network, s.job_proc, s.unsafe_unsandboxed_jobs, s.rate_limit, s.public_url) == \
        ("docker", "none", "none", True, "5/second", "https://dash.test/base")


# --- executor take-over (a real SQLite file) ---------------------------------------------------------

def test_only_expired_leases_are_taken_over_and_a_running_jobs_leftovers_are_stopped(tmp_path):
    import datetime

    from service.db import Execution, make_engine, migrate, now, session_factory
    from service.executor.runner import Executor
    from service.metrics import Metrics

    url = f"sqlite:///{tmp_path}/t.db"
    migrate(url)
    sessions = session_factory(make_engine(url))
    past, future = now() - datetime.timedelta(seconds=5), now() + datetime.timedelta(seconds=60)
    rows = {"ran": dict(status="running", lease_until=past, started_at=past),
            "waited": dict(status="queued", lease_until=past),
            "asked": dict(status="running", lease_until=past, started_at=past, cancel_requested=True),
            "live": dict(status="running", lease_until=future, started_at=past)}
    with sessions.begin() as s:
        for key, fields in rows.items():
            s.add(Execution(id=key, owner="u", command=["x"], timeout_seconds=5, claimed_by="gone-1-abc", **fields))

    class Backend:
        abandoned: list[str] = []

        def run(self, job, cancel):
            raise AssertionError("nothing runs here")

        def abandon(self, execution_id):
            self.abandoned.append(execution_id)

    backend = Backend()
    assert Executor(sessions, lambda: None, backend, Metrics()).take_over_expired() == 3
    with sessions() as s:
        got = {e.id: e for e in s.query(Execution)}
    assert got["ran"].status == "failed" and "replica gone-1-abc stopped renewing its lease" in got["ran"].error
    assert (got["waited"].status, got["waited"].claimed_by) == ("queued", None)  # any replica may run it
    assert got["asked"].status == "cancelled"
    assert (got["live"].status, got["live"].claimed_by) == ("running", "gone-1-abc")  # its owner is alive
    assert sorted(backend.abandoned) == ["asked", "ran"]


def test_the_lease_migration_fails_what_an_earlier_version_left_unfinished_and_keeps_the_rest(tmp_path):

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    import service.db

    url = f"sqlite:///{tmp_path}/old.db"
    cfg = Config()
    cfg.set_main_option("script_location", service.db.MIGRATIONS)
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0003")  # the schema of the version before leases
    engine = create_engine(url)
    with engine.begin() as c:
        for key, status in (("q", "queued"), ("r", "running"), ("s", "succeeded")):
            c.execute(text("insert into executions (id, owner, command, status, timeout_seconds, exit_code, output, "
                           "error, created_at) values (:id, 'u', '[]', :status, 5, null, '', '', '2026-12-01 10:00:00')"),
                      {"id": key, "status": status})
    command.upgrade(cfg, "head")
    with service.db.session_factory(service.db.make_engine(url))() as s:
        got = {e.id: e for e in s.query(service.db.Execution)}
    assert got["q"].status == got["r"].status == "failed" and "upgraded" in got["r"].error
    assert got["r"].finished_at is not None and got["r"].claimed_by is None
    assert (got["s"].status, got["s"].error, got["s"].finished_at) == ("succeeded", "", None)


# --- timestamps encoded from SQLite's stored text ----------------------------------------------------

@pytest.mark.parametrize("moment", [
    datetime.datetime(2026, 12, 5, 18, 0, 0, 0, tzinfo=datetime.timezone.utc),  # isoformat drops zero micros
    datetime.datetime(2026, 12, 5, 18, 0, 0, 120, tzinfo=datetime.timezone.utc),
    datetime.datetime(1999, 1, 2, 3, 4, 5, 999999, tzinfo=datetime.timezone.utc),
    datetime.datetime(2026, 12, 5, 20, 0, 0, 500000, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
])
def test_a_timestamp_stored_by_sqlite_encodes_as_its_datetime_does(tmp_path, moment):
    """The list's JSON encodes SQLite's stored text directly: it must give the bytes iso_utc gives for the
    datetime SQLAlchemy would have read back (the API's models use iso_utc)."""
    from sqlalchemy import String, select, type_coerce

    from service.db import EnvVar, make_engine, migrate, session_factory
    url = f"sqlite:///{tmp_path}/t.db"
    migrate(url)
    sessions = session_factory(make_engine(url))
    with sessions.begin() as s:
        s.add(EnvVar(owner="u", name="T", description="", created_at=moment.astimezone(datetime.timezone.utc)))
    with sessions() as s:
        parsed, stored = s.execute(select(EnvVar.created_at, type_coerce(EnvVar.created_at, String).label("stored"))).one()
    assert isinstance(stored, str) and sqlite_iso_utc(stored) == iso_utc(parsed)
    assert iso_utc(parsed) == moment.astimezone(datetime.timezone.utc).replace(tzinfo=None).isoformat() + "Z"


# --- the service's Vault login tokens ---------------------------------------------------------------

def test_login_tokens_carry_the_admitted_spelling_for_vaults_user_role_only():
    import jwt

    from infra.providers.tls import make_signing_key
    from service.vault.login import LoginKeyError, VaultLoginSigner

    key = make_signing_key()
    token = VaultLoginSigner(key["key_pem"]).token("Carol")
    claims = jwt.decode(token, key["public_pem"], algorithms=["ES256"], audience="vault-envvars:user-role",
                        issuer="vault-envvars-service")
    assert claims["sub"] == "Carol" and claims["exp"] - claims["iat"] == 60 and len(claims["jti"]) == 32
    with pytest.raises(ValueError):
        VaultLoginSigner(key["key_pem"]).token("carol/../bob")
    for bad in ("", "not a key", make_bundle_key_rsa()):
        with pytest.raises(LoginKeyError):
            VaultLoginSigner(bad)


def make_bundle_key_rsa() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def test_secure_cookies_need_an_https_public_url():
    assert Settings.from_env({**REQUIRED, "ENVVARS_SECURE_COOKIES": "true",
                              "ENVVARS_PUBLIC_URL": "https://envvars.example"}).secure_cookies is True
    assert Settings.from_env(dict(REQUIRED)).secure_cookies is False
    with pytest.raises(SettingsError, match="ENVVARS_PUBLIC_URL = 'http://envvars.example' must be an https:// URL"):
        Settings.from_env({**REQUIRED, "ENVVARS_SECURE_COOKIES": "true", "ENVVARS_PUBLIC_URL": "http://envvars.example"})
    with pytest.raises(SettingsError, match="ENVVARS_SECURE_COOKIES = 'yes'; allowed values: true, false"):
        Settings.from_env({**REQUIRED, "ENVVARS_SECURE_COOKIES": "yes"})

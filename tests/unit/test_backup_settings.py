"""Backup settings (stacks/config.py BackupSettings) and their wiring into the dev stack's snapshot agent,
with Pulumi mocks."""
import base64
import json
import re

import pytest

from stacks import deploy
from stacks.config import ConfigError, DevConfig
from tests.unit.helpers import run

pytestmark = pytest.mark.unit
KEY = base64.b64encode(b"k" * 32).decode()
BUCKET = {"vaultMode": "raft", "backupBucket": "team-backups", "backupEndpoint": "https://s3.internal:9000",
          "backupAccessKeyId": "AKIA-MOCK", "backupSecretAccessKey": "secret-key-mock",
          "backupEncryptionKey": KEY, "backupCaCert": "-----BEGIN CERTIFICATE-----\nMOCK\n-----END CERTIFICATE-----",
          "backupKeepHourly": "6", "backupKeepDaily": "0", "backupKeepWeekly": "4", "backupNetwork": "s3-net"}


def test_no_bucket_by_default(mocks):
    backup = DevConfig.load().backup
    assert not backup.enabled and backup.prefix == "vault-envvars/dev/"
    assert (backup.keep_hourly, backup.keep_daily, backup.keep_weekly) == (24, 14, 8)


@pytest.mark.parametrize("mocks,message", [
    ({"backupBucket": "Bad_Bucket"}, "vault-envvars:backupBucket = 'Bad_Bucket' is not allowed; allowed values: an S3 bucket"),
    ({"backupEndpoint": "s3.internal"}, "vault-envvars:backupEndpoint = 's3.internal' is not allowed; allowed values: an http"),
    ({"backupPrefix": "/abs"}, "vault-envvars:backupPrefix = '/abs' is not allowed"),
    ({"backupKeepDaily": "-1"}, "vault-envvars:backupKeepDaily = -1 is below the minimum 0"),
    ({"backupCaCert": "not pem"}, "vault-envvars:backupCaCert must be a PEM certificate"),
    ({"backupBucket": "b-1"}, "vault-envvars:backupAccessKeyId is required with vault-envvars:backupBucket"),
    ({**{k: v for k, v in BUCKET.items() if k != "backupEncryptionKey"}},
     "vault-envvars:backupEncryptionKey is required"),
    ({**BUCKET, "backupKeepHourly": "0", "backupKeepWeekly": "0"}, "keep at least one tier"),
    ({"backupLocalCopy": "maybe"}, "vault-envvars:backupLocalCopy = 'maybe' is not allowed; allowed values: true, false"),
], indirect=["mocks"])
def test_bad_backup_settings_name_the_key(mocks, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        DevConfig.load()


@pytest.mark.parametrize("mocks", [BUCKET], indirect=True)
def test_dev_raft_stack_sends_snapshots_and_the_database_to_the_bucket(mocks):
    outputs = {}
    run(lambda: outputs.update(deploy("dev")))
    (agent,) = [c for c in mocks.of_type("docker:Container") if c.name == "vault-snapshots-agent"]
    cmd = agent.inputs["command"]
    assert cmd[cmd.index("--store-config") + 1] == "/agent/store.json"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--tier"] == ["3600:6", "604800:4"]
    assert cmd[cmd.index("--sqlite-file") + 1] == "/service-data/envvars.db" and "--no-local-copy" not in cmd
    # the service's data volume (its id is its name; the mocks' ids are "<name>-id")
    assert {"source": "envvars-data-id", "target": "/service-data"} in agent.inputs["volumes"]
    assert agent.inputs["user"] == "0:0" and agent.inputs["cap_drop"] == ["ALL"]
    assert agent.inputs["networks"][-1] == {"name": "s3-net"}
    assert agent.inputs["image"] != "localhost/vault-envvars/debian-python:bookworm-r2"  # the service image
    files = agent.inputs["files"]
    store = json.loads(files["/agent/store.json"]["content"])
    assert store == {"bucket": "team-backups", "prefix": "vault-envvars/dev/", "endpoint": "https://s3.internal:9000",
                     "region": "us-east-1", "ca_file": "/agent/store-ca.pem"}
    assert json.loads(files["/agent/s3-credentials.json"]["content"])["secret_access_key"] == "secret-key-mock"
    assert files["/agent/backup.key"] == {"content": KEY, "mode": 0o400}
    assert "files" in agent.secret_inputs  # credentials and key stay secrets in the state
    assert "secret-key-mock" not in json.dumps(agent.inputs["command"]) and KEY not in json.dumps(cmd)

    # The daily restore check beside it: the service image plus bao, the source's unseal keys as a 0400 file.
    (check,) = [c for c in mocks.of_type("docker:Container") if c.name == "restore-check-agent"]
    rc = check.inputs["command"]
    assert rc[0] == "/agent/restore_check.py" and rc[rc.index("--interval") + 1] == "86400"
    assert rc[rc.index("--rpo-limit") + 1] == "7200" and rc[rc.index("--audit-file-path") + 1] == "/bao/logs/audit.log"
    assert check.inputs["files"]["/agent/unseal-keys.json"]["mode"] == 0o400 and "files" in check.secret_inputs
    assert check.inputs["user"] == "100:1000" and check.inputs["read_only"] is True
    (image,) = [r for r in mocks.resources if r.name == "restore-check-image"]
    assert image.inputs["dockerfile"] == "infra/restore_check.Dockerfile"


@pytest.mark.parametrize("mocks", [{**{k: v for k, v in BUCKET.items() if k not in ("vaultMode", "backupNetwork")},
                                    "renderDir": "/tmp/unused"}], indirect=True)
def test_the_prod_snapshot_cronjob_uploads_to_the_bucket(mocks):
    run(lambda: deploy("prod"))
    pod = mocks.named("vault-snapshots-cronjob").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    cmd = container["command"]
    assert cmd[cmd.index("--store-config") + 1] == "/agent/store.json"
    assert cmd[cmd.index("--key-file") + 1] == "/store/backup.key"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--tier"] == ["3600:6", "604800:4"]
    assert container["image"] == "localhost/vault-envvars/service:latest"  # boto3 and cryptography
    assert {"name": "store", "mountPath": "/store", "readOnly": True} in container["volumeMounts"]
    secret = mocks.named("vault-snapshots-store")
    assert "string_data" in secret.secret_inputs or "stringData" in secret.secret_inputs
    data = mocks.named("vault-snapshots-agent").inputs["data"]
    assert json.loads(data["store.json"])["ca_file"] == "/agent/store-ca.pem" and "backup_store.py" in data
    assert KEY not in json.dumps(data) and "secret-key-mock" not in json.dumps(data)


@pytest.mark.parametrize("mocks,message", [
    ({"restoreCheckInterval": "10s"}, "vault-envvars:restoreCheckInterval must be at least 1m"),
    ({"backupRpoLimit": "soon"}, "vault-envvars:backupRpoLimit = "),
], indirect=["mocks"])
def test_bad_restore_check_settings_name_the_key(mocks, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        DevConfig.load()

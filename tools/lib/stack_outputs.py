"""A stack's outputs and settings as the tools read them: every output's name written once here (the
compositions in stacks/ export only these names), read from `pulumi stack output` by name."""
import json
import os
import subprocess
from enum import StrEnum


class Out(StrEnum):
    """The stacks' output names (the values are the names `pulumi stack output` shows)."""

    # Vault
    VAULT_ADDRESS = "vault_address"  # as this machine reaches it (prod: a k8s:// address, through the API server)
    VAULT_NODES = "vault_nodes"  # each Raft node's address (raft and prod)
    VAULT_CA_CERT = "vault_ca_cert"
    VAULT_INTERNAL_ADDRESS = "vault_internal_address"
    VAULT_ROOT_TOKEN = "vault_root_token"  # dev only: prod revokes it
    VAULT_ADMIN_TOKEN = "vault_admin_token"  # the config-admin token
    VAULT_SEAL = "vault_seal"
    VAULT_UNSEAL_KEYS = "vault_unseal_keys"  # Shamir
    VAULT_RECOVERY_KEYS = "vault_recovery_keys"  # never an output: the tools read them from the state (seal_keys)
    VAULT_RECOVERY_KEYS_PGP = "vault_recovery_keys_pgp"
    VAULT_RECOVERY_KEYS_LOCATION = "vault_recovery_keys_location"
    NAMESPACE = "namespace"  # prod: Vault's Kubernetes namespace
    KV_PATH = "kv_path"
    JWT_ACCESSOR = "jwt_accessor"
    # Credentials of the service and the snapshot job
    EXECUTOR_ROLE_ID = "executor_role_id"
    EXECUTOR_SECRET_ID = "executor_secret_id"
    SNAPSHOT_ROLE_ID = "snapshot_role_id"
    SNAPSHOT_SECRET_ID = "snapshot_secret_id"
    SERVICE_LOGIN_KEY = "service_login_key"
    # The dev identity provider
    JWT_ISSUER = "jwt_issuer"
    OIDC_CLIENT_ID = "oidc_client_id"
    OIDC_CLIENT_SECRET = "oidc_client_secret"
    DEMO_USER_PASSWORDS = "demo_user_passwords"
    # The service
    SERVICE_URL = "service_url"
    SERVICE_INTERNAL_URL = "service_internal_url"
    DASHBOARD_URL = "dashboard_url"
    SERVICE_CONTAINER = "service_container"
    PLATFORM_WEBHOOK_SECRET = "platform_webhook_secret"
    POSTGRES_CONTAINER = "postgres_container"
    # Snapshots and backups
    SNAPSHOT_VOLUME = "snapshot_volume"
    BACKUP_BUCKET = "backup_bucket"
    BACKUP_PREFIX = "backup_prefix"
    # Monitoring
    PROMETHEUS_URL = "prometheus_url"
    ALERTMANAGER_URL = "alertmanager_url"


# The project directory (Pulumi.yaml, the stacks' Pulumi.<stack>.yaml): where `pulumi` runs.
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBECONFIG = "vault-envvars:kubeconfig"
KV_PATH = "vault-envvars:kvPath"


def stack_outputs(stack: str, show_secrets: bool = True) -> dict:
    """The stack's outputs ({} when it has none); secrets in clear unless `show_secrets` is False (then they
    read "[secret]", as `pulumi stack output NAME` prints them)."""
    out = subprocess.run(["pulumi", "stack", "output", "--json", "--stack", stack,
                          *(["--show-secrets"] if show_secrets else [])],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out or "{}")


def stack_setting(stack: str, key: str) -> str:
    """The stack's setting `key` (e.g. KUBECONFIG), "" when it has none."""
    got = subprocess.run(["pulumi", "config", "get", key, "--stack", stack, "--non-interactive"],
                         capture_output=True, text=True, check=False)
    return got.stdout.strip() if got.returncode == 0 else ""

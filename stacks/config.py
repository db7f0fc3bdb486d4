"""Typed stack configuration: every config read of the project happens here, validated once, with an
error that names the key and the allowed values."""
import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
from pulumi.runtime.config import is_config_secret

from infra.durations import parse_duration
from infra.job_egress import JobEgressRule
from infra.providers.vault import VaultConnection
from infra.vault_configuration import ResourceHints
from infra.vault_k8s import ContainerResources, TlsSecretArgs
from infra.vault_seal import SEAL_TYPES, SealArgs, StaticSealArgs, TransitSealArgs
from tools.lib.versions import toolchain_versions

NAMESPACE = "vault-envvars"
DEFAULT_BAO_IMAGE = "localhost/vault-envvars/openbao:2.7.2"
# The images tools/images.sh builds, named once in tools/versions.env.
DEFAULT_BASE_IMAGE = toolchain_versions()["DEFAULT_BASE_IMAGE"]
DEFAULT_MONITORING_IMAGE = toolchain_versions()["DEFAULT_MONITORING_IMAGE"]


class ConfigError(Exception):
    """A bad stack setting; the message names the key and what is allowed."""


class _Reader:
    def __init__(self, config: Optional[pulumi.Config] = None):
        self._cfg = config or pulumi.Config(NAMESPACE)

    def key(self, name: str) -> str:
        return f"{NAMESPACE}:{name}"

    def has(self, name: str) -> bool:
        return self._cfg.get(name) is not None

    def secret(self, name: str) -> Optional[pulumi.Output]:
        return self._cfg.get_secret(name)

    def objects(self, name: str) -> list[Any]:
        """A YAML list (of objects); empty when unset."""
        raw = self._cfg.get(name)
        if raw is None:
            return []
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"stack config {self.key(name)} is not a valid list") from None
        if not isinstance(value, list):
            raise ConfigError(f"stack config {self.key(name)} must be a list")
        return value

    def secret_map(self, name: str) -> Optional[pulumi.Output]:
        """A secret YAML map (set with `pulumi config set --secret --path`), as an Output of a dict."""
        return self._cfg.get_secret_object(name)

    def choice(self, name: str, allowed: Sequence[str], default: str) -> str:
        value = self._cfg.get(name) or default
        if value not in allowed:
            raise ConfigError(
                f"stack config {self.key(name)} = {value!r} is not allowed; allowed values: {', '.join(allowed)}"
            )
        return value

    def string(self, name: str, default: str) -> str:
        value = self._cfg.get(name)
        if value is None:
            return default
        if not value.strip():
            raise ConfigError(f"stack config {self.key(name)} must not be empty")
        return value

    def duration(self, name: str, default: str) -> int:
        """A duration such as 30s, 15m, 1h, 7d or 1h30m, in seconds."""
        raw = self._cfg.get(name) or default
        try:
            return parse_duration(raw)
        except ValueError as e:
            raise ConfigError(f"stack config {self.key(name)} = {e}") from None

    def integer(self, name: str, default: int, minimum: int = 0, maximum: Optional[int] = None,
                kind: str = "a whole number") -> int:
        raw = self._cfg.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"stack config {self.key(name)} = {raw!r} is not {kind}") from None
        if value < minimum:
            raise ConfigError(f"stack config {self.key(name)} = {value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"stack config {self.key(name)} = {value} is out of range; "
                              f"allowed values: {minimum}-{maximum}")
        return value

    def string_list(self, name: str, default: Sequence[str]) -> list[str]:
        """A YAML list, or one comma-separated string."""
        raw = self._cfg.get(name)
        if raw is None:
            return list(default)
        try:
            items = json.loads(raw) if raw.lstrip().startswith("[") else raw.split(",")
        except json.JSONDecodeError:
            raise ConfigError(f"stack config {self.key(name)} is not a valid list") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"stack config {self.key(name)} must be a list of strings")
        return [i.strip() for i in items if i.strip()]

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._cfg.get(name)
        if raw is None:
            return default
        if raw.lower() not in ("true", "false"):
            raise ConfigError(f"stack config {self.key(name)} = {raw!r} is not allowed; allowed values: true, false")
        return raw.lower() == "true"

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, 0, 65535, kind="a port number (0-65535)")


@dataclass(frozen=True)
class RaftSettings:
    """A Raft cluster's shape, bootstrap and snapshots (both stacks)."""

    replicas: int
    key_shares: int
    key_threshold: int
    snapshot_interval: int  # seconds
    snapshot_retain: int
    admin_token_period: int = 768 * 3600  # seconds: the config-admin token lives this long past each `up`

    @classmethod
    def load(cls, r: "_Reader") -> "RaftSettings":
        replicas = r.integer("replicas", 3, minimum=3)
        if replicas % 2 == 0:
            raise ConfigError(f"stack config {r.key('replicas')} = {replicas} must be odd (3, 5, 7) for a Raft quorum")
        shares = r.integer("keyShares", 5, minimum=1)
        threshold = r.integer("keyThreshold", 3, minimum=1)
        if threshold > shares:
            raise ConfigError(f"stack config {r.key('keyThreshold')} = {threshold} must not exceed "
                              f"{r.key('keyShares')} = {shares}")
        interval = r.duration("snapshotInterval", "1h")
        if interval < 10:
            raise ConfigError(f"stack config {r.key('snapshotInterval')} must be at least 10s")
        period = r.duration("adminTokenPeriod", "768h")
        if period < 10:
            raise ConfigError(f"stack config {r.key('adminTokenPeriod')} must be at least 10s")
        return cls(replicas, shares, threshold, interval, r.integer("snapshotRetain", 24, minimum=1), period)


@dataclass(frozen=True)
class BackupSettings:
    """Where snapshots and metadata database backups go off the cluster: an S3-compatible bucket (both
    stacks; docs/backups.md). `bucket` empty: none (local snapshots only)."""

    bucket: str
    endpoint: str  # empty: AWS S3's own
    prefix: str  # ends with "/" when not empty
    region: str
    ca_cert_pem: str  # a private endpoint's CA; empty: the system's trust store
    access_key_id: Optional[pulumi.Output]  # stack secrets
    secret_access_key: Optional[pulumi.Output]
    encryption_key: Optional[pulumi.Output]  # 32 bytes in base64; never in the bucket
    keep_hourly: int
    keep_daily: int
    keep_weekly: int
    local_copy: bool  # also keep the snapshots on the local volume
    database: bool  # back up the service's metadata database too
    network: str  # dev: an engine network the snapshot agent joins to reach a private endpoint
    restore_check: bool  # dev: the scheduled restore check beside the stack
    restore_check_interval: int  # seconds
    rpo_limit: int  # seconds: BackupRpoExceeded past it

    @property
    def enabled(self) -> bool:
        return bool(self.bucket)

    @property
    def tiers(self) -> list[str]:
        """The snapshot agent's --tier values."""
        return [f"{p}:{n}" for p, n in ((3600, self.keep_hourly), (86400, self.keep_daily),
                                        (604800, self.keep_weekly)) if n]

    @classmethod
    def load(cls, r: "_Reader", stack: str = "") -> "BackupSettings":
        bucket = r.string("backupBucket", "")
        if bucket and not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket):
            raise ConfigError(f"stack config {r.key('backupBucket')} = {bucket!r} is not allowed; allowed values: "
                              "an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)")
        endpoint = r.string("backupEndpoint", "")
        if endpoint and not re.match(r"^https?://[^/\s]+/?$", endpoint):
            raise ConfigError(f"stack config {r.key('backupEndpoint')} = {endpoint!r} is not allowed; allowed values: "
                              "an http:// or https:// URL without a path, or unset (AWS S3)")
        prefix = r.string("backupPrefix", f"vault-envvars/{stack}/" if stack else "vault-envvars/")
        if prefix.startswith("/") or "//" in prefix or not re.match(r"^[A-Za-z0-9._/-]*$", prefix):
            raise ConfigError(f"stack config {r.key('backupPrefix')} = {prefix!r} is not allowed; allowed values: "
                              "letters, digits, . _ - and / (no leading /)")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        ca = r.string("backupCaCert", "")
        if ca and "-----BEGIN CERTIFICATE-----" not in ca:
            raise ConfigError(f"stack config {r.key('backupCaCert')} must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
        counts = {n: r.integer(k, d, minimum=0, maximum=10000) for n, k, d in (
            ("hourly", "backupKeepHourly", 24), ("daily", "backupKeepDaily", 14), ("weekly", "backupKeepWeekly", 8))}
        if bucket and not any(counts.values()):
            raise ConfigError(f"stack config: {r.key('backupKeepHourly')}, {r.key('backupKeepDaily')} and "
                              f"{r.key('backupKeepWeekly')} are all 0; keep at least one tier")
        interval = r.duration("restoreCheckInterval", "1d")
        if interval < 60:
            raise ConfigError(f"stack config {r.key('restoreCheckInterval')} must be at least 1m")
        rpo_limit = r.duration("backupRpoLimit", "2h")
        if rpo_limit < 60:
            raise ConfigError(f"stack config {r.key('backupRpoLimit')} must be at least 1m")
        secrets_ = {k: r.secret(k) for k in ("backupAccessKeyId", "backupSecretAccessKey", "backupEncryptionKey")}
        if bucket:
            for k, v in secrets_.items():
                if v is None:
                    raise ConfigError(f"stack config {r.key(k)} is required with {r.key('backupBucket')}: set it with "
                                      f"`pulumi config set --secret {k} ...`")
        return cls(bucket=bucket, endpoint=endpoint.rstrip("/"), prefix=prefix,
                   region=r.string("backupRegion", "us-east-1"), ca_cert_pem=ca,
                   access_key_id=secrets_["backupAccessKeyId"], secret_access_key=secrets_["backupSecretAccessKey"],
                   encryption_key=secrets_["backupEncryptionKey"].apply(_checked_key) if secrets_["backupEncryptionKey"]
                   else None,
                   keep_hourly=counts["hourly"], keep_daily=counts["daily"], keep_weekly=counts["weekly"],
                   local_copy=r.boolean("backupLocalCopy", True), database=r.boolean("backupDatabase", True),
                   network=r.string("backupNetwork", ""), restore_check=r.boolean("restoreCheck", True),
                   restore_check_interval=interval, rpo_limit=rpo_limit)


def _checked_key(text: str) -> str:
    import base64
    import binascii

    try:
        ok = len(base64.b64decode(text.strip(), validate=True)) == 32
    except (binascii.Error, ValueError):
        ok = False
    if not ok:  # the value itself is never in the message
        raise ConfigError(f"stack config {NAMESPACE}:backupEncryptionKey must be 32 random bytes in base64 "
                          "(e.g. `openssl rand -base64 32`)")
    return text.strip()


@dataclass(frozen=True)
class MonitoringSettings:
    """Prometheus, Alertmanager and the Pushgateway (both stacks; docs/monitoring.md)."""

    enabled: bool
    image: str  # Debian's packages (tools/images.sh); prod: an image your cluster can pull
    webhook_url: str  # where the Alertmanager sends alerts; empty: nowhere (a null receiver)
    interval_seconds: int  # scrape and rule evaluation
    retention: str  # how long Prometheus keeps samples
    prometheus_host_port: int  # dev: 0 picks a free port on 127.0.0.1
    alertmanager_host_port: int  # dev
    storage: str  # prod: Prometheus' volume claim
    namespace: str  # prod: empty for the Vault namespace

    @classmethod
    def load(cls, r: "_Reader") -> "MonitoringSettings":
        webhook = r.string("alertWebhookUrl", "")
        if webhook and not re.match(r"^https?://[^/\s]+(/\S*)?$", webhook):
            raise ConfigError(f"stack config {r.key('alertWebhookUrl')} = {webhook!r} is not allowed; "
                              "allowed values: an http:// or https:// URL, or unset (alerts go nowhere)")
        interval = r.duration("scrapeInterval", "10s")
        if not 5 <= interval <= 300:
            raise ConfigError(f"stack config {r.key('scrapeInterval')} is out of range; allowed values: 5s-5m")
        retention = r.string("prometheusRetention", "15d")
        if not re.match(r"^[0-9]+[hdwy]$", retention):
            raise ConfigError(f"stack config {r.key('prometheusRetention')} = {retention!r} is not allowed; "
                              "allowed values: a number of hours, days, weeks or years (12h, 15d, 4w, 1y)")
        namespace = r.string("monitoringNamespace", "")
        if namespace and not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", namespace):
            raise ConfigError(f"stack config {r.key('monitoringNamespace')} = {namespace!r} is not a namespace name")
        return cls(
            enabled=r.boolean("monitoring", True),
            image=r.string("monitoringImage", DEFAULT_MONITORING_IMAGE),
            webhook_url=webhook,
            interval_seconds=interval,
            retention=retention,
            prometheus_host_port=r.port("prometheusHostPort", 0),
            alertmanager_host_port=r.port("alertmanagerHostPort", 0),
            storage=r.string("prometheusStorage", "10Gi"),
            namespace=namespace,
        )


@dataclass(frozen=True)
class PlatformWebhookSettings:
    """The platform team's webhook (both stacks; docs/leaks.md "Webhooks"): the service's stack-level one."""

    url: str = ""  # empty: none
    secret: Optional[pulumi.Output] = None  # the operator's (a stack secret); None: the stack makes one

    @classmethod
    def load(cls, r: "_Reader") -> "PlatformWebhookSettings":
        url = r.string("platformWebhookUrl", "")
        if url and not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
            raise ConfigError(f"stack config {r.key('platformWebhookUrl')} = {url!r} is not allowed; "
                              "allowed values: an http:// or https:// URL, or unset (no platform webhook)")
        secret = r.secret("platformWebhookSecret")
        if secret is not None and not is_config_secret(r.key("platformWebhookSecret")):
            # In clear in the stack's config file: refused, never echoed.
            raise ConfigError(f"stack config {r.key('platformWebhookSecret')} must be a secret: set it with "
                              "`pulumi config set --secret platformWebhookSecret ...`")
        if secret is not None and not url:
            raise ConfigError(f"stack config {r.key('platformWebhookSecret')} needs {r.key('platformWebhookUrl')}")
        return cls(url=url, secret=secret)


@dataclass(frozen=True)
class SealSettings:
    """How the prod cluster seals its root key (docs/seals.md): `seal` shamir | static | transit."""

    kind: str
    args: Optional[SealArgs]  # None: Shamir
    generate_static_key: bool  # static without staticSealSecret: the stack makes the key (a Pulumi secret)
    recovery_pgp_keys: list[str]  # base64 OpenPGP public keys, one per share: the shares' custodians

    @property
    def auto(self) -> bool:
        return self.kind != "shamir"

    @classmethod
    def load(cls, r: "_Reader", raft: RaftSettings) -> "SealSettings":
        kind = r.choice("seal", SEAL_TYPES, "shamir")
        transit_keys = ("transitSealAddress", "transitSealKeyName", "transitSealTokenSecret", "transitSealMountPath",
                        "transitSealCaSecret")
        static_keys = ("staticSealSecret", "staticSealKeyId", "staticSealPreviousKeyId")
        for keys, needs in ((transit_keys, "transit"), (static_keys, "static")):
            stray = [k for k in keys if r.has(k)]
            if stray and kind != needs:
                raise ConfigError(f"stack config {r.key(stray[0])} needs {r.key('seal')} = {needs} "
                                  f"(it is {kind}); allowed values of {r.key('seal')}: {', '.join(SEAL_TYPES)}")
        if r.has("pgpKeys"):
            raise ConfigError(f"stack config {r.key('pgpKeys')} is not allowed: the bootstrap unseals Shamir pods "
                              f"with the keys it holds, so they cannot be encrypted to custodians; set {r.key('seal')} "
                              f"= static or transit and give the custodians' keys as {r.key('recoveryPgpKeys')}")
        pgp = r.string_list("recoveryPgpKeys", [])
        if pgp:
            if kind == "shamir":
                raise ConfigError(f"stack config {r.key('recoveryPgpKeys')} needs an auto seal: {r.key('seal')} = "
                                  "static or transit (Shamir has no recovery shares)")
            if len(pgp) != raft.key_shares:
                raise ConfigError(f"stack config {r.key('recoveryPgpKeys')} lists {len(pgp)} keys; give one per "
                                  f"share ({r.key('keyShares')} = {raft.key_shares}), in custodian order")
            for i, key in enumerate(pgp):
                if not _is_openpgp_public_key(key):
                    raise ConfigError(f"stack config {r.key('recoveryPgpKeys')}[{i}] is not an OpenPGP public key "
                                      "(binary, base64-encoded: gpg --export <id> | base64 -w0)")
        args: Optional[SealArgs] = None
        generate = False
        if kind == "static":
            previous = r.string("staticSealPreviousKeyId", "")
            generate = not r.has("staticSealSecret")
            if previous and generate:
                raise ConfigError(f"stack config {r.key('staticSealPreviousKeyId')} needs {r.key('staticSealSecret')}: "
                                  "a rotation's previous key comes from the operator's Secret (`previous-key`)")
            key_id = r.string("staticSealKeyId", "1")
            if previous == key_id:
                raise ConfigError(f"stack config {r.key('staticSealPreviousKeyId')} must differ from "
                                  f"{r.key('staticSealKeyId')} = {key_id!r}")
            args = StaticSealArgs(secret_name=r.string("staticSealSecret", "vault-seal-key"), key_id=key_id,
                                  previous_key_id=previous)
        elif kind == "transit":
            address = r.string("transitSealAddress", "")
            if not re.match(r"^https?://[^/\s]+$", address):
                raise ConfigError(f"stack config {r.key('transitSealAddress')} = {address!r} is not allowed; allowed "
                                  "values: the transit server's URL, like https://transit.example:8200 "
                                  f"({r.key('seal')} = transit needs it)")
            mount = r.string("transitSealMountPath", "transit/")
            args = TransitSealArgs(address=address, key_name=r.string("transitSealKeyName", "vault-unseal"),
                                   token_secret_name=r.string("transitSealTokenSecret", "vault-transit-token"),
                                   mount_path=mount if mount.endswith("/") else mount + "/",
                                   ca_secret_name=r.string("transitSealCaSecret", ""))
        return cls(kind, args, generate, pgp)


def _is_openpgp_public_key(text: str) -> bool:
    """Base64 of a binary OpenPGP key whose first packet is a public key (tag 6), what Vault's init takes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    if not raw or not raw[0] & 0x80:
        return False
    tag = raw[0] & 0x3F if raw[0] & 0x40 else (raw[0] >> 2) & 0x0F
    return tag == 6


@dataclass(frozen=True)
class DevConfig:
    """Settings of the `dev` stack (Pulumi.dev.yaml)."""

    vault_mode: str  # "dev": one in-memory server; "raft": a TLS Raft cluster with snapshots
    vault_image: str
    vault_host_port: int  # dev mode; 0: the engine picks a free port, kept for the container's life
    base_image: str  # Debian + python3: the snapshot job (and the service) build on it
    service_host_port: int  # 0: the engine picks a free port, kept for the container's life
    service_rate_limit: str  # per user, e.g. 120/minute
    raft: RaftSettings
    monitoring: MonitoringSettings
    backup: BackupSettings
    platform_webhook: PlatformWebhookSettings = PlatformWebhookSettings()
    tls_validity: int = 365 * 86400  # raft: seconds the Vault server certificate is valid
    tls_renew_before: int = 45 * 86400  # raft: `up` renews it this long before it expires
    dev_database: bool = True  # a PostgreSQL and a `readonly` role for alice (default: dev mode only)

    @classmethod
    def load(cls, config: Optional[pulumi.Config] = None) -> "DevConfig":
        r = _Reader(config)
        validity, renew = r.duration("tlsValidity", "365d"), r.duration("tlsRenewBefore", "45d")
        if not 0 < renew < validity:
            raise ConfigError(f"stack config {r.key('tlsRenewBefore')} must be shorter than {r.key('tlsValidity')}")
        vault_mode = r.choice("vaultMode", ("dev", "raft"), "dev")
        return cls(
            vault_mode=vault_mode,
            vault_image=r.string("vaultImage", DEFAULT_BAO_IMAGE),
            vault_host_port=r.port("vaultHostPort", 0),
            base_image=r.string("baseImage", DEFAULT_BASE_IMAGE),
            service_host_port=r.port("serviceHostPort", 0),
            service_rate_limit=r.string("serviceRateLimit", "120/minute"),
            raft=RaftSettings.load(r),
            monitoring=MonitoringSettings.load(r),
            backup=BackupSettings.load(r, pulumi.get_stack()),
            platform_webhook=PlatformWebhookSettings.load(r),
            tls_validity=validity,
            tls_renew_before=renew,
            # Off by default in raft mode: its drills and time-lapse tests do not need it (not yet tried there).
            dev_database=r.boolean("devDatabase", vault_mode == "dev"),
        )


@dataclass(frozen=True)
class ProdConfig:
    """Settings of the `prod` stack (Pulumi.prod.yaml)."""

    namespace: str
    vault_image: str
    snapshot_image: str
    snapshot_schedule: str
    raft: RaftSettings
    resources: ContainerResources
    storage_class: Optional[str]
    data_storage: str
    audit_storage: str
    kubeconfig: str  # a path or the content; empty: KUBECONFIG / ~/.kube/config
    render_dir: str  # non-empty: write manifests there instead of applying them to a cluster
    # How this stack reaches each pod's API for bootstrap and configuration (port-forwards, per-pod
    # ingress); empty: through the Kubernetes API server (port-forwards of its own, the kubeconfig only).
    vault_endpoints: list[str]
    bootstrap: bool  # False: the Kubernetes objects only (API servers without kubelets, rendered manifests)
    seal: SealSettings
    tls_secret: Optional[TlsSecretArgs]  # None: the cluster makes its own CA and certificate
    client_namespaces: list[str]
    skip_await: bool  # test API servers only: they run no controllers
    service_image: str
    service_replicas: int
    database_url: Optional[pulumi.Output]  # PostgreSQL, a stack secret; None: the service is not deployed
    service_jwks_url: str  # where the service fetches the IdP's keys (the jwks_uri of the discovery doc)
    oidc_client_secret: Optional[pulumi.Output]  # the dashboard's OIDC client secret; None: a public client
    ingress_host: str
    ingress_tls_secret: str
    job_image: str
    jobs_namespace: str
    # Local stand-ins for what a real cluster's owner brings (Pulumi.prod-local.yaml; not for production):
    local_database: bool  # a PostgreSQL StatefulSet in the namespace instead of `databaseUrl`
    dev_identity: bool  # Vault's own OIDC provider with demo users instead of the company's IdP
    service_node_port: int  # the service's Service as a NodePort (0: ClusterIP)
    service_public_url: str  # the dashboard's URL as browsers see it (its OIDC redirect URI)
    monitoring: MonitoringSettings
    backup: BackupSettings  # snapshots only on Kubernetes so far (no database backup, no restore check)
    # Local stand-in: the dashboard over plain http (prod-local, until its pods serve TLS). Off: the public
    # URL must be https:// and session cookies are always Secure.
    local_plain_http: bool = False
    platform_webhook: PlatformWebhookSettings = PlatformWebhookSettings()
    job_egress: list = field(default_factory=list)  # JobEgressRule: where job pods may connect
    api_server_cidrs: list = field(default_factory=list)  # never covered by a job egress CIDR unless named

    @classmethod
    def load(cls, config: Optional[pulumi.Config] = None) -> "ProdConfig":
        r = _Reader(config)
        raft = RaftSettings.load(r)
        endpoints = r.string_list("vaultEndpoints", [])
        if endpoints and len(endpoints) != raft.replicas:
            raise ConfigError(f"stack config {r.key('vaultEndpoints')} lists {len(endpoints)} endpoints; "
                              f"give one per replica ({raft.replicas}), in pod order")
        if r.has("tlsSecretName") != r.has("tlsCaCert"):
            raise ConfigError(f"stack config: set both {r.key('tlsSecretName')} and {r.key('tlsCaCert')}, or neither")
        schedule = r.string("snapshotSchedule", "0 * * * *")
        if len(schedule.split()) != 5:
            raise ConfigError(f"stack config {r.key('snapshotSchedule')} = {schedule!r} is not a cron schedule "
                              "(five fields, e.g. '0 * * * *')")
        render_dir = r.string("renderDir", "")
        bootstrap = r.boolean("bootstrap", not render_dir)
        if bootstrap and render_dir:
            raise ConfigError(f"stack config {r.key('bootstrap')} = true needs a cluster: "
                              f"{r.key('renderDir')} only writes manifests")
        local_database = r.boolean("localDatabase", False)
        if local_database and r.has("databaseUrl"):
            raise ConfigError(f"stack config: set {r.key('databaseUrl')} or {r.key('localDatabase')}, not both")
        node_port = r.integer("serviceNodePort", 0, maximum=32767)
        if 0 < node_port < 30000:
            raise ConfigError(f"stack config {r.key('serviceNodePort')} = {node_port} is out of range; "
                              "allowed values: 0 (no NodePort) or 30000-32767")
        public_url = r.string("servicePublicUrl", "")
        if public_url and not re.match(r"^https?://[^/\s]+$", public_url):
            raise ConfigError(f"stack config {r.key('servicePublicUrl')} = {public_url!r} must be a URL without a path, "
                              "like https://envvars.example")
        plain_http = r.boolean("localPlainHttp", False)
        if public_url.startswith("http://") and not plain_http:
            raise ConfigError(f"stack config {r.key('servicePublicUrl')} = {public_url!r} is not allowed; allowed "
                              f"values: https:// URLs (tokens and values must not cross the network in clear; "
                              f"{r.key('localPlainHttp')}: true allows http on a local test cluster only)")
        if r.has("ingressHost") and not r.has("ingressTlsSecret") and not public_url and not plain_http:
            raise ConfigError(f"stack config {r.key('ingressHost')} needs {r.key('ingressTlsSecret')}: the "
                              "service's public URL would be http://")
        job_egress = _job_egress(r)
        api_server_cidrs = r.string_list("kubeApiServerCidrs", [])
        for cidr in api_server_cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                raise ConfigError(f"stack config {r.key('kubeApiServerCidrs')}: {cidr!r} is not a network "
                                  "(a.b.c.d/n)") from None
        tls_secret = None
        if r.has("tlsSecretName"):
            tls_secret = TlsSecretArgs(name=r.string("tlsSecretName", ""), ca_cert_pem=r.string("tlsCaCert", ""))
        return cls(
            namespace=r.string("namespace", "vault"),
            vault_image=r.string("vaultImage", "openbao/openbao:2.7.2"),
            snapshot_image=r.string("snapshotImage", "python:3.12-slim"),
            snapshot_schedule=schedule,
            raft=raft,
            resources=ContainerResources(
                cpu_request=r.string("vaultCpuRequest", "250m"), memory_request=r.string("vaultMemoryRequest", "256Mi"),
                cpu_limit=r.string("vaultCpuLimit", "1"), memory_limit=r.string("vaultMemoryLimit", "512Mi")),
            storage_class=r.string("storageClass", "") or None,
            data_storage=r.string("dataStorage", "10Gi"),
            audit_storage=r.string("auditStorage", "10Gi"),
            kubeconfig=r.string("kubeconfig", ""),
            render_dir=render_dir,
            vault_endpoints=endpoints,
            bootstrap=bootstrap,
            seal=SealSettings.load(r, raft),
            tls_secret=tls_secret,
            client_namespaces=r.string_list("clientNamespaces", []),
            skip_await=r.boolean("skipAwait", False),
            service_image=r.string("serviceImage", "localhost/vault-envvars/service:latest"),
            service_replicas=r.integer("serviceReplicas", 2, minimum=2),
            database_url=r.secret("databaseUrl"),
            service_jwks_url=r.string("serviceJwksUrl", r.string("jwksUrl", "")),
            oidc_client_secret=r.secret("oidcClientSecret"),
            ingress_host=r.string("ingressHost", ""),
            ingress_tls_secret=r.string("ingressTlsSecret", ""),
            job_image=r.string("jobImage", "python:3.12-slim"),
            jobs_namespace=r.string("jobsNamespace", "env-vars-jobs"),
            local_database=local_database,
            dev_identity=r.boolean("devIdentity", False),
            service_node_port=node_port,
            service_public_url=public_url,
            monitoring=MonitoringSettings.load(r),
            backup=BackupSettings.load(r, pulumi.get_stack()),
            local_plain_http=plain_http,
            platform_webhook=PlatformWebhookSettings.load(r),
            job_egress=job_egress,
            api_server_cidrs=api_server_cidrs,
        )


def _job_egress(r: "_Reader") -> list[JobEgressRule]:
    """`jobEgress`: a list of {"cidr": "a.b.c.d/n"} or {"namespace": "name"}, each with optional "ports"."""
    key, raw = r.key("jobEgress"), r.string("jobEgress", "[]")
    form = 'allowed values: a list of {"cidr": "a.b.c.d/n"} or {"namespace": "name"}, each with optional "ports": [443]'
    try:
        items = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(f"stack config {key} is not valid JSON; {form}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"stack config {key} must be a list; {form}")
    rules = []
    for i, item in enumerate(items):
        if set(item) - {"cidr", "namespace", "ports"}:
            unknown = sorted(set(item) - {"cidr", "namespace", "ports"})
            raise ConfigError(f"stack config {key}[{i}] has unknown keys {unknown}; {form}")
        try:
            rules.append(JobEgressRule(cidr=str(item.get("cidr", "")), namespace=str(item.get("namespace", "")),
                                       ports=tuple(item.get("ports", []))))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"stack config {key}[{i}]: {e}; {form}") from None
    return rules


@dataclass(frozen=True)
class ExistingVaultConfig:
    """Settings of an `existing` stack: configure a Vault that runs elsewhere."""

    connection: VaultConnection  # with a config-admin token (secret)
    adopt_kv_mount: bool
    audit_file_path: str

    @classmethod
    def load(cls, config: Optional[pulumi.Config] = None) -> "ExistingVaultConfig":
        r = _Reader(config)
        address = r.string("vaultAddress", "")
        if not re.match(r"^https?://[^/\s]+$", address):
            raise ConfigError(f"stack config {r.key('vaultAddress')} must be the server's URL, like https://vault.example:8200")
        token = r.secret("vaultToken")
        if token is None:
            raise ConfigError(f"stack config {r.key('vaultToken')} is required: a config-admin token, set with --secret")
        # What each failure of the server asks of the user, by setting (infra/providers/vault.py ERROR_KINDS).
        hints = {
            "unreachable": f"check {r.key('vaultAddress')} = {address}: the server's URL, reachable from here",
            "tls": f"set {r.key('vaultCaCert')} to the PEM of the CA that signed the server's certificate",
            "forbidden": f"the token in {r.key('vaultToken')} may not do this: the first `up` needs one allowed "
                         "to write sys/policies/acl/config-admin (root, once), later ones a config-admin token "
                         "(docs/stacks.md, \"Pointing it at an existing Vault\")",
        }
        return cls(
            connection=VaultConnection(address=address, token=token, ca_cert_pem=r.string("vaultCaCert", ""),
                                       hints=hints),
            adopt_kv_mount=r.boolean("adoptKvMount", False),
            audit_file_path=r.string("auditFilePath", "/vault/logs/audit.log"),
        )

    def resource_hints(self, settings: "VaultSettings") -> ResourceHints:
        """What resolves a refused resource, in this stack's settings."""
        def k(name: str) -> str:
            return f"{NAMESPACE}:{name}"
        source = next((key for key, given in (("oidcDiscoveryUrl", settings.oidc_discovery_url),
                                               ("jwksUrl", settings.jwks_url),
                                               ("jwtValidationPubkeys", settings.validation_pubkeys)) if given),
                      "jwtValidationPubkeys")
        return ResourceHints(
            kv_in_use=(f"a mount is at {settings.kv_path}/ already (every dev server mounts KV v2 at secret/): "
                       f"set {k('adoptKvMount')} true to take over a KV v2 mount there "
                       f"(pulumi config set {k('adoptKvMount')} true), or {k('kvPath')} to a free path"
                       if not self.adopt_kv_mount else
                       f"{k('adoptKvMount')} takes over a KV v2 mount only: set {k('kvPath')} to a free path"),
            auth_in_use=("an auth method is enabled at that path already, by someone else: this configuration "
                         "needs approle/ and jwt/ to itself (disable the other one, or point "
                         f"{k('vaultAddress')} at another Vault)"),
            jwt_config_rejected=(f"Vault refused the users' key source: check {k(source)} (Vault fetches a URL "
                                 f"when the config is written, so it must be reachable from the Vault server) "
                                 f"and {k('jwtIssuer')}"),
            audit_rejected=(f"{k('serverFlavor')} = vault enables audit devices through the API, which OpenBao "
                            f"refuses: set {k('serverFlavor')} openbao (audit devices in the server's config)"),
        )


DATABASE_PLUGINS = ("postgresql-database-plugin",)
_DB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_USER_ID = re.compile(r"^[A-Za-z0-9._@:+-]{1,128}$")


@dataclass(frozen=True)
class DatabaseConnection:
    """A database Vault's database secrets engine manages logins on (`database/config/<name>`)."""

    name: str
    plugin: str
    connection_url: str  # with {{username}} and {{password}} placeholders, never a literal password
    username: str  # the login Vault connects as (CREATEROLE at least)
    verify_connection: bool


@dataclass(frozen=True)
class DatabaseRole:
    """A role jobs mint logins from (`database/creds/<name>`) and the users granted it."""

    name: str
    connection: str
    creation_statements: list[str]
    revocation_statements: list[str]
    default_ttl: int  # seconds
    max_ttl: int  # seconds
    users: list[str]  # user ids (the JWT `sub`) that may mint it


@dataclass(frozen=True)
class DatabaseSettings:
    """Dynamic database credentials (docs/dynamic-env-vars.md): the engine's mount, its connections and
    roles, each role's granted users. Passwords come from the secret map `databasePasswords`."""

    path: str
    connections: list[DatabaseConnection]
    roles: list[DatabaseRole]
    passwords: Optional[pulumi.Output]  # {connection name: password}, a secret

    @classmethod
    def load(cls, r: "_Reader") -> Optional["DatabaseSettings"]:
        conns_raw, roles_raw = r.objects("databaseConnections"), r.objects("databaseRoles")
        if not conns_raw and not roles_raw:
            return None
        connections = [_db_connection(r, i, c) for i, c in enumerate(conns_raw)]
        names = [c.name for c in connections]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"stack config {r.key('databaseConnections')}: the name {dupes[0]!r} is used twice")
        roles = [_db_role(r, i, raw, names) for i, raw in enumerate(roles_raw)]
        role_names = [x.name for x in roles]
        dupes = sorted({n for n in role_names if role_names.count(n) > 1})
        if dupes:
            raise ConfigError(f"stack config {r.key('databaseRoles')}: the name {dupes[0]!r} is used twice")
        path = r.string("databaseMountPath", "database").strip("/")
        if not _DB_NAME.match(path):
            raise ConfigError(f"stack config {r.key('databaseMountPath')} = {path!r} is not allowed; allowed values: "
                              "lower-case letters, digits, - and _")
        return cls(path=path, connections=connections, roles=roles, passwords=r.secret_map("databasePasswords"))


def _entry(r: "_Reader", key: str, i: int, raw: Any, allowed: Sequence[str]) -> dict:
    where = f"{r.key(key)}[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"stack config {where} must be an object with the keys {', '.join(allowed)}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"stack config {where}.{unknown[0]} is not a setting; allowed keys: {', '.join(allowed)}")
    return raw


def _field(r: "_Reader", key: str, i: int, raw: dict, name: str, default: Any = None) -> Any:
    value = raw.get(name, default)
    if value is None:
        raise ConfigError(f"stack config {r.key(key)}[{i}].{name} is required")
    return value


def _db_connection(r: "_Reader", i: int, raw: Any) -> DatabaseConnection:
    key = "databaseConnections"
    raw = _entry(r, key, i, raw, ("name", "plugin", "connectionUrl", "username", "verifyConnection"))
    name = str(_field(r, key, i, raw, "name"))
    if not _DB_NAME.match(name):
        raise ConfigError(f"stack config {r.key(key)}[{i}].name = {name!r} is not allowed; allowed values: "
                          "lower-case letters, digits, - and _ (up to 63)")
    plugin = str(raw.get("plugin", DATABASE_PLUGINS[0]))
    if plugin not in DATABASE_PLUGINS:
        raise ConfigError(f"stack config {r.key(key)}[{i}].plugin = {plugin!r} is not allowed; "
                          f"allowed values: {', '.join(DATABASE_PLUGINS)}")
    url = str(_field(r, key, i, raw, "connectionUrl"))
    if not re.match(r"^postgres(ql)?://", url) or "{{username}}" not in url or "{{password}}" not in url:
        raise ConfigError(f"stack config {r.key(key)}[{i}].connectionUrl must be a postgresql:// URL with the "
                          "placeholders {{username}} and {{password}} (the password goes in databasePasswords)")
    verify = raw.get("verifyConnection", True)
    if not isinstance(verify, bool):
        raise ConfigError(f"stack config {r.key(key)}[{i}].verifyConnection = {verify!r} is not allowed; "
                          "allowed values: true, false")
    return DatabaseConnection(name=name, plugin=plugin, connection_url=url,
                              username=str(_field(r, key, i, raw, "username")), verify_connection=verify)


def _db_role(r: "_Reader", i: int, raw: Any, connections: list[str]) -> DatabaseRole:
    key = "databaseRoles"
    raw = _entry(r, key, i, raw, ("name", "connection", "creationStatements", "revocationStatements",
                                  "defaultTtl", "maxTtl", "users"))
    where = f"stack config {r.key(key)}[{i}]"
    name = str(_field(r, key, i, raw, "name"))
    if not _DB_NAME.match(name):
        raise ConfigError(f"{where}.name = {name!r} is not allowed; allowed values: lower-case letters, digits, "
                          "- and _ (up to 63)")
    connection = str(_field(r, key, i, raw, "connection"))
    if connection not in connections:
        raise ConfigError(f"{where}.connection = {connection!r} is not allowed; allowed values: "
                          f"{', '.join(connections) or 'none (declare databaseConnections first)'}")
    statements = {}
    for field_name in ("creationStatements", "revocationStatements"):
        value = _field(r, key, i, raw, field_name)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{where}.{field_name} must be a non-empty list of SQL statements")
        statements[field_name] = value
    if "{{name}}" not in " ".join(statements["creationStatements"]):
        raise ConfigError(f"{where}.creationStatements must create the role \"{{{{name}}}}\"")
    ttls = {}
    for field_name, default in (("defaultTtl", "1h"), ("maxTtl", "24h")):
        try:
            ttls[field_name] = parse_duration(str(raw.get(field_name, default)))
        except ValueError as e:
            raise ConfigError(f"{where}.{field_name} = {e}") from None
    if ttls["defaultTtl"] > ttls["maxTtl"]:
        raise ConfigError(f"{where}.defaultTtl must not exceed {r.key(key)}[{i}].maxTtl")
    users = raw.get("users", [])
    if not isinstance(users, list) or not all(isinstance(u, str) and _USER_ID.match(u) for u in users):
        raise ConfigError(f"{where}.users must be a list of user ids (the identity provider's `sub`)")
    return DatabaseRole(name=name, connection=connection, creation_statements=statements["creationStatements"],
                        revocation_statements=statements["revocationStatements"], default_ttl=ttls["defaultTtl"],
                        max_ttl=ttls["maxTtl"], users=list(users))


SERVER_FLAVORS = ("openbao", "vault")
AUTH_TYPES = ("jwt", "oidc")


@dataclass(frozen=True)
class VaultSettings:
    """How Vault is configured (both stacks): identity provider, TTLs, KV, server flavour."""

    server_flavor: str
    auth_type: str
    audiences: list[str]
    issuer: str
    oidc_discovery_url: str
    jwks_url: str
    validation_pubkeys: list[str]
    user_token_ttl: int
    user_token_max_ttl: int
    executor_token_ttl: int
    executor_token_max_ttl: int
    executor_secret_id_ttl: int
    executor_secret_id_num_uses: int
    executor_bound_cidrs: list[str] = field(default_factory=list)
    kv_path: str = "secret"
    kv_max_versions: int = 10
    database: Optional[DatabaseSettings] = None  # dynamic database credentials; None: no engine

    @staticmethod
    def flavor_only(config: Optional[pulumi.Config] = None) -> str:
        """The server flavour alone, for a stack that deploys servers before it can configure them."""
        return _Reader(config).choice("serverFlavor", SERVER_FLAVORS, "openbao")

    @classmethod
    def load(cls, config: Optional[pulumi.Config] = None, *,
             default_key_source: Optional[dict[str, str]] = None) -> "VaultSettings":
        """`default_key_source` ({"jwks_url" or "oidc_discovery_url": ..., "issuer": ...}) applies when
        the stack names no key source itself (the dev stack's own identity provider)."""
        default_key_source = default_key_source or {}
        r = _Reader(config)
        audiences = r.string_list("jwtAudiences", ["env-vars"])
        if not audiences:
            raise ConfigError(f"stack config {r.key('jwtAudiences')} must name at least one audience")
        sources: dict[str, Any] = {
            "oidcDiscoveryUrl": r.string("oidcDiscoveryUrl", ""),
            "jwksUrl": r.string("jwksUrl", ""),
            "jwtValidationPubkeys": r.string_list("jwtValidationPubkeys", []),
        }
        given = [k for k, v in sources.items() if v]
        if len(given) > 1:
            raise ConfigError(f"stack config: set only one of {', '.join(r.key(k) for k in given)}")
        if not given and not default_key_source:
            raise ConfigError(
                f"stack config: set one of {', '.join(r.key(k) for k in sources)} (how Vault verifies users' tokens)"
            )
        settings = cls(
            server_flavor=cls.flavor_only(config),
            auth_type=r.choice("authType", AUTH_TYPES, "jwt"),
            audiences=audiences,
            issuer=r.string("jwtIssuer", "" if given else default_key_source.get("issuer", "")),
            oidc_discovery_url=sources["oidcDiscoveryUrl"] or ("" if given else default_key_source.get("oidc_discovery_url", "")),
            jwks_url=sources["jwksUrl"] or ("" if given else default_key_source.get("jwks_url", "")),
            validation_pubkeys=sources["jwtValidationPubkeys"],
            user_token_ttl=r.duration("userTokenTtl", "15m"),
            user_token_max_ttl=r.duration("userTokenMaxTtl", "1h"),
            executor_token_ttl=r.duration("executorTokenTtl", "20m"),
            executor_token_max_ttl=r.duration("executorTokenMaxTtl", "1h"),
            executor_secret_id_ttl=r.duration("executorSecretIdTtl", "30d"),
            executor_secret_id_num_uses=r.integer("executorSecretIdNumUses", 1000),
            executor_bound_cidrs=r.string_list("executorBoundCidrs", []),
            kv_path=r.string("kvPath", "secret").strip("/"),
            kv_max_versions=r.integer("kvMaxVersions", 10, minimum=1),
            database=DatabaseSettings.load(r),
        )
        for short, long in (("userTokenTtl", "userTokenMaxTtl"), ("executorTokenTtl", "executorTokenMaxTtl")):
            if getattr(settings, _snake(short)) > getattr(settings, _snake(long)):
                raise ConfigError(f"stack config {r.key(short)} must not exceed {r.key(long)}")
        return settings


def vault_duration(seconds: int) -> str:
    """Seconds as Vault spells a duration, in hours when whole ones (768h, not 2764800s)."""
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds}s"


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)

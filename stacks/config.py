"""Typed stack configuration: every config read of the project happens here, validated once, with an
error that names the key and the allowed values."""
import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi

from infra.durations import parse_duration
from infra.providers.vault import VaultConnection
from infra.vault_k8s import ContainerResources, TlsSecretArgs
from infra.vault_seal import SEAL_TYPES, SealArgs, StaticSealArgs, TransitSealArgs

NAMESPACE = "vault-envvars"
DEFAULT_BAO_IMAGE = "localhost/vault-envvars/openbao:2.7.2"
DEFAULT_BASE_IMAGE = "localhost/vault-envvars/debian-python:bookworm-r2"
DEFAULT_MONITORING_IMAGE = "localhost/vault-envvars/monitoring:bookworm-r1"


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
        if interval < 60:
            raise ConfigError(f"stack config {r.key('snapshotInterval')} must be at least 1m")
        return cls(replicas, shares, threshold, interval, r.integer("snapshotRetain", 24, minimum=1))


@dataclass(frozen=True)
class MonitoringSettings:
    """Prometheus, Alertmanager and the Pushgateway (both stacks; README "Monitoring")."""

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
class SealSettings:
    """How the prod cluster seals its root key (README "Seals"): `seal` shamir | static | transit."""

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

    @classmethod
    def load(cls, config: Optional[pulumi.Config] = None) -> "DevConfig":
        r = _Reader(config)
        return cls(
            vault_mode=r.choice("vaultMode", ("dev", "raft"), "dev"),
            vault_image=r.string("vaultImage", DEFAULT_BAO_IMAGE),
            vault_host_port=r.port("vaultHostPort", 0),
            base_image=r.string("baseImage", DEFAULT_BASE_IMAGE),
            service_host_port=r.port("serviceHostPort", 0),
            service_rate_limit=r.string("serviceRateLimit", "120/minute"),
            raft=RaftSettings.load(r),
            monitoring=MonitoringSettings.load(r),
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
                              "like http://10.244.0.1:30080")
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
        )


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
        return cls(
            connection=VaultConnection(address=address, token=token, ca_cert_pem=r.string("vaultCaCert", "")),
            adopt_kv_mount=r.boolean("adoptKvMount", False),
            audit_file_path=r.string("auditFilePath", "/vault/logs/audit.log"),
        )


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
        )
        for short, long in (("userTokenTtl", "userTokenMaxTtl"), ("executorTokenTtl", "executorTokenMaxTtl")):
            if getattr(settings, _snake(short)) > getattr(settings, _snake(long)):
                raise ConfigError(f"stack config {r.key(short)} must not exceed {r.key(long)}")
        return settings


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)

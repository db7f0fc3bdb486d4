"""A single Vault/OpenBao server in dev mode, in a container on the local engine."""
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra.audit import server_audit_hcl
from infra.providers import docker
from infra.server_paths import AUDIT_LOG, LOGS_DIR


@dataclass
class VaultDevServerArgs:
    image: str
    root_token: pulumi.Input[str]
    host_port: int = 0  # 0: the engine picks a free port
    flavor: str = "openbao"  # "openbao" declares audit devices in its config; "vault" gets them via the API
    labels: dict[str, str] = field(default_factory=dict)
    docker_host: Optional[str] = None


class VaultDevServer(pulumi.ComponentResource):
    """Dev mode keeps everything in memory and starts unsealed: for local development only.

    Outputs, the clusters' shape: `host_address` (published on 127.0.0.1 only), `internal_address` (how
    containers on `network_name` reach it), `ca_cert_pem` (empty: plain HTTP); and `root_token` (secret).
    """

    host_address: pulumi.Output[str]
    internal_address: pulumi.Output[str]
    ca_cert_pem: pulumi.Output[str]
    network_name: pulumi.Output[str]
    root_token: pulumi.Output[str]

    def __init__(self, name: str, args: VaultDevServerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:VaultDevServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}"
        self.network = docker.Network(
            f"{name}-net", network_name=f"{prefix}-net", labels=args.labels,
            docker_host=args.docker_host, opts=child,
        )
        self.logs = docker.Volume(f"{name}-logs", volume_name=f"{prefix}-logs", labels=args.labels,
                                  docker_host=args.docker_host, opts=child)
        dev_flags = "-dev -dev-listen-address=0.0.0.0:8200 -dev-no-store-token"
        if args.flavor == "openbao":
            # OpenBao takes audit devices only from its config file; the root fs is read-only, so the
            # file is written to the tmpfs at start.
            entrypoint = ["/bin/sh", "-c"]
            command = [f"cat > /tmp/audit.hcl <<'HCL'\n{server_audit_hcl(AUDIT_LOG)}HCL\n"
                       f"exec bao server {dev_flags} -config=/tmp/audit.hcl"]
        else:
            entrypoint, command = [], ["server", *dev_flags.split()]
        self.container = docker.Container(
            f"{name}-server",
            container_name=prefix,
            image=args.image,
            entrypoint=entrypoint,
            command=command,
            env=pulumi.Output.secret(pulumi.Output.from_input(args.root_token).apply(
                lambda t: {"BAO_DEV_ROOT_TOKEN_ID": t, "VAULT_DEV_ROOT_TOKEN_ID": t})),
            ports=[{"internal": 8200, "external": args.host_port}],
            networks=[{"name": f"{prefix}-net", "aliases": ["vault"]}],
            volumes=[{"source": f"{prefix}-logs", "target": LOGS_DIR}],
            read_only=True,
            tmpfs={"/tmp": "rw,size=16m"},
            labels=args.labels,
            wait_http_path="/v1/sys/health",
            docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.network, self.logs]),
        )
        self.host_address = self.container.host_ports.apply(
            lambda ports: f"http://127.0.0.1:{int(ports[0]['external'])}")
        self.internal_address = pulumi.Output.from_input("http://vault:8200")
        self.ca_cert_pem = pulumi.Output.from_input("")
        self.network_name = self.network.id.apply(lambda _: f"{prefix}-net")
        self.network_cidrs = self.network.container_cidrs.apply(lambda c: c or [])
        self.root_token = pulumi.Output.secret(args.root_token)
        self.register_outputs({"host_address": self.host_address, "internal_address": self.internal_address,
                               "ca_cert_pem": self.ca_cert_pem, "network_name": self.network_name,
                               "root_token": self.root_token})

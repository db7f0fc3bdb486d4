"""A Vault/OpenBao Raft cluster in containers on the local engine: TLS everywhere, `retry_join`,
persistent volumes, the API of every node published on 127.0.0.1."""
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra.providers import docker
from infra.providers.tls import TlsBundle
from infra.server_config import RaftServerConfig
from infra.server_paths import CONFIG_DIR, DATA_DIR, LOGS_DIR, SERVER_HCL


@dataclass
class VaultRaftDockerArgs:
    image: str
    nodes: int = 3
    flavor: str = "openbao"  # "openbao": audit devices declared in the config; "vault": through the API
    host_ports: list[int] = field(default_factory=list)  # per node; 0 or missing: a free port
    labels: dict[str, str] = field(default_factory=dict)
    tls_days: int = 365
    tls_valid_seconds: int = 0  # overrides tls_days (the time-lapse test's certificates live seconds)
    tls_ca_days: int = 3650  # the CA outlives its certificates: a renewed one is trusted by every client
    tls_renew_before: int = 30 * 86400  # `up` renews the certificate this many seconds before it expires
    mem_limit: str = "512m"
    docker_host: Optional[str] = None


class VaultRaftDocker(pulumi.ComponentResource):
    """Outputs, the clusters' shape: `host_address` (the first node's API on the host), `node_addresses`
    (each node's), `internal_address` (how containers on `network_name` reach the cluster), `ca_cert_pem`.

    The TLS files sit beside server.hcl, on each node's config volume."""

    host_address: pulumi.Output[str]
    node_addresses: pulumi.Output[list]
    internal_address: pulumi.Output[str]
    ca_cert_pem: pulumi.Output[str]
    network_name: pulumi.Output[str]
    network_cidrs: pulumi.Output[list]  # where containers on network_name come from, as Vault sees them

    def __init__(self, name: str, args: VaultRaftDockerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:VaultRaftDocker", name, None, opts)
        if args.nodes < 3 or args.nodes % 2 == 0:
            raise ValueError(f"a Raft cluster needs an odd number of nodes, at least 3 (got {args.nodes})")
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}"
        hosts = [f"vault-{i}" for i in range(1, args.nodes + 1)]
        binary = "bao" if args.flavor == "openbao" else "vault"

        self.tls = TlsBundle(f"{name}-tls", common_name="vault", dns_names=["vault", "localhost", *hosts],
                             ip_addresses=["127.0.0.1"], days=args.tls_days, valid_seconds=args.tls_valid_seconds,
                             ca_days=args.tls_ca_days, renew_before=args.tls_renew_before, opts=child)
        network = docker.Network(f"{name}-net", network_name=f"{prefix}-net", labels=args.labels,
                                 docker_host=args.docker_host, opts=child)
        config = RaftServerConfig(peers=[f"https://{h}:8200" for h in hosts], tls_dir=CONFIG_DIR,
                                  declare_audit=args.flavor == "openbao",
                                  ui=True).render()  # a dev cluster: its UI is the dev login page
        # mypy cannot carry Output.secret's type through apply's lambda.
        files = pulumi.Output.secret(pulumi.Output.all(self.tls.ca_pem, self.tls.cert_pem, self.tls.key_pem).apply(  # type: ignore[arg-type,var-annotated]
            lambda t: {
                SERVER_HCL: {"content": config, "mode": 0o400},
                f"{CONFIG_DIR}/ca.pem": {"content": t[0], "mode": 0o444},
                f"{CONFIG_DIR}/tls.crt": {"content": t[1], "mode": 0o444},
                f"{CONFIG_DIR}/tls.key": {"content": t[2], "mode": 0o400},
            }))

        mounts = (("data", DATA_DIR), ("config", CONFIG_DIR), ("logs", LOGS_DIR))
        self.containers = []
        for i, host in enumerate(hosts):
            volumes = {}
            for purpose, target in mounts:
                volumes[target] = docker.Volume(f"{name}-{host}-{purpose}", volume_name=f"{prefix}-{host}-{purpose}",
                                                labels=args.labels, docker_host=args.docker_host, opts=child)
            port = args.host_ports[i] if i < len(args.host_ports) else 0
            per_node = {"API_ADDR": f"https://{host}:8200", "CLUSTER_ADDR": f"https://{host}:8201",
                        "RAFT_NODE_ID": host}
            self.containers.append(docker.Container(
                f"{name}-{host}",
                container_name=f"{prefix}-{host}",
                image=args.image,
                entrypoint=[binary],
                command=["server", f"-config={SERVER_HCL}"],
                # OpenBao reads BAO_*, HashiCorp Vault VAULT_*: both spellings, same values.
                env={f"{p}_{k}": v for k, v in per_node.items() for p in ("BAO", "VAULT")},
                ports=[{"internal": 8200, "external": port}],
                networks=[{"name": f"{prefix}-net", "aliases": [host, "vault"]}],
                volumes=[{"source": f"{prefix}-{host}-{p}", "target": t} for p, t in mounts],
                user="100:1000",
                read_only=True,
                tmpfs={"/tmp": "rw,size=16m"},
                files=files,
                # A renewed certificate is written into the running node, which reloads it on SIGHUP.
                reloadable_files=[f"{CONFIG_DIR}/{f}" for f in ("ca.pem", "tls.crt", "tls.key")],
                reload_signal="SIGHUP",
                labels={**args.labels, "vault-envvars.node": host},
                mem_limit=args.mem_limit,
                wait_http_path="/v1/sys/seal-status",
                wait_https=True,
                docker_host=args.docker_host,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[network, *volumes.values()]),
            ))

        self.node_addresses = pulumi.Output.all(*[c.host_ports for c in self.containers]).apply(
            lambda all_ports: [f"https://127.0.0.1:{int(p[0]['external'])}" for p in all_ports])
        self.host_address = self.node_addresses.apply(lambda nodes: nodes[0])
        self.internal_address = pulumi.Output.from_input("https://vault:8200")
        self.ca_cert_pem = self.tls.ca_pem
        self.network_name = network.id.apply(lambda _: f"{prefix}-net")
        self.network_cidrs = network.container_cidrs.apply(lambda c: c or [])  # [] until a refresh reads an older network
        self.register_outputs({
            "host_address": self.host_address, "node_addresses": self.node_addresses,
            "internal_address": self.internal_address, "ca_cert_pem": self.ca_cert_pem,
            "network_name": self.network_name,
        })

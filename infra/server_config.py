"""The Vault/OpenBao server configuration of a Raft cluster node: one file, identical on every node.

Per-node values (node id, API and cluster addresses) come from the environment
(BAO_/VAULT_RAFT_NODE_ID, BAO_/VAULT_API_ADDR, BAO_/VAULT_CLUSTER_ADDR), so a StatefulSet can mount one
ConfigMap and containers can share one file.
"""
from dataclasses import dataclass, field

from infra.audit import server_audit_hcl


@dataclass(frozen=True)
class RaftServerConfig:
    peers: list[str]  # every node's API address, for retry_join
    tls_dir: str = "/bao/tls"  # ca.pem, tls.crt, tls.key
    data_dir: str = "/bao/data"
    audit_file_path: str = "/bao/logs/audit.log"
    declare_audit: bool = True  # OpenBao: audit devices live in the config
    # Vault's production advice: 1 gives elections in seconds instead of ~15 s.
    performance_multiplier: int = 1
    cluster_name: str = "vault-envvars"
    extra: dict = field(default_factory=dict)

    def render(self) -> str:
        joins = "".join(
            f'  retry_join {{\n    leader_api_addr = "{peer}"\n    leader_ca_cert_file = "{self.tls_dir}/ca.pem"\n  }}\n'
            for peer in self.peers)
        text = f'''ui = false
cluster_name = "{self.cluster_name}"
# Clients talk to the active node; a standby never serves a possibly stale read.
disable_standby_reads = true

storage "raft" {{
  path = "{self.data_dir}"
  performance_multiplier = {self.performance_multiplier}
{joins}}}

listener "tcp" {{
  address = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_cert_file = "{self.tls_dir}/tls.crt"
  tls_key_file = "{self.tls_dir}/tls.key"
  tls_min_version = "tls12"
  telemetry {{
    unauthenticated_metrics_access = false
  }}
}}

telemetry {{
  prometheus_retention_time = "60s"
  disable_hostname = true
}}
'''
        if self.declare_audit:
            text += "\n" + server_audit_hcl(self.audit_file_path)
        return text

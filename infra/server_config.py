"""The Vault/OpenBao server configuration of a Raft cluster node: one file, identical on every node.

Per-node values (node id, API and cluster addresses) come from the environment
(BAO_/VAULT_RAFT_NODE_ID, BAO_/VAULT_API_ADDR, BAO_/VAULT_CLUSTER_ADDR), so a StatefulSet can mount one
ConfigMap and containers can share one file.
"""
from dataclasses import dataclass
from typing import Optional

from infra.audit import server_audit_hcl
from infra.server_paths import AUDIT_LOG, DATA_DIR, TLS_DIR
from infra.vault_seal import SealArgs, render_stanza


@dataclass(frozen=True)
class RaftServerConfig:
    peers: list[str]  # every node's API address, for retry_join
    tls_dir: str = TLS_DIR  # ca.pem, tls.crt, tls.key
    data_dir: str = DATA_DIR
    audit_file_path: str = AUDIT_LOG
    declare_audit: bool = True  # OpenBao: audit devices live in the config
    # Vault's production advice: 1 gives elections in seconds instead of ~15 s.
    performance_multiplier: int = 1
    cluster_name: str = "vault-envvars"
    # Kubernetes: label pods openbao-active (HashiCorp Vault: vault-active), ...-sealed so the active and
    # standby Services select them.
    kubernetes_service_registration: bool = False
    # An auto seal (static key, another Vault's transit engine: infra/vault_seal.py); None keeps Shamir keys.
    seal: Optional[SealArgs] = None
    # The web UI: off by default; the dev cluster serves it for the dev identity provider's login page.
    ui: bool = False

    def render(self) -> str:
        joins = "".join(
            f'  retry_join {{\n    leader_api_addr = "{peer}"\n    leader_ca_cert_file = "{self.tls_dir}/ca.pem"\n  }}\n'
            for peer in self.peers)
        text = f'''ui = {str(self.ui).lower()}
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
  # Prometheus scrapes /v1/sys/metrics without a token: metrics hold no secret value, the listener is
  # network-restricted (NetworkPolicy, the stack's private network), and a sealed node, which can check
  # no token, still reports itself sealed (docs/monitoring.md).
  telemetry {{
    unauthenticated_metrics_access = true
  }}
}}

telemetry {{
  prometheus_retention_time = "60s"
  disable_hostname = true
}}
'''
        if self.kubernetes_service_registration:
            text += '\nservice_registration "kubernetes" {}\n'
        text += render_stanza(self.seal)
        if self.declare_audit:
            text += "\n" + server_audit_hcl(self.audit_file_path)
        return text

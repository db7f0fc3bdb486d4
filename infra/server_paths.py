"""Where a Vault/OpenBao server of this project keeps its files, inside its container or pod: the same
on every cluster, so the server config, the cluster components and the file audit device agree."""
CONFIG_DIR = "/bao/config"  # server.hcl (and, on the Docker Raft nodes, the TLS files)
SERVER_HCL = f"{CONFIG_DIR}/server.hcl"
TLS_DIR = "/bao/tls"  # ca.pem, tls.crt, tls.key
DATA_DIR = "/bao/data"  # Raft storage
LOGS_DIR = "/bao/logs"  # a volume of its own
AUDIT_LOG = f"{LOGS_DIR}/audit.log"

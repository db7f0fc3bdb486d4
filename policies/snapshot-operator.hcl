# snapshot-operator: saves Raft snapshots, nothing else (restores stay with a human operator).

path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}

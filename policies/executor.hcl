# executor: the service's job runner (AppRole) reads and lists any user's env-var values, nothing else.

path "${kv_path}/data/users/*" {
  capabilities = ["read"]
}

path "${kv_path}/metadata/users/*" {
  capabilities = ["list"]
}

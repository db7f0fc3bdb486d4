# executor: the service's job runner (AppRole) reads and lists any user's env-var values, nothing else.

path "${kv_path}/data/users/*" {
  capabilities = ["read"]
}

path "${kv_path}/metadata/users/*" {
  capabilities = ["list"]
}

# Dynamic env vars (service/executor/leases.py): a token per job from the token role envvars-job (its
# only policy, envvars-job-mint, mints database credentials), and revocation of those credentials' leases
# by id, nothing else of sys/leases.
path "auth/token/create/envvars-job" {
  capabilities = ["update"]
}

path "sys/leases/revoke/${db_path}/creds/*" {
  capabilities = ["update"]
}

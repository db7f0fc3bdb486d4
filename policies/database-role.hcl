# envvars-db-<role>: the grant of one database role. Attached to the identity group of the users granted
# it (stack setting databaseRoles[].users), so only they may read its credentials path; the service asks
# Vault as the user before it accepts a dynamic env var or a job that uses one.

path "${db_path}/creds/${role}" {
  capabilities = ["read"]
}

# user: a dashboard user (JWT/OIDC login) may create, read, update, delete and list env-var values only
# under its own identity: the JWT mount's alias name for the caller, which is the token's `sub`.
# ${kv_path} and ${jwt_accessor} are filled in by infra/vault_configuration.py.

path "${kv_path}/data/users/{{identity.entity.aliases.${jwt_accessor}.name}}/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "${kv_path}/metadata/users/{{identity.entity.aliases.${jwt_accessor}.name}}/*" {
  capabilities = ["read", "delete", "list"]
}

# Listing one's own folder (metadata list on the folder itself).
path "${kv_path}/metadata/users/{{identity.entity.aliases.${jwt_accessor}.name}}" {
  capabilities = ["list"]
}

# Soft-deleted versions can be destroyed for good by their owner.
path "${kv_path}/destroy/users/{{identity.entity.aliases.${jwt_accessor}.name}}/*" {
  capabilities = ["update"]
}

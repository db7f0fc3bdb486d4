# config-admin: exactly what the configuration stack (infra/vault_configuration.py) manages after
# bootstrap, so nothing runs as root: mounts, auth methods and their roles, ACL policies, audit devices.

# Secrets engines and auth methods: enable, tune, disable.
path "sys/mounts" {
  capabilities = ["read"]
}
path "sys/mounts/*" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
}
path "sys/auth" {
  capabilities = ["read"]
}
path "sys/auth/*" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
}

# The service's ACL policies, by name. Its own policy it may only read: widening config-admin takes root.
path "sys/policies/acl/user" {
  capabilities = ["create", "read", "update", "delete"]
}
path "sys/policies/acl/executor" {
  capabilities = ["create", "read", "update", "delete"]
}
path "sys/policies/acl/snapshot-operator" {
  capabilities = ["create", "read", "update", "delete"]
}
path "sys/policies/acl/envvars-*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "sys/policies/acl/config-admin" {
  capabilities = ["read"]
}

# Audit devices (HashiCorp Vault; OpenBao declares them in the server configuration).
path "sys/audit" {
  capabilities = ["read", "sudo"]
}
path "sys/audit/*" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
}

# Raft autopilot (dead-server cleanup, minimum quorum).
path "sys/storage/raft/autopilot/configuration" {
  capabilities = ["create", "read", "update"]
}

# KV engine settings (max versions), not the data in it.
path "${kv_path}/config" {
  capabilities = ["create", "read", "update"]
}

# AppRole: the executor role, its role id and the secret ids handed to the deployment.
path "auth/${approle_path}/role/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# JWT/OIDC: the issuer configuration and the user role.
path "auth/${jwt_path}/config" {
  capabilities = ["create", "read", "update"]
}
path "auth/${jwt_path}/role/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# The dev stack's identity provider (Vault's own OIDC provider and its userpass demo users).
path "identity/oidc/key/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "identity/oidc/provider/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "identity/oidc/client/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "identity/oidc/scope/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "auth/userpass/users/*" {
  capabilities = ["create", "read", "update", "delete"]
}

# Its own token's housekeeping.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# Break-glass: a root token made from a quorum of unseal keys (OpenBao 2.6+ asks for a token as well as
# the keys; the keys stay the guard). The drills use it where the bootstrap revoked root.
path "sys/generate-root-token/*" {
  capabilities = ["create", "read", "update", "delete"]
}

# Dynamic env vars: the database engine's connections and roles (never its credentials), the identity
# entities and groups that grant users a role, and the token role of the executor's per-job tokens.
path "${db_path}/config/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "${db_path}/roles/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "identity/entity" {
  capabilities = ["create", "update"]
}
path "identity/entity/id/*" {
  capabilities = ["read", "update", "delete"]
}
path "identity/entity-alias" {
  capabilities = ["create", "update"]
}
path "identity/lookup/entity" {
  capabilities = ["update"]
}
path "identity/group/name/envvars-*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "auth/token/roles/envvars-job" {
  capabilities = ["create", "read", "update", "delete"]
}

# envvars-job-mint: the one policy of a job's own token (token role envvars-job, made by the executor at
# job start, as long-lived as the job's timeout plus a grace): mint database credentials, nothing else.
# Which user may use which role is decided when a job is asked for, by Vault, as that user (envvars-db-*).

path "${db_path}/creds/*" {
  capabilities = ["read"]
}

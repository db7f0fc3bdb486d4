"""The env-vars service: users declare environment variables (values write-only, kept only in Vault) and
run execution jobs with a chosen set of them injected."""

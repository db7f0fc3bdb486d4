"""Execution jobs: values read from Vault at start, injected only through the job's environment,
output redacted. Backends: subprocess (default), docker, kubernetes."""

# The restore check's image (infra/restore_check_docker.py): the service's image (its python with boto3,
# cryptography and the `service` package for the drift check) plus the `bao` binary of the Vault image,
# for the throwaway server the newest snapshot is restored into.
ARG SERVICE_IMAGE
ARG BAO_IMAGE
FROM ${BAO_IMAGE} AS bao
FROM ${SERVICE_IMAGE}
COPY --from=bao /usr/local/bin/bao /usr/local/bin/bao
ENTRYPOINT ["python3"]

"""A Docker Engine API client (docker SDK) whose API version is negotiated through the engine's /_ping, as
the docker CLI does: the Api-Version header of its answer. The SDK's own negotiation (`version="auto"`)
asks /version, which Podman answers by querying each of its components: 0.5-2.3 s per client here,
the largest part of a warm toolchain run. Against Docker and Podman alike; imports only the SDK, so the
toolchain's scripts and the dynamic providers share it."""
from typing import Any, Optional

import docker
import requests
from docker.utils import kwargs_from_env


def client(base_url: Optional[str] = None, timeout: int = 60) -> docker.DockerClient:
    """A client of the engine at `base_url` (default: DOCKER_HOST and its TLS settings, as docker.from_env).
    An engine that does not answer raises docker.errors.DockerException, as docker.from_env does."""
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else kwargs_from_env()
    probe = docker.APIClient(version=docker.constants.DEFAULT_DOCKER_API_VERSION, timeout=10, **kwargs)
    try:
        answer = probe.get(probe.base_url + "/_ping")  # unversioned: every engine serves it
        answer.raise_for_status()
    except requests.RequestException as e:
        where = kwargs.get("base_url") or "the default socket"
        raise docker.errors.DockerException(f"the engine at {where} does not answer: {e}") from e
    finally:
        probe.close()
    # An engine without the header (none known) is negotiated the SDK's way.
    return docker.DockerClient(version=answer.headers.get("Api-Version") or "auto", timeout=timeout, **kwargs)

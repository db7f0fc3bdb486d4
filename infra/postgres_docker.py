"""A PostgreSQL on the local container engine for the dev stack's dynamic env vars: the project's image
(tools/postgres/entrypoint.sh) with an admin login that may create roles (the login Vault's database
secrets engine mints and drops job logins with), its password generated and kept as a Pulumi secret.

Reached only on the stack's network (alias `postgres`), by the Vault server and by the service's jobs,
never published on the host; every login needs its password (scram-sha-256); the `postgres` superuser
only through the container's own socket. Runs as the image's postgres user, read-only root, no capabilities."""
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from infra.postgres_k8s import DEFAULT_IMAGE, PORT, POSTGRES_UID
from infra.providers import docker
from infra.providers.random import RandomSecret

PASSWORD_DIR = "/run/secrets/postgres"  # noqa: S105 (a folder of the container)
DATA_DIR = "/var/lib/postgresql/data"
SOCKET_DIR = f"{DATA_DIR}/run"  # the server's socket: a folder of its user's (an engine's tmpfs is root's)
ALIAS = "postgres"


@dataclass
class PostgresDockerArgs:
    network_name: pulumi.Input[str]
    image: str = DEFAULT_IMAGE
    database: str = "app"
    admin: str = "vaultadmin"
    labels: dict[str, str] = field(default_factory=dict)
    docker_host: Optional[str] = None


class PostgresDocker(pulumi.ComponentResource):
    """Outputs: `host` and `port` (on the stack's network), `database`, `admin`, `admin_password` (a
    secret), `container_name`."""

    host: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: PostgresDockerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("vault-envvars:infra:PostgresDocker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}-{name}"
        user = f"{POSTGRES_UID}:{POSTGRES_UID}"
        password = RandomSecret(f"{name}-admin-password", length=24, opts=child)  # 32 URL-safe characters
        volumes = [docker.Volume(f"{name}-{p}", volume_name=f"{prefix}-{p}", labels=args.labels,
                                 docker_host=args.docker_host, opts=child) for p in ("data", "secrets")]
        container = docker.Container(
            f"{name}-server", container_name=f"{prefix}-server", image=args.image,
            env={"POSTGRES_DB": args.database, "POSTGRES_USER": args.admin, "POSTGRES_USER_CREATEROLE": "yes",
                 "POSTGRES_PASSWORD_FILE": f"{PASSWORD_DIR}/password", "PGDATA": f"{DATA_DIR}/db/pgdata"},
            networks=[{"name": args.network_name, "aliases": [ALIAS]}],
            volumes=[{"source": f"{prefix}-data", "target": DATA_DIR},
                     {"source": f"{prefix}-secrets", "target": PASSWORD_DIR}],
            command=["-c", f"unix_socket_directories={SOCKET_DIR}"],
            user=user, read_only=True, tmpfs={"/tmp": "rw,size=16m"},
            # The password reaches it as a file on its volume, never in its configuration; the cluster goes in
            # a folder of its user's (a fresh volume's root belongs to root).
            files=pulumi.Output.secret(password.result.apply(lambda p: {
                f"{PASSWORD_DIR}/password": {"content": p, "mode": 0o400},
                f"{DATA_DIR}/db": {"directory": True, "mode": 0o700},
                SOCKET_DIR: {"directory": True, "mode": 0o700}})),
            labels={**args.labels, "vault-envvars.role": "postgres"}, mem_limit="256m",
            wait_log="database system is ready to accept connections", docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self, depends_on=volumes))
        self.host = container.id.apply(lambda _: ALIAS)
        self.host_name = ALIAS  # known before the container exists (Vault's connection URL names it)
        self.port = PORT
        self.database = args.database
        self.admin = args.admin
        self.admin_password = password.result
        self.container_name = container.id.apply(lambda _: f"{prefix}-server")
        self.register_outputs({"host": self.host, "admin_password": self.admin_password,
                               "container_name": self.container_name})

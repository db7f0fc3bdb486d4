"""The PostgreSQL image (tools/images.sh, tools/postgres/) run by the real engine the way the pod runs it
(infra/postgres_k8s.py): its postgres user, read-only root, tmpfs on /run/postgresql and /tmp, no
capabilities, the password as a file on a volume. Its first start makes the service's user and database;
a client logs in with that password (scram-sha-256) through the service's own driver URL and keeps data
across a restart; nothing else gets in."""
import secrets
import time
from urllib.parse import quote

import docker
import psycopg
import pytest
import sqlalchemy

from infra.postgres_k8s import DEFAULT_IMAGE, PASSWORD_DIR, PGDATA, POSTGRES_UID

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(toolchain) -> docker.DockerClient:
    client = docker.DockerClient(base_url=toolchain["docker_host"], timeout=120)
    try:
        client.images.get(DEFAULT_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{DEFAULT_IMAGE} is missing: tools/images.sh builds it (tools/toolchain.sh runs it)")
    return client


@pytest.fixture
def volumes(engine):
    """Fresh named volumes (data, password, socket folder), removed afterwards. The socket folder is a
    volume, not a tmpfs: Podman gives a tmpfs under a read-only root its own root-owned 0755 mode (a pod's
    emptyDir is writable by its fsGroup), a new volume takes the image folder's owner."""
    made = [engine.volumes.create(f"envvars-pg-test-{what}-{secrets.token_hex(4)}") for what in ("data", "pw", "run")]
    yield made
    for v in made:
        v.remove(force=True)


def _once(engine, *command: str, **options) -> tuple[int, str]:
    """Runs `command` in a container of the image (no network) to its end: (exit code, output)."""
    container = engine.containers.create(DEFAULT_IMAGE, list(command[1:]), entrypoint=[command[0]],
                                         network_mode="none", **options)
    try:
        container.start()
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def _write_password(engine, volume, password: str) -> None:
    # As a Kubernetes Secret volume gives it: a 0440 file of the pod's group.
    code, out = _once(engine, "sh", "-c", 'umask 077; printf %s "$PW" > /pw/password; '
                      f'chgrp {POSTGRES_UID} /pw/password; chmod 0440 /pw/password', user="0:0",
                      environment={"PW": password}, volumes={volume.name: {"bind": "/pw", "mode": "rw"}})
    assert code == 0, out


def _start(engine, data, pw, run, **env) -> docker.models.containers.Container:
    return engine.containers.run(
        DEFAULT_IMAGE, detach=True, name=f"envvars-pg-test-{secrets.token_hex(4)}",
        user=f"{POSTGRES_UID}:{POSTGRES_UID}", read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
        tmpfs={"/tmp": "rw,size=64m,mode=1777"},
        volumes={data.name: {"bind": "/var/lib/postgresql/data", "mode": "rw"},
                 pw.name: {"bind": PASSWORD_DIR, "mode": "ro"}, run.name: {"bind": "/run/postgresql", "mode": "rw"}},
        environment={"PGDATA": PGDATA, "POSTGRES_PASSWORD_FILE": f"{PASSWORD_DIR}/password", **env},
        ports={"5432/tcp": ("127.0.0.1", None)})


def _port(container) -> int:
    container.reload()
    return int(container.ports["5432/tcp"][0]["HostPort"])


def _wait_ready(container, password: str, timeout: float = 90) -> float:
    """Seconds until the service's user can log in."""
    t0, port = time.monotonic(), _port(container)
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="envvars", password=password, dbname="envvars",
                                 connect_timeout=3):
                return time.monotonic() - t0
        except psycopg.OperationalError:
            container.reload()
            if container.status != "running" or time.monotonic() - t0 > timeout:
                raise AssertionError(f"no login ({container.status}); logs:\n{container.logs().decode()}") from None
            time.sleep(0.2)


def _logs(container) -> str:
    return container.logs().decode(errors="replace")


def test_first_start_makes_the_database_and_only_its_user_gets_in(engine, volumes):
    data, pw, run = volumes
    password = secrets.token_urlsafe(24)
    _write_password(engine, pw, password)
    container = _start(engine, data, pw, run)
    try:
        first_start = _wait_ready(container, password)
        assert first_start < 60, f"first start took {first_start:.1f}s"
        assert "initialising" in _logs(container)
        port = _port(container)
        # The URL infra/postgres_k8s.py gives the service, through the service's driver (SQLAlchemy + psycopg).
        url = f"postgresql+psycopg://envvars:{quote(password, safe='')}@127.0.0.1:{port}/envvars"
        db = sqlalchemy.create_engine(url)
        with db.begin() as conn:
            who = conn.execute(sqlalchemy.text(
                "SELECT current_user, r.rolsuper, r.rolcreaterole, r.rolcreatedb, current_setting('password_encryption'),"
                " (SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database())"
                " FROM pg_roles r WHERE r.rolname = current_user")).one()
            assert tuple(who) == ("envvars", False, False, False, "scram-sha-256", "envvars")
            conn.execute(sqlalchemy.text("CREATE TABLE kept (v text)"))
            conn.execute(sqlalchemy.text("INSERT INTO kept VALUES ('before restart')"))
        db.dispose()
        # Stored as a SCRAM verifier; the password is on no command line and in no setting of the container.
        processes = container.exec_run(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).output.decode()
        assert "postgres" in processes and password not in processes
        assert password not in str(container.attrs["Config"]) and password not in _logs(container)
        status = container.exec_run(["sh", "-c", "grep -h ^Uid: /proc/[0-9]*/status"]).output.decode().split("\n")
        assert all(line.split()[1:] == [str(POSTGRES_UID)] * 4 for line in status if line), status
        # A wrong password, the superuser or another database: refused.
        for user, dbname, secret in (("envvars", "envvars", "wrong-" + password), ("postgres", "postgres", password),
                                     ("envvars", "postgres", password)):
            with pytest.raises(psycopg.OperationalError, match="password authentication failed|no pg_hba.conf entry"):
                psycopg.connect(host="127.0.0.1", port=port, user=user, password=secret, dbname=dbname,
                                connect_timeout=5).close()
        ready = container.exec_run(["pg_isready", "--host=/run/postgresql", "--port=5432", "--username=postgres",
                                    "--dbname=postgres"])
        assert ready.exit_code == 0, ready.output
        # The image stops on SIGINT (a fast shutdown), not after the engine's timeout.
        t0 = time.monotonic()
        container.stop(timeout=30)
        assert time.monotonic() - t0 < 15
        assert "database system is shut down" in _logs(container)
    finally:
        container.remove(force=True)

    # A second start on the same volume keeps the cluster (no second initdb) and the data.
    again = _start(engine, data, pw, run)
    try:
        _wait_ready(again, password)
        assert "initialising" not in _logs(again)
        with psycopg.connect(host="127.0.0.1", port=_port(again), user="envvars", password=password,
                             dbname="envvars") as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("before restart",)]
    finally:
        again.remove(force=True)


def test_a_first_start_without_a_usable_password_makes_no_cluster(engine, volumes):
    data, pw, run = volumes
    _write_password(engine, pw, "short")
    container = _start(engine, data, pw, run)
    try:
        assert container.wait(timeout=60)["StatusCode"] != 0
        assert "shorter than 16 characters" in _logs(container)
    finally:
        container.remove(force=True)
    # Nothing was left in the volume: a later start with a good password initialises.
    code, listing = _once(engine, "ls", "-A", "/data", volumes={data.name: {"bind": "/data", "mode": "ro"}})
    assert code == 0 and "pgdata" not in listing, listing

"""The service against real servers: an OpenBao dev server configured by the project's own Vault
configuration (a real `pulumi up`), a JWT issuer serving its JWKS, SQLite and a real PostgreSQL."""
import pytest

from devkit.jwt_issuer import TestIssuer
from devkit.postgres import remove, start_postgres
from tests.service.helpers import app_clients, configured_vault


@pytest.fixture(scope="session")
def issuer():
    i = TestIssuer()
    i.jwks_url = i.serve_jwks()
    yield i
    i.stop_jwks()


@pytest.fixture(scope="session")
def service_vault(toolchain, pulumi_backend, issuer, tmp_path_factory):
    """A dev server with the project's configuration; yields (server, stack outputs)."""
    yield from configured_vault(toolchain, pulumi_backend, issuer, str(tmp_path_factory.mktemp("svc-bao")))


@pytest.fixture(scope="session")
def postgres():
    server = start_postgres()
    yield server
    remove(server)


@pytest.fixture
def make_client(service_vault, issuer, tmp_path):
    """make_client(database_url=None, **settings) -> a TestClient on a freshly built app."""
    yield from app_clients(service_vault, issuer, tmp_path)


@pytest.fixture
def client(make_client):
    return make_client()

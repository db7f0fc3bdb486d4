"""Two users whose ids differ only in letter case never share a value: OpenBao folds alias names to lower
case, so on the real server two logins as `carol` and `CAROL` meet in one entity; the service lets the first
spelling own the id and refuses the other before anything reaches Vault, and Vault's user role takes only
the service's own login tokens, so no token of the identity provider reaches it directly."""
import hvac
import pytest
from hvac.exceptions import Forbidden, InvalidRequest

from tests.service.helpers import bearer, vault_login_token

pytestmark = pytest.mark.integration
API = "/api/v2/user/env-vars"


def test_vault_itself_folds_case_variants_into_one_identity(service_vault):
    """Why the service has to refuse: the same entity for `carol-v` and `CAROL-V` on this OpenBao (signed
    here with the service's login key, which the service never does for a second spelling)."""
    server, outputs = service_vault
    entities = set()
    for sub in ("carol-v", "CAROL-V"):
        c = hvac.Client(url=server.address)
        login = c.auth.jwt.jwt_login(role="user", jwt=vault_login_token(outputs, sub), path="jwt")
        entities.add(login["auth"]["entity_id"])
    assert len(entities) == 1


def test_no_token_of_the_identity_provider_logs_in_at_vault(make_client, issuer, service_vault):
    """The attack of a caller that reaches Vault itself: carol's own token, and a case variant the
    identity provider issued to someone else, both refused at Vault's login, while carol works through
    the service."""
    server, _ = service_vault
    client = make_client()
    carol = bearer(issuer, "carol-idp")
    assert client.post(API, json={"name": "MINE", "value": "carol's"}, headers=carol).status_code == 201
    for sub in ("carol-idp", "CAROL-IDP"):
        with pytest.raises((InvalidRequest, Forbidden)):
            hvac.Client(url=server.address).auth.jwt.jwt_login(role="user", jwt=issuer.token(sub), path="jwt")


def test_a_case_variant_of_a_user_is_refused_and_reaches_nothing(make_client, issuer, service_vault):
    server, _ = service_vault
    client = make_client()
    carol, impostor = bearer(issuer, "carol"), bearer(issuer, "CAROL")
    ev = client.post(API, json={"name": "CAROL_TOKEN", "value": "carol's value"}, headers=carol).json()
    for r in (client.get(API, headers=impostor),
              client.post(API, json={"name": "MINE", "value": "x"}, headers=impostor),
              client.delete(f"{API}/{ev['id']}", headers=impostor),
              client.post("/api/v2/execution", json={"command": ["env"], "env_var_ids": [ev["id"]]}, headers=impostor)):
        assert r.status_code == 403 and "differs only in letter case" in r.json()["detail"], r.text
    assert client.get(API, headers=carol).json()["total"] == 1  # carol is unaffected
    root = hvac.Client(url=server.address, token=server.token)
    assert root.secrets.kv.v2.list_secrets(path="users/carol", mount_point="secret")["data"]["keys"] == [ev["id"]]
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.secrets.kv.v2.list_secrets(path="users/CAROL", mount_point="secret")
    # The registry lives in the database: another replica (a new app on the same database) refuses too.
    url = str(client.app.state.components.settings.database_url)
    again = make_client(url)
    assert again.get(API, headers=impostor).status_code == 403
    assert again.get(API, headers=carol).status_code == 200

"""A user's Vault identity entity, found by its alias on an auth mount or made with that alias before the
user's first login (Vault then logs the user in to it): what identity groups list as members."""
from typing import Any, Optional

import hvac
import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource

from .base import ManagedProvider
from .vault import CONNECTION, LOCATION, client


def _lookup(c, alias: str, accessor: str) -> Optional[str]:
    resp = c.adapter.post("/v1/identity/lookup/entity", json={"alias_name": alias, "alias_mount_accessor": accessor})
    # hvac gives back a Response for 204 (no such entity) and the JSON otherwise.
    data = resp.get("data") if isinstance(resp, dict) else None
    return data["id"] if data else None


class _UserEntityProvider(ManagedProvider):
    follows = LOCATION
    managed = ("alias", "mount_accessor")
    replace_on = managed

    def create(self, props: dict[str, Any]) -> CreateResult:
        c = client(props)
        found = _lookup(c, props["alias"], props["mount_accessor"])
        if found:  # the user logged in already: that entity is theirs, and stays when this goes
            return CreateResult(found, {**props, "entity_id": found, "made": False})
        entity = c.adapter.post("/v1/identity/entity", json={
            "metadata": {"managed_by": "vault-envvars (grants of dynamic env vars)"}})["data"]
        c.adapter.post("/v1/identity/entity-alias", json={
            "name": props["alias"], "canonical_id": entity["id"], "mount_accessor": props["mount_accessor"]})
        return CreateResult(entity["id"], {**props, "entity_id": entity["id"], "made": True})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        found = _lookup(client(props), props["alias"], props["mount_accessor"])
        if found != id_:
            return ReadResult(None, {})
        return ReadResult(id_, dict(props), {k: props.get(k) for k in self.managed + CONNECTION})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if props.get("made"):
            try:
                client(props).adapter.delete(f"/v1/identity/entity/id/{id_}")
            except hvac.exceptions.InvalidPath:  # gone already, e.g. with its auth mount
                return


class UserEntity(Resource, module="vault", name="UserEntity"):
    """`entity_id`: the entity of the user whose login name on the auth mount `mount_accessor` is `alias`."""

    entity_id: pulumi.Output[str]

    def __init__(self, name: str, *, connection, alias: pulumi.Input[str], mount_accessor: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(_UserEntityProvider(), name, {
            **connection.inputs(), "alias": alias, "mount_accessor": mount_accessor, "entity_id": None, "made": None,
        }, opts)

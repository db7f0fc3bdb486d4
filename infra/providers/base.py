"""Shared behaviour of the project's dynamic providers: input diffing and secret-safe errors."""
from typing import Any

from pulumi.dynamic import DiffResult, ResourceProvider, UpdateResult


class ManagedProvider(ResourceProvider):
    """A provider whose resource is fully described by the inputs named in `managed`.

    A change to a name in `replace_on` replaces the resource (delete first, since names are unique
    on the server); a change to any other managed input is an in-place update.
    """

    # The serialized provider holds no secret (connection secrets travel as inputs), so it is only
    # made secret if it captured one.
    serialize_as_secret_always = False
    managed: tuple[str, ...] = ()
    replace_on: tuple[str, ...] = ()
    # Where the provider finds its server (an address, a CA). When only these move (the same cluster
    # behind new host ports), the state takes the new ones in place, writing nothing to the server: a
    # delete must reach the server where it is now, and nothing is re-created for it.
    follows: tuple[str, ...] = ()

    def changed(self, olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
        # An input this provider gained after the resource was made, left at its empty default, is no
        # change: a new version of the provider must not replace existing resources.
        return [k for k in self.managed if olds.get(k) != news.get(k) and not (k not in olds and not news.get(k))]

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = self.changed(olds, news)
        replaces = [k for k in changed if k in self.replace_on]
        moved = [k for k in self.follows if k in olds and olds.get(k) != news.get(k)]
        return DiffResult(
            changes=bool(changed or moved),
            replaces=replaces,
            delete_before_replace=bool(replaces),
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Only `follows` moved (a provider whose managed inputs update in place has its own update, which
        comes here when none changed): the outputs stay, with the new location."""
        return UpdateResult({**olds, **{k: news[k] for k in self.follows if k in news}})


def inputs_of(props: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: props.get(k) for k in names}


def plain(value: Any) -> Any:
    """Numbers cross the engine as floats (protobuf Struct); give whole ones back as ints, deeply."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value

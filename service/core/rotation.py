"""Rotate an env var after a leak: its new value becomes a new KV version (an update, as the user), then the
version that was current and every version a leak exposed are marked compromised (service/core/leaks.py),
so a rerun of the same versions refuses them."""
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.schemas import EnvVarUpdate
from service.vault import VaultDenied, VaultUnavailable

from .claims import owned
from .env_vars import update_env_var
from .leaks import mark_rotated
from .user_vault import user_vault, vault_error, vault_failed


def rotate(s: Session, c: Components, who: Caller, env_var_id: str, value: str) -> list[int]:
    row = owned(s, who, env_var_id)
    try:
        old = user_vault(c, who).current_version(row.id)
    except (VaultUnavailable, VaultDenied) as err:
        vault_failed(c, who, "read_metadata", err)
        raise vault_error(err, "the env var was not rotated") from None
    update_env_var(s, c, who, row.id, EnvVarUpdate(value=value))
    return mark_rotated(s, who, row.id, old)

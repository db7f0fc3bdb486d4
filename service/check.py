"""Drift between the database and Vault: rows whose value is missing, values no row points at."""
from sqlalchemy import select

from service.db import EnvVar, make_engine, session_factory
from service.settings import Settings
from service.vault_access import VaultGateway


def drift(settings: Settings) -> dict:
    sessions = session_factory(make_engine(settings.database_url))
    vault = VaultGateway(settings.vault_addr, settings.vault_ca_file, settings.kv_mount,
                         approle_mount=settings.approle_mount).executor(settings.approle_role_id,
                                                                        settings.approle_secret_id)
    with sessions() as s:
        rows = {(r.owner, r.id) for r in s.scalars(select(EnvVar))}
    stored = {(user, i) for user in vault.list_users() for i in vault.list_ids(user)}
    return {
        "rows": len(rows),
        "values": len(stored),
        "rows_without_value": sorted(f"{u}/{i}" for u, i in rows - stored),
        "values_without_row": sorted(f"{u}/{i}" for u, i in stored - rows),
    }

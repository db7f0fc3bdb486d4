"""Drift between the database and Vault: rows whose value is missing, values no row points at, rows whose
stored Vault path is not the one their owner and id give (the value they name is not where they say)."""
from sqlalchemy import select

from service.db import EnvVar, kv_path, make_engine, now, session_factory
from service.settings import Settings
from service.vault import VaultGateway


def drift(settings: Settings) -> dict:
    sessions = session_factory(make_engine(settings.database_url))
    gateway = VaultGateway(settings.vault_addr, settings.vault_ca_file, settings.kv_mount,
                           approle_mount=settings.approle_mount, timeout=settings.vault_timeout_seconds)
    vault = gateway.executor(settings.approle_role_id, settings.approle_secret_id)
    with sessions() as s:
        # A row still being created is no row (its value may never come); one whose change is in flight
        # (a live claim) may be between its two halves: neither is drift. A claim whose request died
        # runs out, and then what it left is.
        rows = {tuple(r) for r in s.execute(select(EnvVar.owner, EnvVar.id).where(EnvVar.visible()))}
        in_flight = {tuple(r) for r in s.execute(select(EnvVar.owner, EnvVar.id).where(
            EnvVar.pending.is_not(None), EnvVar.pending_until >= now()))}
        misplaced = sorted(f"{owner}/{i}: {stored}" for owner, i, stored in s.execute(
            select(EnvVar.owner, EnvVar.id, EnvVar.vault_path)) if stored != kv_path(owner, i))
    stored = {(user, i) for user in vault.list_users() for i in vault.list_ids(user)}
    return {
        "rows": len(rows),
        "values": len(stored),
        "rows_without_value": sorted(f"{u}/{i}" for u, i in rows - in_flight - stored),
        "values_without_row": sorted(f"{u}/{i}" for u, i in stored - rows - in_flight),
        "rows_with_another_vault_path": misplaced,
    }

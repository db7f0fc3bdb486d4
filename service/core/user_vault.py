"""The caller's own Vault session, and Vault's failures in the user's words, blaming the right thing: the
caller's token, or Vault itself (its own words: unreachable or sealed, no answer in time, an error)."""
from service.auth import Caller
from service.components import Components
from service.db.audit import audit_failure
from service.vault import UserVault, VaultDenied, VaultUnavailable

from . import errors


def user_vault(c: Components, who: Caller) -> UserVault:
    try:
        return c.gateway.as_user(who.token, who.user)
    except VaultUnavailable as err:
        c.metrics.vault_errors.labels(operation="login").inc()
        raise errors.VaultUnavailable(f"{err}; nothing was changed") from None
    except VaultDenied:
        c.metrics.auth_failed("vault_login_refused")
        # A failed sign-in of a known user (the service verified the token): on their activity page.
        audit_failure(c.sessions, who.user, "sign_in.vault", "", "refused", "Vault's JWT login refused the token")
        raise errors.VaultRefused("Vault refused your token (revoked or expired); sign in again") from None


def vault_error(err: Exception, outcome: str) -> errors.DomainError:
    if isinstance(err, VaultDenied):
        return errors.VaultRefused(f"Vault refused your token (revoked or expired); {outcome}; sign in again")
    return errors.VaultUnavailable(f"{err}; {outcome}")


def vault_failed(c: Components, who: Caller, operation: str, err: Exception) -> None:
    c.metrics.vault_errors.labels(operation=operation).inc()
    if isinstance(err, VaultDenied):
        c.metrics.auth_failed("vault_token_refused")
        c.gateway.forget(who.token)  # a revoked or unknown session: the next request logs in afresh

"""The HTTP status of each domain error, one table for the API's responses and the dashboard's pages (a
script and a browser are told the same), and the Retry-After of an error that advises a retry."""
from typing import Optional

from service.core import errors

STATUS: dict[type[errors.DomainError], int] = {
    errors.NotFound: 404,
    errors.NameTaken: 409,
    errors.Busy: 409,
    errors.CannotRerun: 409,
    errors.InvalidField: 422,
    errors.VaultRefused: 403,
    errors.RoleNotGranted: 403,
    errors.IdentityCollision: 403,
    errors.RateLimited: 429,
    errors.VaultUnavailable: 503,
    errors.TimedOut: 503,
    errors.DatabaseBusy: 503,
    errors.DatabaseUnavailable: 503,
}


def retry_headers(exc: errors.DomainError) -> Optional[dict]:
    return None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}

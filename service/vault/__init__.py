"""Vault access. Writes run as the user (one JWT login per user token, with a token the service signs for
the admitted user: service/vault/login.py; Vault enforces isolation and its audit log names the user);
the executor reads with its AppRole, renewing its token and logging in again when it expires. Errors
carry no value and no token."""
import hashlib
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Optional

import hvac
import requests
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest, VaultDown, VaultError
from urllib3.exceptions import ProtocolError

from service.db import kv_path
from service.vault.login import VaultLoginSigner


class VaultUnavailable(Exception):
    """Vault cannot serve the request now (down, sealed, unreachable): a 503."""


class VaultUnanswered(VaultUnavailable):
    """The request was sent but no answer came back (timed out, connection dropped): Vault may still
    apply it, now or when it resumes. Callers treat its outcome as unknown."""


class VaultDenied(Exception):
    """Vault refused the caller (policy, bad login, a revoked or expired token): a 403."""


class SecretMissing(Exception):
    """The value of an env var is not in Vault."""


# Answers of a cluster between leaders or of a node on its way out: 500 "local node not active", 502 from
# a proxy, 503 sealed or standby. Vault's own Go client retries 5xx too.
_RETRY_STATUSES = frozenset({500, 502, 503})


class _RetryingSession(requests.Session):
    """Rides through a leader election or a pod replaced behind the active Service: a request Vault
    refused that way, or whose connection was refused (nothing sent), is sent again until `budget` seconds
    have passed. A request sent without an answer is never repeated: its outcome stays unknown."""

    def __init__(self, budget: float):
        super().__init__()
        self.trust_env = False  # REQUESTS_CA_BUNDLE must not override `verify`
        self._budget = budget

    def request(self, method, url, *args, **kwargs):
        deadline, delay = time.monotonic() + self._budget, 0.2
        while True:
            try:
                response = super().request(method, url, *args, **kwargs)
                if response.status_code not in _RETRY_STATUSES or time.monotonic() + delay > deadline:
                    return response
            except requests.ConnectionError as e:
                if (_unanswered(e) or isinstance(e, (requests.ConnectTimeout, requests.exceptions.SSLError))
                        or time.monotonic() + delay > deadline):
                    raise
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


def _client(addr: str, ca_file: str, token: str = "", timeout: int = 10, retry_seconds: float = 0) -> hvac.Client:
    session = _RetryingSession(retry_seconds)
    session.verify = ca_file or True  # hvac takes a given session's `verify` over its own argument
    return hvac.Client(url=addr, token=token or None, verify=ca_file or True, timeout=timeout, session=session)


def _unanswered(e: Exception) -> bool:
    """Sent, and maybe applied, without an answer (a connect timeout or a refused connection sent nothing)."""
    if isinstance(e, requests.ConnectTimeout):
        return False
    if isinstance(e, requests.Timeout):
        return True
    return isinstance(e, requests.ConnectionError) and bool(e.args) and isinstance(e.args[0], ProtocolError)


def translate(e: Exception) -> Exception:
    """Vault's failure as VaultUnavailable/VaultUnanswered/VaultDenied (no value, no token)."""
    return _translate(e)


def _translate(e: Exception) -> Exception:
    if _unanswered(e):
        return VaultUnanswered("Vault did not answer in time")
    if isinstance(e, (VaultDown, requests.ConnectionError, requests.Timeout)):
        return VaultUnavailable("Vault is unreachable or sealed")
    if isinstance(e, Forbidden):
        return VaultDenied("Vault denied the request")
    if isinstance(e, VaultError):
        return VaultUnavailable(f"Vault error ({type(e).__name__})")
    return e


@dataclass(frozen=True)
class KvVersion:
    """One version of a value as KV v2's metadata tells it: never the value."""
    version: int
    created: str  # RFC 3339, as Vault gives it
    deleted: bool  # soft-deleted (Vault can undelete it; the service never does)
    destroyed: bool


@dataclass(frozen=True)
class KvHistory:
    current: int
    oldest: int  # versions below it were pruned (the mount's max_versions: the stack's kvMaxVersions)
    versions: list[KvVersion]  # the kept ones, newest first


class UserVault:
    """One user's Vault session, logged in with the service's login token for that user."""

    def __init__(self, gateway: "VaultGateway", client: hvac.Client, user: str, expires: float = float("inf")):
        self._g, self._c, self.user = gateway, client, user
        self.expires = expires  # time.monotonic() when the session's Vault token is no longer used

    def _path(self, env_var_id: str) -> str:
        return kv_path(self.user, env_var_id)

    def write(self, env_var_id: str, value: str) -> int:
        try:
            r = self._c.secrets.kv.v2.create_or_update_secret(
                path=self._path(env_var_id), secret={"value": value}, mount_point=self._g.kv_mount)
            return int(r["data"]["version"])
        except Exception as e:
            raise _translate(e) from e

    def read_version(self, env_var_id: str, version: int) -> Optional[str]:
        try:
            r = self._c.secrets.kv.v2.read_secret_version(
                path=self._path(env_var_id), version=version, mount_point=self._g.kv_mount,
                raise_on_deleted_version=True)
            return r["data"]["data"]["value"]
        except InvalidPath:
            return None
        except Exception as e:
            raise _translate(e) from e

    def current_version(self, env_var_id: str) -> Optional[int]:
        try:
            meta = self._c.secrets.kv.v2.read_secret_metadata(path=self._path(env_var_id),
                                                              mount_point=self._g.kv_mount)
            return int(meta["data"]["current_version"])
        except InvalidPath:
            return None
        except Exception as e:
            raise _translate(e) from e

    def history(self, env_var_id: str) -> Optional[KvHistory]:
        """The kept versions of a value (its KV metadata); None when there is no value."""
        try:
            meta = self._c.secrets.kv.v2.read_secret_metadata(path=self._path(env_var_id),
                                                              mount_point=self._g.kv_mount)["data"]
        except InvalidPath:
            return None
        except Exception as e:
            raise _translate(e) from e
        versions = [KvVersion(int(n), str(v.get("created_time", "")), bool(v.get("deletion_time")),
                              bool(v.get("destroyed"))) for n, v in (meta.get("versions") or {}).items()]
        versions.sort(key=lambda v: v.version, reverse=True)
        current = int(meta["current_version"])
        return KvHistory(current, min((v.version for v in versions), default=current), versions)

    def readable_versions(self, env_var_id: str) -> set[int]:
        """The versions of the value still readable (neither deleted, destroyed nor pruned), from the
        metadata: no value is read. Empty when the value is gone."""
        history = self.history(env_var_id)
        return {v.version for v in history.versions if not v.deleted and not v.destroyed} if history else set()

    def capabilities(self, path: str) -> list[str]:
        """What Vault lets this user do at `path` (sys/capabilities-self): Vault's own decision, nothing
        read or minted. ["deny"] when nothing."""
        try:
            r = self._c.adapter.post("/v1/sys/capabilities-self", json={"paths": [path]})
        except Exception as e:
            raise _translate(e) from e
        data = r.get("data", r) if isinstance(r, dict) else {}
        return list(data.get(path) or data.get("capabilities") or ["deny"])

    def destroy(self, env_var_id: str) -> None:
        """Deletes every version and the metadata: the value is gone for good."""
        try:
            self._c.secrets.kv.v2.delete_metadata_and_all_versions(path=self._path(env_var_id),
                                                                   mount_point=self._g.kv_mount)
        except InvalidPath:
            pass
        except Exception as e:
            raise _translate(e) from e


class ExecutorVault:
    """The executor's AppRole session: read-only, token renewed, re-login when it cannot be renewed."""

    def __init__(self, gateway: "VaultGateway", role_id: str, secret_id: str):
        self._g, self._role_id, self._secret_id = gateway, role_id, secret_id
        self._lock = threading.Lock()
        self._c: Optional[hvac.Client] = None
        self._expires = 0.0

    def _login(self) -> hvac.Client:
        c = _client(self._g.addr, self._g.ca_file, timeout=self._g.timeout, retry_seconds=self._g.retry_seconds)
        auth = c.auth.approle.login(role_id=self._role_id, secret_id=self._secret_id,
                                    mount_point=self._g.approle_mount)["auth"]
        self._expires = time.monotonic() + auth["lease_duration"]
        return c

    def _session(self) -> hvac.Client:
        with self._lock:
            remaining = self._expires - time.monotonic()
            if self._c is None or remaining < 5:
                self._c = self._login()
            elif remaining < 60:
                try:
                    lease = self._c.auth.token.renew_self()["auth"]["lease_duration"]
                    self._expires = time.monotonic() + lease
                except VaultError:
                    self._c = self._login()  # max TTL reached: a fresh login
            return self._c

    def _call(self, request):
        """request(client) on the session. A 403 means the token is gone (revoked, or lost when Vault was
        restarted or restored) although it has not expired: one fresh login and one retry; a second 403
        is a real refusal."""
        client = self._session()
        try:
            return request(client)
        except Forbidden:
            with self._lock:
                if self._c is client:  # not already replaced by another job's fresh login
                    self._c = None
        return request(self._session())

    def read(self, user: str, env_var_id: str) -> str:
        return self.read_versioned(user, env_var_id)[0]

    def read_versioned(self, user: str, env_var_id: str, version: Optional[int] = None) -> tuple[str, int]:
        """The value and its KV version: the newest, or exactly `version` (SecretMissing when that version
        was deleted, destroyed or pruned by the mount's max_versions)."""
        try:
            r = self._call(lambda c: c.secrets.kv.v2.read_secret_version(
                path=kv_path(user, env_var_id), version=version, mount_point=self._g.kv_mount,
                raise_on_deleted_version=True))
            return r["data"]["data"]["value"], int(r["data"]["metadata"]["version"])
        except InvalidPath as e:
            raise SecretMissing(env_var_id) from e
        except Exception as e:
            raise _translate(e) from e

    def create_job_token(self, role: str, ttl_seconds: int, metadata: dict[str, str]) -> tuple[str, str, int]:
        """A token of the token role `role` (orphan, not renewable: see infra/database_secrets.py) living
        `ttl_seconds`; (token, accessor, the TTL Vault gave it: less when the role caps it)."""
        try:
            auth = self._call(lambda c: c.auth.token.create(role_name=role, ttl=f"{ttl_seconds}s",
                                                            explicit_max_ttl=f"{ttl_seconds}s", renewable=False,
                                                            meta=metadata))["auth"]
        except Exception as e:
            raise _translate(e) from e
        return auth["client_token"], auth["accessor"], int(auth["lease_duration"])

    def revoke_lease(self, lease_id: str) -> None:
        """Revokes one lease, by id in the URL: the executor's policy allows exactly its engine's leases."""
        try:
            self._call(lambda c: c.adapter.put(f"/v1/sys/leases/revoke/{lease_id}"))
        except Exception as e:
            raise _translate(e) from e

    def list_users(self) -> list[str]:
        return [u.rstrip("/") for u in self._list("users")]

    def list_ids(self, user: str) -> list[str]:
        return self._list(f"users/{user}")

    def _list(self, path: str) -> list[str]:
        try:
            return self._call(lambda c: c.secrets.kv.v2.list_secrets(
                path=path, mount_point=self._g.kv_mount))["data"]["keys"]
        except InvalidPath:
            return []
        except Exception as e:
            raise _translate(e) from e


@dataclass(frozen=True)
class VaultStatus:
    """What the Vault address answers on /v1/sys/health: the node behind it, as the service sees it."""
    reachable: bool
    sealed: bool = False
    active: bool = False


class VaultGateway:
    def __init__(self, addr: str, ca_file: str = "", kv_mount: str = "secret", jwt_mount: str = "jwt",
                 jwt_role: str = "user", approle_mount: str = "approle", timeout: int = 10,
                 retry_seconds: float = 5.0, login_signer: Optional[VaultLoginSigner] = None):
        self.addr, self.ca_file, self.kv_mount = addr, ca_file, kv_mount
        self.timeout = timeout  # seconds per Vault request
        self.retry_seconds = retry_seconds  # how long a request refused by a cluster in transition is retried
        self.jwt_mount, self.jwt_role, self.approle_mount = jwt_mount, jwt_role, approle_mount
        self._signer = login_signer  # None: no user sessions (the drift check reads as the executor only)
        # The Vault token a user's JWT logged in to, kept in memory only (never on disk) until shortly
        # before it expires, keyed by a hash of that JWT: one login per JWT, not one per request.
        self._sessions: dict[str, tuple[float, hvac.Client]] = {}
        self._lock = threading.Lock()

    def as_user(self, jwt: str, user: str) -> UserVault:
        """`jwt`: the user's verified token (the session's cache key); `user`: the admitted user's id,
        the subject of the login token the service signs. The user's own token never reaches Vault."""
        key = hashlib.sha256(jwt.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._sessions.get(key)
            if cached and cached[0] > now:
                return UserVault(self, cached[1], user, cached[0])
            for k in [k for k, (exp, _) in self._sessions.items() if exp <= now]:
                del self._sessions[k]
        if self._signer is None:
            raise VaultDenied("this gateway signs in no users")
        try:
            c = _client(self.addr, self.ca_file, timeout=self.timeout, retry_seconds=self.retry_seconds)
            auth = c.auth.jwt.jwt_login(role=self.jwt_role, jwt=self._signer.token(user), path=self.jwt_mount)["auth"]
        except (InvalidRequest, Forbidden) as e:
            raise VaultDenied("Vault refused the user's token") from e
        except Exception as e:
            raise _translate(e) from e
        expires = now + max(0, auth["lease_duration"] - 30)
        with self._lock:
            self._sessions[key] = (expires, c)
        return UserVault(self, c, user, expires)

    def forget(self, jwt: str) -> None:
        """Drops a cached session (Vault refused its token: revoked, or the server was restored)."""
        with self._lock:
            self._sessions.pop(hashlib.sha256(jwt.encode()).hexdigest(), None)

    def token_client(self, token: str) -> hvac.Client:
        """A client with a token of its own (a job's token, service/executor/leases.py)."""
        return _client(self.addr, self.ca_file, token=token, timeout=self.timeout, retry_seconds=self.retry_seconds)

    def executor(self, role_id: str, secret_id: str) -> ExecutorVault:
        return ExecutorVault(self, role_id, secret_id)

    def status(self) -> VaultStatus:
        # Without standbyok: 200 active, 429 standby, 473 performance standby, 503 sealed, 501 uninitialised.
        try:
            r = requests.get(f"{self.addr}/v1/sys/health", timeout=3, verify=self.ca_file or True)
        except requests.RequestException:
            return VaultStatus(reachable=False)
        if r.status_code in (200, 429, 473):
            return VaultStatus(reachable=True, active=r.status_code == 200)
        if r.status_code == 503:
            return VaultStatus(reachable=True, sealed=True)
        return VaultStatus(reachable=False)

    def health(self) -> str:
        """"ok", "sealed" or "unreachable"."""
        status = self.status()
        return "sealed" if status.sealed else "ok" if status.reachable else "unreachable"

    def server_certificate_expiry(self) -> Optional[float]:
        """notAfter (unix seconds) of the certificate Vault presents, verified as every call verifies it;
        None over plain HTTP or when no verified handshake is possible."""
        url = urllib.parse.urlsplit(self.addr)
        if url.scheme != "https" or not url.hostname:
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        try:
            with socket.create_connection((url.hostname, url.port or 443), timeout=3) as raw, \
                    ctx.wrap_socket(raw, server_hostname=url.hostname) as tls:
                cert = tls.getpeercert()
        except (OSError, ssl.SSLError):
            return None
        not_after = cert.get("notAfter") if cert else None
        return float(ssl.cert_time_to_seconds(not_after)) if isinstance(not_after, str) else None

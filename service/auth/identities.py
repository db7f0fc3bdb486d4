"""One user id, one Vault identity. Vault matches entity alias names case-insensitively (OpenBao folds
them to lower case for the lookup), so tokens whose `sub` are `carol` and `CAROL` log in to one entity,
and the user policy's templated path (the alias name) would be theirs together. The service therefore
lets the first spelling of each case-folded id own it and refuses every other spelling before anything
reaches Vault. Vault itself sees only the service's login tokens (service/vault/login.py), signed for the
owning spelling alone: no token of the identity provider logs in there directly."""
import threading

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from service.db import User


class IdentityCollision(Exception):
    pass


class IdentityRegistry:
    def __init__(self, sessions: sessionmaker):
        self._sessions = sessions
        self._admitted: set[str] = set()  # subs already checked: one database read per user and process
        self._lock = threading.Lock()

    def known(self, sub: str) -> bool:
        """Admitted already by this process: admit() needs no database."""
        return sub in self._admitted

    def admit(self, sub: str) -> None:
        """Returns when `sub` owns its case-folded id (registering it on first sight); else raises."""
        if sub in self._admitted:
            return
        folded = sub.lower()  # subs are ASCII (service/auth.py), where this is Vault's own folding
        with self._sessions() as s:
            owner = s.get(User, folded)
            if owner is None:
                s.add(User(folded=folded, sub=sub))
                try:
                    s.commit()
                    owner_sub = sub
                except IntegrityError:  # registered at the same moment by another request or replica
                    s.rollback()
                    owner_sub = s.get(User, folded).sub
            else:
                owner_sub = owner.sub
        if owner_sub != sub:
            raise IdentityCollision(
                f"your user id {sub!r} differs only in letter case from another user's; Vault treats them as "
                "one identity, so it is refused (ask the identity provider's administrator for a distinct id)")
        with self._lock:
            self._admitted.add(sub)

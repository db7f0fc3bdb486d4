"""The caller's webhooks (service/webhooks.py delivers them): add one (its signing secret is shown once),
list, delete, and see each delivery attempt's status. Never a value; never another user's."""
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.auth import Caller
from service.components import Components
from service.db.audit import audit_row
from service.db.leaks import Webhook, WebhookDelivery

from . import errors

MAX_PER_USER = 10


def create(s: Session, c: Components, who: Caller, url: str) -> dict:
    if not c.webhooks.enabled:
        raise errors.InvalidField("url", "webhooks are not enabled on this service (ENVVARS_WEBHOOK_KEY_FILE or "
                                         "ENVVARS_SESSION_KEY_FILE)")
    count = len(s.scalars(select(Webhook.id).where(Webhook.owner == who.user)).all())
    if count >= MAX_PER_USER:
        raise errors.InvalidField("url", f"at most {MAX_PER_USER} webhooks per user")
    hook = Webhook(owner=who.user, url=url)
    s.add(hook)
    s.flush()
    s.add(audit_row(who.user, "webhook.create", hook.id, "ok"))
    s.commit()
    return {"id": hook.id, "url": hook.url, "created_at": hook.created_at, "secret": c.webhooks.secret_for(hook.id).decode()}


def _owned(s: Session, who: Caller, webhook_id: str) -> Webhook:
    hook = s.get(Webhook, webhook_id)
    if hook is None or hook.owner != who.user:
        raise errors.NotFound("webhook not found")
    return hook


def list_webhooks(s: Session, who: Caller) -> list[Webhook]:
    return list(s.scalars(select(Webhook).where(Webhook.owner == who.user).order_by(Webhook.created_at)))


def remove(s: Session, who: Caller, webhook_id: str) -> None:
    hook = _owned(s, who, webhook_id)
    s.execute(delete(Webhook).where(Webhook.id == hook.id))
    s.add(audit_row(who.user, "webhook.delete", hook.id, "ok"))
    s.commit()


def deliveries(s: Session, who: Caller, webhook_id: str, limit: int = 100) -> list[WebhookDelivery]:
    hook = _owned(s, who, webhook_id)
    return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
                          .order_by(WebhookDelivery.at.desc(), WebhookDelivery.id.desc()).limit(limit)))

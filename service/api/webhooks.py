"""/api/v2/user/webhooks: the caller's signed webhooks (service/core/webhooks.py, service/webhooks.py)."""
from fastapi import APIRouter, Response

from service.core import webhooks
from service.leak_schemas import WebhookCreate, WebhookCreated, WebhookDeliveryList, WebhookList

from .deps import CallerDep, ComponentsDep, SessionDep

router = APIRouter(prefix="/api/v2/user/webhooks", tags=["webhooks"])


@router.post("", response_model=WebhookCreated, status_code=201)
def create(body: WebhookCreate, who: CallerDep, s: SessionDep, c: ComponentsDep) -> WebhookCreated:
    """Events (leak.found, env_var.changed, env_var.rolled_back, env_var.deleted) are POSTed to the URL,
    signed; the signing secret is in this answer only."""
    return WebhookCreated.model_validate(webhooks.create(s, c, who, body.url))


@router.get("", response_model=WebhookList)
def list_webhooks(who: CallerDep, s: SessionDep) -> WebhookList:
    return WebhookList.model_validate({"items": webhooks.list_webhooks(s, who)}, from_attributes=True)


@router.delete("/{webhook_id}", status_code=204)
def delete(webhook_id: str, who: CallerDep, s: SessionDep) -> Response:
    webhooks.remove(s, who, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveryList)
def deliveries(webhook_id: str, who: CallerDep, s: SessionDep) -> WebhookDeliveryList:
    """Each delivery attempt, newest first: the event, the attempt, the receiver's status or the error."""
    return WebhookDeliveryList.model_validate({"items": webhooks.deliveries(s, who, webhook_id)}, from_attributes=True)

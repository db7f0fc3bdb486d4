"""The platform team's webhook (docs/leaks.md "Webhooks"): its signing secret, the operator's or one the stack
makes, for both stacks' service and for the team (a secret stack output, `platform_webhook_secret`)."""
from typing import Optional

import pulumi

from infra.providers.random import RandomSecret
from stacks.config import PlatformWebhookSettings


def platform_webhook_secret(settings: PlatformWebhookSettings) -> Optional[pulumi.Output]:
    """None without a URL; else the secret (a Pulumi secret: encrypted in state, masked in every display)."""
    if not settings.url:
        return None
    if settings.secret is not None:
        return pulumi.Output.secret(settings.secret)
    return pulumi.Output.secret(RandomSecret("platform-webhook-secret", length=32).result)

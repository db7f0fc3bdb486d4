"""Request and response bodies of leak findings and their response (service/core/leaks.py): never a secret,
never a hash."""
import datetime
from typing import Literal, Optional

from pydantic import BaseModel, Field

from service.schemas import StrictBody, UtcTimes

LeakStatus = Literal["open", "dismissed"]


class LeakEnvVar(BaseModel):
    id: str
    name: Optional[str] = Field(description="null when the env var was deleted since")


class LeakFindingOut(UtcTimes):
    id: str
    execution_id: str
    detector: str = Field(description="a token shape (github_token, aws_access_key_id, jwt, private_key, ...), "
                                      "high_entropy, or own_value (a form of one of the job's own values)")
    line: int = Field(description="the line of the stored (masked) output")
    excerpt: str = Field(description="that line around the masked span, e.g. `token=[masked:github_token]`")
    env_var: Optional[LeakEnvVar] = Field(description="the caller's env var whose value it matches (by hash)")
    kv_version: Optional[int]
    status: LeakStatus
    created_at: datetime.datetime
    dismissed_by: Optional[str]
    dismissed_reason: Optional[str]
    dismissed_at: Optional[datetime.datetime]


class LeakFindingList(BaseModel):
    items: list[LeakFindingOut]
    total: int


class LeakDismiss(StrictBody):
    reason: str = Field(min_length=1, max_length=400, description="why this is a false positive (kept, shown)")


class CompromisedVersionOut(BaseModel):
    kv_version: int
    state: Literal["possibly", "compromised"] = Field(
        description="possibly: a finding exposed it; compromised: rotated away after that (confirmed)")
    since: datetime.datetime
    exposed_by: list[str] = Field(description="the executions whose output exposed it")


class CompromisedEnvVar(BaseModel):
    id: str
    name: str
    versions: list[CompromisedVersionOut]
    exposed_by: list[str]


class CompromisedList(BaseModel):
    items: list[CompromisedEnvVar]


class EnvVarRotate(StrictBody):
    value: str = Field(description="the new value (a new KV version); the old versions are marked compromised")


class EnvVarRotated(BaseModel):
    id: str
    compromised_versions: list[int]


class WebhookCreate(StrictBody):
    url: str = Field(max_length=2048, pattern=r"^https?://[!-~]+$", description="an http(s) URL that receives POSTs")


class WebhookOut(UtcTimes):
    id: str
    url: str
    created_at: datetime.datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing secret, shown this once: HMAC-SHA256 over '<timestamp>.<body>'")


class WebhookList(BaseModel):
    items: list[WebhookOut]


class WebhookDeliveryOut(BaseModel):
    event: str
    delivery_id: str
    attempt: int
    status: Optional[int] = Field(description="the receiver's HTTP status; null when no answer came (see error)")
    error: str
    at: datetime.datetime


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryOut]
